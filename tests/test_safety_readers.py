"""Readers name what they skip, check image sizes, refuse ambiguous pair lists and read every file strictly.

Issue 21: `exlpose stats` counted an unreadable image and skipped records outside the image root without a word,
`validate --images` called a half-size image clean, a pair list giving one image two twins made extra pairs, and
duplicate JSON keys passed (and `validate --fix` then "fixed" what they hid).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from exlpose.cli import app as umbrella
from exlpose_data.errors import InputError
from exlpose_data.evaluation.keypoint_eval import evaluate_keypoints
from exlpose_data.layout import read_pairs, write_pairs
from exlpose_data.release import open_release
from exlpose_data.schema import AnnotationDocument
from exlpose_data.split import write_release_annotations
from tests.conftest import OFFICIAL_LL_ALL, make_release

runner = CliRunner()
SIZE = (48, 30)  # make_release's image size


def _release(root: Path, official: dict, n: int = 8) -> dict:
    """A release whose annotation records give the pixel size of its images; returns the bright document."""
    raw = make_release(root, official, n, size=SIZE)
    raw["images"] = [{**img, "width": SIZE[0], "height": SIZE[1]} for img in raw["images"]]
    write_release_annotations(root, AnnotationDocument.model_validate(raw), open_release(root).bright_to_dark(), test_fraction=0.5)
    return raw


def _warnings(res) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("warning: skipped ")]


# --- stats: every skipped image named and not counted ---------------------------------------------------------


def test_stats_names_and_leaves_out_unreadable_missing_and_resized_images(tmp_path, official_ll_all):
    _release(tmp_path, official_ll_all)
    pairs = open_release(tmp_path).pairs
    truncated, gone, halved = pairs[0].dark, pairs[1].dark, pairs[2].bright
    data = (tmp_path / truncated).read_bytes()
    (tmp_path / truncated).write_bytes(data[: len(data) // 2])
    (tmp_path / gone).unlink()
    cv2.imwrite(str(tmp_path / halved), np.full((SIZE[1] // 2, SIZE[0] // 2, 3), 200, np.uint8))

    res = runner.invoke(umbrella, ["stats", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    skipped = {s["path"]: s["why"] for s in out["skipped"]}
    assert skipped[truncated].startswith("unreadable")
    assert skipped[gone] == "missing"
    assert skipped[halved].startswith("size 24x15 unlike its record in ExLPose_") and "(48x30)" in skipped[halved]
    warned = _warnings(res)
    for path in (truncated, gone, halved):
        assert sum(path in line for line in warned) >= 1
    d = out["dataset"]
    assert d["intensity_images"] == 2 * len(pairs) - 3
    darks = [cv2.imread(str(tmp_path / p.dark)).mean() for p in pairs[2:]]
    assert d["mean_intensity_ll"] == round(float(np.mean(darks)), 3)
    assert d["mean_intensity_wl"] == 90.0  # the 200-filled half-size image is not in it


def test_stats_names_records_outside_the_image_root(tmp_path, official_ll_all):
    _release(tmp_path, official_ll_all)
    wl = tmp_path / "annotations" / "ExLPose_test_WL.json"
    doc = json.loads(wl.read_text())
    up = "../../" + doc["images"][0]["file_name"]
    absolute = "/elsewhere/" + doc["images"][1]["file_name"]  # normalises onto a real pair: it used to be counted
    doc["images"][0]["file_name"], doc["images"][1]["file_name"] = up, absolute
    wl.write_text(json.dumps(doc))

    res = runner.invoke(umbrella, ["stats", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    skipped = [s for s in json.loads(res.stdout)["skipped"] if s.get("file") == wl.name]
    assert {s["path"]: s["why"] for s in skipped} == {up: "outside the image root ('..' in path)",
                                                      absolute: "outside the image root (absolute path)"}
    assert any(up in line and wl.name in line for line in _warnings(res))
    assert any(absolute in line for line in _warnings(res))

    res = runner.invoke(umbrella, ["stats", str(wl), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [s["path"] for s in out["skipped"]] == [up, absolute]
    assert sum(out["per_ratio"].values()) == len(doc["images"]) - 2
    assert len(_warnings(res)) == 2


# --- validate --images: each image's pixel size against its record ---------------------------------------------


def test_validate_images_reports_a_half_size_and_an_unreadable_image(tmp_path, official_ll_all):
    raw = make_release(tmp_path, official_ll_all, 4, size=SIZE)
    raw["images"] = [{**img, "width": SIZE[0], "height": SIZE[1]} for img in raw["images"]]
    raw["annotations"] = [{**a, "id": n, "keypoints": [0] * 42, "num_keypoints": 0, "bbox": [1, 1, 10, 10]}
                          for n, a in enumerate(raw["annotations"], start=1)]  # copies: the fixture is shared
    ann = tmp_path / "subset.json"
    ann.write_text(json.dumps(raw))
    res = runner.invoke(umbrella, ["validate", str(ann), "--images", str(tmp_path)])
    assert res.exit_code == 0, res.output  # the right sizes: clean

    halved, broken = raw["images"][1]["file_name"], raw["images"][2]["file_name"]
    cv2.imwrite(str(tmp_path / halved), np.zeros((SIZE[1] // 2, SIZE[0] // 2, 3), np.uint8))
    (tmp_path / broken).write_bytes(b"not an image")
    res = runner.invoke(umbrella, ["validate", str(ann), "--images", str(tmp_path), "--json"])
    assert res.exit_code == 1
    problems = [json.loads(line) for line in res.stdout.splitlines()]
    assert problems == [
        {"location": "images[1]", "code": "file-size", "message": f"{halved} is 24x15 pixels, its record says 48x30"},
        {"location": "images[2].file_name", "code": "file-unreadable", "message": f"{broken}: not an image that can be read"},
    ]


# --- pair lists: one image, one twin ------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["bright with two darks", "dark with two brights"])
def test_a_pair_list_giving_an_image_two_twins_is_refused(tmp_path, official_ll_all, direction):
    make_release(tmp_path, official_ll_all, 6)
    pair_list = tmp_path / "brightPath2darkPath.txt"
    lines = pair_list.read_text().splitlines()
    b0, d0 = lines[0].split()
    b1, d1 = lines[1].split()
    lines[1] = f"{b0} {d1}" if direction.startswith("bright") else f"{b1} {d0}"
    twice = b0 if direction.startswith("bright") else d0
    pair_list.write_text("\n".join(lines) + "\n")

    with pytest.raises(InputError) as exc:
        open_release(tmp_path)
    assert str(exc.value) == (f"{pair_list}:2: {twice} is already paired on line 1; an image has exactly one twin "
                              "(remove one of the two lines)")
    for args in (["stats", str(tmp_path)], ["pack", str(tmp_path), "--out", str(tmp_path.parent / "p.h5")]):
        res = runner.invoke(umbrella, args)
        assert res.exit_code == 2, (args, res.output)
        assert f"{pair_list}:2: {twice} is already paired on line 1" in res.output
    assert not (tmp_path.parent / "p.h5").exists()


def test_pair_lists_leaving_the_dataset_are_refused_and_never_written(tmp_path):
    p = tmp_path / "brightPath2darkPath.txt"
    p.write_text("bright/a.png dark/a.png\n../secret.png dark/b.png\n")
    with pytest.raises(InputError, match=r"brightPath2darkPath.txt:2: '../secret.png': '..' in path"):
        read_pairs(p)
    p.write_text("bright/a.png dark/a.png\n\nbright/a.png dark/a.png\n")
    with pytest.raises(InputError, match=r":3: bright/a.png is already paired on line 1"):
        read_pairs(p)
    with pytest.raises(InputError, match=r"already paired on line 1"):
        write_pairs(tmp_path / "new.txt", [("bright/a.png", "dark/a.png"), ("bright/a.png", "dark/b.png")])
    assert not (tmp_path / "new.txt").exists()
    with pytest.raises(InputError, match=r"one word"):
        write_pairs(tmp_path / "new.txt", [("bright/a b.png", "dark/a.png")])
    assert not (tmp_path / "new.txt").exists()


# --- one strict door: validate, validate --fix and stats read through the strict loader ------------------------


def _small_text(official: dict) -> str:
    imgs = official["images"][:1]
    anns = [a for a in official["annotations"] if a["image_id"] == imgs[0]["id"]][:1]
    anns = [{**a, "id": 1, "num_keypoints": sum(1 for v in a["keypoints"][2::3] if v > 0)} for a in anns]
    return json.dumps({"info": official["info"], "categories": official["categories"], "images": imgs, "annotations": anns})


def _bad_files(official: dict) -> dict[str, tuple[str, str]]:
    text = _small_text(official)
    width = json.dumps(official["images"][0]["width"])
    return {
        "nested": ("[" * 100_000 + "]" * 100_000, "nested deeper than 64 levels"),
        "duplicate": (text.replace(f'"width": {width}', f'"width": {width}, "width": 9999', 1),
                      "images[0]: key 'width' given more than once"),
        "two-keypoints": ('"keypoints": [0], "keypoints": ['.join(text.rsplit('"keypoints": [', 1)),  # the annotation's
                          "annotations[0]: key 'keypoints' given more than once"),
        "nan": (text.replace(f'"width": {width}', '"width": NaN', 1), "images[0].width: NaN is not a number JSON allows"),
        "long-id": (text.replace('"id": 1,', '"id": ' + "7" * 400 + ",", 1), "integer of 400 digits"),
    }


@pytest.mark.parametrize("case", ["nested", "duplicate", "two-keypoints", "nan", "long-id"])
def test_validate_and_stats_refuse_what_the_strict_loader_refuses_in_one_line(tmp_path, official_ll_all, case):
    text, needle = _bad_files(official_ll_all)[case]
    bad = tmp_path / "ExLPose_test_WL.json"
    bad.write_text(text)
    fixed = tmp_path / "fixed.json"
    for args in (["validate", str(bad)], ["validate", str(bad), "--fix", str(fixed)], ["stats", str(bad)]):
        res = runner.invoke(umbrella, args)
        assert res.exit_code == 2, (args, res.output)
        assert res.output.count("\n") == 1 and "Traceback" not in res.output and "RecursionError" not in res.output
        assert str(bad) in res.output and needle in res.output, res.output
    assert not fixed.exists()  # nothing "fixed" from a file that says two things

    root = tmp_path / "release"
    make_release(root, official_ll_all, 2)
    (root / "annotations").mkdir()
    (root / "annotations" / bad.name).write_text(text)
    res = runner.invoke(umbrella, ["stats", str(root), "--no-intensity"])
    assert res.exit_code == 2 and needle in res.output and res.output.count("\n") == 1, res.output


def test_a_byte_order_mark_is_accepted_by_validate_and_stats(tmp_path, official_ll_all):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + _small_text(official_ll_all).encode())
    res = runner.invoke(umbrella, ["validate", str(path)])
    assert res.exit_code == 0 and "clean" in res.output, res.output
    res = runner.invoke(umbrella, ["stats", str(path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["images"] == 1


def test_validate_fix_writes_only_where_it_may(tmp_path):
    session = tmp_path / "notes.txt"
    session.write_text("capture night notes")
    res = runner.invoke(umbrella, ["validate", str(OFFICIAL_LL_ALL), "--fix", str(session)])
    assert res.exit_code == 2 and "already holds a file" in res.output
    assert session.read_text() == "capture night notes"
    fixed = tmp_path / "fixed.json"
    assert runner.invoke(umbrella, ["validate", str(OFFICIAL_LL_ALL), "--fix", str(fixed)]).exit_code == 1
    first = fixed.read_bytes()
    fixed.write_text('{"images": [], "annotations": []}')
    res = runner.invoke(umbrella, ["validate", str(OFFICIAL_LL_ALL), "--fix", str(fixed)])
    assert res.exit_code == 2 and "pass --overwrite" in res.output
    res = runner.invoke(umbrella, ["validate", str(OFFICIAL_LL_ALL), "--fix", str(fixed), "--overwrite"])
    assert res.exit_code == 1 and fixed.read_bytes() == first


def test_evaluation_reads_ground_truth_and_results_strictly(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(OFFICIAL_LL_ALL.read_text().replace('"iscrowd"', '"iscrowd": 0, "iscrowd"', 1))
    with pytest.raises(InputError, match=r"gt.json: annotations\[0\]: key 'iscrowd' given more than once"):
        evaluate_keypoints(gt, [])
    results = tmp_path / "results.json"
    results.write_text('[{"image_id": 1, "image_id": 2, "keypoints": [], "score": 1}]')
    with pytest.raises(InputError, match=r"results.json: \[0\]: key 'image_id' given more than once"):
        evaluate_keypoints(OFFICIAL_LL_ALL, results)
