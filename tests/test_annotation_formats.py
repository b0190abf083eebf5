"""Annotation tool formats: aliases, CVAT/Label Studio/COCO readers and writers, round trips of the official labels."""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from annotation.aliases import joint_index
from annotation.formats.coco import coco_category, parse_coco, read_crowdpose
from annotation.formats.cvat import cvat_labels, read_cvat, to_cvat_dict
from annotation.formats.label_studio import image_name_from_url, label_studio_config, parse_label_studio, to_label_studio_tasks
from annotation.importer import import_annotations
from annotation.problems import ProblemLog
from exlpose_data.keypoints import crowdpose14
from exlpose_data.layout import write_pairs
from exlpose_data.naming import parse_name
from exlpose_data.schema import load_document

OFFICIAL = Path(__file__).parent / "data" / "ExLPose_test_LL-All.json"


@pytest.fixture(scope="module")
def official():
    return load_document(OFFICIAL)


@pytest.fixture(scope="module")
def official_root(tmp_path_factory, official):
    """A dataset root holding only the pair list of the 491 official test pairs."""
    root = tmp_path_factory.mktemp("official_root")
    write_pairs(root / "brightPath2darkPath.txt", [(im.file_name, parse_name(im.file_name).twin().relpath) for im in official.images])
    return root


def test_aliases_cover_every_joint_and_common_spellings():
    spec = crowdpose14()
    assert [joint_index(n) for n in spec.keypoints] == list(range(14))
    assert joint_index("head_top") == joint_index("top_head") == joint_index("Head") == 12
    assert joint_index("Left Shoulder") == joint_index("l_shoulder") == joint_index("shoulder_left") == 0
    assert joint_index("R-Ankle") == 11
    assert joint_index("upper_neck") == 13
    assert joint_index("nose") is None


def test_cvat_round_trip_of_official_labels_is_exact(tmp_path, official, official_root):
    export = tmp_path / "person_keypoints_default.json"
    export.write_text(json.dumps(to_cvat_dict(official)))
    result = import_annotations(export, "cvat", official_root, tmp_path / "out", split="test")
    assert (result.images, result.people) == (491, 2810)
    original = json.loads(OFFICIAL.read_text())
    wl = json.loads(result.wl_path.read_text())
    ll = json.loads(result.ll_path.read_text())
    assert len(original["annotations"]) == len(wl["annotations"])
    # Same people on the same images, keypoints identical number for number.
    got = defaultdict(list)
    want = defaultdict(list)
    for a in wl["annotations"]:
        got[a["image_id"]].append(a["keypoints"])
    for a in original["annotations"]:
        want[a["image_id"]].append(a["keypoints"])
    assert got == want
    assert [im["id"] for im in wl["images"]] == [im["id"] for im in original["images"]]
    # ids from 1, num_keypoints from visibility, area = w*h*0.53.
    assert [a["id"] for a in wl["annotations"]] == list(range(1, 2811))
    a = wl["annotations"][0]
    assert a["num_keypoints"] == sum(1 for v in a["keypoints"][2::3] if v > 0) == 12
    assert a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3] * 0.53, abs=1e-3)
    # LL names the dark twin of the same pair, same ids and labels.
    assert ll["images"][0]["file_name"] == parse_name(wl["images"][0]["file_name"]).twin().relpath
    assert ll["images"][0]["file_name"].startswith("dark/")
    assert ll["annotations"] == wl["annotations"]
    assert any(im["crowdIndex"] > 0 for im in wl["images"])


def test_label_studio_round_trip_within_a_hundredth_of_a_pixel(tmp_path, official, official_root):
    export = tmp_path / "project-1-at-2026.json"
    export.write_text(json.dumps(to_label_studio_tasks(official)))
    result = import_annotations(export, "label-studio", official_root, tmp_path / "out", split="test")
    assert result.wl_path.name == "ExLPose_test_WL.json" and result.ll_path.name == "ExLPose_test_LL-A.json"
    original = json.loads(OFFICIAL.read_text())
    wl = json.loads(result.wl_path.read_text())
    want, got = defaultdict(list), defaultdict(list)
    for a in original["annotations"]:
        want[a["image_id"]].append(np.asarray(a["keypoints"]).reshape(14, 3))
    for a in wl["annotations"]:
        got[a["image_id"]].append(np.asarray(a["keypoints"]).reshape(14, 3))
    assert sorted(got) == sorted(want)
    worst = 0.0
    for image_id, people in want.items():
        assert len(got[image_id]) == len(people)
        for w, g in zip(people, got[image_id]):
            assert np.array_equal(w[:, 2], g[:, 2])
            worst = max(worst, float(np.abs(w[:, :2] - g[:, :2]).max()))
    assert worst <= 0.01


def test_label_studio_percentages_and_relations_as_label_studio_writes_them(official):
    tasks = to_label_studio_tasks(official)
    im = official.images[0]
    result = tasks[0]["annotations"][0]["result"]
    box = next(r for r in result if r["type"] == "rectanglelabels")
    first = next(a for a in official.annotations if a.image_id == im.id)
    assert box["original_width"] == im.width and box["original_height"] == im.height
    assert box["value"]["x"] == pytest.approx(first.bbox[0] / im.width * 100)
    assert box["value"]["rectanglelabels"] == ["person"]
    joints = [r for r in result if r["type"] == "keypointlabels"]
    relations = [r for r in result if r["type"] == "relation"]
    assert len(joints) == len(relations) > 0
    assert {r["to_id"] for r in relations} == {j["id"] for j in joints}


def test_label_studio_groups_by_containment_when_relations_are_missing():
    w, h = 200, 100

    def kp(rid, name, x, y):
        return {"id": rid, "type": "keypointlabels", "original_width": w, "original_height": h, "value": {"x": x / w * 100, "y": y / h * 100, "keypointlabels": [name]}}

    def box(rid, x, y, bw, bh):
        return {"id": rid, "type": "rectanglelabels", "original_width": w, "original_height": h,
                "value": {"x": x / w * 100, "y": y / h * 100, "width": bw / w * 100, "height": bh / h * 100, "rectanglelabels": ["person"]}}

    result = [box("A", 10, 10, 50, 80), box("B", 120, 10, 50, 80), kp("a1", "head", 30, 15), kp("b1", "head_top", 140, 12), kp("b2", "neck", 141, 25),
              {"id": "b2", "type": "choices", "value": {"choices": ["occluded"]}}]
    log = ProblemLog("ls.json")
    labels = parse_label_studio([{"id": 7, "data": {"image": "/data/upload/3/0a1b2c3d-" + "imgs_0212_vid000001_exp100_bright_000001__gain_1.00_exposure_5000.png"}, "annotations": [{"id": 1, "result": result}]}], log)
    assert not log
    (image,) = labels.images
    assert image.file_name == "/data/upload/3/imgs_0212_vid000001_exp100_bright_000001__gain_1.00_exposure_5000.png"
    assert (image.width, image.height) == (w, h)
    a, b = image.people
    assert a.bbox == pytest.approx([10, 10, 50, 80]) and b.bbox == pytest.approx([120, 10, 50, 80])
    assert a.keypoints[12].tolist() == pytest.approx([30, 15, 2])
    assert b.keypoints[12].tolist() == pytest.approx([140, 12, 2])
    assert b.keypoints[13].tolist() == pytest.approx([141, 25, 1])  # occluded by per-region choice
    assert a.keypoints[13].tolist() == [0, 0, 0]  # unlabelled: v=0 at (0, 0)


def test_image_references_of_label_studio():
    name = "imgs_0212_vid000001_exp100_bright_000001__gain_1.00_exposure_5000.png"
    assert image_name_from_url(f"/data/local-files/?d=images/bright/{name}") == f"images/bright/{name}"
    assert image_name_from_url(f"/data/upload/12/deadbeef-{name}") == f"/data/upload/12/{name}"
    assert image_name_from_url(f"s3://bucket/ExLPose/bright/{name}") == f"/ExLPose/bright/{name}"
    assert image_name_from_url(f"http://host/x/{name.replace('_', '%5F')}") == f"/x/{name}"


def test_cvat_visibility_names_in_any_order_and_grouped_box(official):
    doc = to_cvat_dict(official)
    spec = crowdpose14()
    # CVAT exports points in its skeleton's order with its own names: shuffle both.
    order = list(reversed(range(14)))
    aliases = {"head": "head_top", "left_shoulder": "Left Shoulder"}
    doc["categories"] = [
        {"id": 1, "name": "person", "supercategory": "", "keypoints": [aliases.get(spec.keypoints[i], spec.keypoints[i]) for i in order], "skeleton": []},
        {"id": 2, "name": "person_box", "supercategory": "", "keypoints": [], "skeleton": []},
    ]
    ann = doc["annotations"][0]
    kp = np.asarray(ann["keypoints"]).reshape(14, 3)
    kp[3, 2] = 1  # occluded
    kp[0] = (5.0, 6.0, 0)  # absent, but CVAT keeps the old coordinates
    ann["keypoints"] = kp[order].ravel().tolist()
    ann["category_id"] = 2  # a grouped rectangle's label becomes the category
    for a in doc["annotations"][1:]:
        a["keypoints"] = np.asarray(a["keypoints"]).reshape(14, 3)[order].ravel().tolist()
    log = ProblemLog("cvat.json")
    labels = parse_coco(doc, log, names_required=True, single_keypoint_category=True)
    assert not log
    person = labels.images[0].people[0]
    assert person.keypoints[3, 2] == 1
    assert person.keypoints[0].tolist() == [0, 0, 0]
    np.testing.assert_array_equal(person.keypoints[4:], np.asarray(official.annotations[0].keypoints).reshape(14, 3)[4:])
    assert person.bbox == official.annotations[0].bbox


def test_cvat_box_is_read_by_what_the_file_says_not_by_its_geometry(tmp_path, official):
    """As CVAT exports it: an ungrouped skeleton has its own (keypoint) category and its points' extent as bbox,
    which is no person box; a grouped one has the rectangle's category, and its box counts even when it equals
    the extent. CVAT keeps only its own attributes (``occluded``), never our ``bbox_source``."""
    doc = to_cvat_dict(official)
    doc["categories"].append({"id": 2, "name": "person_box", "supercategory": "", "keypoints": [], "skeleton": []})
    extents = []
    for ann in doc["annotations"][:3]:
        kp = np.asarray(ann["keypoints"]).reshape(14, 3)
        pts = kp[kp[:, 2] > 0, :2]
        ann["bbox"] = [*pts.min(0), *(pts.max(0) - pts.min(0))]
        ann["attributes"] = {"occluded": False}
        extents.append(ann["bbox"])
    doc["annotations"][1]["category_id"] = 2  # grouped with a person_box rectangle equal to the extent
    doc["annotations"][2]["attributes"]["bbox_source"] = "drawn"  # our export's mark
    p = tmp_path / "cvat.json"
    p.write_text(json.dumps(doc))
    log = ProblemLog(str(p))
    people = [person for image in read_cvat(p, log).images for person in image.people]
    assert not log
    assert people[0].bbox is None
    assert people[1].bbox == extents[1] and people[2].bbox == extents[2]
    assert people[3].bbox == official.annotations[3].bbox  # an unmarked box that is no extent is kept


def test_crowdpose_file_without_joint_names_reads_in_crowdpose_order(tmp_path, official):
    raw = json.loads(OFFICIAL.read_text())
    raw["categories"] = [{"id": 1, "name": "person"}]
    p = tmp_path / "crowdpose.json"
    p.write_text(json.dumps(raw))
    log = ProblemLog(str(p))
    labels = read_crowdpose(p, log)
    assert not log and labels.num_people == 2810
    np.testing.assert_array_equal(labels.images[0].people[0].keypoints.ravel(), official.annotations[0].keypoints)


def test_label_configs_name_the_fourteen_joints():
    import xml.etree.ElementTree as ET

    spec = crowdpose14()
    skeleton, box = cvat_labels()
    assert skeleton["type"] == "skeleton" and box["type"] == "rectangle"
    assert [s["name"] for s in skeleton["sublabels"]] == list(spec.keypoints)
    svg = ET.fromstring(f"<svg>{skeleton['svg']}</svg>")
    edges = [(int(e.attrib["data-node-from"]), int(e.attrib["data-node-to"])) for e in svg.iter("line")]
    assert edges == [(a + 1, b + 1) for a, b in spec.skeleton]  # CVAT nodes are 1-based
    assert [c.attrib["data-label-name"] for c in svg.iter("circle")] == list(spec.keypoints)
    view = ET.fromstring(label_studio_config())
    kpl = view.find("KeyPointLabels")
    assert [lab.attrib["value"] for lab in kpl.findall("Label")] == list(spec.keypoints)
    assert view.find("RectangleLabels").find("Label").attrib["value"] == "person"
    assert view.find("Relations") is not None
    assert coco_category()["skeleton"][0] == [13, 14]  # COCO skeletons are 1-based: head-neck


def test_problems_in_a_cvat_file_are_all_listed_with_their_place(official):
    doc = copy.deepcopy(to_cvat_dict(official))
    doc["annotations"][2]["keypoints"][5] = 3
    doc["annotations"][4]["image_id"] = 99999
    log = ProblemLog("x.json")
    parse_coco(doc, log, names_required=True)
    assert [str(p) for p in log.problems] == [
        "x.json: annotations[2] (id 2): keypoints[5]: visibility must be 0, 1 or 2, got 3",
        "x.json: annotations[4] (id 4): image_id: 99999 is not the id of an image in the file",
    ]


def test_official_file_imports_as_crowdpose_with_its_quirks_normalised(tmp_path, official_root):
    raw = json.loads(OFFICIAL.read_text())
    assert raw["annotations"][0]["id"] == 0
    assert sum(1 for a in raw["annotations"] if a["num_keypoints"] != sum(1 for v in a["keypoints"][2::3] if v > 0)) == 38
    result = import_annotations(OFFICIAL, "crowdpose", official_root, tmp_path / "out", split="test")
    wl = json.loads(result.wl_path.read_text())
    assert wl["annotations"][0]["id"] == 1
    assert all(a["num_keypoints"] == sum(1 for v in a["keypoints"][2::3] if v > 0) <= 14 for a in wl["annotations"])
    assert all(a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3] * 0.53, abs=1e-3) for a in wl["annotations"])


def test_import_refuses_a_string_keypoint_and_thirteen_joint_names_with_their_place(tmp_path, official):
    raw = json.loads(OFFICIAL.read_text())
    raw["annotations"][3]["keypoints"][3] = "12.5"
    raw["categories"][0]["keypoints"] = raw["categories"][0]["keypoints"][:13]
    path = tmp_path / "in.json"
    path.write_text(json.dumps(raw))
    log = ProblemLog(str(path))
    read_crowdpose(path, log)
    assert [str(p) for p in log.problems] == [f"{path}: categories[0] (id 1): keypoints: no point for neck (all 14 CrowdPose joints must be in the skeleton)"]
    raw["categories"][0]["keypoints"] = crowdpose14().keypoints
    path.write_text(json.dumps(raw))
    log = ProblemLog(str(path))
    read_crowdpose(path, log)
    assert [str(p) for p in log.problems] == [f"{path}: annotations[3] (id 3): keypoints[3:6]: not numbers: ['12.5', {raw['annotations'][3]['keypoints'][4]!r}, {raw['annotations'][3]['keypoints'][5]!r}]"]
