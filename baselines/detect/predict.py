"""``exlpose-detect predict``: person boxes as COCO detection results for a test split or any images.

The file is a JSON list of ``{"image_id", "category_id": 1, "bbox": [x, y, w, h], "score"}``, what
``exlpose-eval model --boxes`` and ``exlpose-eval table --boxes`` read. For a split the ids are its annotation
file's; for other images they come from ``--ann`` (matched by file name) or, without it, number the images
1..N in the order given (each record then also names its ``file_name``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from exlpose_data.atomic import write_json_atomic
from exlpose_data.errors import InputError, UsageError
from exlpose_data.outputs import check_output

from .api import detector_file, load_detector_spec
from .evaluate import coco_detections

__all__ = ["predict_boxes", "image_ids_by_name"]


def image_ids_by_name(ann: Path) -> dict[str, int]:
    """``file name -> image_id`` of an annotation file; a name held by two records is refused (ambiguous)."""
    from exlpose_data.schema import load_document

    ids: dict[str, list[int]] = defaultdict(list)
    for img in load_document(ann).images:
        ids[Path(img.file_name).name].append(img.id)
    twice = sorted(name for name, found in ids.items() if len(found) > 1)
    if twice:
        raise InputError(f"{ann}: {len(twice)} file name(s) belong to several image records, e.g. {twice[0]!r}; image ids cannot be matched by name")
    return {name: found[0] for name, found in ids.items()}


def _split_images(dataset: Path, annotations: Path | None, split: str) -> tuple[list[tuple[int, Path]], str, Path]:
    from exlpose_data.datasets.records import build_index

    from ..splits import resolve_split

    ann, condition = resolve_split(dataset, annotations, split)
    index = build_index(dataset, ann, condition, skip_unlabelled=False)
    return [(img.image_id, index.image_root / str(img.path(condition))) for img in index.images], condition, ann


def predict_boxes(spec: str, out: Path, *, images: list[Path] | None = None, dataset: Path | None = None, annotations: Path | None = None,
                  split: str | None = None, ann: Path | None = None, condition: str = "LL", min_score: float = 0.0, device: str = "cpu",
                  overwrite: bool = False) -> tuple[int, int]:
    """Write ``out`` (COCO detection results) for a split or for ``images``; returns ``(boxes, images)``.

    ``out`` is a new file or an earlier results file (replaced only with ``overwrite``); never an input.
    """
    from exlpose_data.datasets.sources import decode_image

    if split is not None:
        assert dataset is not None
        plan, condition, ann_file = _split_images(dataset, annotations, split)
        read: list[Any] = [dataset, ann_file]
    else:
        if not images:
            raise UsageError("no images given")
        missing = [p for p in images if not Path(p).is_file()]
        if missing:
            raise UsageError(f"{missing[0]}: no such image file")
        if ann is not None:
            by_name = image_ids_by_name(ann)
            unknown = [p for p in images if Path(p).name not in by_name]
            if unknown:
                raise InputError(f"{ann}: has no image record named {Path(unknown[0]).name!r} ({len(unknown)} of the {len(images)} images given {'is' if len(unknown) == 1 else 'are'} not in it)")
            plan = [(by_name[Path(p).name], Path(p)) for p in images]
        else:
            plan = [(i + 1, Path(p)) for i, p in enumerate(images)]
        read = [*images, ann]
    check_output(out, inputs=[detector_file(spec), *read], writes="file", produces="predictions file", replaces=["predictions file"],
                 overwrite=overwrite)
    detector = load_detector_spec(spec, device)
    results: list[dict[str, Any]] = []
    for image_id, path in plan:
        for record in coco_detections(image_id, detector.detect(decode_image(path), condition, min_score=min_score)):
            if split is None and ann is None:
                record["file_name"] = os.fspath(path)
            results.append(record)
    write_json_atomic(out, results)
    return len(results), len(plan)
