import copy
import json

import pytest
from typer.testing import CliRunner

from exlpose.cli import app as umbrella
from exlpose_data.validate import fix_document, validate_document, validate_file
from tests.conftest import OFFICIAL_LL_ALL

runner = CliRunner()


def _small(official: dict) -> dict:
    imgs = official["images"][:2]
    ids = {i["id"] for i in imgs}
    anns = [a for a in official["annotations"] if a["image_id"] in ids][:4]
    doc = {"info": official["info"], "categories": official["categories"], "images": copy.deepcopy(imgs), "annotations": copy.deepcopy(anns)}
    for n, a in enumerate(doc["annotations"], start=1):
        a["id"] = n
        a["num_keypoints"] = sum(1 for v in a["keypoints"][2::3] if v > 0)
    return doc


def test_official_file_problems_are_exactly_the_known_quirks():
    problems = validate_file(OFFICIAL_LL_ALL)
    codes = sorted({p.code for p in problems})
    assert codes == ["id-zero", "num-keypoints", "num-keypoints-range"]
    assert sum(p.code == "num-keypoints-range" for p in problems) == 5  # num_keypoints 15 > 14
    assert [p.location for p in problems if p.code == "id-zero"] == ["annotations[0].id"]


def test_clean_document_has_no_problem(official_ll_all):
    assert validate_document(_small(official_ll_all)) == []


def _mutations():
    def kp_len(d): d["annotations"][0]["keypoints"] = d["annotations"][0]["keypoints"][:39]
    def kp_type(d): d["annotations"][0]["keypoints"][4] = "x"
    def vis(d): d["annotations"][0]["keypoints"][5] = 3
    def outside(d):
        k = d["annotations"][0]["keypoints"]
        j = next(i for i in range(14) if k[3 * i + 2] > 0)
        k[3 * j] = d["images"][0]["width"] + 50
    def bbox_empty(d): d["annotations"][0]["bbox"][2] = 0
    def bbox_neg(d): d["annotations"][0]["bbox"][3] = -4
    def bbox_shape(d): d["annotations"][0]["bbox"] = [1, 2, 3]
    def dup(d): d["annotations"][1]["id"] = d["annotations"][0]["id"]
    def zero(d): d["annotations"][0]["id"] = 0
    def missing_img(d): d["annotations"][0]["image_id"] = 999999
    def nk(d): d["annotations"][0]["num_keypoints"] += 1
    def cat(d): d["annotations"][0]["category_id"] = 7
    def abs_path(d): d["images"][0]["file_name"] = "/etc/passwd"
    def dotdot(d): d["images"][0]["file_name"] = "bright/../../secret.png"
    def drive(d): d["images"][0]["file_name"] = "C:/data/x.png"
    def dup_img(d): d["images"][1]["id"] = d["images"][0]["id"]
    return {
        "keypoints-length": kp_len, "keypoints-type": kp_type, "visibility": vis, "outside-image": outside,
        "bbox-empty": bbox_empty, "bbox-empty ": bbox_neg, "bbox-shape": bbox_shape, "duplicate-id": dup, "id-zero": zero,
        "missing-image": missing_img, "num-keypoints": nk, "unknown-category": cat, "unsafe-path": abs_path,
        "unsafe-path ": dotdot, "unsafe-path  ": drive, "duplicate-id ": dup_img,
    }


@pytest.mark.parametrize("code", list(_mutations()))
def test_each_problem_class_is_found_with_its_location(official_ll_all, code, tmp_path):
    doc = _small(official_ll_all)
    _mutations()[code](doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    problems = validate_file(path)
    assert code.strip() in {p.code for p in problems}, problems
    p = next(p for p in problems if p.code == code.strip())
    assert p.location.startswith(("annotations[", "images["))
    res = runner.invoke(umbrella, ["validate", str(path)])
    assert res.exit_code == 1
    assert p.location in res.output


def test_files_missing_on_disk(official_ll_all, tmp_path):
    doc = _small(official_ll_all)
    (tmp_path / "bright").mkdir()
    (tmp_path / doc["images"][0]["file_name"]).write_bytes(b"png")
    problems = validate_document(doc, images_root=tmp_path)
    assert [p.location for p in problems if p.code == "file-missing"] == ["images[1].file_name"]


def test_unusable_inputs_exit_2(tmp_path):
    (tmp_path / "a.json").write_text("[1, 2]")
    (tmp_path / "b.json").write_text('{"images": []}')
    (tmp_path / "c.json").write_text("{oops")
    for name, needle in (("a.json", "not a JSON object"), ("b.json", "'annotations' is missing"), ("c.json", "not valid JSON"), ("nope.json", "no such file")):
        res = runner.invoke(umbrella, ["validate", str(tmp_path / name)])
        assert res.exit_code == 2, (name, res.output)
        assert name in res.output and needle in res.output


def test_fix_writes_a_corrected_copy_and_lists_changes(tmp_path):
    out = tmp_path / "fixed.json"
    before = OFFICIAL_LL_ALL.read_bytes()
    res = runner.invoke(umbrella, ["validate", str(OFFICIAL_LL_ALL), "--fix", str(out)])
    assert res.exit_code == 1  # the input still has its problems
    assert OFFICIAL_LL_ALL.read_bytes() == before
    assert "renumbered" in res.output and "0 problem(s) left" in res.output
    fixed = json.loads(out.read_text())
    assert validate_document(fixed) == []
    assert [a["id"] for a in fixed["annotations"]] == list(range(1, 2811))
    assert all(a["area"] == round(a["bbox"][2] * a["bbox"][3] * 0.53, 4) for a in fixed["annotations"])
    res = runner.invoke(umbrella, ["validate", str(out)])
    assert res.exit_code == 0


def test_fix_clamps_joints_a_pixel_outside_and_drops_orphans(official_ll_all):
    doc = _small(official_ll_all)
    k = doc["annotations"][0]["keypoints"]
    j = next(i for i in range(14) if k[3 * i + 2] > 0)
    k[3 * j] = doc["images"][0]["width"] + 0.5
    doc["annotations"][1]["image_id"] = 424242
    fixed, changes = fix_document(doc)
    assert fixed["annotations"][0]["keypoints"][3 * j] == doc["images"][0]["width"]
    assert len(fixed["annotations"]) == 3
    assert any("dropped" in c for c in changes) and any("clamped" in c for c in changes)


def test_fix_refuses_to_edit_in_place(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(OFFICIAL_LL_ALL.read_bytes())
    res = runner.invoke(umbrella, ["validate", str(path), "--fix", str(path)])
    assert res.exit_code == 2 and "in place" in res.output


def test_joints_on_the_far_edge_are_accepted_and_noted():
    from exlpose_data.validate import edge_joints

    doc = json.loads(OFFICIAL_LL_ALL.read_text())
    edges = edge_joints(doc)
    assert len(edges) == 8
    assert not any(p.code == "outside-image" for p in validate_document(doc))
    res = runner.invoke(umbrella, ["validate", str(OFFICIAL_LL_ALL)])
    assert "note: 8 labelled joint(s) lie exactly on x = width or y = height" in res.output


def test_strict_types_and_category_names_are_flagged_with_their_location(official_ll_all):
    official_ll_all = copy.deepcopy(official_ll_all)  # the categories are edited below; the fixture is shared
    doc = _small(official_ll_all)
    doc["categories"][0]["keypoints"] = doc["categories"][0]["keypoints"][:13]
    doc["images"][1]["crowdIndex"] = "0.25"
    doc["annotations"][1]["iscrowd"] = False
    got = {(p.location, p.code) for p in validate_document(doc)}
    assert got == {("categories[0].keypoints", "category-keypoints"), ("images[1].crowdIndex", "field-type"), ("annotations[1].iscrowd", "field-type")}
    doc = _small(official_ll_all)
    doc["categories"][0]["keypoints"][12:14] = ["neck", "head"]  # 14 names, two swapped: positions would swap
    (p,) = validate_document(doc)
    assert (p.location, p.code) == ("categories[0].keypoints", "category-keypoints") and "joint 12 is 'neck'" in p.message
