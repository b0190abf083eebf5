"""Scoring keypoint predictions the way the ExLPose paper's numbers were scored (and person detections by COCO box AP,
:func:`evaluate_boxes`).

COCO-format keypoint results are scored with pycocotools configured for CrowdPose (14 OKS sigmas, object
scale ``bbox_w * bbox_h * 0.53``, at most 20 detections per image). Two protocols:

- ``crowdpose``: the numbers CrowdPose's own evaluator (crowdposetools) gives on the same files, quirks
  included: ground truths are ignored by the file's ``num_keypoints`` field (not the visibility flags) and a
  ground truth whose annotation id is 0 is consumed by its match but never counted as a true positive.
- ``fixed``: annotation ids renumbered from 1 so every ground truth can match, ground truths ignored by their
  actual labelled joints.
"""

from .bbox_eval import BoxMetrics, evaluate_boxes
from .keypoint_eval import PROTOCOLS, KeypointMetrics, Protocol, evaluate_keypoints, prepare_ground_truth
from .predictions import load_predictions, validate_predictions

__all__ = [
    "BoxMetrics",
    "evaluate_boxes",
    "PROTOCOLS",
    "KeypointMetrics",
    "Protocol",
    "evaluate_keypoints",
    "prepare_ground_truth",
    "load_predictions",
    "validate_predictions",
]
