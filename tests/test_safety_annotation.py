"""Issue 21 in the annotation layer: outputs never replace inputs or other things, writers obey the validator,
inputs go through the strict loader, provenance of imports, and review names every record it skips.

Run on real files: the official annotation file (tests/data) and releases written by ``make_release``.
"""

from __future__ import annotations

import copy
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from annotation.cli import app
from exlpose_data.layout import load_manifest, rebuild_manifest
from exlpose_data.provenance import RECORD_FILE, read_record
from exlpose_data.schema import load_document
from tests.conftest import OFFICIAL_LL_ALL, make_release
from tests.tool_shapes import cvat_coco_keypoints, cvat_images_xml

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _messages(r) -> list[str]:
    """stderr without the progress bar's lines."""
    return [line for line in r.stderr.splitlines() if "\u2501" not in line]


def _one_error(r) -> str:
    """The single stderr line of a refused command (exit 2)."""
    assert r.exit_code == 2, r.output
    lines = _messages(r)
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def official() -> dict:
    return json.loads(OFFICIAL_LL_ALL.read_text())


def _subset(official: dict, n: int) -> dict:
    images = official["images"][:n]
    ids = {im["id"] for im in images}
    return copy.deepcopy({**official, "images": images, "annotations": [a for a in official["annotations"] if a["image_id"] in ids]})


@pytest.fixture(scope="module")
def full_size_release(tmp_path_factory, official) -> Path:
    """Two official pairs at their real size (1919 x 1198), so the import's size check against the PNGs holds."""
    root = tmp_path_factory.mktemp("release") / "ds"
    make_release(root, official, 2, size=(1919, 1198))
    return root


@pytest.fixture()
def ds(tmp_path, full_size_release) -> Path:
    root = tmp_path / "ds"
    shutil.copytree(full_size_release, root)
    return root


@pytest.fixture()
def small_release(tmp_path, official) -> tuple[Path, dict]:
    """Four official pairs as 48 x 30 images, with their official labels as the dataset's test WL file."""
    root = tmp_path / "small"
    doc = make_release(root, official, 4)
    (root / "annotations").mkdir()
    (root / "annotations" / "ExLPose_test_WL.json").write_text(json.dumps(doc))
    return root, doc


def _write(path: Path, payload) -> Path:
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


# --- export -------------------------------------------------------------------------------------------------


def test_export_never_replaces_its_input_and_replaces_an_output_only_with_overwrite(tmp_path, official):
    src = _write(tmp_path / "T.json", _subset(official, 3))
    before = src.read_bytes()
    line = _one_error(_invoke("export", src, "--format", "cvat", "--out", src))
    assert line == f"error: --out {src}: is also an input of this command; it would be replaced by the CVAT COCO Keypoints file (choose another --out)"
    assert src.read_bytes() == before
    # The folder holding the input is no output file either.
    line = _one_error(_invoke("export", src, "--format", "label-studio", "--out", tmp_path))
    assert line == f"error: --out {tmp_path}: holds the input {src}"

    out = tmp_path / "T_ls.json"
    assert _invoke("export", src, "--format", "label-studio", "--out", out).exit_code == 0
    first = out.read_bytes()
    line = _one_error(_invoke("export", src, "--format", "label-studio", "--out", out, "--url-prefix", "/x/"))
    assert line == f"error: --out {out}: already holds a predictions file; pass --overwrite to replace it"
    assert out.read_bytes() == first
    r = _invoke("export", src, "--format", "label-studio", "--out", out, "--url-prefix", "/x/", "--overwrite")
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())[0]["data"]["image"].startswith("/x/bright/")
    # Something of another kind is never replaced, --overwrite or not: an annotation file by Label Studio tasks,
    # a model's predictions by a CVAT file.
    other = _write(tmp_path / "ExLPose_test_WL.json", _subset(official, 1))
    kept = other.read_bytes()
    line = _one_error(_invoke("export", src, "--format", "label-studio", "--out", other, "--overwrite"))
    assert line == f"error: --out {other}: already holds an annotation file, not a Label Studio tasks file; refusing to replace it (choose another --out)"
    preds = _write(tmp_path / "preds.json", [{"image_id": 38, "category_id": 1, "keypoints": [0] * 42, "score": 0.9}])
    line = _one_error(_invoke("export", src, "--format", "label-studio", "--out", preds, "--overwrite"))
    assert line == f"error: --out {preds}: already holds a predictions file, not a Label Studio tasks file; refusing to replace it (choose another --out)"
    assert other.read_bytes() == kept and json.loads(preds.read_text())[0]["score"] == 0.9
    assert "--overwrite" in _invoke("export", "--help").stdout


def _keypoints_45(doc: dict) -> None:
    doc["annotations"][0]["keypoints"] = doc["annotations"][0]["keypoints"] + [1.0, 2.0, 2]


def _bbox_1e300(doc: dict) -> None:
    doc["annotations"][0]["bbox"] = [1e300, 10.0, 1e300, 10.0]


def _bbox_1e200_square(doc: dict) -> None:
    doc["annotations"][0]["bbox"] = [0.0, 0.0, 1e200, 1e200]


def _joint_1e307(doc: dict) -> None:
    doc["annotations"][0]["keypoints"][0] = 1e307
    doc["annotations"][0]["keypoints"][2] = 2


def _climbing_path(doc: dict) -> None:
    doc["images"][0]["file_name"] = "../../etc/bright.png"


# How each bad value reached an export before: load_document is strict about JSON values, but the model takes
# any number of keypoints, and numbers that are finite in the file overflow in what export computes from them:
# CVAT's area = w * h (inf), Label Studio's percent x / w * 100 (inf), the authors' GT_bbox int(x + w) (a
# 301-digit integer, or OverflowError on inf).
EXPORT_CASES = {
    "cvat-45-keypoints": ("cvat", _keypoints_45, "annotations[0].keypoints: 45 numbers, expected 42 (14 joints x 3) [keypoints-length] (1 problem)"),
    "cvat-area-overflows": ("cvat", _bbox_1e200_square, "annotations[0].bbox: bbox [0.0, 0.0, 1e+200, 1e+200] extends outside the 1919x1198 image [bbox-outside] (1 problem)"),
    "trans-300-digit-box": ("official-trans", _bbox_1e300, "annotations[0].bbox: bbox [1e+300, 10.0, 1e+300, 10.0] extends outside the 1919x1198 image [bbox-outside] (1 problem)"),
    "ls-percent-overflows": ("label-studio", _joint_1e307, "annotations[0].keypoints[0:3] (left_shoulder): (1e+307, 0) outside the 1919x1198 image [outside-image] (1 problem)"),
    "cvat-unsafe-path": ("cvat", _climbing_path, "images[0].file_name: '../../etc/bright.png': '..' in path [unsafe-path] (1 problem)"),
}


@pytest.mark.parametrize("case", sorted(EXPORT_CASES))
def test_export_writes_nothing_the_validator_would_refuse(tmp_path, official, case):
    fmt, mutate, expected = EXPORT_CASES[case]
    doc = _subset(official, 3)
    mutate(doc)
    src = _write(tmp_path / "T.json", doc)
    out = tmp_path / "out.json"
    line = _one_error(_invoke("export", src, "--format", fmt, "--out", out))
    assert line == f"error: {out}: not written: {src}: {expected}"
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["T.json"]


def test_export_names_the_count_and_points_at_validate(tmp_path, official):
    doc = _subset(official, 3)
    for ann in doc["annotations"][:3]:
        ann["keypoints"] = ann["keypoints"][:39]
    src = _write(tmp_path / "T.json", doc)
    line = _one_error(_invoke("export", src, "--format", "official-trans", "--out", tmp_path / "T_trans.json"))
    assert line.endswith(f"[keypoints-length] (3 problems; 'exlpose validate {src}' lists them)")
    # The official file's own quirks (annotation id 0, num_keypoints 15 and over-counts) are exported as they are.
    r = _invoke("export", OFFICIAL_LL_ALL, "--format", "official-trans", "--out", tmp_path / "trans.json")
    assert r.exit_code == 0, r.output


# --- import: strict inputs --------------------------------------------------------------------------------


def _duplicate_width(text: str) -> str:
    return text.replace('"width": 1919', '"width": 319, "width": 1919', 1)


def _duplicate_keypoints(text: str) -> str:
    return text.replace('"iscrowd": 0', '"keypoints": [0, 0, 0], "iscrowd": 0', 1)


CVAT_JSON_CASES = {
    "duplicate-width": (_duplicate_width, "images[0]: key 'width' given more than once (only the last would be kept)"),
    "duplicate-keypoints": (_duplicate_keypoints, "key 'keypoints' given more than once (only the last would be kept)"),
    "nan": (lambda t: t.replace('"iscrowd": 0', '"iscrowd": NaN', 1), "NaN is not a number JSON allows"),
    "infinity": (lambda t: t.replace('"iscrowd": 0', '"iscrowd": Infinity', 1), "Infinity is not a number JSON allows"),
    "deep": (lambda t: "[" * 100_000 + "]" * 100_000, "nested deeper than 64 levels"),
}


@pytest.mark.parametrize("case", sorted(CVAT_JSON_CASES))
def test_cvat_json_goes_through_the_strict_loader(tmp_path, ds, official, case):
    mutate, expected = CVAT_JSON_CASES[case]
    doc = load_document(_write(tmp_path / "src.json", _subset(official, 2)))
    text = mutate(json.dumps(cvat_coco_keypoints(doc), indent=1))
    export = _write(tmp_path / "person_keypoints_default.json", text)
    line = _one_error(_invoke("import", export, "--format", "cvat", "--dataset", ds, "--split-name", "all"))
    assert line.startswith(f"error: {export}: ") and expected in line, line
    assert not (ds / "annotations").exists()
    # The same file inside the zip CVAT downloads: named by the zip and its member.
    archive = tmp_path / "task_7.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("annotations/person_keypoints_default.json", text)
    line = _one_error(_invoke("import", archive, "--format", "cvat", "--dataset", ds, "--split-name", "all"))
    assert line.startswith(f"error: {archive}: annotations/person_keypoints_default.json: ") and expected in line, line


def test_cvat_xml_with_a_400_digit_width_is_refused_not_written(tmp_path, ds, official):
    doc = load_document(_write(tmp_path / "src.json", _subset(official, 2)))
    frames = [(im.file_name.rsplit("/", 1)[-1], im.width, im.height, [{"keypoints": a.keypoints, "bbox": a.bbox} for a in doc.annotations if a.image_id == im.id])
              for im in doc.images]
    xml = cvat_images_xml(frames)
    name = frames[1][0]
    huge = "1" + "0" * 399
    xml = xml.replace(f'name="{name}" width="1919"', f'name="{name}" width="{huge}"')
    assert huge in xml
    (ds / doc.images[1].file_name).unlink()  # no PNG header to hold the size against
    export = _write(tmp_path / "annotations.xml", xml)
    r = _invoke("import", export, "--format", "cvat", "--dataset", ds, "--split-name", "all")
    assert r.exit_code == 2, r.output
    assert f"{export}: image id='1' ({name}): width: must be a positive integer up to 2^53, got '10000000...(400 characters)'" in r.stderr.splitlines()
    assert not (ds / "annotations").exists()


# --- import: outputs and provenance -----------------------------------------------------------------------


def test_import_never_replaces_its_own_input_nor_writes_into_a_release_or_a_file(tmp_path, ds, official):
    ann = ds / "annotations"
    export = _write(tmp_path / "export.json", cvat_coco_keypoints(load_document(_write(tmp_path / "src.json", _subset(official, 2)))))
    r = _invoke("import", export, "--format", "cvat", "--dataset", ds, "--split-name", "all")
    assert r.exit_code == 0, r.output
    own = ann / "ExLPose_all_WL.json"
    before = own.read_bytes()
    # Re-importing the dataset's own file into its own folder would replace the input it reads.
    line = _one_error(_invoke("import", own, "--format", "crowdpose", "--dataset", ds, "--split-name", "all", "--overwrite"))
    assert line == f"error: --out {ann}: would replace its input {own} with the annotation folder's ExLPose_all_WL.json (choose another --out)"
    assert own.read_bytes() == before
    line = _one_error(_invoke("import", export, "--format", "cvat", "--dataset", ds, "--split-name", "train", "--out", ds))
    assert line == f"error: --out {ds}: already holds a release, not an annotation folder; refusing to replace it (choose another --out)"
    line = _one_error(_invoke("import", export, "--format", "cvat", "--dataset", ds, "--split-name", "train", "--out", own))
    assert line == f"error: --out {own}: is a file (annotation file), expected a folder for the annotation folder"
    assert sorted(p.name for p in ann.iterdir()) == [RECORD_FILE, "ExLPose_all_LL.json", "ExLPose_all_WL.json"]
    helptext = _invoke("import", "--help").stdout
    assert "--overwrite" in helptext and "--force" in helptext


def test_reimport_with_other_settings_is_refused_unless_overwrite(tmp_path, ds, official):
    ann = ds / "annotations"
    rebuild_manifest(ds)
    export = _write(tmp_path / "export.json", cvat_coco_keypoints(load_document(_write(tmp_path / "src.json", _subset(official, 2)))))
    args = ["import", export, "--format", "cvat", "--dataset", ds, "--split-name", "test"]
    assert _invoke(*args).exit_code == 0
    step = read_record(ann)["steps"]["annotate import test"]
    assert step["state"] == "complete" and sorted(step["files"]) == ["ExLPose_test_LL-A.json", "ExLPose_test_WL.json"]
    assert step["settings"] == {"format": "cvat", "split": "test", "box_from_keypoints": False, "allow_empty": False}
    assert set(step["inputs"]) == {"labels", "pairs"}
    # The user removed the files; the folder still knows what made them.
    for name in step["files"]:
        (ann / name).unlink()
    line = _one_error(_invoke(*args, "--box-from-keypoints"))
    assert line == (f"error: --out {ann}: annotate import test was written there with other settings or inputs "
                    "(box_from_keypoints False -> True); pass --overwrite to replace its files, or choose another --out")
    assert sorted(p.name for p in ann.iterdir()) == [RECORD_FILE]
    r = _invoke(*args, "--box-from-keypoints", "--force")  # the old name of --overwrite
    assert r.exit_code == 0, r.output
    assert read_record(ann)["steps"]["annotate import test"]["settings"]["box_from_keypoints"] is True
    # The same settings with another file: the files exist, so the import says what they hold and wants --overwrite.
    other = _subset(official, 1)
    other_export = _write(tmp_path / "other.json", cvat_coco_keypoints(load_document(_write(tmp_path / "src1.json", other))))
    line = _one_error(_invoke("import", other_export, "--format", "cvat", "--dataset", ds, "--split-name", "test", "--box-from-keypoints"))
    assert line.endswith("pass --overwrite to replace them, nothing was written")
    assert set(load_manifest(ds)) >= {"annotations/ExLPose_test_WL.json", "annotations/ExLPose_test_LL-A.json"}


def test_import_output_obeys_the_validator_joints_on_the_edge_are_snapped(tmp_path, ds, official):
    """A joint within the import's 0.001 px tolerance outside the image is written on the edge, not outside it."""
    doc = _subset(official, 2)
    doc["annotations"][0]["keypoints"][0] = -0.0004
    doc["annotations"][0]["keypoints"][2] = 2
    export = _write(tmp_path / "export.json", doc)
    r = _invoke("import", export, "--format", "crowdpose", "--dataset", ds, "--split-name", "all")
    assert r.exit_code == 0, r.output
    written = load_document(ds / "annotations" / "ExLPose_all_WL.json")
    assert written.annotations[0].keypoints[0] == 0.0
    from exlpose_data.validate import validate_file

    assert [p.code for p in validate_file(ds / "annotations" / "ExLPose_all_WL.json")] == []


# --- tasks and review ----------------------------------------------------------------------------------------


def test_tasks_and_review_stay_outside_the_dataset_and_replace_only_their_own_kind(tmp_path, small_release):
    root, _ = small_release
    for command in ("tasks", "review"):
        line = _one_error(_invoke(command, root, "--out", root / command))
        assert line == f"error: --out {root / command}: lies inside the input {root}; write the {'annotation task package' if command == 'tasks' else 'review folder'} elsewhere"
        assert not (root / command).exists()

    tasks = tmp_path / "tasks"
    assert _invoke("tasks", root, "--out", tasks).exit_code == 0
    stale = tasks / "images" / "bright" / "gone.png"
    stale.write_bytes(b"old")
    line = _one_error(_invoke("tasks", root, "--out", tasks))
    assert line == f"error: --out {tasks}: already holds an annotation task package; pass --overwrite to replace it"
    r = _invoke("tasks", root, "--out", tasks, "--overwrite")
    assert r.exit_code == 0, r.output
    assert not stale.exists() and len(list((tasks / "images" / "bright").iterdir())) == 4

    review = tmp_path / "review"
    assert _invoke("review", root, "--out", review, "--thumb-width", "64").exit_code == 0
    line = _one_error(_invoke("review", root, "--out", review, "--thumb-width", "64"))
    assert line == f"error: --out {review}: already holds a review folder; pass --overwrite to replace it"
    assert _invoke("review", root, "--out", review, "--thumb-width", "64", "--overwrite").exit_code == 0

    # A folder of the user's own files is neither a task package nor a review: refused even with --overwrite.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for command in ("tasks", "review"):
        line = _one_error(_invoke(command, root, "--out", mine, "--overwrite"))
        assert line.startswith(f"error: --out {mine}: already holds a folder, not ")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert "--overwrite" in _invoke("tasks", "--help").stdout and "--overwrite" in _invoke("review", "--help").stdout


def test_review_names_every_record_it_skips(tmp_path, small_release):
    root, doc = small_release
    doc["images"][1]["file_name"] = "../.."
    doc["images"][2]["file_name"] = "/elsewhere/holiday.png"
    ann = _write(root / "annotations" / "ExLPose_test_WL.json", doc)
    people = {im["id"]: sum(a["image_id"] == im["id"] for a in doc["annotations"]) for im in doc["images"]}
    out = tmp_path / "review"
    r = _invoke("review", root, "--out", out, "--thumb-width", "64")
    assert r.exit_code == 0, r.output
    id1, id2 = doc["images"][1]["id"], doc["images"][2]["id"]
    assert _messages(r) == [
        f"warning: {ann}: images[1] (id {id1}, {people[id1]} people): file_name '../..': '..' in path, and no image of the dataset has its file name; skipped",
        f"warning: {ann}: images[2] (id {id2}, {people[id2]} people): file_name '/elsewhere/holiday.png': absolute path, and no image of the dataset has its file name; skipped",
        "warning: 2 image record(s) skipped (listed on the review page too)",
    ]
    assert r.stdout.startswith("2 pairs on 1 sheet(s)")
    page = (out / "index.html").read_text()
    assert "2 image record(s) skipped, not shown below:" in page and "file_name &#x27;../..&#x27;" in page
