"""CVAT's own "CVAT for images 1.1" XML (``annotations.xml``): skeletons, their points and grouped boxes.

Shaped on CVAT's exporter (``dump_as_cvat_annotation`` in ``cvat/apps/dataset_manager/formats/cvat.py``):
``<annotations><version>1.1</version><meta>...</meta><image id name width height>`` for every frame of the task,
labelled or not (tracks are written as shapes per frame), with

- ``<skeleton label source z_order [group_id]>`` holding one ``<points label source outside occluded points="x,y">``
  per skeleton point (no ``z_order``); a point that is ``outside`` was not labelled;
- ``<box label source occluded xtl ytl xbr ybr [rotation] z_order [group_id]>``; a box grouped with a skeleton
  (same ``group_id``, Ctrl+G in CVAT) is that person's box.

Points are mapped by name (:mod:`annotation.aliases`): outside -> v = 0, occluded -> v = 1, else v = 2. A
skeleton without a grouped box has no box (``--box-from-keypoints`` gives it its joints' extent). Everything else
in a frame (polygons, tags, loose points, a box grouped with no skeleton) is reported, not dropped. "CVAT for
video 1.1" (``<track>`` elements) is refused with the export to choose instead.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Any

from exlpose_data.jsonio import MAX_SAFE_INTEGER
from exlpose_data.keypoints import crowdpose14

from ..aliases import joint_index
from ..labels import ImageLabel, LabelSet, PersonLabel, empty_keypoints
from ..problems import ProblemLog

__all__ = ["parse_cvat_xml"]


def _number(el: ET.Element, key: str, place: str, log: ProblemLog) -> float | None:
    raw = el.get(key)
    try:
        value = float(raw) if raw is not None else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        log.add(place, key, f"needs a number, got {raw!r}")
        return None
    return value


def _flag(el: ET.Element, key: str, place: str, log: ProblemLog) -> bool | None:
    raw = el.get(key, "0")
    if raw not in ("0", "1"):
        log.add(place, key, f"must be 0 or 1, got {raw!r}")
        return None
    return raw == "1"


def _skeleton(el: ET.Element, place: str, log: ProblemLog) -> Any:
    """(14, 3) keypoints of a ``<skeleton>``, or None with problems logged."""
    kp = empty_keypoints()
    seen: dict[int, str] = {}
    ok = True
    for n, child in enumerate(el):
        if child.tag == "attribute":
            continue
        name = child.get("label", "")
        cplace = f"{place}, points {name!r}" if name else f"{place}, element {n}"
        if child.tag != "points":
            log.add(cplace, child.tag, "a skeleton element must be <points>")
            ok = False
            continue
        idx = joint_index(name)
        if idx is None:
            log.add(cplace, "label", f"{name!r} is not a CrowdPose joint or a known alias of one")
            ok = False
            continue
        if idx in seen:
            log.add(cplace, "label", f"{name!r} and {seen[idx]!r} both name {crowdpose14().keypoints[idx]}")
            ok = False
            continue
        seen[idx] = name
        outside, occluded = _flag(child, "outside", cplace, log), _flag(child, "occluded", cplace, log)
        coords = child.get("points", "").split(",")
        if outside is None or occluded is None or len(coords) != 2:
            if len(coords) != 2:
                log.add(cplace, "points", f"expected 'x,y', got {child.get('points')!r}")
            ok = False
            continue
        try:
            x, y = float(coords[0]), float(coords[1])
        except ValueError:
            log.add(cplace, "points", f"expected 'x,y', got {child.get('points')!r}")
            ok = False
            continue
        if not outside:  # an outside point was not labelled: v = 0 at (0, 0)
            kp[idx] = (x, y, 1 if occluded else 2)
    missing = [crowdpose14().keypoints[i] for i in range(len(kp)) if i not in seen]
    if ok and missing:
        log.add(place, "points", f"no point for {', '.join(missing)} (the skeleton must have the 14 CrowdPose points)")
        ok = False
    return kp if ok else None


def _box(el: ET.Element, place: str, log: ProblemLog) -> list[float] | None:
    values = [_number(el, k, place, log) for k in ("xtl", "ytl", "xbr", "ybr")]
    if any(v is None for v in values):
        return None
    rotation = el.get("rotation")
    if rotation not in (None, "0", "0.00", "0.0"):
        log.add(place, "rotation", f"person boxes must not be rotated (rotation {rotation})")
        return None
    x0, y0, x1, y1 = values
    return [x0, y0, x1 - x0, y1 - y0]


def _image(el: ET.Element, log: ProblemLog) -> ImageLabel | None:
    name = el.get("name")
    place = f"image id={el.get('id')!r}" + (f" ({name})" if name else "")
    size = []
    for key in ("width", "height"):
        raw = el.get(key, "")
        # ASCII digits only (str.isdigit takes '²'), and no more than a JSON file of ours may hold (2^53)
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 16 and 0 < int(raw) <= MAX_SAFE_INTEGER):
            shown = raw if len(raw) <= 20 else f"{raw[:8]}...({len(raw)} characters)"
            log.add(place, key, f"must be a positive integer up to 2^53, got {shown!r}")
        else:
            size.append(int(raw))
    if not name or len(size) != 2:
        if not name:
            log.add(place, "name", "missing")
        return None
    # A frame number is not an image id: the import numbers the images from 1.
    image = ImageLabel(name, size[0], size[1], place)
    # group id -> [(place, parsed shape)] per kind; a shape that fails to parse is logged and left out
    shapes: dict[str, dict[str, list[tuple[str, Any]]]] = {"skeleton": {}, "box": {}}
    parsers = {"skeleton": _skeleton, "box": _box}
    ok = True
    counts: dict[str, int] = {}
    for shape in el:
        n = counts[shape.tag] = counts.get(shape.tag, -1) + 1  # the n-th <tag> of the frame, from 0
        splace = f"{place}, {shape.tag} {n} ({shape.get('label', '')})"
        if shape.tag not in parsers:
            log.add(splace, shape.tag, "is not a person skeleton or box; remove it from the task or export only the person labels")
            ok = False
            continue
        parsed = parsers[shape.tag](shape, splace, log)
        if parsed is None:
            ok = False
            continue
        shapes[shape.tag].setdefault(shape.get("group_id", "0"), []).append((splace, parsed))
    skeletons, boxes = shapes["skeleton"], shapes["box"]
    for group, members in boxes.items():
        partners = skeletons.get(group, []) if group != "0" else []
        if len(partners) != 1 or len(members) != 1:
            for bplace, _ in members:
                what = "is grouped with no skeleton" if not partners else f"shares group {group} with {len(partners)} skeleton(s) and {len(members)} box(es)"
                log.add(bplace, "group_id", f"{what}; group each person's box with its skeleton (select both, G)")
            ok = False
    if not ok:
        return None
    for group, members in skeletons.items():
        for splace, kp in members:
            grouped = boxes.get(group) if group != "0" else None
            image.people.append(PersonLabel(kp, grouped[0][1] if grouped else None, splace))
    return image


def parse_cvat_xml(data: bytes, log: ProblemLog) -> LabelSet:
    """Turn the bytes of a "CVAT for images 1.1" ``annotations.xml`` into a :class:`LabelSet`."""
    labels = LabelSet(log.file)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        log.add("", "", f"not valid XML ({exc})")
        return labels
    if root.tag != "annotations":
        log.add("", "", f"not a CVAT XML export (root element <{root.tag}>, expected <annotations>)")
        return labels
    if root.find("track") is not None:
        log.add("", "track", "CVAT for video 1.1 (tracks) is not read; export the task as 'CVAT for images 1.1' (tracks become per-frame shapes)")
        return labels
    for el in root.iter("image"):
        image = _image(el, log)
        if image is not None:
            labels.images.append(image)
    return labels
