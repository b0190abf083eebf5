"""CrowdPose-configured pycocotools keypoint evaluation with two ground-truth protocols.

pycocotools' matching (greedy by score, OKS thresholds 0.50:0.05:0.95, 101 recall points) is the same
algorithm as crowdposetools'; what CrowdPose changes is configuration, set here: its 14 sigmas, its object
scale ``w * h * 0.53`` (given to pycocotools as the ground truth's ``area``), one detection cap of 20, and the
"all" area range (the only one its AP uses). Both tools also share the two quirks the ``crowdpose`` protocol
keeps: the ``num_keypoints`` field decides which ground truths are ignored, and a ground truth with annotation
id 0 is recorded as matched with id 0, which the accumulation reads as "no match".
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from ..annotations import category_record, crowdpose_area, normalise_document
from ..errors import InputError, UsageError
from ..jsonio import load_json
from ..keypoints import crowdpose14
from ..schema import AnnotationDocument, load_document
from .predictions import load_predictions, validate_predictions

__all__ = ["PROTOCOLS", "Protocol", "KeypointMetrics", "prepare_ground_truth", "evaluate_keypoints"]

Protocol = Literal["crowdpose", "fixed"]
PROTOCOLS: tuple[str, ...] = get_args(Protocol)

# pycocotools' "all" area range; any object scale fits.
_AREA_ALL = [0.0, 1e5**2]


@dataclass(frozen=True)
class KeypointMetrics:
    """Summary of one evaluation (fractions in [0, 1]).

    Attributes:
        AP: mean precision over OKS 0.50:0.05:0.95 (the paper's AP@0.5:0.95).
        AP50: precision at OKS 0.5.
        AP75: precision at OKS 0.75.
        AR: mean recall over OKS 0.50:0.05:0.95 (at most 20 detections per image).
        AR50: recall at OKS 0.5.
        AR75: recall at OKS 0.75.
        protocol: ``crowdpose`` or ``fixed``.
        num_images: images scored.
        num_ground_truths: ground truths that count (not ignored).
        num_predictions: results read.
    """

    AP: float
    AP50: float
    AP75: float
    AR: float
    AR50: float
    AR75: float
    protocol: str
    num_images: int
    num_ground_truths: int
    num_predictions: int

    def summary(self) -> dict[str, float]:
        """``{"AP", "AP50", "AP75", "AR"}``, what ``exlpose-eval --json`` prints."""
        return {"AP": self.AP, "AP50": self.AP50, "AP75": self.AP75, "AR": self.AR}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def _read_ground_truth(ground_truth: str | Path | dict[str, Any]) -> tuple[dict[str, Any], AnnotationDocument, str]:
    if isinstance(ground_truth, dict):
        raw, source = ground_truth, "ground truth"
        try:
            doc = AnnotationDocument.model_validate(raw)
        except Exception as exc:  # pydantic.ValidationError; message already names the field
            raise InputError(f"{source}: {exc}") from None
        return raw, doc, source
    path = Path(ground_truth)
    doc = load_document(path)
    return load_json(path), doc, str(path)


def prepare_ground_truth(ground_truth: str | Path | dict[str, Any], protocol: Protocol = "crowdpose") -> dict[str, Any]:
    """The ground-truth document pycocotools is given under ``protocol``.

    ``crowdpose`` keeps ids and ``num_keypoints`` as the file has them and adds ``area = w*h*0.53``;
    ``fixed`` renumbers ids from 1 and recomputes ``num_keypoints`` from the visibility flags.

    Args:
        ground_truth: an annotation file or an already loaded document (not modified).
        protocol: ``crowdpose`` or ``fixed``.
    """
    _check_protocol(protocol)
    raw, doc, source = _read_ground_truth(ground_truth)
    if protocol == "fixed":
        out = normalise_document(doc, renumber=True, crowd="none").to_json_dict()
    else:
        out = {"images": copy.deepcopy(raw["images"]), "annotations": []}
        for i, ann in enumerate(raw["annotations"]):
            if "num_keypoints" not in ann:
                raise InputError(
                    f"{source}: annotations/{i}: no 'num_keypoints' field, which the crowdpose protocol ignores "
                    "ground truths by; use --protocol fixed"
                )
            out["annotations"].append({**ann, "iscrowd": ann.get("iscrowd", 0), "area": crowdpose_area(ann["bbox"])})
    out["categories"] = [c.model_dump(mode="json") for c in doc.categories] or [category_record().model_dump(mode="json")]
    return out


def _quiet_coco(dataset: dict[str, Any]) -> Any:
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else 0.0


def evaluate_keypoints(
    ground_truth: str | Path | dict[str, Any],
    predictions: str | Path | list[dict[str, Any]],
    *,
    protocol: Protocol = "crowdpose",
) -> KeypointMetrics:
    """Score keypoint results against a CrowdPose-style annotation file.

    Args:
        ground_truth: annotation file (or loaded document).
        predictions: COCO results file (or loaded list): ``image_id``, ``keypoints`` (42 numbers), ``score``.
        protocol: ``crowdpose`` (as CrowdPose's tool scores it) or ``fixed`` (every ground truth can match).

    Raises:
        InputError: a file is unreadable or malformed, or nothing in it can be scored.
        UsageError: an unknown protocol.
    """
    from pycocotools.cocoeval import COCOeval

    gt = prepare_ground_truth(ground_truth, protocol)
    if isinstance(predictions, (str, Path)):
        source = str(predictions)
        predictions = load_predictions(predictions)
    else:
        source = "predictions"
    image_ids = {int(img["id"]) for img in gt["images"]}
    results = validate_predictions(predictions, image_ids, source=source)

    coco_gt = _quiet_coco(gt)
    num_gt = sum(1 for a in gt["annotations"] if not a.get("iscrowd", 0) and a["num_keypoints"] > 0)
    if num_gt == 0:
        raise InputError(f"{ground_truth if isinstance(ground_truth, (str, Path)) else 'ground truth'}: "
                         "no ground truth can be scored (every annotation is a crowd or has no keypoints)")
    if not results:
        zero = 0.0
        return KeypointMetrics(zero, zero, zero, zero, zero, zero, protocol, len(image_ids), num_gt, 0)

    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        spec = crowdpose14()
        ev.params.kpt_oks_sigmas = spec.sigmas_array()
        ev.params.maxDets = [spec.max_dets]
        ev.params.areaRng = [_AREA_ALL]
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
        ev.accumulate()

    precision = ev.eval["precision"][:, :, 0, 0, 0]  # [T, R]
    recall = ev.eval["recall"][:, 0, 0, 0]  # [T]
    thresholds = ev.params.iouThrs
    t50 = int(np.argmin(np.abs(thresholds - 0.5)))
    t75 = int(np.argmin(np.abs(thresholds - 0.75)))
    return KeypointMetrics(
        AP=_mean_valid(precision),
        AP50=_mean_valid(precision[t50]),
        AP75=_mean_valid(precision[t75]),
        AR=_mean_valid(recall),
        AR50=_mean_valid(recall[t50 : t50 + 1]),
        AR75=_mean_valid(recall[t75 : t75 + 1]),
        protocol=protocol,
        num_images=len(image_ids),
        num_ground_truths=num_gt,
        num_predictions=len(results),
    )
