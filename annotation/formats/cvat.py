"""CVAT: its exports (COCO Keypoints 1.0, CVAT for images 1.1 XML, the zips), our export, the label configuration.

CVAT draws people as skeletons; the person box is a rectangle grouped with the skeleton (Ctrl+G). Its COCO
Keypoints export (via Datumaro) writes one annotation per skeleton with visibility absent -> 0, occluded -> 1,
visible -> 2. For a grouped skeleton the ``bbox`` is the rectangle and the ``category_id`` the rectangle's label
(a category without keypoints); for an ungrouped skeleton the ``category_id`` is the skeleton's label and the
``bbox`` the extent of its points, which is not a person box. Our own export marks every box it writes with
``attributes.bbox_source``. So a box is the person's box when the file says so (the marker, or a rectangle's
category); only an unmarked box under the skeleton's category that equals its points' extent is read as "no
box". Geometry alone cannot decide: a drawn box may well equal the joints' extent (every box made with
``--box-from-keypoints`` does). Absent points keep their last coordinates in CVAT; they become (0, 0).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from exlpose_data.errors import InputError
from exlpose_data.jsonio import loads_json
from exlpose_data.keypoints import crowdpose14
from exlpose_data.schema import AnnotationDocument

from ..labels import BOX_FROM_KEYPOINTS, LabelSet
from ..problems import ProblemLog
from .coco import bbox_source, parse_coco, to_coco_dict
from .cvat_xml import parse_cvat_xml

__all__ = ["read_cvat", "parse_cvat_coco", "to_cvat_dict", "cvat_labels", "SKELETON_LABEL", "BOX_LABEL", "DRAWN_BOX", "READABLE"]

READABLE = (
    "CVAT for images 1.1 XML (annotations.xml), COCO Keypoints 1.0 JSON (annotations/person_keypoints_<subset>.json) "
    "or the zip CVAT downloads with either inside"
)

SKELETON_LABEL = "person"
BOX_LABEL = "person_box"
# ``attributes.bbox_source`` our export writes on a person box that was not derived from the joints.
DRAWN_BOX = "drawn"
_EXTENT_TOL = 1e-3


def _is_extent(bbox: list[float], raw_points: np.ndarray) -> bool:
    """Whether ``bbox`` is the extent of the skeleton's points (all of them, or the labelled ones)."""
    for pts in (raw_points[:, :2], raw_points[raw_points[:, 2] > 0, :2]):
        if len(pts) == 0:
            continue
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        if np.allclose(bbox, [x0, y0, x1 - x0, y1 - y0], atol=_EXTENT_TOL):
            return True
    return False


def _person_box(ann: dict[str, Any], bbox: list[float], skeleton_category: bool) -> list[float] | None:
    """The person box an annotation carries, or None when its bbox is CVAT's extent of an ungrouped skeleton."""
    if bbox_source(ann) in (DRAWN_BOX, BOX_FROM_KEYPOINTS) or not skeleton_category:
        return bbox  # marked by our export, or a grouped rectangle's category: a person box, whatever its geometry
    raw_points = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    return None if _is_extent(bbox, raw_points) else bbox


def parse_cvat_coco(raw: Any, log: ProblemLog) -> LabelSet:
    """A parsed CVAT "COCO Keypoints 1.0" document as a :class:`LabelSet`."""
    return parse_coco(raw, log, names_required=True, single_keypoint_category=True, box_filter=_person_box)


def _unreadable(path: Path, why: str) -> InputError:
    return InputError(f"{path}: {why}; --format cvat reads {READABLE}")


def _parse_json(text: str, source: str, path: Path, what: str) -> Any:
    """Parse by the strict loader (duplicate keys, NaN/Infinity, huge integers, deep nesting refused with their
    place); text that is not JSON at all is named with the formats this reader takes."""
    try:
        return loads_json(text, source)
    except InputError as exc:
        syntax = f"{source}: not valid JSON ("
        if str(exc).startswith(syntax):
            raise _unreadable(path, f"{what} ({str(exc)[len(syntax):-1]})") from None
        raise


def _read_zip(path: Path, log: ProblemLog) -> LabelSet:
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        xml = [n for n in names if n.rsplit("/", 1)[-1] == "annotations.xml"]
        coco = [n for n in names if re.fullmatch(r"(?:.*/)?annotations/person_keypoints_[^/]+\.json", n)]
        if len(xml) + len(coco) != 1:
            found = ", ".join(xml + coco) or "neither annotations.xml nor annotations/person_keypoints_<subset>.json"
            raise _unreadable(path, f"a zip holding {found}; export one task (or one subset) at a time")
        member = (xml or coco)[0]
        data = zf.read(member)
    if xml:
        return parse_cvat_xml(data, log)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _unreadable(path, f"{member} in the zip is not UTF-8 text (byte {exc.start})") from None
    return parse_cvat_coco(_parse_json(text, f"{path}: {member}", path, f"{member} in the zip is not valid JSON"), log)


def read_cvat(path: str | Path, log: ProblemLog) -> LabelSet:
    """Read what CVAT exports: "CVAT for images 1.1" XML, "COCO Keypoints 1.0" JSON, or the zip CVAT downloads
    holding either (``annotations.xml`` or ``annotations/person_keypoints_<subset>.json``), told apart by content."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file" if not p.exists() else f"{p}: is a folder, expected a CVAT export file")
    if zipfile.is_zipfile(p):
        try:
            return _read_zip(p, log)
        except zipfile.BadZipFile as exc:
            raise _unreadable(p, f"a damaged zip ({exc})") from None
    data = p.read_bytes()
    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"<"):
        return parse_cvat_xml(data, log)
    if not stripped.startswith((b"{", b"[")):
        raise _unreadable(p, "not a zip, XML or JSON file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _unreadable(p, f"not a zip, XML or JSON file (not UTF-8 text at byte {exc.start})") from None
    return parse_cvat_coco(_parse_json(text, str(p), p, "not a zip, XML or JSON file"), log)


def to_cvat_dict(doc: AnnotationDocument) -> dict[str, Any]:
    """A CrowdPose document as CVAT's COCO Keypoints 1.0 import expects it.

    Each person's box is written as its bbox and marked as a person box in ``attributes.bbox_source``
    (``"keypoints"`` when the document marks it as derived from the joints, else ``"drawn"``), so an import
    back keeps it even when it equals the extent of the joints; image ids and file names are kept, so every
    person lands on the same image.
    """
    out = to_coco_dict(doc)
    out["info"] = {"contributor": "", "date_created": "", "description": "exported by exlpose-data", "url": "", "version": "", "year": ""}
    out["licenses"] = [{"name": "", "id": 0, "url": ""}]
    for ann, record in zip(out["annotations"], doc.annotations):
        derived = (record.model_extra or {}).get("bbox_source") == BOX_FROM_KEYPOINTS
        ann["attributes"] = {"occluded": False, "bbox_source": BOX_FROM_KEYPOINTS if derived else DRAWN_BOX}
    return out


def _svg() -> str:
    """The skeleton drawing CVAT's label constructor stores: circles per joint, lines per limb (1-based nodes)."""
    spec = crowdpose14()
    # A front view in CVAT's 100x100 canvas: joint -> (x, y).
    layout = {
        "head": (50, 8), "neck": (50, 20),
        "left_shoulder": (62, 22), "right_shoulder": (38, 22),
        "left_elbow": (68, 38), "right_elbow": (32, 38),
        "left_wrist": (72, 52), "right_wrist": (28, 52),
        "left_hip": (58, 55), "right_hip": (42, 55),
        "left_knee": (60, 75), "right_knee": (40, 75),
        "left_ankle": (61, 94), "right_ankle": (39, 94),
    }
    parts = []
    for a, b in spec.skeleton:
        (x1, y1), (x2, y2) = layout[spec.keypoints[a]], layout[spec.keypoints[b]]
        parts.append(
            f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="black" data-type="edge" '
            f'data-node-from="{a + 1}" stroke-width="0.5" data-node-to="{b + 1}"></line>'
        )
    for i, name in enumerate(spec.keypoints, start=1):
        x, y = layout[name]
        parts.append(
            f'<circle r="1.5" stroke="black" fill="#b3b3b3" cx="{x}" cy="{y}" stroke-width="0.1" '
            f'data-type="element node" data-element-id="{i}" data-node-id="{i}" data-label-name="{name}"></circle>'
        )
    return "".join(parts)


def cvat_labels() -> list[dict[str, Any]]:
    """Labels for a CVAT project (paste into the project's Raw label editor).

    A 14-point skeleton ``person`` with the CrowdPose joint names, and a rectangle ``person_box`` to group with
    each skeleton as the person's box.
    """
    return [
        {
            "name": SKELETON_LABEL,
            "type": "skeleton",
            "attributes": [],
            "sublabels": [{"name": n, "type": "points", "attributes": []} for n in crowdpose14().keypoints],
            "svg": _svg(),
        },
        {"name": BOX_LABEL, "type": "rectangle", "attributes": []},
    ]
