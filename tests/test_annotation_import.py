"""Importing into a dataset: resolution against the pairs, one crafted bad file per error class, the CLI."""

from __future__ import annotations

import copy
import errno
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from annotation.cli import app
from annotation.formats.cvat import to_cvat_dict
from annotation.formats.label_studio import to_label_studio_tasks
from annotation.importer import import_annotations
from annotation.problems import AnnotationProblems
from exlpose_data.layout import load_manifest, rebuild_manifest, verify_dataset, write_pairs
from exlpose_data.naming import parse_name
from exlpose_data.provenance import RECORD_FILE, read_record
from exlpose_data.schema import AnnotationDocument, load_document

OFFICIAL = Path(__file__).parent / "data" / "ExLPose_test_LL-All.json"


@pytest.fixture(scope="module")
def small() -> AnnotationDocument:
    """The first three official images with their people."""
    doc = load_document(OFFICIAL)
    images = doc.images[:3]
    ids = {im.id for im in images}
    return AnnotationDocument(info=doc.info, categories=doc.categories, images=images, annotations=[a for a in doc.annotations if a.image_id in ids])


@pytest.fixture()
def root(tmp_path, small) -> Path:
    """A dataset root: the pair list of the three images, and a real PNG of the right size for the first pair."""
    r = tmp_path / "ds"
    r.mkdir()
    pairs = [(im.file_name, parse_name(im.file_name).twin().relpath) for im in small.images]
    write_pairs(r / "brightPath2darkPath.txt", pairs)
    first = small.images[0]
    for rel in pairs[0]:
        (r / rel).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(r / rel), np.zeros((first.height, first.width), np.uint8))
    return r


def _cvat(small) -> dict:
    return copy.deepcopy(to_cvat_dict(small))


def _ls(small) -> list:
    return copy.deepcopy(to_label_studio_tasks(small))


def _write(tmp_path: Path, payload, name="export.json") -> Path:
    p = tmp_path / name
    p.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return p


def test_image_sizes_come_from_the_headers_on_disk(tmp_path, root, small):
    """An image without people has no size in a Label Studio export: it is read from the PNG header."""
    tasks = _ls(small)[:2]
    tasks[0]["annotations"][0]["result"] = []  # labelled: nobody in image 0, the one with its PNG on disk
    result = import_annotations(_write(tmp_path, tasks), "label-studio", root, tmp_path / "out", split="all")
    wl = load_document(result.wl_path)
    first = next(im for im in wl.images if im.file_name == small.images[0].file_name)
    assert (first.width, first.height) == (small.images[0].width, small.images[0].height)
    # A header that gives no size (here 0 x 0) is no size: a problem, not a 0 x 0 image record.
    bright = root / small.images[0].file_name
    bright.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + bytes(8) + b"\x08\x00\x00\x00\x00")
    with pytest.raises(AnnotationProblems) as err:
        import_annotations(_write(tmp_path, tasks), "label-studio", root, tmp_path / "out2", split="all")
    assert [str(p) for p in err.value.problems] == [
        f"{tmp_path / 'export.json'}: task 1: width/height: the input gives no image size and {small.images[0].file_name} is not a readable PNG or JPEG on disk to read it from"
    ]


def test_import_writes_both_files_into_the_dataset_and_its_manifest(tmp_path, root, small):
    import_annotations(_write(tmp_path, _cvat(small)), "cvat", root, split="val")
    assert not (root / "manifest.json").exists()  # a dataset without a manifest does not get one
    rebuild_manifest(root)
    result = import_annotations(_write(tmp_path, _cvat(small)), "cvat", root, split="train")
    assert result.wl_path == root / "annotations" / "ExLPose_train_WL.json"
    assert result.ll_path == root / "annotations" / "ExLPose_train_LL.json"
    wl, ll = load_document(result.wl_path), load_document(result.ll_path)
    assert [im.file_name for im in wl.images] == [im.file_name for im in small.images]
    assert [im.file_name for im in ll.images] == [parse_name(im.file_name).twin().relpath for im in small.images]
    assert len(wl.annotations) == len(small.annotations) == result.people
    manifest = load_manifest(root)
    assert set(manifest) >= {"annotations/ExLPose_train_WL.json", "annotations/ExLPose_train_LL.json"}
    assert verify_dataset(root) == []


def test_basenames_and_dark_names_resolve_to_the_pair(tmp_path, root, small):
    doc = _cvat(small)
    doc["images"][0]["file_name"] = doc["images"][0]["file_name"].rsplit("/", 1)[-1]
    doc["images"][1]["file_name"] = parse_name(doc["images"][1]["file_name"]).twin().relpath
    result = import_annotations(_write(tmp_path, doc), "cvat", root, tmp_path / "out", split="all")
    wl = load_document(result.wl_path)
    assert [im.file_name for im in wl.images] == [im.file_name for im in small.images]


def test_box_from_keypoints_is_opt_in_and_marked(tmp_path, root, small):
    doc = _cvat(small)
    doc["annotations"][0]["bbox"] = []
    path = _write(tmp_path, doc)
    with pytest.raises(AnnotationProblems) as err:
        import_annotations(path, "cvat", root, tmp_path / "out", split="all")
    assert "annotations[0] (id 0): bbox: person has no box" in str(err.value.problems[0])
    assert not (tmp_path / "out").exists()
    result = import_annotations(path, "cvat", root, tmp_path / "out", box_from_keypoints=True, split="all")
    assert result.boxes_from_keypoints == 1
    a = json.loads(result.wl_path.read_text())["annotations"][0]
    kp = np.asarray(a["keypoints"]).reshape(14, 3)
    pts = kp[kp[:, 2] > 0, :2]
    assert a["bbox_source"] == "keypoints"
    assert a["bbox"] == pytest.approx([*pts.min(0), *(pts.max(0) - pts.min(0))], abs=1e-3)


def _set(path: list, value):
    def mutate(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _twice(doc):
    doc["images"][1]["file_name"] = doc["images"][0]["file_name"].rsplit("/", 1)[-1]


def _ls_result(i, kind):
    return lambda tasks: next(r for r in tasks[0]["annotations"][0]["result"] if r["type"] == kind and r["id"].endswith(i))


def _ls_move_joint_out(tasks):
    result = tasks[0]["annotations"][0]["result"]
    joint = next(r for r in result if r["type"] == "keypointlabels")
    joint.pop("parentID")  # neither parentID nor relation: geometry decides
    result[:] = [r for r in result if not (r["type"] == "relation" and r["to_id"] == joint["id"])]
    joint["value"]["x"], joint["value"]["y"] = 99.9, 0.1


def _ls_unrelated_in_two(tasks):
    result = tasks[0]["annotations"][0]["result"]
    boxes = [r for r in result if r["type"] == "rectanglelabels"]
    joint = next(r for r in result if r["type"] == "keypointlabels")
    joint.pop("parentID")  # neither parentID nor relation: geometry decides
    result[:] = [r for r in result if not (r["type"] == "relation" and r["to_id"] == joint["id"])]
    for b in boxes[:2]:
        b["value"].update(x=0, y=0, width=100, height=100)


def _ls_related_to_two(tasks):
    result = tasks[0]["annotations"][0]["result"]
    boxes = [r for r in result if r["type"] == "rectanglelabels"]
    joint = next(r for r in result if r["type"] == "keypointlabels")
    joint.pop("parentID")  # relations alone decide
    result.append({"type": "relation", "from_id": boxes[1]["id"], "to_id": joint["id"], "direction": "right"})


def _ls_same_joint_twice(tasks):
    result = tasks[0]["annotations"][0]["result"]
    joint = next(r for r in result if r["type"] == "keypointlabels")
    dup = copy.deepcopy(joint)
    dup["id"] = "dup1"
    result.append(dup)
    rel = next(r for r in result if r["type"] == "relation" and r["to_id"] == joint["id"])
    result.append({**rel, "to_id": "dup1"})


def _ls_two_annotations(tasks):
    tasks[0]["annotations"].append(copy.deepcopy(tasks[0]["annotations"][0]) | {"id": 99})


def _ls_polygon(tasks):
    tasks[0]["annotations"][0]["result"].append({"id": "poly", "type": "polygonlabels", "value": {"points": []}})


def _ls_label(tasks):
    next(r for r in tasks[0]["annotations"][0]["result"] if r["type"] == "keypointlabels")["value"]["keypointlabels"] = ["nose"]


def _ls_rotated(tasks):
    next(r for r in tasks[0]["annotations"][0]["result"] if r["type"] == "rectanglelabels")["value"]["rotation"] = 12


def _ls_no_size(tasks):
    del next(r for r in tasks[0]["annotations"][0]["result"] if r["type"] == "rectanglelabels")["original_width"]


# (format, mutation, expected text of the first problem): one crafted bad file per error class.
CASES = {
    "cvat-not-json": ("cvat", "{not json", "not a zip, XML or JSON file (Expecting property name enclosed in double quotes: line 1 column 2); --format cvat reads CVAT for images 1.1 XML"),
    "cvat-not-coco": ("cvat", _set(["images"], None), "not a COCO keypoints file"),
    "cvat-unknown-joint": ("cvat", _set(["categories", 0, "keypoints", 12], "nose"), "categories[0] (id 1): keypoints[12]: 'nose' is not a CrowdPose joint"),
    "cvat-joint-twice": ("cvat", _set(["categories", 0, "keypoints", 13], "head_top"), "keypoints[13]: 'head_top' and 'head' both name head"),
    "cvat-joint-missing": ("cvat", _set(["categories", 0, "keypoints"], ["left_shoulder"]), "no point for right_shoulder"),
    "cvat-no-names": ("coco", _set(["categories", 0, "keypoints"], []), "no category names its keypoints"),
    "cvat-keypoint-count": ("cvat", _set(["annotations", 1, "keypoints"], [1, 2, 2]), "annotations[1] (id 1): keypoints: expected 42 numbers"),
    "cvat-visibility": ("cvat", _set(["annotations", 1, "keypoints", 2], 7), "keypoints[2]: visibility must be 0, 1 or 2, got 7"),
    "cvat-not-a-number": ("cvat", _set(["annotations", 1, "keypoints", 3], "12"), "keypoints[3:6]: not numbers"),
    "cvat-unknown-image": ("cvat", _set(["annotations", 1, "image_id"], 4242), "image_id: 4242 is not the id of an image"),
    "cvat-unknown-category": ("cvat", _set(["annotations", 1, "category_id"], 9), "category_id: 9 is not a category"),
    "cvat-bad-bbox": ("cvat", _set(["annotations", 1, "bbox"], [1, 2, 3]), "bbox: expected [x, y, w, h]"),
    "cvat-empty-bbox": ("cvat", _set(["annotations", 1, "bbox"], [10, 10, 0, 5]), "has no area"),
    "cvat-bbox-outside": ("cvat", _set(["annotations", 1, "bbox", 0], 1900.0), "reaches outside the 1919x1198 image"),
    "cvat-joint-outside": ("cvat", _set(["annotations", 1, "keypoints", 3], 2500.0), "lies outside the 1919x1198 image"),
    "cvat-iscrowd": ("cvat", _set(["annotations", 1, "iscrowd"], 5), "iscrowd: must be 0 or 1"),
    "cvat-image-not-in-dataset": ("cvat", _set(["images", 1, "file_name"], "bright/holiday.png"), "file_name: 'bright/holiday.png' is not an image of the dataset"),
    "cvat-image-twice": ("cvat", _twice, "is the same pair as images[0]"),
    "cvat-image-size": ("cvat", _set(["images", 0, "width"], 1920), "labelled on a 1920x1198 image but bright/"),
    "cvat-image-no-size": ("cvat", _set(["images", 1, "height"], None), "height: must be a positive integer"),
    "cvat-image-id-twice": ("cvat", _set(["images", 2, "id"], 38), "id: repeats the id of images[0]"),
    "ls-not-tasks": ("label-studio", "42", "not a Label Studio JSON export"),
    "ls-joint-in-no-box": ("label-studio", _ls_move_joint_out, "lies in no person box and is related to none"),
    "ls-joint-in-two-boxes": ("label-studio", _ls_unrelated_in_two, "lies in 2 person boxes"),
    "ls-joint-related-twice": ("label-studio", _ls_related_to_two, "is related to 2 person boxes"),
    "ls-same-joint-twice": ("label-studio", _ls_same_joint_twice, "result 'dup1': value.keypointlabels: person 'i38p1' already has right_shoulder"),
    "ls-two-annotations": ("label-studio", _ls_two_annotations, "task 1: annotations: 2 annotations (1, 99); keep exactly one"),
    "ls-not-labelled": ("label-studio", _set([0, "annotations", 0, "was_cancelled"], True), "tasks have no usable annotation (task 1 (bright/"),
    "ls-other-region": ("label-studio", _ls_polygon, "result 'poly': type: 'polygonlabels' is not a person box"),
    "ls-unknown-joint": ("label-studio", _ls_label, "value.keypointlabels: 'nose' is not a CrowdPose joint"),
    "ls-rotated-box": ("label-studio", _ls_rotated, "value.rotation: person boxes must not be rotated"),
    "ls-no-size": ("label-studio", _ls_no_size, "original_width/original_height: missing"),
    "ls-no-image": ("label-studio", _set([1, "data"], {}), "task 2: data.image: missing"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_error_class_is_reported_with_its_place_and_nothing_is_written(tmp_path, root, small, case):
    fmt, mutate, expected = CASES[case]
    if isinstance(mutate, str):
        path = _write(tmp_path, mutate)
    else:
        payload = _ls(small) if fmt == "label-studio" else _cvat(small)
        mutate(payload)
        path = _write(tmp_path, payload)
    out = tmp_path / "out"
    with pytest.raises(Exception) as err:
        import_annotations(path, fmt, root, out, split="all")
    problems = getattr(err.value, "problems", None)
    text = str(problems[0]) if problems else str(err.value)
    assert expected in text, text
    assert text.startswith(str(path))
    # One problem, not a cascade (a repeated image id also orphans the annotations of the image that lost it).
    if problems and case != "cvat-image-id-twice":
        assert len(problems) == 1, [str(p) for p in problems]
    assert not out.exists()


def test_every_problem_is_listed_by_the_cli_and_it_exits_2(tmp_path, root, small):
    doc = _cvat(small)
    doc["annotations"][1]["keypoints"][2] = 7
    doc["images"][2]["file_name"] = "bright/holiday.png"
    path = _write(tmp_path, doc)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["import", str(path), "--format", "cvat", "--dataset", str(root), "--out", str(out), "--split-name", "all"])
    assert r.exit_code == 2
    lines = [line for line in r.stderr.splitlines() if line]
    assert lines[0] == f"{path}: annotations[1] (id 1): keypoints[2]: visibility must be 0, 1 or 2, got 7"
    assert lines[1].startswith(f"{path}: images[2] (id {small.images[2].id}): file_name: 'bright/holiday.png' is not an image")
    assert lines[-1] == f"error: {path}: 2 problem(s); nothing was written"
    assert not out.exists()


def test_cli_import_and_export_round_trip(tmp_path, root, small):
    runner = CliRunner()
    src = tmp_path / "src.json"
    src.write_text(json.dumps(small.to_json_dict()))
    ls_file = tmp_path / "ls.json"
    r = runner.invoke(app, ["export", str(src), "--format", "label-studio", "--out", str(ls_file)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["import", str(ls_file), "--format", "label-studio", "--dataset", str(root), "--split-name", "val"])
    assert r.exit_code == 0, r.output
    wl = load_document(root / "annotations" / "ExLPose_val_WL.json")
    assert len(wl.annotations) == len(small.annotations)
    for got, want in zip(wl.annotations, small.annotations):
        np.testing.assert_allclose(got.keypoints, want.keypoints, atol=0.01)
        np.testing.assert_allclose(got.bbox, want.bbox, atol=0.01)
    r = runner.invoke(app, ["import", str(ls_file), "--format", "yolo", "--dataset", str(root)])
    assert r.exit_code == 2 and "--format 'yolo': choose one of" in r.stderr
    r = runner.invoke(app, ["import", str(ls_file), "--format", "cvat", "--dataset", str(tmp_path / "nope"), "--split-name", "all"])
    assert r.exit_code == 2 and "no such dataset folder" in r.stderr
    # No silent ExLPose_all_*: the split name is asked for, and the message says what each choice writes
    r = runner.invoke(app, ["import", str(ls_file), "--format", "label-studio", "--dataset", str(root), "--force"])
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [
        "error: --split-name is required: train, val or test writes the release's file names (ExLPose_train_WL.json, "
        "ExLPose_test_LL-A.json, ...); all writes ExLPose_all_{WL,LL}.json, to be split by scene with 'exlpose split by-scene'"
    ]
    assert sorted(p.name for p in (root / "annotations").iterdir()) == [".exlpose-provenance.json", "ExLPose_val_LL.json", "ExLPose_val_WL.json"]


@pytest.mark.parametrize(
    ("fmt", "payload", "expected"),
    [
        ("label-studio", "[]", "holds 0 images; nothing to import"),
        ("cvat", "empty-coco", "holds 0 images; nothing to import"),
        ("cvat", "no-people", "holds 3 images, 0 people; nothing to import"),
    ],
)
def test_an_empty_export_is_refused_and_leaves_existing_labels_alone(tmp_path, root, small, fmt, payload, expected):
    runner = CliRunner()
    r = runner.invoke(app, ["import", str(_write(tmp_path, _cvat(small), "full.json")), "--format", "cvat", "--dataset", str(root), "--split-name", "all"])
    assert r.exit_code == 0, r.output
    before = {p.name: p.read_bytes() for p in (root / "annotations").iterdir()}
    if payload == "empty-coco":
        payload = {**_cvat(small), "images": [], "annotations": []}
    elif payload == "no-people":
        payload = {**_cvat(small), "annotations": []}
    empty = _write(tmp_path, payload, "empty.json")
    for extra in ([], ["--force"]):
        r = runner.invoke(app, ["import", str(empty), "--format", fmt, "--dataset", str(root), *extra, "--split-name", "all"])
        assert r.exit_code == 2, r.output
        assert r.stderr.splitlines() == [f"error: {empty}: {expected}, nothing was written"]
    assert {p.name: p.read_bytes() for p in (root / "annotations").iterdir()} == before
    assert len(load_document(root / "annotations" / "ExLPose_all_WL.json").annotations) == len(small.annotations)


def test_existing_annotation_files_are_replaced_only_with_force(tmp_path, root, small):
    runner = CliRunner()
    ann = root / "annotations"
    full = _write(tmp_path, _cvat(small), "full.json")
    r = runner.invoke(app, ["import", str(full), "--format", "cvat", "--dataset", str(root), "--split-name", "all"])
    assert r.exit_code == 0 and "replaced" not in r.stderr
    before = {p.name: p.read_bytes() for p in ann.iterdir()}
    one = _cvat(small)
    one["images"] = one["images"][:1]
    one["annotations"] = [a for a in one["annotations"] if a["image_id"] == one["images"][0]["id"]]
    smaller = _write(tmp_path, one, "one.json")
    n_old, n_new = len(small.annotations), len(one["annotations"])
    r = runner.invoke(app, ["import", str(smaller), "--format", "cvat", "--dataset", str(root), "--split-name", "all"])
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [
        f"error: {ann / 'ExLPose_all_WL.json'} holds 3 images, {n_old} people and {ann / 'ExLPose_all_LL.json'} holds 3 images, "
        f"{n_old} people; the import of {smaller} has 1 image, {n_new} people; pass --overwrite to replace them, nothing was written"
    ]
    assert {p.name: p.read_bytes() for p in ann.iterdir()} == before
    # Only one of the pair present (or unreadable): still refused, naming that file.
    (ann / "ExLPose_all_LL.json").unlink()
    (ann / "ExLPose_all_WL.json").write_text("{broken")
    r = runner.invoke(app, ["import", str(smaller), "--format", "cvat", "--dataset", str(root), "--split-name", "all"])
    assert r.exit_code == 2 and f"error: {ann / 'ExLPose_all_WL.json'} holds no readable annotations; the import" in r.stderr
    (ann / "ExLPose_all_WL.json").write_bytes(before["ExLPose_all_WL.json"])
    (ann / "ExLPose_all_LL.json").write_bytes(before["ExLPose_all_LL.json"])
    r = runner.invoke(app, ["import", str(smaller), "--format", "cvat", "--dataset", str(root), "--force", "--split-name", "all"])
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines() == [
        f"replaced {ann / 'ExLPose_all_WL.json'}: it held 3 images, {n_old} people, now 1 image, {n_new} people",
        f"replaced {ann / 'ExLPose_all_LL.json'}: it held 3 images, {n_old} people, now 1 image, {n_new} people",
    ]
    wl = load_document(ann / "ExLPose_all_WL.json")
    assert (len(wl.images), len(wl.annotations)) == (1, n_new)


def test_cvat_round_trip_is_unchanged_when_boxes_equal_the_joint_extents(tmp_path, root, small):
    """Boxes made with --box-from-keypoints (marked) and drawn boxes that happen to equal the extent (unmarked)."""
    runner = CliRunner()
    doc = _cvat(small)
    for ann in doc["annotations"]:
        ann["bbox"] = []
    derived = import_annotations(_write(tmp_path, doc), "cvat", root, tmp_path / "derived", box_from_keypoints=True, split="all")
    assert derived.boxes_from_keypoints == len(small.annotations)
    original = json.loads(derived.wl_path.read_text())
    for ann in original["annotations"][::2]:
        del ann["bbox_source"]
    src = _write(tmp_path, original, "ExLPose_all_WL.json")
    cvat_file = tmp_path / "cvat.json"
    r = runner.invoke(app, ["export", str(src), "--format", "cvat", "--out", str(cvat_file)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["import", str(cvat_file), "--format", "cvat", "--dataset", str(root), "--out", str(tmp_path / "back"), "--split-name", "all"])
    assert r.exit_code == 0, r.output
    back = json.loads((tmp_path / "back" / "ExLPose_all_WL.json").read_text())
    assert back["images"] == original["images"]
    assert back["annotations"] == original["annotations"]
    marked = sum(1 for a in back["annotations"] if a.get("bbox_source") == "keypoints")
    assert 0 < marked < len(back["annotations"])


def _fail_second_replace(monkeypatch) -> list:
    """Make the second os.replace of the process raise (a full disk, a read-only remount); record every call."""
    calls: list = []
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == RECORD_FILE:  # the provenance record's own atomic writes
            return real(src, dst, *args, **kwargs)
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:
            raise OSError(errno.EIO, "injected failure")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def test_a_failing_second_rename_leaves_both_existing_files_unchanged(tmp_path, root, small, monkeypatch):
    ann = root / "annotations"
    import_annotations(_write(tmp_path, _cvat(small)), "cvat", root, split="all")
    before = {p.name: (p.read_bytes(), p.stat().st_ino) for p in ann.iterdir() if p.name != RECORD_FILE}
    one = _cvat(small)
    one["annotations"] = one["annotations"][:1]
    calls = _fail_second_replace(monkeypatch)
    with pytest.raises(OSError, match="injected failure") as err:
        import_annotations(_write(tmp_path, one, "one.json"), "cvat", root, overwrite=True, allow_empty=True, split="all")
    assert err.value.filename == str(ann / "ExLPose_all_LL.json")
    # WL renamed into place, LL's rename failed, the old WL put back.
    assert [dst for _, dst in calls] == ["ExLPose_all_WL.json", "ExLPose_all_LL.json", "ExLPose_all_WL.json"]
    assert {p.name: (p.read_bytes(), p.stat().st_ino) for p in ann.iterdir() if p.name != RECORD_FILE} == before  # no leftovers either
    assert read_record(ann)["steps"]["annotate import all"]["state"] == "incomplete"  # exlpose verify reports it


def test_a_failing_second_rename_leaves_no_new_file_where_there_was_none(tmp_path, root, small, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    _fail_second_replace(monkeypatch)
    with pytest.raises(OSError, match="injected failure"):
        import_annotations(_write(tmp_path, _cvat(small)), "cvat", root, out, split="all")
    assert [p.name for p in out.iterdir()] == [RECORD_FILE]
    assert read_record(out)["steps"]["annotate import all"]["state"] == "incomplete"


def test_when_putting_the_old_file_back_fails_too_its_copy_is_kept_and_named(tmp_path, monkeypatch):
    from annotation.pairwrite import write_pair

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text("old a")
    real = os.replace
    calls: list = []

    def replace(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) >= 2:
            raise OSError(errno.EROFS, "read-only file system")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="the old content is kept in") as err:
        write_pair(first, "new a", second, "new b")
    (kept,) = [p for p in tmp_path.iterdir() if p.name.startswith(".a.tmp-old-")]
    assert str(kept) in str(err.value) and err.value.filename == str(first)
    assert kept.read_text() == "old a" and not second.exists()


def test_cvat_frames_nobody_labelled_are_refused_unless_allowed(tmp_path, root, small):
    from tests.tool_shapes import cvat_coco_keypoints

    labelled = AnnotationDocument(info=small.info, categories=small.categories, images=small.images[:1], annotations=[a for a in small.annotations if a.image_id == small.images[0].id])
    unlabelled = [(im.file_name.rsplit("/", 1)[-1], im.width, im.height) for im in small.images[1:]]
    export = _write(tmp_path, cvat_coco_keypoints(labelled, unlabelled), "person_keypoints_default.json")
    runner = CliRunner()
    r = runner.invoke(app, ["import", str(export), "--format", "cvat", "--dataset", str(root), "--split-name", "train"])
    assert r.exit_code == 2, r.output
    names = ", ".join(im.file_name for im in small.images[1:])  # named as in the dataset
    assert r.stderr.splitlines() == [
        f"error: {export}: 2 of 3 images have nobody labelled ({names}); cvat exports every frame, labelled or not: label them or "
        "remove them from the task, or pass --allow-empty if nobody is in them; nothing was written"
    ]
    assert not (root / "annotations").exists()
    r = runner.invoke(app, ["import", str(export), "--format", "cvat", "--dataset", str(root), "--split-name", "train", "--allow-empty"])
    assert r.exit_code == 0, r.output
    bright = [im.file_name for im in small.images[1:]]
    assert f"note: 2 image(s) recorded with nobody in them: {', '.join(bright)}" in r.stderr
    wl = load_document(root / "annotations" / "ExLPose_train_WL.json")
    assert len(wl.images) == 3 and {a.image_id for a in wl.annotations} == {wl.images[0].id}
    # Label Studio: a submitted annotation with no regions is an explicit "nobody here", accepted as before
    tasks = _ls(small)
    tasks[0]["annotations"][0]["result"] = []  # the image whose PNG is on disk gives the size
    result = import_annotations(_write(tmp_path, tasks), "label-studio", root, tmp_path / "ls", split="all")
    assert result.empty_images == (small.images[0].file_name,)


def test_crowdpose_import_keeps_crowd_index_and_crowd_regions_count(tmp_path, root, small):
    """A CrowdPose file's crowdIndex (its easy/medium/hard subsets depend on it) and a crowd region's num_keypoints survive."""
    raw = json.loads(OFFICIAL.read_text())
    ids = [im.id for im in small.images]
    raw["images"] = [im for im in raw["images"] if im["id"] in ids]
    raw["annotations"] = [a for a in raw["annotations"] if a["image_id"] in ids]
    raw["images"][0]["crowdIndex"] = 0.61
    crowd = raw["annotations"][0]
    crowd["iscrowd"], crowd["num_keypoints"] = 1, 9  # a crowd region whose count is not its labelled joints'
    labelled = sum(1 for v in crowd["keypoints"][2::3] if v > 0)
    assert labelled != 9
    result = import_annotations(_write(tmp_path, raw), "crowdpose", root, tmp_path / "out", split="all")
    wl, ll = json.loads(result.wl_path.read_text()), json.loads(result.ll_path.read_text())
    assert [im["crowdIndex"] for im in wl["images"]] == [0.61, 0, 0] == [im["crowdIndex"] for im in ll["images"]]
    region = next(a for a in wl["annotations"] if a["iscrowd"] == 1)
    assert region["num_keypoints"] == 9
    assert [a["num_keypoints"] for a in wl["annotations"] if not a["iscrowd"]] == [sum(1 for v in a["keypoints"][2::3] if v > 0) for a in wl["annotations"] if not a["iscrowd"]]


def _xml_frames(small, n_labelled: int = 2) -> list:
    """CVAT frames (name, w, h, people) of the three images; the last 3 - n_labelled nobody labelled."""
    frames = []
    for k, im in enumerate(small.images):
        people = [{"keypoints": a.keypoints, "bbox": a.bbox} for a in small.annotations if a.image_id == im.id] if k < n_labelled else []
        frames.append((im.file_name.rsplit("/", 1)[-1], im.width, im.height, people))
    return frames


def test_cvat_for_images_xml_with_grouped_skeletons(tmp_path, root, small):
    from tests.tool_shapes import cvat_images_xml

    xml = _write(tmp_path, cvat_images_xml(_xml_frames(small)), "annotations.xml")
    runner = CliRunner()
    r = runner.invoke(app, ["import", str(xml), "--format", "cvat", "--dataset", str(root), "--split-name", "test"])
    assert r.exit_code == 2 and "1 of 3 images have nobody labelled" in r.stderr  # CVAT lists every frame
    r = runner.invoke(app, ["import", str(xml), "--format", "cvat", "--dataset", str(root), "--split-name", "test", "--allow-empty"])
    assert r.exit_code == 0, r.output
    wl = load_document(root / "annotations" / "ExLPose_test_WL.json")
    labelled = [im.id for im in small.images[:2]]
    want = [a for a in small.annotations if a.image_id in labelled]
    assert len(wl.annotations) == len(want) > 2
    for got, src in zip(wl.annotations, want):
        kp_got, kp_src = np.asarray(got.keypoints).reshape(14, 3), np.asarray(src.keypoints, float).reshape(14, 3)
        assert np.array_equal(kp_got[:, 2], kp_src[:, 2])  # visible 2, occluded 1, outside 0
        labelled_joints = kp_src[:, 2] > 0
        np.testing.assert_allclose(kp_got[labelled_joints, :2], kp_src[labelled_joints, :2], atol=0.005)  # CVAT writes 2 decimals
        assert kp_got[~labelled_joints].tolist() == [[0, 0, 0]] * int((~labelled_joints).sum())
        np.testing.assert_allclose(got.bbox, src.bbox, atol=0.011)
    assert [im.id for im in wl.images] == [1, 2, 3]  # frame numbers are not image ids


def test_cvat_xml_ungrouped_skeletons_need_box_from_keypoints(tmp_path, root, small):
    from tests.tool_shapes import cvat_images_xml

    xml = _write(tmp_path, cvat_images_xml(_xml_frames(small, 3), grouped=False), "annotations.xml")
    with pytest.raises(AnnotationProblems) as err:
        import_annotations(xml, "cvat", root, tmp_path / "o", split="test")
    assert "image id='0' (" in str(err.value.problems[0]) and "skeleton 0 (person): bbox: person has no box" in str(err.value.problems[0])
    result = import_annotations(xml, "cvat", root, tmp_path / "o", split="test", box_from_keypoints=True)
    assert result.boxes_from_keypoints == result.people == len(small.annotations)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda x: x.replace('<points label="neck"', '<points label="nose"', 1), "points 'nose': label: 'nose' is not a CrowdPose joint"),
        (lambda x: x.replace('outside="0" occluded="0"', 'outside="0" occluded="2"', 1), "occluded: must be 0 or 1, got '2'"),
        (lambda x: x.replace('  </image>', '    <polygon label="person_box" source="manual" occluded="0" points="1.00,2.00;3.00,4.00;5.00,1.00" z_order="0">\n    </polygon>\n  </image>', 1),
         "polygon 0 (person_box): polygon: is not a person skeleton or box"),
        (lambda x: x.replace('<skeleton label="person" source="manual" z_order="0" group_id="1">', '<skeleton label="person" source="manual" z_order="0" group_id="9">', 1),
         "box 0 (person_box): group_id: is grouped with no skeleton"),
        (lambda x: x.replace('<image ', '<track id="0" label="person" source="manual">\n  </track>\n  <image ', 1), "track: CVAT for video 1.1 (tracks) is not read"),
    ],
)
def test_cvat_xml_problems_name_the_frame_and_shape(tmp_path, root, small, edit, expected):
    from tests.tool_shapes import cvat_images_xml

    xml = _write(tmp_path, edit(cvat_images_xml(_xml_frames(small, 3))), "annotations.xml")
    with pytest.raises(AnnotationProblems) as err:
        import_annotations(xml, "cvat", root, tmp_path / "o", split="test")
    assert any(expected in str(p) for p in err.value.problems), [str(p) for p in err.value.problems]
    assert not (tmp_path / "o").exists()


def test_cvat_zip_downloads_and_unreadable_files(tmp_path, root, small):
    import zipfile

    from tests.tool_shapes import cvat_coco_keypoints, cvat_images_xml

    for member, text in (("annotations.xml", cvat_images_xml(_xml_frames(small, 3))),
                         ("annotations/person_keypoints_default.json", json.dumps(cvat_coco_keypoints(small)))):
        archive = tmp_path / f"task_7_{member.replace('/', '_')}.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr(member, text)
            zf.writestr("images/default/" + small.images[0].file_name.rsplit("/", 1)[-1], b"\x89PNG")  # 'save images' adds them
        result = import_annotations(archive, "cvat", root, tmp_path / archive.stem, split="test")
        assert result.people == len(small.annotations) and result.images == 3
    png = tmp_path / "frame.json"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    empty_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(empty_zip, "w") as zf:
        zf.writestr("labels/frame_000000.txt", "0 0.5 0.5 0.1 0.1")
    runner = CliRunner()
    for path, why in ((png, "not a zip, XML or JSON file"), (empty_zip, "a zip holding neither annotations.xml nor annotations/person_keypoints_<subset>.json")):
        r = runner.invoke(app, ["import", str(path), "--format", "cvat", "--dataset", str(root), "--split-name", "test"])
        assert r.exit_code == 2
        (line,) = r.stderr.splitlines()
        assert line.startswith(f"error: {path}: {why}") and line.endswith(
            "--format cvat reads CVAT for images 1.1 XML (annotations.xml), COCO Keypoints 1.0 JSON "
            "(annotations/person_keypoints_<subset>.json) or the zip CVAT downloads with either inside"
        ), line
