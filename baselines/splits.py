"""Test splits by name: which annotation file of a release and which lighting condition each one uses."""

from __future__ import annotations

import os
from pathlib import Path

from exlpose_data.errors import UsageError

__all__ = ["SPLIT_HELP", "resolve_split", "split_detections"]

SPLIT_HELP = "LL-N, LL-H, LL-E, LL-A, WL, or an ExLPose-OC camera (A7M3, RICOH3)"


def resolve_split(dataset: str | os.PathLike, annotations: str | os.PathLike | None, split: str) -> tuple[Path, str]:
    """The annotation file and dataset condition (``"LL"``/``"WL"``) of a test split.

    ``LL-*`` and ``WL`` are the ExLPose test files (``ExLPose_test_<split>.json``); any other name is an
    ExLPose-OC camera (``ExLPose-OC_test_<camera>.json``, low-light images without pairs, under a release root or
    an ExLPose-OCN root; see :mod:`exlpose_data.datasets.ocn`).

    Raises:
        UsageError: an empty name.
        InputError: the release has no annotation file for the split (the message lists what it has).
    """
    from exlpose_data.release import open_release

    name = split.strip()
    if not name:
        raise UsageError(f"empty split name; use {SPLIT_HELP}")
    if name == "WL" or name.startswith("LL-"):
        return open_release(dataset, annotations).annotation_file(f"test_{name}"), ("WL" if name == "WL" else "LL")
    # An OC camera: its root need not be a release (ExLPose-OCN holds PID_<camera>/ folders only).
    from exlpose_data.datasets.ocn import ocn_annotation_file

    return ocn_annotation_file(dataset, name, annotations), "LL"


def split_detections(boxes: Path, ann: Path, workdir: Path, split: str) -> Path:
    """The detections of ``boxes`` (COCO results JSON) on the images of ``ann``, written to ``workdir``; one
    detections file serves every split of a test set.

    Raises:
        InputError: no detection falls on an image of the split.
    """
    from exlpose_data.atomic import write_json_atomic
    from exlpose_data.datasets.detections import load_detections
    from exlpose_data.errors import InputError
    from exlpose_data.schema import load_document

    image_ids = {img.id for img in load_document(ann).images}
    dets = load_detections(boxes)
    kept = [
        {"image_id": image_id, "category_id": 1, "bbox": list(bbox), "score": score}
        for image_id, items in dets.items() if image_id in image_ids for bbox, score in items
    ]
    if not kept:
        raise InputError(f"{boxes}: no detection on an image of {ann.name} (split {split})")
    return write_json_atomic(workdir / f"boxes_{split}.json", kept)
