"""Label Studio exports written by a real Label Studio 1.23.2 server (tests/data/label-studio/README.md says how).

The project labelled 8 of 10 pairs of a simulated release from its ground truth (joints linked by parentID,
relation, both, or, for 3 joints, by nothing), skipped task 9 and left task 10 untouched, then exported every
format. These tests read those files as Label Studio wrote them; no server runs here.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from annotation.cli import app
from annotation.formats.label_studio import label_studio_config, parse_label_studio, read_label_studio
from annotation.importer import import_annotations
from annotation.problems import ProblemLog
from annotation.review import collect_items
from exlpose_data.errors import InputError
from exlpose_data.keypoints import crowdpose14
from exlpose_data.release import open_release

DATA = Path(__file__).parent / "data" / "label-studio"
OURS = DATA / "ours"
SKIPPED = "bright/imgs_0101_sim_vid000002_exp400_bright_000000__gain_21.64_exposure_1250.png"
UNTOUCHED = "bright/imgs_0101_sim_vid000002_exp800_bright_000000__gain_27.66_exposure_625.png"
# Task 8: the first person's joints that lie in its own box alone carry neither parentID nor relation.
GEOMETRY_TASK_IMAGE = "bright/imgs_0101_sim_vid000002_exp200_bright_000000__gain_15.62_exposure_2500.png"


def _truth() -> dict[str, tuple[dict, list[dict]]]:
    out = {}
    for name in ("ExLPose_train_WL.json", "ExLPose_test_WL.json"):
        doc = json.loads((DATA / "release" / name).read_text())
        for im in doc["images"]:
            out[im["file_name"]] = (im, [a for a in doc["annotations"] if a["image_id"] == im["id"]])
    return out


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    """The labelled release's pair list with blank images of the labelled sizes (labels come from the exports)."""
    root = tmp_path / "release"
    pairs = (DATA / "release" / "brightPath2darkPath.txt").read_text()
    sizes = {name: (im["width"], im["height"]) for name, (im, _) in _truth().items()}
    for line in pairs.splitlines():
        for name in line.split():
            w, h = sizes[line.split()[0]]
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / name), np.zeros((h, w, 3), np.uint8))
    (root / "brightPath2darkPath.txt").write_text(pairs)
    return root


def _import(path: Path, dataset: Path, **kw):
    return import_annotations(path, "label-studio", dataset, dataset / "annotations", split="all", **kw)


def test_the_default_json_export_names_skipped_and_untouched_tasks_and_the_option_that_accepts_them(dataset):
    with pytest.raises(InputError) as err:
        _import(OURS / "JSON.json", dataset)
    msg = str(err.value)
    assert f"2 of 10 tasks have no usable annotation (task 9 (images/{SKIPPED}): skipped, task 10 (images/{UNTOUCHED}): not labelled)" in msg
    assert "--skip-unlabelled" in msg and "not labelled yet" not in msg
    assert not (dataset / "annotations").exists()


def test_with_skip_unlabelled_every_joint_comes_back_exact_and_the_unlabelled_pairs_are_named(dataset):
    result = _import(OURS / "JSON.json", dataset, skip_unlabelled=True)
    assert (result.images, result.people) == (8, 33)
    assert [(u.place, u.why) for u in result.unlabelled] == [("task 9", "skipped"), ("task 10", "not labelled")]
    assert result.pairs_without_labels == (SKIPPED, UNTOUCHED) and result.total_pairs == 10
    assert result.joints_by_geometry == 3 and result.warnings == ()
    written = json.loads(result.wl_path.read_text())
    truth = _truth()
    assert {im["file_name"] for im in written["images"]} == set(truth) - {SKIPPED, UNTOUCHED}
    joints = {1: 0, 2: 0}
    for im in written["images"]:
        people = [a for a in written["annotations"] if a["image_id"] == im["id"]]
        expected = truth[im["file_name"]][1]
        assert len(people) == len(expected)
        for got, want in zip(people, expected):  # Label Studio keeps the order the regions were created in
            assert got["bbox"] == pytest.approx(want["bbox"], abs=0.01)
            g, w = np.reshape(got["keypoints"], (14, 3)), np.reshape(want["keypoints"], (14, 3))
            assert g[:, 2].tolist() == w[:, 2].tolist()
            assert g[:, :2] == pytest.approx(w[:, :2], abs=0.01)
            for v in (1, 2):
                joints[v] += int((g[:, 2] == v).sum())
    assert joints == {1: 80, 2: 322}
    marked = [(im["file_name"], a["joints_by_geometry"]) for a in written["annotations"] if "joints_by_geometry" in a
              for im in written["images"] if im["id"] == a["image_id"]]
    assert len(marked) == 1 and marked[0][0] == GEOMETRY_TASK_IMAGE and len(marked[0][1]) == 3


def test_geometry_owned_joints_are_flagged_on_the_review_page(dataset):
    _import(OURS / "JSON.json", dataset, skip_unlabelled=True)
    items = collect_items(open_release(dataset), [dataset / "annotations" / "ExLPose_all_WL.json"])
    flags = [f for it in items for f in it.flags if f.kind == "joint_owner_by_geometry"]
    assert len(flags) == 1 and flags[0].file_name == GEOMETRY_TASK_IMAGE
    assert flags[0].detail.startswith("given to this person by geometry only (no parentID or relation): ")


def test_the_cli_prints_left_out_tasks_pairs_without_labels_and_geometry_count(dataset):
    r = CliRunner().invoke(app, ["import", str(OURS / "JSON.json"), "--format", "label-studio", "--dataset", str(dataset),
                                 "--split-name", "all", "--skip-unlabelled"])
    assert r.exit_code == 0, r.output
    assert f"note: 2 task(s) without a usable annotation left out: task 9 (images/{SKIPPED}): skipped, task 10 (images/{UNTOUCHED}): not labelled" in r.stderr
    assert f"2 of 10 pairs of the dataset have no labels in this import: {SKIPPED}, {UNTOUCHED}" in r.stdout
    assert "note: 3 joint(s) given to a person only because they lie in its box alone" in r.stderr


def test_a_stray_joint_inside_one_other_box_is_not_given_away_silently():
    tasks = json.loads((OURS / "JSON.json").read_text())
    task = next(t for t in tasks if t["id"] == 7)  # joints linked by parentID and relation
    result = task["annotations"][0]["result"]
    boxes = {r["id"]: r["value"] for r in result if r["type"] == "rectanglelabels"}
    own, other = "t7p0box", "t7p1box"

    def inside(b, x, y):
        return b["x"] <= x <= b["x"] + b["width"] and b["y"] <= y <= b["y"] + b["height"]

    # person 0's left wrist, unlinked and moved outside its own box into person 1's box alone (person 1's own left
    # wrist removed, so nothing else stops the hand-over)
    b = boxes[other]
    spot = next((b["x"] + b["width"] * fx / 10, b["y"] + b["height"] * fy / 10) for fx in range(1, 10) for fy in range(1, 10)
                if [k for k, box in boxes.items() if inside(box, b["x"] + b["width"] * fx / 10, b["y"] + b["height"] * fy / 10)] == [other])
    wrist = next(r for r in result if r.get("id") == "t7p0j4")
    del wrist["parentID"]
    wrist["value"]["x"], wrist["value"]["y"] = spot
    result[:] = [r for r in result if r.get("id") != "t7p1j4" and not (r["type"] == "relation" and {r["from_id"], r["to_id"]} & {"t7p0j4", "t7p1j4"})]
    log = ProblemLog("JSON.json")
    (image,) = parse_label_studio([task], log).images
    assert not log.problems
    person = {p.place: p for p in image.people}
    assert person[f"task 7, result {other!r}"].joints_by_geometry == (4,)  # given to person 1, but marked as guessed
    assert person[f"task 7, result {own!r}"].keypoints[4].tolist() == [0, 0, 0]
    assert all(not p.joints_by_geometry for k, p in person.items() if other not in k)


def test_a_config_without_the_occluded_choice_warns_once_with_the_count(dataset):
    path = DATA / "no-occlusion" / "JSON.json"
    labels = read_label_studio(path, ProblemLog(str(path)))
    assert len(labels.warnings) == 1
    assert "none of its 60 joints is marked occluded, so all 60 read as visible (v = 2)" in labels.warnings[0]
    result = _import(path, dataset)
    assert result.warnings == tuple(labels.warnings)
    assert not read_label_studio(OURS / "JSON.json", ProblemLog("x")).warnings


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("JSON_MIN.json", "a Label Studio JSON-MIN export: it keeps no region ids, parentIDs or relations"),
        ("CSV.csv", "a Label Studio CSV export: it keeps no region ids, parentIDs or relations"),
        ("TSV.csv", "a Label Studio TSV export: it keeps no region ids, parentIDs or relations"),
        ("COCO.zip", "a zip: Label Studio's COCO, YOLO and VOC exports"),
        ("YOLO.zip", "a zip: Label Studio's COCO, YOLO and VOC exports"),
    ],
)
def test_other_export_formats_are_refused_in_one_line_saying_what_to_export(dataset, name, expected):
    r = CliRunner().invoke(app, ["import", str(OURS / name), "--format", "label-studio", "--dataset", str(dataset), "--split-name", "all"])
    assert r.exit_code == 2
    lines = [line for line in r.stderr.splitlines() if line]
    assert len(lines) == 1 and expected in lines[0] and lines[0].endswith("export the project as JSON (Export > JSON) and import that file")
    assert not (dataset / "annotations").exists()


def test_label_studio_coco_export_is_refused_as_coco_too(tmp_path, dataset):
    import zipfile

    with zipfile.ZipFile(OURS / "COCO.zip") as z:
        coco = json.loads(z.read("result.json"))
    # what it holds: every joint of an image in one annotation, the people's boxes apart
    per_image = [a for a in coco["annotations"] if a["image_id"] == 0]
    assert sum("keypoints" in a for a in per_image) == 1 and sum("keypoints" not in a for a in per_image) == 3
    path = tmp_path / "result.json"
    path.write_text(json.dumps(coco))
    for fmt in ("coco", "label-studio"):
        with pytest.raises(InputError, match="COCO export: it puts all joints of an image into one annotation|a COCO file"):
            import_annotations(path, fmt, dataset, dataset / "annotations", split="all")


def test_our_config_gives_label_studio_the_keypoint_order_its_exporters_need():
    config = label_studio_config()
    for j, name in enumerate(crowdpose14().keypoints):
        assert f'<Label value="{name}" model_index="{j}"' in config
    # the YOLO export Label Studio wrote with it lists the joints in CrowdPose order
    import zipfile

    with zipfile.ZipFile(OURS / "YOLO.zip") as z:
        notes = json.loads(z.read("notes.json"))
    assert notes["categories"][0]["keypoints"] == list(crowdpose14().keypoints)

