"""Issue 21 for splits, packs, the authors'-layout export and the simulator: outputs never replace inputs or
other kinds of files, re-runs with other settings are refused (or, with --overwrite, leave nothing stale), each
output records what made it, skipped records are named, and simulation configs are read strictly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from exlpose_data import __version__
from exlpose_data.cli.export import app as export_app
from exlpose_data.cli.pack import app as pack_app
from exlpose_data.cli.simulate import app as simulate_app
from exlpose_data.cli.split import app as split_app
from exlpose_data.datasets.pack import pack_paths, pack_provenance
from exlpose_data.layout import load_manifest, rebuild_manifest, verify_dataset
from exlpose_data.provenance import RECORD_FILE, read_record
from exlpose_data.simulate.config import SimulationConfig

from .conftest import make_release

runner = CliRunner()
TINY = ["--size", "192x120", "--quiet", "--workers", "1"]


def _doc(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def dataset(tmp_path: Path, official_ll_all: dict) -> tuple[Path, dict]:
    """A release (pair list, manifest) with ExLPose_all_WL.json, as `annotate import --split-name all` leaves it."""
    root = tmp_path / "DS"
    doc = make_release(root, official_ll_all, 12)
    (root / "annotations").mkdir()
    (root / "annotations" / "ExLPose_all_WL.json").write_text(json.dumps(doc))
    rebuild_manifest(root)
    return root, doc


def _by_scene(src: Path, out: Path, *extra: str):
    return runner.invoke(split_app, ["by-scene", str(src), "--out", str(out), "--test-fraction", "0.3", "--seed", "1", *extra])


# --- splits -----------------------------------------------------------------------------------------------------

def test_a_split_never_rewrites_its_own_input(dataset):
    root, doc = dataset
    ann = root / "annotations"
    src = ann / "ExLPose_train_LL.json"
    (ann / "ExLPose_all_WL.json").rename(src)
    before = src.read_bytes()
    res = _by_scene(src, ann)
    assert res.exit_code == 2, res.output
    assert "would replace its input" in res.output and "ExLPose_train_LL.json" in res.output and res.output.count("\n") == 1
    assert src.read_bytes() == before and len(_doc(src)["images"]) == 12
    assert sorted(p.name for p in ann.iterdir()) == ["ExLPose_train_LL.json"]
    res = _by_scene(src, ann, "--overwrite")  # never, not even with --overwrite
    assert res.exit_code == 2 and src.read_bytes() == before


def test_a_split_refuses_a_file_no_split_wrote_unless_overwrite(dataset):
    root, _ = dataset
    ann = root / "annotations"
    mine = ann / "ExLPose_test_WL.json"
    mine.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    res = _by_scene(ann / "ExLPose_all_WL.json", ann, "--pairs", str(root))
    assert res.exit_code == 2, res.output
    assert "ExLPose_test_WL.json is already there (an annotation file)" in res.output and "--overwrite" in res.output
    assert _doc(mine)["images"] == [] and not (ann / "ExLPose_train_LL.json").exists()
    res = _by_scene(ann / "ExLPose_all_WL.json", ann, "--pairs", str(root), "--overwrite")
    assert res.exit_code == 0, res.output
    assert _doc(mine)["images"] and verify_dataset(root) == []


def test_a_rerun_without_val_fraction_leaves_no_stale_val_files(dataset):
    root, _ = dataset
    ann = root / "annotations"
    src = ann / "ExLPose_all_WL.json"
    assert _by_scene(src, ann, "--val-fraction", "0.2", "--pairs", str(root)).exit_code == 0
    val = [ann / "ExLPose_val_LL.json", ann / "ExLPose_val_WL.json"]
    assert all(p.is_file() for p in val) and "annotations/ExLPose_val_LL.json" in load_manifest(root)

    res = _by_scene(src, ann, "--pairs", str(root))  # other settings: refused, naming the setting
    assert res.exit_code == 2, res.output
    assert "val_fraction 0.2 -> 0.0" in res.output and "--overwrite" in res.output
    assert all(p.is_file() for p in val)

    res = _by_scene(src, ann, "--pairs", str(root), "--overwrite")
    assert res.exit_code == 0, res.output
    assert not any(p.exists() for p in val) and "ExLPose_val_LL.json: removed" in res.output
    assert not [rel for rel in load_manifest(root) if "_val_" in rel] and verify_dataset(root) == []
    train = {im["file_name"].split("_exp")[0] for im in _doc(ann / "ExLPose_train_WL.json")["images"]}
    test = {im["file_name"].split("_exp")[0] for im in _doc(ann / "ExLPose_test_WL.json")["images"]}
    assert train and test and not train & test
    entry = read_record(ann)["steps"]["split by-scene ExLPose"]
    assert entry["state"] == "complete" and entry["command"] == "exlpose-split by-scene"
    assert entry["settings"] == {"test_fraction": 0.3, "val_fraction": 0.0, "seed": 1, "prefix": "ExLPose"}
    assert entry["inputs"]["annotations"]["sha256"] and entry["inputs"]["pairs"]["sha256"]
    assert sorted(entry["files"]) == ["ExLPose_test_LL.json", "ExLPose_test_WL.json", "ExLPose_train_LL.json", "ExLPose_train_WL.json"]
    assert _by_scene(src, ann, "--pairs", str(root)).exit_code == 0  # the same settings again: rewritten, no refusal


def test_the_demo_split_sequence(dataset):
    """by-scene, then by-gain of the test part into the same folder: the gain split may replace the scene split's
    test_WL file (a split wrote it), but never the file it reads."""
    root, _ = dataset
    ann = root / "annotations"
    assert _by_scene(ann / "ExLPose_all_WL.json", ann, "--pairs", str(root)).exit_code == 0
    test_wl = ann / "ExLPose_test_WL.json"
    before = test_wl.read_bytes()
    res = runner.invoke(split_app, ["by-gain", str(test_wl), "--out", str(ann), "--prefix", "ExLPose_test", "--pairs", str(root)])
    assert res.exit_code == 2 and "would replace its input" in res.output and test_wl.read_bytes() == before
    res = runner.invoke(split_app, ["by-gain", str(ann / "ExLPose_test_LL.json"), "--out", str(ann), "--prefix", "ExLPose_test",
                                    "--pairs", str(root)])
    assert res.exit_code == 0, res.output
    assert len(_doc(ann / "ExLPose_test_LL-A.json")["images"]) == len(_doc(test_wl)["images"])
    assert set(read_record(ann)["steps"]) == {"split by-scene ExLPose", "split by-gain ExLPose_test"}
    assert verify_dataset(root) == []


def test_a_split_refuses_a_folder_of_another_kind(tmp_path, dataset):
    root, _ = dataset
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    (feeds / "feeds.json").write_text("{}")
    res = _by_scene(root / "annotations" / "ExLPose_all_WL.json", feeds, "--overwrite")
    assert res.exit_code == 2 and "already holds a feeds folder" in res.output
    assert sorted(p.name for p in feeds.iterdir()) == ["feeds.json"]


# --- packs ------------------------------------------------------------------------------------------------------

def test_pack_never_replaces_an_annotation_file(tmp_path, dataset):
    root, _ = dataset
    ann = root / "annotations" / "ExLPose_all_WL.json"
    before = ann.read_bytes()
    for extra in ([], ["--overwrite"]):
        res = runner.invoke(pack_app, [str(root), "--out", str(ann), "-q", *extra])
        assert res.exit_code == 2 and "lies inside the input" in res.output
        assert ann.read_bytes() == before
    outside = tmp_path / "labels.json"
    outside.write_bytes(before)
    res = runner.invoke(pack_app, [str(root), "--out", str(outside), "-q", "--overwrite"])
    assert res.exit_code == 2 and "already holds an annotation file, not a pack" in res.output
    assert outside.read_bytes() == before


def test_pack_records_provenance_skips_when_up_to_date_and_replaces_only_with_overwrite(tmp_path, dataset):
    root, _ = dataset
    out = tmp_path / "pack.h5"
    res = runner.invoke(pack_app, [str(root), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    record = pack_provenance(out)
    assert record["command"] == "exlpose pack" and record["toolkit"] == __version__
    assert record["settings"] == {"images": "all pairs", "condition": "pair"} and record["images"] == 24
    assert len(record["inputs"]["pairs"]["sha256"]) == 64 and record["inputs"]["dataset"]["manifest_sha256"]
    stamp = out.stat().st_mtime_ns

    res = runner.invoke(pack_app, [str(root), "--out", str(out), "-q"])
    assert res.exit_code == 0 and "up to date" in res.output and out.stat().st_mtime_ns == stamp

    dark = root / pack_paths(out)[1]
    cv2.imwrite(str(dark), np.full((30, 48, 3), 7, np.uint8))
    res = runner.invoke(pack_app, [str(root), "--out", str(out), "-q"])
    assert res.exit_code == 2 and "images changed since packing" in res.output and "--overwrite" in res.output
    assert out.stat().st_mtime_ns == stamp
    res = runner.invoke(pack_app, [str(root), "--out", str(out), "-q", "--overwrite"])
    assert res.exit_code == 0 and "packed 24 images" in res.output
    with h5py.File(out, "r") as f:
        assert int(f["images"]["1"][()].max()) == 7


def test_pack_names_each_record_it_skips(tmp_path, dataset):
    root, doc = dataset
    doc = json.loads(json.dumps(doc))
    first, second = doc["images"][0], doc["images"][1]
    first["file_name"] = "../" + first["file_name"]  # a file outside the root, not the root's image of that name
    second["file_name"] = "/" + second["file_name"]
    ann = tmp_path / "some.json"
    ann.write_text(json.dumps(doc))
    out = tmp_path / "p.h5"
    res = runner.invoke(pack_app, [str(root), "--out", str(out), "--ann", str(ann), "-q"])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert len(lines) == 2
    assert f"image {first['id']}: file_name {first['file_name']!r}: '..' in path: outside the image root, skipped" in lines[0]
    assert f"image {second['id']}: file_name {second['file_name']!r}: absolute path" in lines[1]
    assert "packed 20 images" in res.output and "2 annotation record(s) skipped" in res.output
    assert pack_provenance(out)["skipped"] == 2 and len(pack_paths(out)) == 20


# --- export -----------------------------------------------------------------------------------------------------

def test_export_guards_its_folder(tmp_path, dataset):
    root, _ = dataset
    assert runner.invoke(split_app, ["by-gain", str(root / "annotations" / "ExLPose_all_WL.json"), "--out", str(root / "annotations"),
                                     "--pairs", str(root)]).exit_code == 0
    res = runner.invoke(export_app, ["official", str(root), "--out", str(root / "official")])
    assert res.exit_code == 2 and "lies inside the input" in res.output and not (root / "official").exists()

    out = tmp_path / "official"
    assert runner.invoke(export_app, ["official", str(root), "--out", str(out)]).exit_code == 0
    assert read_record(out)["steps"]["export official"]["state"] == "complete"
    res = runner.invoke(export_app, ["official", str(root), "--out", str(out)])
    assert res.exit_code == 2 and "pass --overwrite" in res.output
    (out / "bright" / "stale.png").write_bytes(b"x")
    res = runner.invoke(export_app, ["official", str(root), "--out", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert not (out / "bright" / "stale.png").exists() and len(os.listdir(out / "bright")) == 12
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    res = runner.invoke(export_app, ["official", str(root), "--out", str(mine), "--overwrite"])
    assert res.exit_code == 2 and "already holds a folder" in res.output and (mine / "notes.txt").read_text() == "keep"


# --- simulator --------------------------------------------------------------------------------------------------

def test_simulated_release_records_its_settings_and_is_replaced_only_with_overwrite(tmp_path):
    out = tmp_path / "sim"
    res = runner.invoke(simulate_app, ["release", "--out", str(out), "--scenes", "2", "--frames", "1", "--seed", "3", *TINY])
    assert res.exit_code == 0, res.output
    entry = read_record(out)["steps"]["simulate release"]
    assert entry["command"] == "exlpose-simulate release" and entry["state"] == "complete"
    expected = SimulationConfig(width=192, height=120, frames_per_scene=1).model_dump(mode="json")
    assert entry["settings"] == {"config": expected, "scenes": 2, "seed": 3, "test_fraction": 0.2, "val_fraction": 0.0}
    assert "brightPath2darkPath.txt" in entry["files"] and RECORD_FILE not in entry["files"]
    assert verify_dataset(out) == []

    res = runner.invoke(simulate_app, ["release", "--out", str(out), "--scenes", "2", "--frames", "1", "--seed", "4", *TINY])
    assert res.exit_code == 2 and "already holds a release; pass --overwrite" in res.output
    res = runner.invoke(simulate_app, ["feeds", "--out", str(out), "--scenes", "1", "--frames", "1", "--overwrite", *TINY])
    assert res.exit_code == 2 and "already holds a release, not a feeds folder" in res.output
    res = runner.invoke(simulate_app, ["release", "--out", str(out), "--scenes", "2", "--frames", "1", "--seed", "4", "--overwrite", *TINY])
    assert res.exit_code == 0, res.output
    assert read_record(out)["steps"]["simulate release"]["settings"]["seed"] == 4
    assert verify_dataset(out) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["sim"]


def test_simulation_output_never_inside_its_backgrounds(tmp_path):
    backgrounds = tmp_path / "bg"
    backgrounds.mkdir()
    cv2.imwrite(str(backgrounds / "a.png"), np.full((120, 192, 3), 100, np.uint8))
    res = runner.invoke(simulate_app, ["feeds", "--out", str(backgrounds / "feeds"), "--scenes", "1", "--frames", "1",
                                       "--backgrounds", str(backgrounds), *TINY])
    assert res.exit_code == 2 and "lies inside the input" in res.output
    assert sorted(p.name for p in backgrounds.iterdir()) == ["a.png"]


def test_a_simulation_config_with_a_duplicate_key_is_refused(tmp_path):
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("frames_per_scene: 1\nsensor:\n  read_noise_e: 0.5\nframes_per_scene: 3\n")
    res = runner.invoke(simulate_app, ["feeds", "--out", str(tmp_path / "f"), "--scenes", "1", "--config", str(cfg), *TINY])
    assert res.exit_code == 2, res.output
    assert res.output.startswith(f"error: {cfg}: line 4 column 1: key 'frames_per_scene' given more than once")
    assert not (tmp_path / "f").exists()


def test_a_broken_manifest_is_refused_before_a_split_writes_into_the_dataset(dataset):
    root, _ = dataset
    ann = root / "annotations"
    (root / "manifest.json").write_text('{"version": 1, "files": {}, "files": {}}')
    before = sorted(p.name for p in ann.iterdir())
    res = _by_scene(ann / "ExLPose_all_WL.json", ann)
    assert res.exit_code == 2 and "manifest.json: (top level): key 'files' given more than once" in res.output, res.output
    assert sorted(p.name for p in ann.iterdir()) == before  # no split file, no provenance record
