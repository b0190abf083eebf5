"""Strict checking of annotation files, with every problem's JSON location, and a fixer.

Loading (:mod:`exlpose_data.schema`) is lenient so the official files open as they are; this module says what
is wrong with a file. It works on the raw JSON so that one bad field does not hide the others.

Problem codes: ``keypoints-length``, ``keypoints-type``, ``visibility``, ``outside-image``, ``bbox-shape``,
``bbox-empty``, ``bbox-outside``, ``duplicate-id``, ``id-zero``, ``missing-image``, ``num-keypoints``,
``num-keypoints-range``, ``unknown-category``, ``unsafe-path``, ``file-missing``, ``file-unreadable``,
``file-size`` (an image file whose pixel size differs from its record's width and height), ``image-size``,
``iscrowd``, ``field-type``, ``category-keypoints``.

Types and the category's joint names are the strict model's (:func:`exlpose_data.schema.document_errors`), the
same model split, stats, review, the import of our own files and the datasets load with: what it refuses is
reported here with its JSON location, so ``validate`` flags exactly what the other tools refuse.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .annotations import count_labelled, crowdpose_area
from .errors import InputError
from .imageio import pixel_size
from .jsonio import is_number as _is_num
from .jsonio import load_json
from .keypoints import crowdpose14
from .layout import safe_relpath
from .schema import document_errors

__all__ = ["Problem", "validate_document", "validate_file", "fix_document", "STRUCTURAL", "require_structure", "edge_joints"]

# Problems that make a document unusable for splitting, training or evaluation (the rest are renumbered,
# recomputed or tolerated by the tools that write files).
STRUCTURAL = frozenset({"keypoints-length", "keypoints-type", "visibility", "bbox-shape", "bbox-empty", "missing-image",
                        "image-size", "field-type", "category-keypoints"})

# Boxes may stick out of the image by this much (in pixels) before it counts as a problem: labelling tools
# round and the official files put joints exactly on x = width.
_BOX_TOLERANCE = 1.0


@dataclass(frozen=True)
class Problem:
    """One problem: where it is (JSON location), a stable code and a sentence."""

    location: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message} [{self.code}]"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_top(doc: Any, source: str) -> None:
    if not isinstance(doc, dict):
        raise InputError(f"{source}: the top level is not a JSON object")
    for key in ("images", "annotations"):
        if not isinstance(doc.get(key), list):
            raise InputError(f"{source}: '{key}' is missing or not a list")


def validate_document(doc: Any, *, images_root: str | Path | None = None, source: str = "<document>") -> list[Problem]:
    """Every problem of a raw annotation document (as loaded from JSON).

    Args:
        doc: the parsed JSON.
        images_root: if given, image files are looked up under it.
        source: name of the input for error messages.

    Raises:
        InputError: the document is unusable (not an object, no image or annotation list).
    """
    _check_top(doc, source)
    spec = crowdpose14()
    k = spec.num_keypoints
    problems: list[Problem] = []
    add = problems.append

    categories = doc.get("categories") or []
    category_ids = {c.get("id") for c in categories if isinstance(c, dict)} or {spec.category["id"]}

    images: dict[int, dict] = {}
    seen_image_ids: Counter = Counter()
    for n, img in enumerate(doc["images"]):
        loc = f"images[{n}]"
        if not isinstance(img, dict):
            add(Problem(loc, "field-type", "not an object"))
            continue
        iid = img.get("id")
        if not _is_int(iid):
            add(Problem(f"{loc}.id", "field-type", f"image id {iid!r} is not an integer"))
            continue
        seen_image_ids[iid] += 1
        if seen_image_ids[iid] == 2:
            add(Problem(f"{loc}.id", "duplicate-id", f"image id {iid} is used more than once"))
        images.setdefault(iid, img)
        w, h = img.get("width"), img.get("height")
        sized = _is_int(w) and _is_int(h) and w > 0 and h > 0
        if not sized:
            add(Problem(loc, "image-size", f"width/height must be positive integers, got {w!r} x {h!r}"))
        name = img.get("file_name")
        if not isinstance(name, str):
            add(Problem(f"{loc}.file_name", "field-type", f"file_name {name!r} is not a string"))
            continue
        why = safe_relpath(name)
        if why:
            add(Problem(f"{loc}.file_name", "unsafe-path", f"{name!r}: {why}"))
        elif images_root is not None:
            path = Path(images_root) / name
            if not path.is_file():
                add(Problem(f"{loc}.file_name", "file-missing", f"{name} not found under {images_root}"))
            elif (size := pixel_size(path)) is None:
                add(Problem(f"{loc}.file_name", "file-unreadable", f"{name}: not an image that can be read"))
            elif sized and size != (w, h):
                add(Problem(loc, "file-size", f"{name} is {size[0]}x{size[1]} pixels, its record says {w}x{h}"))

    seen_ann_ids: Counter = Counter()
    for n, ann in enumerate(doc["annotations"]):
        loc = f"annotations[{n}]"
        if not isinstance(ann, dict):
            add(Problem(loc, "field-type", "not an object"))
            continue
        aid = ann.get("id")
        if not _is_int(aid):
            add(Problem(f"{loc}.id", "field-type", f"annotation id {aid!r} is not an integer"))
        else:
            seen_ann_ids[aid] += 1
            if seen_ann_ids[aid] == 2:
                add(Problem(f"{loc}.id", "duplicate-id", f"annotation id {aid} is used more than once"))
            if aid == 0:
                add(Problem(f"{loc}.id", "id-zero", "annotation id 0: COCO-style evaluators never match a ground truth with id 0"))
        if ann.get("category_id", spec.category["id"]) not in category_ids:
            add(Problem(f"{loc}.category_id", "unknown-category", f"category {ann.get('category_id')!r} is not in categories"))
        if ann.get("iscrowd", 0) not in (0, 1):
            add(Problem(f"{loc}.iscrowd", "iscrowd", f"iscrowd must be 0 or 1, got {ann.get('iscrowd')!r}"))
        img = images.get(ann.get("image_id"))
        if img is None:
            add(Problem(f"{loc}.image_id", "missing-image", f"image id {ann.get('image_id')!r} is not in images"))
        width, height = (img.get("width"), img.get("height")) if img else (None, None)
        sized = _is_int(width) and _is_int(height)

        kps = ann.get("keypoints")
        if not isinstance(kps, list):
            add(Problem(f"{loc}.keypoints", "keypoints-type", "keypoints is missing or not a list"))
        elif len(kps) != 3 * k:
            add(Problem(f"{loc}.keypoints", "keypoints-length", f"{len(kps)} numbers, expected {3 * k} ({k} joints x 3)"))
        elif not all(_is_num(v) for v in kps):
            bad = next(i for i, v in enumerate(kps) if not _is_num(v))
            add(Problem(f"{loc}.keypoints[{bad}]", "keypoints-type", f"{kps[bad]!r} is not a finite number"))
        else:
            for j in range(k):
                x, y, v = kps[3 * j : 3 * j + 3]
                jloc = f"{loc}.keypoints[{3 * j}:{3 * j + 3}] ({spec.keypoints[j]})"
                if v not in (0, 1, 2):
                    add(Problem(jloc, "visibility", f"visibility {v!r} not in {{0, 1, 2}}"))
                elif v > 0 and sized and not (0 <= x <= width and 0 <= y <= height):
                    add(Problem(jloc, "outside-image", f"({x}, {y}) outside the {width}x{height} image"))
            labelled = count_labelled(kps)
            nk = ann.get("num_keypoints")
            if nk is not None and (not _is_int(nk) or nk < 0 or nk > k):
                add(Problem(f"{loc}.num_keypoints", "num-keypoints-range", f"num_keypoints {nk!r} outside 0..{k}"))
            elif nk is not None and nk != labelled:
                add(Problem(f"{loc}.num_keypoints", "num-keypoints", f"num_keypoints {nk} but {labelled} joint(s) have v > 0"))

        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_num(v) for v in bbox)):
            add(Problem(f"{loc}.bbox", "bbox-shape", f"bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}"))
        elif bbox[2] <= 0 or bbox[3] <= 0:
            add(Problem(f"{loc}.bbox", "bbox-empty", f"bbox width/height must be positive, got {bbox[2]} x {bbox[3]}"))
        elif sized:
            x, y, w, h = bbox
            t = _BOX_TOLERANCE
            if x < -t or y < -t or x + w > width + t or y + h > height + t:
                add(Problem(f"{loc}.bbox", "bbox-outside", f"bbox {bbox} extends outside the {width}x{height} image"))
    # What the strict model refuses and the checks above did not already report at that place or inside it.
    reported = [p.location.split(" ")[0] for p in problems]
    for where, message in document_errors(doc):
        if any(r == where or r.startswith(where + ".") or r.startswith(where + "[") or where.startswith(r) for r in reported):
            continue
        code = "category-keypoints" if where.startswith("categories[") and where.endswith(".keypoints") else "field-type"
        add(Problem(where, code, message))
    return problems


def validate_file(path: str | Path, *, images_root: str | Path | None = None) -> list[Problem]:
    """Problems of an annotation file (see :func:`validate_document`)."""
    return validate_document(load_json(path), images_root=images_root, source=str(path))


def fix_document(doc: Any, *, source: str = "<document>") -> tuple[dict, list[str]]:
    """A corrected copy of a raw document and the list of changes made.

    Fixes: annotations pointing at missing images are dropped; ids renumbered from 1 when any is 0 or repeated;
    ``num_keypoints`` recomputed; ``area`` = w*h*0.53 added; joints outside the image by at most one pixel clamped
    onto it; boxes clipped to the image. Problems it cannot fix (wrong keypoint counts, bad visibility, unsafe
    paths, empty boxes) are left for :func:`validate_document` to report.
    """
    _check_top(doc, source)
    out = copy.deepcopy(doc)
    changes: list[str] = []
    images = {img["id"]: img for img in out["images"] if isinstance(img, dict) and _is_int(img.get("id"))}
    kept = []
    for n, ann in enumerate(out["annotations"]):
        if not isinstance(ann, dict) or ann.get("image_id") not in images:
            changes.append(f"annotations[{n}]: dropped (image id {ann.get('image_id') if isinstance(ann, dict) else '?'} not in images)")
            continue
        kept.append((n, ann))
    out["annotations"] = [a for _, a in kept]
    ids = [a.get("id") for _, a in kept]
    if any((not _is_int(i)) or i == 0 for i in ids) or len(set(ids)) != len(ids):
        for new_id, (_, ann) in enumerate(kept, start=1):
            ann["id"] = new_id
        changes.append(f"annotation ids renumbered 1..{len(kept)} (an id was 0, repeated or not an integer)")
    k = crowdpose14().num_keypoints
    added_area = 0
    for n, ann in kept:
        loc = f"annotations[{n}]"
        img = images[ann["image_id"]]
        width, height = img.get("width"), img.get("height")
        kps = ann.get("keypoints")
        good_kps = isinstance(kps, list) and len(kps) == 3 * k and all(_is_num(v) for v in kps)
        if good_kps and _is_int(width) and _is_int(height):
            for j in range(k):
                x, y, v = kps[3 * j : 3 * j + 3]
                if v > 0 and not (0 <= x <= width and 0 <= y <= height):
                    cx, cy = min(max(x, 0), width), min(max(y, 0), height)
                    if abs(cx - x) <= 1 and abs(cy - y) <= 1:
                        kps[3 * j], kps[3 * j + 1] = cx, cy
                        changes.append(f"{loc}.keypoints[{3 * j}:{3 * j + 3}]: ({x}, {y}) clamped to ({cx}, {cy})")
        if good_kps:
            labelled = count_labelled(kps)
            if ann.get("num_keypoints") != labelled:
                changes.append(f"{loc}.num_keypoints: {ann.get('num_keypoints')!r} -> {labelled}")
                ann["num_keypoints"] = labelled
        bbox = ann.get("bbox")
        if isinstance(bbox, list) and len(bbox) == 4 and all(_is_num(v) for v in bbox) and bbox[2] > 0 and bbox[3] > 0:
            if _is_int(width) and _is_int(height):
                t = _BOX_TOLERANCE
                if bbox[0] < -t or bbox[1] < -t or bbox[0] + bbox[2] > width + t or bbox[1] + bbox[3] > height + t:
                    x0, y0 = max(bbox[0], 0.0), max(bbox[1], 0.0)
                    x1, y1 = min(bbox[0] + bbox[2], width), min(bbox[1] + bbox[3], height)
                    if x1 > x0 and y1 > y0:
                        new = [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]
                        changes.append(f"{loc}.bbox: {bbox} clipped to {new}")
                        ann["bbox"] = bbox = new
            area = round(crowdpose_area(bbox), 4)
            if ann.get("area") != area:
                if "area" in ann:
                    changes.append(f"{loc}.area: {ann['area']!r} -> {area}")
                else:
                    added_area += 1
                ann["area"] = area
    if added_area:
        changes.append(f"area = bbox w*h*0.53 added to {added_area} annotation(s)")
    return out, changes


def require_structure(doc: Any, *, source: str) -> None:
    """Raise :class:`InputError` on the first structural problem of a raw document (see :data:`STRUCTURAL`).

    Duplicate image ids count too: they would send one image's people to another.
    """
    problems = [p for p in validate_document(doc, source=source)
                if p.code in STRUCTURAL or (p.code == "duplicate-id" and p.location.startswith("images["))]
    if problems:
        first = problems[0]
        raise InputError(f"{source}: {first.location}: {first.message} ({len(problems)} structural problem(s); "
                         f"'exlpose validate {source}' lists them all)")


def edge_joints(doc: Any) -> list[str]:
    """Locations of labelled joints lying exactly on x = width or y = height.

    Not problems (the bounds are inclusive and the official files hold such joints), but worth knowing: a
    tool that treats the bounds as exclusive would drop them.
    """
    sizes = {img.get("id"): (img.get("width"), img.get("height")) for img in doc.get("images", []) if isinstance(img, dict)}
    out = []
    k = crowdpose14().num_keypoints
    for n, ann in enumerate(doc.get("annotations", [])):
        if not isinstance(ann, dict):
            continue
        w, h = sizes.get(ann.get("image_id"), (None, None))
        kps = ann.get("keypoints")
        if not (_is_int(w) and _is_int(h) and isinstance(kps, list) and len(kps) == 3 * k and all(_is_num(v) for v in kps)):
            continue
        for j in range(k):
            x, y, v = kps[3 * j : 3 * j + 3]
            if v > 0 and (x == w or y == h):
                out.append(f"annotations[{n}].keypoints[{3 * j}:{3 * j + 3}] ({crowdpose14().keypoints[j]})")
    return out
