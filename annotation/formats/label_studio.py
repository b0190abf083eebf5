"""Label Studio: its JSON export, our export in that format, and the labelling configuration.

A Label Studio export is a list of tasks, each with ``data.image`` and ``annotations[].result[]``. Results of
type ``rectanglelabels`` are person boxes, ``keypointlabels`` joints (label = joint name), ``relation`` links
(``from_id`` / ``to_id``), and a per-region ``choices`` result with a joint's id marks it occluded. Geometry is
in percent of ``original_width`` / ``original_height``.

A joint's owner is decided by what the file says, strongest first (as Label Studio's own converters do):

1. ``parentID``: the region that was selected when the joint was placed; Label Studio's keypoint converters
   group by it. It must name a rectangle of the same annotation.
2. a ``relation`` between the joint and one rectangle (either direction; our configuration asks for them).
3. geometry, the last resort: the one rectangle containing the joint.

A ``parentID`` and a relation that name different rectangles are a conflict, reported with the task id and the
region ids; so are several related rectangles, and a joint without either that lies in no rectangle or in
several. Joints owned by geometry are recorded on their person (``joints_by_geometry``): a joint that strayed
into someone else's box looks the same, so the import counts them and the review flags them.

A task whose annotations were all skipped (``was_cancelled``), or that has none, is no label: it is listed in
``LabelSet.unlabelled`` for the importer to refuse or leave out. A file where no joint is marked occluded gets one
warning (a config without the occluded choice reads every hidden joint as visible). Label Studio's other export
formats (JSON-MIN, CSV, TSV, COCO, the zips) lose the joint-to-person links and are refused in one line that says
to export JSON.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse
from xml.sax.saxutils import quoteattr

from exlpose_data.errors import InputError, NameGrammarError
from exlpose_data.keypoints import crowdpose14
from exlpose_data.naming import parse_name
from exlpose_data.schema import AnnotationDocument

from ..aliases import joint_index
from ..labels import ImageLabel, LabelSet, PersonLabel, UnlabelledImage, empty_keypoints
from ..problems import ProblemLog
from . import is_number, load_json

__all__ = [
    "read_label_studio",
    "parse_label_studio",
    "image_name_from_url",
    "to_label_studio_tasks",
    "label_studio_config",
    "BOX_TAG",
    "JOINT_TAG",
    "OCCLUSION_TAG",
    "IMAGE_TAG",
    "DEFAULT_URL_PREFIX",
]

IMAGE_TAG = "image"
BOX_TAG = "person"
JOINT_TAG = "joints"
OCCLUSION_TAG = "occlusion"
OCCLUDED = "occluded"
SKIPPED = "skipped"
NOT_LABELLED = "not labelled"
DEFAULT_URL_PREFIX = "/data/local-files/?d="
# Label Studio prefixes uploaded files with 8 hex digits and a dash.
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(?P<name>.+)$")


def image_name_from_url(url: str) -> str:
    """The dataset path or file name inside a Label Studio image reference.

    Handles ``/data/local-files/?d=<path>``, ``/data/upload/<project>/<hex>-<name>``, ``s3://``/``gs://`` and
    http URLs; keeps a ``bright/`` or ``dark/`` folder when the path has one.
    """
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    path = unquote(query["d"][0] if "d" in query else parsed.path or url)
    base = path.rsplit("/", 1)[-1]
    m = _UPLOAD_PREFIX.match(base)
    if m:
        try:
            parse_name(base)
        except NameGrammarError:
            path = path[: len(path) - len(base)] + m["name"]
    return path


def _size(item: dict[str, Any], place: str, log: ProblemLog) -> tuple[int, int] | None:
    w, h = item.get("original_width"), item.get("original_height")
    if not (is_number(w) and is_number(h) and w > 0 and h > 0):
        log.add(place, "original_width/original_height", f"missing or not positive ({w!r} x {h!r})")
        return None
    return int(w), int(h)


def _value(item: dict[str, Any], keys: tuple[str, ...], place: str, log: ProblemLog) -> dict[str, Any] | None:
    value = item.get("value")
    if not isinstance(value, dict) or not all(is_number(value.get(k)) for k in keys):
        log.add(place, "value", f"needs numbers {', '.join(keys)}")
        return None
    return value


def _chosen_annotation(task: dict[str, Any], place: str, log: ProblemLog) -> dict[str, Any] | str | None:
    """The task's one annotation that was not skipped; ``"skipped"`` or ``"not labelled"`` when it has none."""
    anns = task.get("annotations", task.get("completions"))
    if not isinstance(anns, list):
        log.add(place, "annotations", "missing (export the project with its annotations)")
        return None
    live = [a for a in anns if isinstance(a, dict) and not a.get("was_cancelled", False)]
    if not live:
        return SKIPPED if anns else NOT_LABELLED
    if len(live) > 1:
        ids = ", ".join(str(a.get("id")) for a in live)
        log.add(place, "annotations", f"{len(live)} annotations ({ids}); keep exactly one per task")
        return None
    if not isinstance(live[0].get("result"), list):
        log.add(place, "annotations[].result", "must be a list")
        return None
    return live[0]


def _contains(box: list[float], x: float, y: float) -> bool:
    return box[0] <= x <= box[0] + box[2] and box[1] <= y <= box[1] + box[3]


def _owner(
    rid: str, idx: int, x: float, y: float, place: str, boxes: dict[str, list[float]], parent: str | None, related: set[str], log: ProblemLog
) -> tuple[str, bool] | None:
    """(the rectangle joint ``rid`` belongs to, whether only geometry says so): its parentID, else its one related
    box, else the one box containing it."""
    rplace = f"{place}, result {rid!r}"
    joint = crowdpose14().keypoints[idx]
    if parent is not None:
        if parent not in boxes:
            log.add(rplace, "parentID", f"{joint}'s parent {parent!r} is not a person box (rectanglelabels) of this annotation")
            return None
        others = sorted(related - {parent})
        if others:
            log.add(rplace, "parentID", f"conflict: {joint} has parentID {parent!r} but is related to person box(es) {', '.join(repr(o) for o in others)}; fix one of them")
            return None
        return parent, False
    if len(related) > 1:
        log.add(rplace, "relation", f"{joint} is related to {len(related)} person boxes ({', '.join(sorted(related))})")
        return None
    if related:
        return next(iter(related)), False
    inside = sorted(b for b, box in boxes.items() if _contains(box, x, y))
    if len(inside) != 1:
        where = "no person box" if not inside else f"{len(inside)} person boxes ({', '.join(inside)})"
        log.add(rplace, "relation", f"{joint} has no parentID, lies in {where} and is related to none; relate it to its person's box")
        return None
    return inside[0], True


def _task(task: Any, i: int, log: ProblemLog) -> ImageLabel | UnlabelledImage | None:
    if not isinstance(task, dict):
        log.add(f"tasks[{i}]", "", "must be an object")
        return None
    place = f"task {task['id']}" if "id" in task else f"tasks[{i}]"
    data = task.get("data")
    if not isinstance(data, dict) or not isinstance(data.get(IMAGE_TAG), str):
        log.add(place, "data.image", "missing (the task must reference its image)")
        return None
    ann = _chosen_annotation(task, place, log)
    if ann is None:
        return None
    file_name = image_name_from_url(data[IMAGE_TAG])
    if isinstance(ann, str):
        return UnlabelledImage(place, file_name, ann)
    size: tuple[int, int] | None = None
    boxes: dict[str, list[float]] = {}
    joints: dict[str, tuple[int, float, float]] = {}
    parents: dict[str, str] = {}
    occluded: set[str] = set()
    relations: list[tuple[str, str, str]] = []
    ok = True
    for j, item in enumerate(ann["result"]):
        rid = item.get("id") if isinstance(item, dict) else None
        rplace = f"{place}, result {rid!r}" if rid is not None else f"{place}, result[{j}]"
        if not isinstance(item, dict):
            log.add(rplace, "", "must be an object")
            ok = False
            continue
        kind = item.get("type")
        if kind == "relation":
            if not (isinstance(item.get("from_id"), str) and isinstance(item.get("to_id"), str)):
                log.add(rplace, "from_id/to_id", "a relation needs both ends")
                ok = False
                continue
            relations.append((item["from_id"], item["to_id"], rplace))
            continue
        if kind == "choices":
            value = item.get("value")
            if isinstance(value, dict) and OCCLUDED in [str(c).lower() for c in value.get("choices", [])]:
                occluded.add(str(rid))
            continue
        if kind not in ("rectanglelabels", "keypointlabels"):
            log.add(rplace, "type", f"{kind!r} is not a person box (rectanglelabels) or joint (keypointlabels)")
            ok = False
            continue
        if not isinstance(rid, str) or not rid:
            log.add(rplace, "id", "a region needs its id")
            ok = False
            continue
        got = _size(item, rplace, log)
        if got is None:
            ok = False
            continue
        if size is not None and got != size:
            log.add(rplace, "original_width/original_height", f"{got[0]}x{got[1]} differs from {size[0]}x{size[1]} of the task's other results")
            ok = False
            continue
        size = got
        w, h = size
        if kind == "rectanglelabels":
            value = _value(item, ("x", "y", "width", "height"), rplace, log)
            if value is None:
                ok = False
                continue
            if value.get("rotation", 0) not in (0, None):
                log.add(rplace, "value.rotation", f"person boxes must not be rotated (rotation {value['rotation']})")
                ok = False
                continue
            boxes[rid] = [value["x"] * w / 100, value["y"] * h / 100, value["width"] * w / 100, value["height"] * h / 100]
        else:
            value = _value(item, ("x", "y"), rplace, log)
            if value is None:
                ok = False
                continue
            names = value.get("keypointlabels")
            if not isinstance(names, list) or len(names) != 1 or not isinstance(names[0], str):
                log.add(rplace, "value.keypointlabels", f"needs exactly one joint name, got {names!r}")
                ok = False
                continue
            idx = joint_index(names[0])
            if idx is None:
                log.add(rplace, "value.keypointlabels", f"{names[0]!r} is not a CrowdPose joint or a known alias of one")
                ok = False
                continue
            joints[rid] = (idx, value["x"] * w / 100, value["y"] * h / 100)
            parent = item.get("parentID")
            if parent is not None:
                if not isinstance(parent, str) or not parent:
                    log.add(rplace, "parentID", f"must be a region id, got {parent!r}")
                    ok = False
                    continue
                parents[rid] = parent
    if not ok:  # grouping regions some of which were rejected would only repeat those problems
        return None
    owner: dict[str, set[str]] = {}
    for a, b, rplace in relations:
        if a in boxes and b in joints:
            owner.setdefault(b, set()).add(a)
        elif b in boxes and a in joints:
            owner.setdefault(a, set()).add(b)
        elif a not in boxes and a not in joints or b not in boxes and b not in joints:
            log.add(rplace, "from_id/to_id", f"relates {a!r} and {b!r}, not both regions of this annotation")
            ok = False
    people = {rid: empty_keypoints() for rid in boxes}
    by_geometry: dict[str, list[int]] = {rid: [] for rid in boxes}
    joint_ids: dict[tuple[str, int], str] = {}
    for rid, (idx, x, y) in joints.items():
        found = _owner(rid, idx, x, y, place, boxes, parents.get(rid), owner.get(rid, set()), log)
        if found is None:
            ok = False
            continue
        box_id, guessed = found
        rplace = f"{place}, result {rid!r}"
        if (box_id, idx) in joint_ids:
            log.add(rplace, "value.keypointlabels", f"person {box_id!r} already has {crowdpose14().keypoints[idx]} (result {joint_ids[(box_id, idx)]!r})")
            ok = False
            continue
        joint_ids[(box_id, idx)] = rid
        people[box_id][idx] = (x, y, 1 if rid in occluded else 2)
        if guessed:
            by_geometry[box_id].append(idx)
    if not ok:
        return None
    image_id = data.get("image_id") if isinstance(data.get("image_id"), int) else None
    image = ImageLabel(file_name, size[0] if size else None, size[1] if size else None, place, image_id=image_id)
    image.people = [PersonLabel(people[b], boxes[b], f"{place}, result {b!r}", joints_by_geometry=tuple(sorted(by_geometry[b]))) for b in boxes]
    return image


def parse_label_studio(raw: Any, log: ProblemLog) -> LabelSet:
    """Turn a parsed Label Studio JSON export (a list of tasks, or one task) into a :class:`LabelSet`."""
    labels = LabelSet(log.file)
    tasks = [raw] if isinstance(raw, dict) else raw
    if not isinstance(tasks, list):
        log.add("", "", "not a Label Studio JSON export (expected a list of tasks)")
        return labels
    for i, task in enumerate(tasks):
        image = _task(task, i, log)
        if isinstance(image, UnlabelledImage):
            labels.unlabelled.append(image)
        elif image is not None:
            labels.images.append(image)
    joints = [int(v) for im in labels.images for p in im.people for v in p.keypoints[:, 2] if v > 0]
    if joints and 1 not in joints:
        labels.warnings.append(
            f"{log.file}: none of its {len(joints)} joints is marked occluded, so all {len(joints)} read as visible (v = 2): "
            f"if the labelling config has no per-region <Choices name=\"{OCCLUSION_TAG}\"> with <Choice value=\"{OCCLUDED}\"/> "
            "(as 'exlpose annotate tasks' writes it), hidden joints could not be marked"
        )
    return labels


_EXPORT_JSON = "export the project as JSON (Export > JSON) and import that file"


def _other_export(path: Path) -> str | None:
    """What another Label Studio export format ``path`` is and why it cannot be read, or None."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"PK"):
        return (f"{path}: a zip: Label Studio's COCO, YOLO and VOC exports come as zips and do not keep each person's "
                f"joints with their box and occlusion; {_EXPORT_JSON}")
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first in (b"[", b"{") or not first:
        return None
    line = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    sep = "\t" if "\t" in line else ","
    columns = next(csv.reader([line], delimiter=sep), [])
    if "annotation_id" in columns or IMAGE_TAG in columns:
        kind = "TSV" if sep == "\t" else "CSV"
        return (f"{path}: a Label Studio {kind} export: it keeps no region ids, parentIDs or relations, so no joint can be "
                f"linked to its person, and no occlusion; {_EXPORT_JSON}")
    return None


def _other_json(raw: Any, path: Path) -> str | None:
    """What another Label Studio JSON export ``raw`` is and why it cannot be read, or None."""
    if isinstance(raw, dict) and isinstance(raw.get("images"), list) and isinstance(raw.get("annotations"), list):
        return (f"{path}: a COCO file, not Label Studio's JSON export; Label Studio's own COCO export puts all joints of an "
                f"image into one annotation (its people are lost) and drops occlusion: {_EXPORT_JSON}")
    tasks = raw if isinstance(raw, list) else []
    first = next((t for t in tasks if isinstance(t, dict)), None)
    if first is not None and "annotations" not in first and "completions" not in first and "annotation_id" in first:
        return (f"{path}: a Label Studio JSON-MIN export: it keeps no region ids, parentIDs or relations, so no joint can be "
                f"linked to its person, and no occlusion; {_EXPORT_JSON}")
    return None


def read_label_studio(path: str | Path, log: ProblemLog) -> LabelSet:
    """Read a Label Studio JSON export.

    Raises:
        InputError: ``path`` is another of Label Studio's export formats (JSON-MIN, CSV, TSV, COCO, a zip), which
            lose the joint-to-person links; the message says what to export instead.
    """
    p = Path(path)
    if p.is_file():
        other = _other_export(p)
        if other:
            raise InputError(other)
    raw = load_json(p)
    other = _other_json(raw, p)
    if other:
        raise InputError(other)
    return parse_label_studio(raw, log)


def _result(rid: str, kind: str, from_name: str, value: dict[str, Any], w: int, h: int) -> dict[str, Any]:
    return {"id": rid, "type": kind, "from_name": from_name, "to_name": IMAGE_TAG, "original_width": w, "original_height": h, "image_rotation": 0, "value": value}


def to_label_studio_tasks(doc: AnnotationDocument, url_prefix: str = DEFAULT_URL_PREFIX) -> list[dict[str, Any]]:
    """A CrowdPose document as Label Studio tasks with one annotation each (importable as pre-labelled tasks).

    Every joint names its person's rectangle as ``parentID`` and is related to it, as our labelling
    configuration asks, so the import back needs no guessing. ``data.image`` is ``url_prefix`` + the document's file name; ``data.image_id`` keeps the
    image id so an import back keeps it too.
    """
    names = crowdpose14().keypoints
    by_image: dict[int, list] = {}
    for a in doc.annotations:
        by_image.setdefault(a.image_id, []).append(a)
    tasks = []
    for t, im in enumerate(doc.images, start=1):
        w, h = im.width, im.height
        result: list[dict[str, Any]] = []
        for p, a in enumerate(by_image.get(im.id, []), start=1):
            box_id = f"i{im.id}p{p}"
            x, y, bw, bh = a.bbox
            box = {"x": x / w * 100, "y": y / h * 100, "width": bw / w * 100, "height": bh / h * 100, "rotation": 0, "rectanglelabels": [BOX_TAG]}
            result.append(_result(box_id, "rectanglelabels", BOX_TAG, box, w, h))
            for j, name in enumerate(names):
                kx, ky, v = a.keypoints[3 * j : 3 * j + 3]
                if v <= 0:
                    continue
                kp_id = f"{box_id}j{j}"
                point = {"x": kx / w * 100, "y": ky / h * 100, "width": 0.5}
                # parentID as Label Studio sets it when a joint is placed with its box selected
                result.append({**_result(kp_id, "keypointlabels", JOINT_TAG, {**point, "keypointlabels": [name]}, w, h), "parentID": box_id})
                if v == 1:
                    result.append(_result(kp_id, "choices", OCCLUSION_TAG, {**point, "choices": [OCCLUDED]}, w, h))
                result.append({"type": "relation", "from_id": box_id, "to_id": kp_id, "direction": "right", "labels": []})
        tasks.append({"id": t, "data": {IMAGE_TAG: url_prefix + im.file_name, "image_id": im.id}, "annotations": [{"id": t, "result": result, "was_cancelled": False}]})
    return tasks


def label_studio_config() -> str:
    """The labelling configuration (Settings > Labeling Interface > Code) for persons with 14 CrowdPose joints."""
    spec = crowdpose14()
    colours = {"left": "#1f77b4", "right": "#d62728"}
    # model_index: the joint's place in CrowdPose order; Label Studio's COCO and YOLO exporters need it (without it
    # its COCO export fails: "No keypoint order found").
    labels = "\n".join(
        f"    <Label value={quoteattr(n)} model_index=\"{j}\" background={quoteattr(colours.get(n.split('_')[0], '#2ca02c'))}/>"
        for j, n in enumerate(spec.keypoints)
    )
    return f"""<View>
  <Header value="Per person: draw its box (person), place its joints, relate every joint to the box (select the joint, Alt+R, click the box). Mark hidden joints occluded."/>
  <Image name="{IMAGE_TAG}" value="$image" zoom="true" zoomControl="true"/>
  <RectangleLabels name="{BOX_TAG}" toName="{IMAGE_TAG}" canRotate="false">
    <Label value="{BOX_TAG}" background="#ff7f0e"/>
  </RectangleLabels>
  <KeyPointLabels name="{JOINT_TAG}" toName="{IMAGE_TAG}" strokeWidth="2">
{labels}
  </KeyPointLabels>
  <Relations>
    <Relation value="part_of"/>
  </Relations>
  <Choices name="{OCCLUSION_TAG}" toName="{IMAGE_TAG}" perRegion="true" whenTagName="{JOINT_TAG}">
    <Choice value="{OCCLUDED}"/>
  </Choices>
</View>
"""
