"""The authors' code (sohyun-l/ExLPose pytorch-cpn): their _trans.json reproduced exactly, their image names.

The reference is the authors' own ``ExLPose_test_LL-All_trans.json`` (fragments at three offsets and its length,
in tests/data/tools/ExLPose_test_LL-All_trans.fragments.json), made by them from the ``ExLPose_test_LL-All.json``
in tests/data (the file in shared/data/exlpose-official, byte for byte). Their loaders' renaming rule
(``loader_eval_LL.py`` / ``loader_eval_WL.py``: split the bright path at "_" and glue pieces by index) is applied
here as they apply it, to check the links we lay out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from annotation.cli import app as annotate_app
from exlpose.cli import app as umbrella
from exlpose_data.errors import InputError
from exlpose_data.layout import write_pairs
from exlpose_data.naming import parse_name
from exlpose_data.official import internal_name
from exlpose_data.schema import AnnotationDocument, load_document

DATA = Path(__file__).parent / "data"
OFFICIAL = DATA / "ExLPose_test_LL-All.json"
FRAGMENTS = json.loads((DATA / "tools" / "ExLPose_test_LL-All_trans.fragments.json").read_text())


def loader_name(image_name: str) -> str:
    """The authors' loaders' renaming of a bright path (WL path; the LL loader takes its part after '/')."""
    b = image_name.split("_")
    if "_3_" in image_name:
        return "_".join([b[0], b[1], b[3], b[4], "img", b[6]]) + "__" + b[10] + "_" + b[11]
    for site in ("manridang", "hwangridan", "bulguksa"):
        if site in image_name:
            return "_".join([b[0], b[1] + site, b[3], b[4], "img", b[6]]) + "__" + b[10] + "_" + b[11]
    return "_".join([b[0], b[1], b[2], b[3], "img", b[5]]) + "__" + b[9] + "_" + b[10]


def test_official_trans_is_reproduced_byte_for_byte(tmp_path):
    out = tmp_path / "ExLPose_test_LL-All_trans.json"
    r = CliRunner().invoke(annotate_app, ["export", str(OFFICIAL), "--format", "official-trans", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "2789 of 2810 people" in r.stdout  # the 21 without labelled joints are left out, as theirs
    text = out.read_text()
    assert len(text) == FRAGMENTS["total_chars"]
    for frag in FRAGMENTS["fragments"]:
        assert text[frag["offset"] : frag["offset"] + len(frag["text"])] == frag["text"]
    entries = json.loads(text)
    assert len(entries) == 2789 and entries[0]["unit"]["GT_bbox"] == [820, 588, 1340, 807]


def test_official_trans_refuses_dark_names(tmp_path):
    doc = json.loads(OFFICIAL.read_text())
    doc["images"][0]["file_name"] = parse_name(doc["images"][0]["file_name"]).twin().relpath
    src = tmp_path / "ll.json"
    src.write_text(json.dumps(doc))
    r = CliRunner().invoke(annotate_app, ["export", str(src), "--format", "official-trans", "--out", str(tmp_path / "t.json")])
    assert r.exit_code == 2 and "the authors' _trans.json names the bright image of each pair: export the WL file" in r.stderr
    assert not (tmp_path / "t.json").exists()


def test_internal_names_follow_the_authors_loaders():
    names = [im.file_name for im in load_document(OFFICIAL).images]
    assert {parse_name(n).site for n in names} >= {"", "hwangridan"}
    for n in names + ["bright/imgs_0119_3_vid000002_exp200_bright_000017__gain_8.00_exposure_2000.png",
                      "bright/imgs_0301_manridang_vid000004_exp1200_bright_000101__gain_30.10_exposure_417.png",
                      "bright/imgs_0301_bulguksa_vid000004_exp100_bright_000101__gain_8.10_exposure_5000.png"]:
        assert "bright/" + internal_name(n) == loader_name(n), n
    with pytest.raises(InputError, match="site 'sim': the authors' loaders only spell sites"):
        internal_name("bright/imgs_0101_sim_vid000001_exp100_bright_000001__gain_1.00_exposure_5000.png")


def test_export_official_lays_out_links_their_loaders_open(tmp_path):
    doc = load_document(OFFICIAL)
    images = doc.images[:3]
    small = AnnotationDocument(info=doc.info, categories=doc.categories, images=images, annotations=[a for a in doc.annotations if a.image_id in {i.id for i in images}])
    root = tmp_path / "ds"
    pairs = [(im.file_name, parse_name(im.file_name).twin().relpath) for im in images]
    root.mkdir()
    write_pairs(root / "brightPath2darkPath.txt", pairs)
    for k, (im, pair) in enumerate(zip(images, pairs)):
        for j, rel in enumerate(pair):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(root / rel), np.full((im.height, im.width), 10 * k + j, np.uint8))
    src = tmp_path / "small.json"
    src.write_text(json.dumps(small.to_json_dict()))
    r = CliRunner().invoke(annotate_app, ["import", str(src), "--format", "crowdpose", "--dataset", str(root), "--split-name", "test"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "official"
    r = CliRunner().invoke(umbrella, ["export", "official", str(root), "--out", str(out)])
    assert r.exit_code == 0, r.output
    ann = out / "Annotations" / "ExLPose"
    assert sorted(p.name for p in ann.iterdir()) == ["ExLPose_test_LL-All.json", "ExLPose_test_LL-All_trans.json", "ExLPose_test_WL.json", "ExLPose_test_WL_trans.json"]
    entries = json.loads((ann / "ExLPose_test_LL-All_trans.json").read_text())
    assert len(entries) == sum(1 for a in small.annotations if a.num_keypoints > 0)
    dark_of = dict(pairs)
    for e in entries:
        wl_name = loader_name(e["imgInfo"]["img_paths"])
        wl_path, ll_path = out / wl_name, out / "dark" / wl_name.split("/")[1]  # as loader_eval_WL / loader_eval_LL join them
        assert os.path.realpath(wl_path) == str((root / e["imgInfo"]["img_paths"]).resolve())
        assert os.path.realpath(ll_path) == str((root / dark_of[e["imgInfo"]["img_paths"]]).resolve())
        assert cv2.imread(str(ll_path)) is not None
    # the LL annotation file names bright images, as the authors' test files do
    assert all(im["file_name"].startswith("bright/") for im in json.loads((ann / "ExLPose_test_LL-All.json").read_text())["images"])
    r = CliRunner().invoke(umbrella, ["export", "official", str(root), "--out", str(out)])
    assert r.exit_code == 2 and "pass --overwrite to replace it" in r.stderr
