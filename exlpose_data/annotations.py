"""Normalising annotation documents into the form every file we write has.

Files we write have annotation ids from 1 (COCO-style evaluators treat a ground truth whose id is 0 as never
matched, because their match arrays use 0 for "no match"), ``num_keypoints`` = number of joints with v > 0,
``area`` = bbox w * h * 0.53 (CrowdPose's object scale) and a per-image ``crowdIndex``.

Crowd index (CrowdPose, Li et al. 2019): for an image with instances ``i``, ``CI = 1/n * sum_i Nb(i) / Na(i)``
where ``Na(i)`` is the number of labelled joints of instance ``i`` and ``Nb(i)`` the number of labelled joints of
*other* instances inside ``i``'s box; instances without labelled joints are left out, and so are ``iscrowd``
regions (they are not people, as in CrowdPose). A ``crowdIndex`` the input gives is kept (CrowdPose's
easy/medium/hard subsets are cut on it); it is computed only where absent, or everywhere on request. The
``num_keypoints`` an input gives a crowd region is never changed (CrowdPose's evaluator ignores crowd regions,
so their count is the labeller's, not ours to recompute).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from .keypoints import crowdpose14
from .schema import AnnotationDocument, AnnotationRecord, Category

__all__ = ["count_labelled", "crowdpose_area", "crowd_index", "normalise_document", "category_record", "CROWD_INDEX_MODES", "placeholder_crowd_index"]

# normalise_document's ``crowd``: compute only where the input gives none, recompute every image, leave as it is.
CROWD_INDEX_MODES = ("missing", "all", "none")


def count_labelled(keypoints: list[float]) -> int:
    """Joints whose visibility flag is positive."""
    return int(sum(1 for v in keypoints[2::3] if v > 0))


def crowdpose_area(bbox: list[float]) -> float:
    """CrowdPose's object scale: ``w * h * 0.53``."""
    return float(bbox[2] * bbox[3] * crowdpose14().area_factor)


def crowd_index(annotations: Iterable[AnnotationRecord]) -> float:
    """CrowdPose crowd index of one image's instances (see module docstring)."""
    people = []
    for a in annotations:
        if a.iscrowd:
            continue
        kp = np.asarray(a.keypoints, dtype=np.float64).reshape(-1, 3)
        people.append((kp[kp[:, 2] > 0, :2], a.bbox))
    ratios = []
    for i, (pts_i, box) in enumerate(people):
        if len(pts_i) == 0:
            continue
        x, y, w, h = box
        inside = 0
        for j, (pts_j, _) in enumerate(people):
            if j == i or len(pts_j) == 0:
                continue
            inside += int(np.sum((pts_j[:, 0] >= x) & (pts_j[:, 0] <= x + w) & (pts_j[:, 1] >= y) & (pts_j[:, 1] <= y + h)))
        ratios.append(inside / len(pts_i))
    return float(np.mean(ratios)) if ratios else 0.0


def category_record() -> Category:
    """The person category of the 14-joint format."""
    return Category.model_validate(crowdpose14().coco_category())


def normalise_document(doc: AnnotationDocument, *, renumber: bool = True, crowd: str = "missing") -> AnnotationDocument:
    """A copy of ``doc`` with ids from 1, recomputed ``num_keypoints``, ``area`` and ``crowdIndex``.

    Args:
        doc: the document to normalise (not modified).
        renumber: renumber annotation ids 1..N in file order.
        crowd: ``"missing"`` computes ``crowdIndex`` for the images whose input gave none and keeps the rest,
            ``"all"`` recomputes every image's, ``"none"`` leaves them as they are.
    """
    if crowd not in CROWD_INDEX_MODES:
        raise ValueError(f"crowd must be one of {CROWD_INDEX_MODES}, got {crowd!r}")
    out = doc.model_copy(deep=True)
    for n, ann in enumerate(out.annotations, start=1):
        if renumber:
            ann.id = n
        if not (ann.iscrowd and "num_keypoints" in ann.model_fields_set):
            ann.num_keypoints = count_labelled(ann.keypoints)
        ann.area = round(crowdpose_area(ann.bbox), 4)
    if crowd != "none":
        by_image: dict[int, list[AnnotationRecord]] = defaultdict(list)
        for ann in out.annotations:
            by_image[ann.image_id].append(ann)
        for img in out.images:
            if crowd == "all" or "crowdIndex" not in img.model_fields_set:
                img.crowdIndex = round(crowd_index(by_image.get(img.id, [])), 4)
    if not out.categories:
        out.categories = [category_record()]
    return out


def placeholder_crowd_index(doc: AnnotationDocument) -> int:
    """How many images would get a positive crowdIndex although the document gives 0 to every image (0 when the
    document's values are not all 0): the official ExLPose files carry 0 everywhere."""
    if any(img.crowdIndex != 0 for img in doc.images):
        return 0
    by_image: dict[int, list[AnnotationRecord]] = defaultdict(list)
    for ann in doc.annotations:
        by_image[ann.image_id].append(ann)
    return sum(1 for img in doc.images if crowd_index(by_image.get(img.id, [])) > 0)
