"""``exlpose simulate release`` and ``feeds`` end to end through the typer app."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from exlpose_data.cli.simulate import app
from exlpose_data.layout import read_pairs, verify_dataset
from exlpose_data.naming import parse_name
from exlpose_data.schema import load_document
from exlpose_data.simulate.runner import staged_output
from exlpose_data.feeds_format import FeedsDocument
from exlpose_data.simulate.truth import SimulationDocument

DATA = Path(__file__).parent / "data"
runner = CliRunner()
TINY = ["--size", "192x120", "--quiet"]


def _run(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rel") / "sim"
    res = _run("release", "--out", str(out), "--scenes", "3", "--seed", "5", "--workers", "2", "--test-fraction", "0.34", *TINY)
    assert res.exit_code == 0, res.output
    assert "wrote 30 pairs" in res.output
    return out


def test_release_layout_names_and_manifest(release):
    assert verify_dataset(release) == []
    pairs = read_pairs(release / "brightPath2darkPath.txt")
    assert len(pairs) == 30
    sim = SimulationDocument.model_validate_json((release / "simulation.json").read_text())
    by_video = {s.video: s for s in sim.scenes}
    for bright, dark in pairs:
        b, d = parse_name(bright), parse_name(dark)
        assert b.condition == "WL" and d.condition == "LL" and b.pair_key == d.pair_key
        scene = by_video[b.video]
        step = next(s for s in scene.steps if s.ratio == b.ratio)
        assert (b.gain_db, d.gain_db, b.exposure_us) == (step.wl_gain_db, step.ll_gain_db, step.nominal_exposure_us)
        assert d.gain_db == scene.base_gain_db
        x0, y0, x1, y1 = scene.geometry.crop
        for rel in (bright, dark):
            img = cv2.imread(str(release / rel), cv2.IMREAD_UNCHANGED)
            assert img.shape == (y1 - y0, x1 - x0, 3) and img.dtype == np.uint8
    names = sorted(p.name for p in (release / "annotations").iterdir())
    assert names == ["ExLPose_test_LL-A.json", "ExLPose_test_LL-E.json", "ExLPose_test_LL-H.json", "ExLPose_test_LL-N.json",
                     "ExLPose_test_WL.json", "ExLPose_train_LL.json", "ExLPose_train_WL.json"]


def test_release_folder_has_plain_mkdir_permissions_and_no_lock_file(release):
    mask = os.umask(0)
    os.umask(mask)
    assert release.stat().st_mode & 0o777 == 0o777 & ~mask
    hidden = [p.name for p in release.iterdir() if p.name.startswith(".")]
    assert not (release / ".manifest.lock").exists() and hidden == [".exlpose-provenance.json"]


def test_staged_output_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with staged_output(tmp_path / "out") as stage:
            (stage / "a.txt").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o750
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_release_annotations_match_the_truth(release):
    sim = SimulationDocument.model_validate_json((release / "simulation.json").read_text())
    truth = {}
    for scene in sim.scenes:
        people = {f.frame: f.people for f in scene.frames}
        for img in scene.images:
            truth[img.bright] = people[img.frame]
    train = load_document(release / "annotations" / "ExLPose_train_WL.json")
    test = load_document(release / "annotations" / "ExLPose_test_WL.json")
    assert len(train.images) + len(test.images) == 30
    train_scenes = {parse_name(i.file_name).scene for i in train.images}
    test_scenes = {parse_name(i.file_name).scene for i in test.images}
    assert train_scenes and test_scenes and not train_scenes & test_scenes  # split by scene
    for doc in (train, test):
        for img in doc.images:
            anns = [a for a in doc.annotations if a.image_id == img.id]
            assert [a.keypoints for a in anns] == [p.keypoints for p in truth[img.file_name]]
    ll = load_document(release / "annotations" / "ExLPose_train_LL.json")
    assert all(i.file_name.startswith("dark/") for i in ll.images)


def test_release_is_deterministic_and_parallel_equals_serial(release, tmp_path):
    out = tmp_path / "again"
    res = _run("release", "--out", str(out), "--scenes", "3", "--seed", "5", "--workers", "1", "--test-fraction", "0.34", *TINY)
    assert res.exit_code == 0, res.output
    first = json.loads((release / "manifest.json").read_text())["files"]
    second = json.loads((out / "manifest.json").read_text())["files"]
    assert first == second
    other = tmp_path / "other"
    assert _run("release", "--out", str(other), "--scenes", "1", "--seed", "6", "--test-fraction", "0", *TINY).exit_code == 0
    a = sorted((release / "dark").iterdir())[0].read_bytes()
    b = sorted((other / "dark").iterdir())[0].read_bytes()
    assert a != b


def test_feeds_layout_holds_only_pngs_of_raw_values(tmp_path):
    out = tmp_path / "feeds"
    res = _run("feeds", "--out", str(out), "--scenes", "2", "--frames", "2", "--mirror", "ll", *TINY)
    assert res.exit_code == 0, res.output
    doc = FeedsDocument.model_validate_json((out / "feeds.json").read_text())
    assert doc.pixel_format == "BayerRG12" and doc.bit_shift == 4 and len(doc.scenes) == 2
    for dirpath, dirs, files in os.walk(out):
        if not dirs and dirpath != str(out):
            assert files and all(f.endswith(".png") for f in files), dirpath
    assert sorted(p.name for p in out.iterdir()) == sorted([s.scene for s in doc.scenes] + ["feeds.json", ".exlpose-provenance.json"])
    scene = doc.scenes[0]
    assert scene.geometry.mirror == "ll" and np.asarray(scene.geometry.homography).shape == (3, 3)
    for step in scene.steps:
        for folder in (step.ll_dir, step.wl_dir):
            files = sorted(p.name for p in (out / folder).iterdir())
            assert files == [f.file for f in scene.frames] == ["000000.png", "000001.png"]
        frame = cv2.imread(str(out / step.ll_dir / "000000.png"), cv2.IMREAD_UNCHANGED)
        assert frame.dtype == np.uint16 and frame.ndim == 2 and frame.shape == (120, 192)
        assert not (frame & 0xF).any()
        raw = frame >> 4
        assert raw.max() <= 4095 and abs(np.median(raw) - doc.black_level_dn) < 40  # dark LL frames sit near black
    ref = cv2.imread(str(out / scene.reference.wl_dir / scene.reference.file), cv2.IMREAD_UNCHANGED) >> 4
    assert ref.mean() > doc.black_level_dn + 200  # the reference pair is well exposed
    for frame in scene.frames:
        for person in frame.people:
            assert len(person.keypoints) == 42


def test_feeds_play_on_the_pylon_emulator_as_raw_values(tmp_path):
    from pypylon import pylon  # a dependency: never skipped
    out = tmp_path / "feeds"
    assert _run("feeds", "--out", str(out), "--scenes", "1", "--frames", "1", "--preset", "indoor", *TINY).exit_code == 0
    doc = FeedsDocument.model_validate_json((out / "feeds.json").read_text())
    step = doc.scenes[0].steps[0]
    expected = cv2.imread(str(out / step.wl_dir / "000000.png"), cv2.IMREAD_UNCHANGED) >> 4
    os.environ.setdefault("PYLON_CAMEMU", "1")
    tl = pylon.TlFactory.GetInstance()
    info = pylon.DeviceInfo()
    info.SetDeviceClass("BaslerCamEmu")
    devices = tl.EnumerateDevices([info])
    # pypylon is a dependency and brings its emulator: a missing emulator is a broken install, not a reason to skip
    assert devices, "pylon's camera emulator (PYLON_CAMEMU) enumerated no device"
    cam = pylon.InstantCamera(tl.CreateDevice(devices[0]))
    cam.Open()
    try:
        cam.Width.Value, cam.Height.Value = 192, 120
        cam.PixelFormat.Value = doc.pixel_format
        cam.TestImageSelector.Value = "Off"
        cam.ImageFilename.Value = str(out / step.wl_dir)
        cam.ImageFileMode.Value = "On"
        result = cam.GrabOne(5000)
        try:
            grabbed = result.GetArray()
        finally:
            result.Release()
    finally:
        cam.Close()
    np.testing.assert_array_equal(grabbed, expected)


def test_poses_from_file_reproduces_people(tmp_path):
    out = tmp_path / "posed"
    res = _run("release", "--out", str(out), "--scenes", "1", "--poses-from", str(DATA / "ExLPose_test_LL-All.json"),
               "--test-fraction", "0", *TINY)
    assert res.exit_code == 0, res.output
    sim = SimulationDocument.model_validate_json((out / "simulation.json").read_text())
    official = load_document(DATA / "ExLPose_test_LL-All.json")
    first = parse_name(official.images[0].file_name)
    n_official = len([a for a in official.annotations if a.image_id == official.images[0].id])
    assert sim.scenes[0].frames and len(sim.scenes[0].frames) == len({parse_name(i.file_name).frame for i in official.images
                                                                       if parse_name(i.file_name).scene == first.scene})
    assert len(sim.scenes[0].frames[0].people) <= n_official
    assert len(sim.scenes[0].frames[0].people) >= n_official - 2  # people wholly outside the crop may drop


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--size", "10x10x3"], "--size"),
        (["--size", "193x120"], "width"),
        (["--poses-from", "/nonexistent.json"], "/nonexistent.json"),
        (["--mirror", "both"], "mirror"),
        (["--backgrounds", "/nonexistent-dir"], "/nonexistent-dir"),
        (["--distortion", "5"], "geometry.k1: Input should be less than or equal to 0.5"),
        (["--distortion", "-0.3", "--size", "64x600"], "k1=-0.3, k2=0 folds a 64x600 frame"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    res = _run("release", "--out", str(tmp_path / "x"), "--scenes", "1", "--quiet", *args)
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("split", [["--scenes", "1", "--test-fraction", "0.2"],
                                   ["--scenes", "2", "--test-fraction", "0.3", "--val-fraction", "0.3"]])
def test_an_impossible_scene_split_fails_before_rendering(tmp_path, monkeypatch, split):
    import exlpose_data.simulate.release as release_module

    def no_rendering(*args, **kwargs):
        raise AssertionError("rendered before checking the split")

    monkeypatch.setattr(release_module, "run_scenes", no_rendering)
    res = _run("release", "--out", str(tmp_path / "x"), "--workers", "1", *split, *TINY)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: --scenes ") and "training scene" in res.output and res.output.count("\n") == 1
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


def test_refuses_a_non_empty_output_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    res = _run("feeds", "--out", str(tmp_path), "--scenes", "1", *TINY)
    assert res.exit_code == 2 and "already holds a folder, not a feeds folder" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_config_file_sets_any_parameter(tmp_path):
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("sensor:\n  read_noise_e: 0.5\nprotocol:\n  ks: [1, 16]\n  preset: outdoor\nframes_per_scene: 1\n")
    out = tmp_path / "f"
    assert _run("feeds", "--out", str(out), "--scenes", "1", "--config", str(cfg), *TINY).exit_code == 0
    doc = FeedsDocument.model_validate_json((out / "feeds.json").read_text())
    assert [s.k for s in doc.scenes[0].steps] == [1, 16] and doc.scenes[0].steps[1].ratio == 1600
    cfg.write_text("sensor:\n  read_noise: 0.5\n")
    res = _run("feeds", "--out", str(tmp_path / "g"), "--scenes", "1", "--config", str(cfg), *TINY)
    assert res.exit_code == 2 and "sensor.read_noise" in res.output
