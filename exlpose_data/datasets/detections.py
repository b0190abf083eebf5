"""Person detections (COCO detection results) as the boxes of top-down samples.

A results file is a JSON list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``, the format
detectors write for COCO evaluation. Detections replace the ground-truth boxes for multi-person evaluation.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..jsonio import load_json
from ..keypoints import crowdpose14
from .records import DatasetIndex, InstanceEntry

__all__ = ["load_detections", "detection_instances"]


def load_detections(path: str | os.PathLike, *, category_id: int = 1, min_score: float = 0.0) -> dict[int, list[tuple[tuple[float, float, float, float], float]]]:
    """Read a results file into ``image_id -> [(bbox_xywh, score), ...]`` sorted by falling score.

    Args:
        path: the results JSON.
        category_id: keep detections of this category (the person).
        min_score: drop detections scoring below this.
    """
    p = Path(path)
    raw = load_json(p)
    if not isinstance(raw, list):
        raise InputError(f"{p}: expected a JSON list of detections (COCO results format), got {type(raw).__name__}")
    out: dict[int, list[tuple[tuple[float, float, float, float], float]]] = {}
    for n, det in enumerate(raw):
        try:
            image_id, bbox, score = int(det["image_id"]), [float(v) for v in det["bbox"]], float(det["score"])
            cat = int(det.get("category_id", category_id))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{p}: detection {n}: needs image_id, bbox [x, y, w, h] and score ({exc})") from None
        if len(bbox) != 4 or bbox[2] <= 0 or bbox[3] <= 0:
            raise InputError(f"{p}: detection {n}: bbox must be [x, y, w, h] with w, h > 0, got {bbox}")
        if cat == category_id and score >= min_score:
            out.setdefault(image_id, []).append((tuple(bbox), score))  # type: ignore[arg-type]
    for dets in out.values():
        dets.sort(key=lambda d: -d[1])
    return out


def detection_instances(index: DatasetIndex, detections: dict[int, list[tuple[tuple[float, float, float, float], float]]], source: str) -> list[list[InstanceEntry]]:
    """Per-image instances made of detections; detections of images not in the index are an error."""
    position = index.image_position()
    unknown = sorted(set(detections) - set(position))
    if unknown:
        raise InputError(f"{source}: detections refer to {len(unknown)} image id(s) not in the annotation file, e.g. {unknown[0]}")
    empty = np.zeros((crowdpose14().num_keypoints, 3))
    out: list[list[InstanceEntry]] = [[] for _ in index.images]
    for image_id, dets in detections.items():
        i = position[image_id]
        out[i] = [InstanceEntry(image=i, ann_id=-1, bbox=bbox, keypoints=empty, score=score) for bbox, score in dets]
    return out
