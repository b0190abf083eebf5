"""COCO-keypoints JSON (any tool's) and CrowdPose JSON: reading into a :class:`LabelSet`, writing for tools.

A COCO keypoints file names its joints in ``categories[].keypoints``; they are mapped onto the CrowdPose
joints by name (:mod:`annotation.aliases`), so any order and the usual spellings work. A CrowdPose file may
omit the names; its 42 numbers are then taken in CrowdPose order. COCO skeletons are 1-based, CrowdPose's
0-based: ``coco_category`` converts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from exlpose_data.annotations import count_labelled
from exlpose_data.errors import InputError
from exlpose_data.keypoints import NUM_KEYPOINTS, crowdpose14
from exlpose_data.schema import AnnotationDocument

from ..aliases import joint_index
from ..labels import BOX_FROM_KEYPOINTS, ImageLabel, LabelSet, PersonLabel, empty_keypoints
from ..problems import ProblemLog
from . import is_number, load_json

__all__ = ["read_coco", "read_crowdpose", "parse_coco", "coco_category", "to_coco_dict", "BoxFilter", "bbox_source"]

# (annotation, its bbox, whether the annotation's own category names keypoints) -> the bbox to keep, or None.
BoxFilter = Callable[[dict[str, Any], list[float], bool], list[float] | None]


def bbox_source(ann: dict[str, Any]) -> Any:
    """The ``bbox_source`` an annotation carries: our files put it on the annotation, our CVAT export in its
    ``attributes`` (the only place CVAT keeps extra fields)."""
    attributes = ann.get("attributes")
    if isinstance(attributes, dict) and "bbox_source" in attributes:
        return attributes["bbox_source"]
    return ann.get("bbox_source")


def coco_category(category_id: int = 1, name: str = "person") -> dict[str, Any]:
    """The person category as COCO tools expect it: CrowdPose joint names and a 1-based skeleton."""
    spec = crowdpose14()
    return {
        "id": category_id,
        "name": name,
        "supercategory": "person",
        "keypoints": list(spec.keypoints),
        "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton],
    }


def _joint_map(cat: dict[str, Any], place: str, log: ProblemLog) -> list[int] | None:
    """Target joint index for each source keypoint position of a category, or None (problems logged)."""
    names = cat.get("keypoints")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        log.add(place, "keypoints", "must be a list of joint names")
        return None
    mapping: list[int] = []
    seen: dict[int, str] = {}
    ok = True
    for j, name in enumerate(names):
        idx = joint_index(name)
        if idx is None:
            log.add(place, f"keypoints[{j}]", f"{name!r} is not a CrowdPose joint or a known alias of one")
            ok = False
            continue
        if idx in seen:
            log.add(place, f"keypoints[{j}]", f"{name!r} and {seen[idx]!r} both name {crowdpose14().keypoints[idx]}")
            ok = False
        seen[idx] = name
        mapping.append(idx)
    missing = [crowdpose14().keypoints[i] for i in range(NUM_KEYPOINTS) if i not in seen]
    if ok and missing:
        log.add(place, "keypoints", f"no point for {', '.join(missing)} (all 14 CrowdPose joints must be in the skeleton)")
        ok = False
    return mapping if ok else None


def _categories(raw: dict[str, Any], log: ProblemLog, *, names_required: bool) -> tuple[dict[int, list[int] | None], set[int]]:
    """``({category id: joint map or None when it names no keypoints}, ids of categories with problems)``."""
    out: dict[int, list[int] | None] = {}
    bad: set[int] = set()
    cats = raw.get("categories", [])
    if not isinstance(cats, list):
        log.add("categories", "", "must be a list")
        return out, bad
    for i, cat in enumerate(cats):
        place = f"categories[{i}]"
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int):
            log.add(place, "id", "a category needs an integer id")
            continue
        place = f"categories[{i}] (id {cat['id']})"
        if cat.get("keypoints"):
            out[cat["id"]] = _joint_map(cat, place, log)
            if out[cat["id"]] is None:
                bad.add(cat["id"])
        else:
            out[cat["id"]] = None if names_required else list(range(NUM_KEYPOINTS))
    return out, bad


def _image(rec: Any, i: int, log: ProblemLog) -> tuple[int, ImageLabel] | None:
    place = f"images[{i}]"
    if not isinstance(rec, dict):
        log.add(place, "", "must be an object")
        return None
    bad = False
    if not isinstance(rec.get("id"), int) or isinstance(rec.get("id"), bool):
        log.add(place, "id", "missing or not an integer")
        bad = True
    if not isinstance(rec.get("file_name"), str) or not rec.get("file_name"):
        log.add(place, "file_name", "missing or not a string")
        bad = True
    for key in ("width", "height"):
        v = rec.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            log.add(place, key, f"must be a positive integer, got {v!r}")
            bad = True
    crowd = rec.get("crowdIndex")
    if crowd is not None and not (is_number(crowd) and crowd >= 0):
        log.add(place, "crowdIndex", f"must be a number >= 0, got {crowd!r}")
        bad = True
    if bad:
        return None
    return rec["id"], ImageLabel(rec["file_name"], rec["width"], rec["height"], f"images[{i}] (id {rec['id']})", image_id=rec["id"], crowd_index=crowd)


def _keypoints(values: Any, mapping: list[int], place: str, log: ProblemLog) -> np.ndarray | None:
    if not isinstance(values, list) or len(values) != 3 * len(mapping):
        n = len(values) if isinstance(values, list) else type(values).__name__
        log.add(place, "keypoints", f"expected {3 * len(mapping)} numbers (x, y, v per joint), got {n}")
        return None
    kp = empty_keypoints()
    ok = True
    for j, target in enumerate(mapping):
        x, y, v = values[3 * j : 3 * j + 3]
        if not (is_number(x) and is_number(y) and is_number(v)):
            log.add(place, f"keypoints[{3 * j}:{3 * j + 3}]", f"not numbers: {[x, y, v]}")
            ok = False
            continue
        if v not in (0, 1, 2):
            log.add(place, f"keypoints[{3 * j + 2}]", f"visibility must be 0, 1 or 2, got {v}")
            ok = False
            continue
        if v > 0:
            kp[target] = (x, y, v)
    return kp if ok else None


def _bbox(value: Any, place: str, log: ProblemLog) -> tuple[bool, list[float] | None]:
    """(ok, bbox); an absent or empty bbox is ok and None."""
    if value is None or value == []:
        return True, None
    if not isinstance(value, list) or len(value) != 4 or not all(is_number(v) for v in value):
        log.add(place, "bbox", f"expected [x, y, w, h], got {value!r}")
        return False, None
    return True, [float(v) for v in value]


def parse_coco(
    raw: Any,
    log: ProblemLog,
    *,
    names_required: bool,
    single_keypoint_category: bool = False,
    box_filter: BoxFilter | None = None,
) -> LabelSet:
    """Turn a parsed COCO keypoints document into a :class:`LabelSet`, logging every problem.

    Args:
        raw: the parsed JSON.
        log: where problems go.
        names_required: categories must name their keypoints (False for CrowdPose files, whose order is known).
        single_keypoint_category: an annotation whose category has no keypoints takes the one category that
            has them (CVAT puts a grouped rectangle's label there).
        box_filter: maps (annotation, bbox, whether its own category names keypoints) to the bbox to keep,
            or None for "no box".
    """
    labels = LabelSet(log.file)
    if not isinstance(raw, dict) or not isinstance(raw.get("images"), list) or not isinstance(raw.get("annotations"), list):
        log.add("", "", "not a COCO keypoints file (needs 'images' and 'annotations' lists)")
        return labels
    cats, bad_cats = _categories(raw, log, names_required=names_required)
    keypoint_cats = [c for c, m in cats.items() if m is not None]
    if names_required and not keypoint_cats and not bad_cats:
        log.add("categories", "", "no category names its keypoints (a COCO keypoints file lists the joint names)")
        return labels
    images: dict[int, ImageLabel] = {}
    # Annotations of an image that was rejected are skipped silently: the image's problem says it all.
    rejected: set[int] = set()
    for i, rec in enumerate(raw["images"]):
        got = _image(rec, i, log)
        if got is None:
            if isinstance(rec, dict) and isinstance(rec.get("id"), int):
                rejected.add(rec["id"])
            continue
        image_id, image = got
        if image_id in images:
            log.add(image.place, "id", f"repeats the id of {images[image_id].place}")
            continue
        images[image_id] = image
        labels.images.append(image)
    for i, ann in enumerate(raw["annotations"]):
        place = f"annotations[{i}]"
        if not isinstance(ann, dict):
            log.add(place, "", "must be an object")
            continue
        if "id" in ann:
            place = f"annotations[{i}] (id {ann['id']})"
        image_id = ann.get("image_id") if isinstance(ann.get("image_id"), int) else None
        if image_id in rejected:
            continue
        image = images.get(image_id) if image_id is not None else None
        if image is None:
            log.add(place, "image_id", f"{ann.get('image_id')!r} is not the id of an image in the file")
            continue
        cat_id = ann.get("category_id", 1)
        if not isinstance(cat_id, int) or cats and cat_id not in cats:
            log.add(place, "category_id", f"{cat_id!r} is not a category of the file")
            continue
        mapping = cats[cat_id] if cats else list(range(NUM_KEYPOINTS))
        own_keypoints = mapping is not None
        if mapping is None and single_keypoint_category and len(keypoint_cats) == 1:
            mapping = cats[keypoint_cats[0]]
        if mapping is None:
            if cat_id not in bad_cats:
                log.add(place, "category_id", f"category {cat_id} names no keypoints")
            continue
        kp = _keypoints(ann.get("keypoints"), mapping, place, log)
        ok, bbox = _bbox(ann.get("bbox"), place, log)
        if kp is None or not ok:
            continue
        if bbox is not None and box_filter is not None:
            bbox = box_filter(ann, bbox, own_keypoints)
        iscrowd = ann.get("iscrowd", 0)
        if iscrowd not in (0, 1):
            log.add(place, "iscrowd", f"must be 0 or 1, got {iscrowd!r}")
            continue
        given = ann.get("num_keypoints")
        if iscrowd and given is not None and not (isinstance(given, int) and not isinstance(given, bool) and given >= 0):
            log.add(place, "num_keypoints", f"must be an integer >= 0, got {given!r}")
            continue
        marked = bbox is not None and bbox_source(ann) == BOX_FROM_KEYPOINTS
        kept_count = given if iscrowd else None  # a crowd region's count is the labeller's, kept as given
        image.people.append(PersonLabel(kp, bbox, place, int(iscrowd), box_from_keypoints=marked, num_keypoints=kept_count))
    return labels


def _refuse_label_studio_coco(raw: Any, path: str | Path) -> None:
    # Label Studio's COCO export puts every joint of an image into one annotation: read as COCO it would be one
    # person per image with everyone's joints, plus people without joints.
    info = raw.get("info") if isinstance(raw, dict) else None
    if isinstance(info, dict) and info.get("contributor") == "Label Studio":
        raise InputError(
            f"{path}: Label Studio's COCO export: it puts all joints of an image into one annotation (its people are "
            "lost), rounds them to whole pixels and drops occlusion; export the project as JSON (Export > JSON) and "
            "import that file with --format label-studio"
        )


def read_coco(path: str | Path, log: ProblemLog) -> LabelSet:
    """Read a COCO keypoints file whose categories name their joints (Label Studio's COCO export is refused)."""
    raw = load_json(path)
    _refuse_label_studio_coco(raw, path)
    return parse_coco(raw, log, names_required=True)


def read_crowdpose(path: str | Path, log: ProblemLog) -> LabelSet:
    """Read a CrowdPose file (joint names optional: 14 joints in CrowdPose order)."""
    raw = load_json(path)
    _refuse_label_studio_coco(raw, path)
    return parse_coco(raw, log, names_required=False)


def to_coco_dict(doc: AnnotationDocument) -> dict[str, Any]:
    """A CrowdPose document as plain COCO keypoints JSON (1-based skeleton, ``area`` and ``segmentation`` set)."""
    images = [{"id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height} for im in doc.images]
    annotations = []
    for a in doc.annotations:
        annotations.append(
            {
                "id": a.id,
                "image_id": a.image_id,
                "category_id": 1,
                "segmentation": [],
                "area": float(a.bbox[2] * a.bbox[3]),
                "bbox": list(a.bbox),
                "iscrowd": a.iscrowd,
                "keypoints": list(a.keypoints),
                "num_keypoints": count_labelled(a.keypoints),
            }
        )
    return {"info": {"description": "exported by exlpose-data"}, "categories": [coco_category()], "images": images, "annotations": annotations}
