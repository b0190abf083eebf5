"""COCO box AP of person detections on a CrowdPose-style annotation file (pycocotools, iouType ``bbox``).

The ground truth is the file's person boxes (category 1) with ``area = w * h`` (COCO's medium/large ranges
are cut on it) and ``iscrowd`` kept (pycocotools treats crowd regions as areas where a detection is neither
right nor wrong). Annotation ids are renumbered from 1: the official test files start at 0, and a ground truth
with id 0 is recorded as matched with id 0, which pycocotools' accumulation reads as "no match", so one person
of the file could never be found. Every person box counts, with or without labelled joints. pycocotools'
defaults apply otherwise: IoU 0.50:0.05:0.95, 101 recall points, at most 1 / 10 / 100 detections per image.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..jsonio import is_number
from .keypoint_eval import _quiet_coco, prepare_ground_truth
from .predictions import load_predictions

__all__ = ["BoxMetrics", "prepare_box_ground_truth", "validate_detections", "evaluate_boxes"]

_PERSON = 1


@dataclass(frozen=True)
class BoxMetrics:
    """pycocotools' box summary (fractions in [0, 1]; 0 where no ground truth falls in a size range).

    Attributes:
        AP: mean precision over IoU 0.50:0.05:0.95 (at most 100 detections per image).
        AP50: precision at IoU 0.5.
        AP75: precision at IoU 0.75.
        APm: AP of medium boxes (32^2 < area <= 96^2).
        APl: AP of large boxes (area > 96^2).
        AR1: mean recall with 1 detection per image.
        AR10: with 10.
        AR100: with 100.
        num_ground_truths: person boxes that count (crowd regions not).
        num_detections: detections read.
    """

    AP: float
    AP50: float
    AP75: float
    APm: float
    APl: float
    AR1: float
    AR10: float
    AR100: float
    num_ground_truths: int
    num_detections: int

    def summary(self) -> dict[str, float]:
        """``{"AP", "AP50", "AP75", "AR"}`` (AR is AR100), as :meth:`KeypointMetrics.summary`."""
        return {"AP": self.AP, "AP50": self.AP50, "AP75": self.AP75, "AR": self.AR100}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prepare_box_ground_truth(ground_truth: str | Path | dict[str, Any]) -> dict[str, Any]:
    """The document pycocotools scores boxes against: ids from 1, ``area = w * h``, ``iscrowd`` kept.

    Args:
        ground_truth: an annotation file or an already loaded document (not modified).
    """
    out = prepare_ground_truth(ground_truth, "fixed")
    for ann in out["annotations"]:
        ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
        ann["iscrowd"] = int(ann.get("iscrowd", 0))
    return out


def validate_detections(detections: Any, image_ids: set[int], *, source: str = "detections") -> list[dict[str, Any]]:
    """Check every detection and return clean copies: ``image_id``, ``category_id`` (1 when absent), ``bbox``
    ``[x, y, w, h]`` of finite numbers with ``w, h > 0``, finite ``score``.

    Raises:
        InputError: naming the first bad detection and what is wrong with it.
    """
    if not isinstance(detections, list):
        raise InputError(f"{source}: expected a list of detections (COCO results format), got {type(detections).__name__}")
    clean = []
    for i, det in enumerate(detections):
        where = f"{source}: detection {i}"
        if not isinstance(det, dict):
            raise InputError(f"{where}: expected an object, got {type(det).__name__}")
        for key in ("image_id", "bbox", "score"):
            if key not in det:
                raise InputError(f"{where}: missing field '{key}' (COCO detection results: image_id, category_id, bbox, score)")
        image_id = det["image_id"]
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            raise InputError(f"{where}: image_id must be an integer, got {image_id!r}")
        if image_id not in image_ids:
            raise InputError(f"{where}: image_id {image_id} is not an image of the ground-truth file")
        bbox = det["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)) or not (bbox[2] > 0 and bbox[3] > 0):
            raise InputError(f"{where}: bbox must be [x, y, w, h], finite numbers with w, h > 0, got {bbox!r}")
        cat = det.get("category_id", _PERSON)
        if not (is_number(cat) and float(cat).is_integer()):
            raise InputError(f"{where}: category_id must be an integer, got {cat!r}")
        if not is_number(det["score"]):
            raise InputError(f"{where}: score must be a finite number, got {det['score']!r}")
        clean.append({"image_id": image_id, "category_id": int(cat), "bbox": [float(v) for v in bbox], "score": float(det["score"])})
    return clean


def _stat(value: float) -> float:
    # pycocotools writes -1 where no ground truth falls in the range; the metrics say 0 there, as keypoint_eval.
    return float(value) if value > -1 and math.isfinite(value) else 0.0


def evaluate_boxes(ground_truth: str | Path | dict[str, Any], results: str | Path | list[dict[str, Any]]) -> BoxMetrics:
    """Score person detections against a CrowdPose-style annotation file with pycocotools' box AP.

    Args:
        ground_truth: annotation file (or loaded document).
        results: COCO detection results file (or loaded list): ``image_id``, ``category_id``, ``bbox``
            ``[x, y, w, h]``, ``score``.

    Raises:
        InputError: a file is unreadable or malformed, a detection is malformed or on an image the ground truth
            lacks, or the ground truth holds no person box.
    """
    from pycocotools.cocoeval import COCOeval

    gt = prepare_box_ground_truth(ground_truth)
    if isinstance(results, (str, Path)):
        source = str(results)
        results = load_predictions(results)
    else:
        source = "detections"
    image_ids = {int(img["id"]) for img in gt["images"]}
    dets = validate_detections(results, image_ids, source=source)
    num_gt = sum(1 for a in gt["annotations"] if not a["iscrowd"] and a.get("category_id", _PERSON) == _PERSON)
    if num_gt == 0:
        raise InputError(f"{ground_truth if isinstance(ground_truth, (str, Path)) else 'ground truth'}: no person box to score (every annotation is a crowd region)")
    if not dets:
        return BoxMetrics(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, num_gt, 0)

    coco_gt = _quiet_coco(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.catIds = [_PERSON]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = [_stat(v) for v in ev.stats]
    return BoxMetrics(AP=s[0], AP50=s[1], AP75=s[2], APm=s[4], APl=s[5], AR1=s[6], AR10=s[7], AR100=s[8], num_ground_truths=num_gt, num_detections=len(dets))
