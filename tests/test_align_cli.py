"""exlpose-align end to end on HDF5 sessions written with h5py in the documented session format.

The sessions are synthetic: a textured scene seen through a known homography, "unprocessed" to 12-bit RGGB raw
with exlpose_data.isp, the WL path stored mirrored (software flip configured in rig_config) as an uncorrected
beam splitter delivers it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from exlpose_data.align.estimate import corner_error
from exlpose_data.align.model import AlignModel
from exlpose_data.align.synthetic import random_homography, textured_scene
from exlpose_data.cli.align import app
from exlpose_data.isp import IspParams, mosaic, srgb_to_linear
from exlpose_data.layout import MANIFEST_FILE, PAIRS_FILE, read_pairs, sha256_file, verify_dataset
from exlpose_data.session_format import FRAME_DTYPE

W, H = 320, 200
runner = CliRunner()
ISP = IspParams()


def _view(seed: int, h_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wl, ll) clean sRGB views of a scene; LL sees it through h_true."""
    rng = np.random.default_rng(seed)
    big = textured_scene(W + 32, H + 32, rng)
    to_big = np.array([[1, 0, 16], [0, 1, 16], [0, 0, 1]], np.float64)
    wl = big[16 : 16 + H, 16 : 16 + W]
    ll = cv2.warpPerspective(big, h_true @ np.linalg.inv(to_big), (W, H), flags=cv2.INTER_LANCZOS4)
    return wl, ll


def _raw(srgb: np.ndarray, gain: float, rng: np.random.Generator, mirror: bool = False) -> np.ndarray:
    """12-bit RGGB raw whose development is ~``srgb`` scaled by ``gain`` in linear light, with read noise."""
    lin = srgb_to_linear(srgb.astype(np.float32) / 255.0) * gain
    cam = np.clip(lin @ ISP.camera_from_srgb().T, 0, 1)
    if mirror:
        cam = cam[:, ::-1]
    dn = cam * (ISP.white_level - ISP.black_level) + ISP.black_level + rng.normal(0, 1.5, cam.shape)
    return mosaic(np.clip(np.rint(dn), 0, ISP.white_level).astype(np.uint16), "RGGB")


def _frame_attrs(ds: h5py.Dataset) -> None:
    ds.attrs.update({"pixel_format": "BayerRG12", "bayer_pattern": "RGGB", "bit_depth": 12, "black_level": 240.0, "mirrored_x": False})


def make_session(path: Path, *, h_true: np.ndarray, n_frames: int = 3, ks: tuple[int, ...] = (1, 2), mirror: str = "wl") -> Path:
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        f.attrs["rig_config"] = json.dumps({"mirror": mirror})
        f.attrs["software_version"] = "test"
        f.attrs["created"] = "2026-11-25T08:00:00Z"
        wl, ll = _view(10, h_true)
        ref = f.create_group("reference/board")
        for name, img, gain in (("wl", wl, 1.0), ("ll", ll, 0.1)):
            ds = ref.create_dataset(name, data=np.stack([_raw(img, gain, rng, mirror=(name == mirror)) for _ in range(2)]))
            _frame_attrs(ds)
        scene = f.create_group("scenes/s01")
        scene.attrs.update({"date_mmdd": "0119", "site": "3", "video_id": 7, "base_exposure_us": 5000.0, "base_gain_db": 10.0, "ll_gain_db": 10.0, "k_list": json.dumps(list(ks)), "nd_factor": 100.0})
        for k in ks:
            step = scene.create_group(f"steps/{k}")
            wl_gain = round(10.0 + 20 * np.log10(k), 2)
            step.attrs.update({"k": k, "ratio": 100 * k, "exposure_us": 5000.0 / k, "nominal_exposure_us": int(5000 / k + 0.5), "wl_gain_db": wl_gain, "ll_gain_db": 10.0})
            views = [_view(20 + i, h_true) for i in range(n_frames)]
            for name, gain in (("wl", 1.0), ("ll", 0.05 / k)):
                idx = 0 if name == "wl" else 1
                ds = step.create_dataset(name, data=np.stack([_raw(v[idx], gain, rng, mirror=(name == mirror)) for v in views]), chunks=(1, H, W))
                _frame_attrs(ds)
            table = np.zeros(n_frames, FRAME_DTYPE)
            table["index"] = np.arange(n_frames)
            step.create_dataset("frames", data=table)
    return path


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return random_homography(W, H, np.random.default_rng(3))


@pytest.fixture(scope="module")
def session(tmp_path_factory, truth) -> Path:
    return make_session(tmp_path_factory.mktemp("s") / "session.h5", h_true=truth)


@pytest.fixture(scope="module")
def align_json(tmp_path_factory, session) -> Path:
    out = tmp_path_factory.mktemp("a") / "ALIGN.json"
    r = runner.invoke(app, ["estimate", str(session), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_estimate_from_session_recovers_homography(align_json, truth, session) -> None:
    model = AlignModel.load(align_json)
    assert corner_error(model.matrix, truth, (W, H)) < 0.1
    assert model.mirror == "wl" and model.frame_size == (W, H)
    assert model.inputs[0].role == "session" and model.inputs[0].sha256 == sha256_file(session)
    assert model.inputs[0].references == ["board"]
    # LL reference developed at 0.1x the WL's linear light.
    assert model.brightness_ratio == pytest.approx(0.1, rel=0.15)


def test_estimate_without_configured_flip_reports_missing_mirror(tmp_path, session) -> None:
    r = runner.invoke(app, ["estimate", str(session), "--mirror", "none", "--out", str(tmp_path / "A.json")])
    assert r.exit_code == 2
    assert "mirrored" in r.output and not (tmp_path / "A.json").exists()


def test_estimate_usage_errors(tmp_path, session) -> None:
    r = runner.invoke(app, ["estimate", "--out", str(tmp_path / "A.json")])
    assert r.exit_code == 2 and "--wl and --ll" in r.output
    r = runner.invoke(app, ["estimate", str(session), "--reference", "nope", "--out", str(tmp_path / "A.json")])
    assert r.exit_code == 2 and "no reference 'nope'" in r.output
    r = runner.invoke(app, ["estimate", str(tmp_path / "missing.h5")])
    assert r.exit_code == 2 and "no such session file" in r.output
    r = runner.invoke(app, ["estimate", str(session), "--mirror", "left"])
    assert r.exit_code == 2 and "--mirror 'left'" in r.output


def test_estimate_and_check_on_png_pair(tmp_path, truth) -> None:
    wl, ll = _view(30, truth)
    dark = np.clip(np.rint(ll.astype(np.float32) * 0.25), 0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "wl.png"), wl[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "ll.png"), dark[:, :, ::-1])
    out = tmp_path / "ALIGN.json"
    r = runner.invoke(app, ["estimate", "--wl", str(tmp_path / "wl.png"), "--ll", str(tmp_path / "ll.png"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert corner_error(AlignModel.load(out).matrix, truth, (W, H)) < 0.1
    r = runner.invoke(app, ["check", str(out), "--wl", str(tmp_path / "wl.png"), "--ll", str(tmp_path / "ll.png"), "--plots", str(tmp_path / "plots"), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["failures"] == [] and report["heldout_count"] > 10 and report["heldout_median_px"] < 1.0
    assert report["psnr_db"] > 25
    for name in ("residuals.png", "difference.png"):
        assert cv2.imread(str(tmp_path / "plots" / name)) is not None


def test_check_fails_with_a_message_when_limits_are_exceeded(tmp_path, align_json) -> None:
    model = AlignModel.load(align_json)
    bad = model.model_copy(update={"homography": (np.array([[1, 0, 3.0], [0, 1, 0], [0, 0, 1]]) @ model.matrix).tolist()})
    bad.save(tmp_path / "bad.json")
    r = runner.invoke(app, ["check", str(tmp_path / "bad.json"), "--max-corner-px", "0"])
    assert r.exit_code == 1
    assert "held-out residual median" in r.output and "exceeds 0.500 px by" in r.output
    r = runner.invoke(app, ["check", str(align_json), "--max-corner-px", "0.0001"])
    assert r.exit_code == 1 and "initial/refined corner disagreement" in r.output


def test_check_alignment_is_the_library_call_behind_the_command(tmp_path, align_json) -> None:
    from exlpose_data.align.check import check_alignment
    from exlpose_data.align.validate import Thresholds

    model = AlignModel.load(align_json)
    report = check_alignment(AlignModel.load(align_json), source="A.json")
    r = runner.invoke(app, ["check", str(align_json), "--json"])
    assert r.exit_code == 0, r.output
    printed = json.loads(r.stdout.strip().splitlines()[-1])
    assert {**report.to_dict(), "align": str(align_json)} == printed and report.passed
    assert report.heldout_count == len(model.heldout_matches) and report.crop == list(model.crop)
    strict = check_alignment(model, Thresholds(max_median_px=None, max_p95_px=None, max_corner_px=1e-6), plots=tmp_path / "p")
    assert not strict.passed and len(strict.failures) == 1 and "initial/refined corner disagreement" in strict.failures[0]
    assert cv2.imread(str(tmp_path / "p" / "residuals.png")) is not None


def test_check_at_ll_n_light_passes_correct_and_fails_shifted_alignment(tmp_path) -> None:
    from exlpose_data.align.synthetic import render_pair

    p = render_pair(W, H, seed=3, ll_mean_8bit=3.0, gain_db=12.0)
    cv2.imwrite(str(tmp_path / "wl.png"), p.wl[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "ll.png"), p.ll[:, :, ::-1])
    pair = ["--wl", str(tmp_path / "wl.png"), "--ll", str(tmp_path / "ll.png")]
    out = tmp_path / "ALIGN.json"
    r = runner.invoke(app, ["estimate", *pair, "--out", str(out)])
    assert r.exit_code == 0, r.output
    model = AlignModel.load(out)
    assert corner_error(model.matrix, p.homography, (W, H)) < 0.3
    r = runner.invoke(app, ["check", str(out), *pair, "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["failures"] == [] and report["heldout_count"] >= 10 and report["heldout_median_px"] < 0.6
    assert 0 < report["heldout_noise_px"] < 0.6 and report["quality_bin"] > 1 and report["psnr_db"] > 15
    shift = np.array([[1, 0, 1.5], [0, 1, 0], [0, 0, 1]], np.float64)
    model.model_copy(update={"homography": (shift @ model.matrix).tolist()}).save(tmp_path / "bad.json")
    for extra in ([], pair):  # the stored measurements, and measured afresh on the pair
        r = runner.invoke(app, ["check", str(tmp_path / "bad.json"), *extra])
        assert r.exit_code == 1 and "fail: held-out residual median 1." in r.output


def test_estimate_averages_repeated_ll_frames(tmp_path) -> None:
    from exlpose_data.align.synthetic import render_pair

    p = render_pair(W, H, seed=1, ll_mean_8bit=3.0, gain_db=24.0, ll_frames=8)
    cv2.imwrite(str(tmp_path / "wl.png"), p.wl[:, :, ::-1])
    lls = []
    for i, frame in enumerate(p.ll_frames):
        cv2.imwrite(str(tmp_path / f"ll{i}.png"), frame[:, :, ::-1])
        lls += ["--ll", str(tmp_path / f"ll{i}.png")]
    r = runner.invoke(app, ["estimate", "--wl", str(tmp_path / "wl.png"), "--ll", str(tmp_path / "ll0.png"), "--out", str(tmp_path / "one.json")])
    assert r.exit_code == 2 and "Average more reference frames" in r.output
    r = runner.invoke(app, ["estimate", "--wl", str(tmp_path / "wl.png"), *lls, "--out", str(tmp_path / "A.json")])
    assert r.exit_code == 0, r.output
    model = AlignModel.load(tmp_path / "A.json")
    assert corner_error(model.matrix, p.homography, (W, H)) < 0.4
    assert [f.role for f in model.inputs] == ["wl"] + ["ll"] * 8
    cv2.imwrite(str(tmp_path / "small.png"), p.ll_frames[1][:100, :, ::-1])
    r = runner.invoke(app, ["estimate", "--wl", str(tmp_path / "wl.png"), "--ll", str(tmp_path / "ll0.png"), "--ll", str(tmp_path / "small.png")])
    assert r.exit_code == 2 and "small.png is 320x100" in r.output


def _png_gray_float(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float32)
    g = img.mean(axis=2)
    return g / g.mean()


def test_run_apply_reports_progress_counting_pairs_already_written(tmp_path, session, align_json) -> None:
    from exlpose_data.align.apply import ApplyOptions, run_apply

    calls: list[tuple[int, int]] = []
    model = AlignModel.load(align_json)
    report = run_apply(session, model, tmp_path / "out", ApplyOptions(workers=1), progress=lambda d, t: calls.append((d, t)))
    assert (report.written, report.skipped) == (2, 0) and calls == [(0, 2), (1, 2), (2, 2)]
    calls.clear()
    again = run_apply(session, model, tmp_path / "out", ApplyOptions(workers=1), progress=lambda d, t: calls.append((d, t)))
    assert (again.written, again.skipped) == (0, 2) and calls == [(2, 2)]


def test_apply_writes_release_layout_aligned_and_named(tmp_path, session, align_json) -> None:
    root = tmp_path / "out"
    r = runner.invoke(app, ["apply", str(session), str(align_json), "--out", str(root), "--workers", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    pairs = read_pairs(root / PAIRS_FILE)
    assert pairs == sorted(pairs) and len(pairs) == 2
    assert (
        "bright/imgs_0119_3_vid000007_exp200_bright_000001__gain_16.02_exposure_2500.png",
        "dark/imgs_0119_3_vid000007_exp200_dark_000001__gain_10.00_exposure_2500.png",
    ) in pairs
    model = AlignModel.load(align_json)
    bright, dark = (root / p for p in pairs[0])
    b, d = cv2.imread(str(bright)), cv2.imread(str(dark))
    assert b.shape == d.shape == (model.crop[3], model.crop[2], 3) and b.dtype == np.uint8
    # Aligned: no residual shift between the two images (the LL one, developed dark, is brightness-normalised).
    (dx, dy), _ = cv2.phaseCorrelate(_png_gray_float(bright).astype(np.float64), _png_gray_float(dark).astype(np.float64))
    assert abs(dx) < 0.15 and abs(dy) < 0.15
    assert verify_dataset(root) == []
    manifest = json.loads((root / MANIFEST_FILE).read_text())["files"]
    assert manifest[pairs[0][0]]["sha256"] == sha256_file(bright) and PAIRS_FILE in manifest

    # Other settings rewrite the session's pairs only with --overwrite; the same settings again skip them all.
    r = runner.invoke(app, ["apply", str(session), str(align_json), "--out", str(root), "--frames", "all", "--workers", "2", "--quiet", "--overwrite"])
    assert r.exit_code == 0, r.output
    assert "6 pairs written, 0 already there" in r.output
    r = runner.invoke(app, ["apply", str(session), str(align_json), "--out", str(root), "--frames", "all", "--workers", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "0 pairs written, 6 already there" in r.output
    assert len(read_pairs(root / PAIRS_FILE)) == 6 and verify_dataset(root) == []
    assert not [p for p in root.rglob("*") if ".tmp-" in p.name]


def test_apply_frames_count_and_16_bit(tmp_path, session, align_json) -> None:
    root = tmp_path / "out16"
    r = runner.invoke(app, ["apply", str(session), str(align_json), "--out", str(root), "--frames", "2", "--bits", "16", "--workers", "1", "-q"])
    assert r.exit_code == 0, r.output
    pairs = read_pairs(root / PAIRS_FILE)
    assert sorted({p[0].split("_bright_")[1][:6] for p in pairs}) == ["000000", "000002"]
    assert cv2.imread(str(root / pairs[0][0]), cv2.IMREAD_UNCHANGED).dtype == np.uint16


def test_apply_with_lanczos_writes_the_crop(tmp_path, session, align_json) -> None:
    root = tmp_path / "lanczos"
    r = runner.invoke(app, ["apply", str(session), str(align_json), "--out", str(root), "--interpolation", "lanczos", "--workers", "1", "-q"])
    assert r.exit_code == 0, r.output
    model = AlignModel.load(align_json)
    bright = cv2.imread(str(root / read_pairs(root / PAIRS_FILE)[0][0]))
    assert bright.shape == (model.crop[3], model.crop[2], 3)


def test_apply_usage_errors(tmp_path, session, align_json) -> None:
    r = runner.invoke(app, ["apply", str(session), str(align_json), "--out", str(tmp_path / "o"), "--frames", "some"])
    assert r.exit_code == 2 and "--frames 'some'" in r.output
    r = runner.invoke(app, ["apply", str(session), str(align_json), "--out", str(tmp_path / "o"), "--mirror", "none"])
    assert r.exit_code == 2 and "estimated with mirror 'wl'" in r.output


@pytest.mark.parametrize("workers", ["1", "2"])
def test_interrupted_apply_keeps_finished_pairs_only(tmp_path, truth, align_json, workers) -> None:
    s = make_session(tmp_path / "broken.h5", h_true=truth, ks=(1, 2))
    with h5py.File(s, "a") as f:  # the second step's LL frames are the wrong size: the run stops there
        del f["scenes/s01/steps/2/ll"]
        ds = f.create_dataset("scenes/s01/steps/2/ll", data=np.zeros((3, H, W + 2), np.uint16))
        _frame_attrs(ds)
    root = tmp_path / "o"
    r = runner.invoke(app, ["apply", str(s), str(align_json), "--out", str(root), "--workers", workers, "-q"])
    assert r.exit_code == 2 and "is 322x200" in r.output
    assert len(read_pairs(root / PAIRS_FILE)) == 1 and verify_dataset(root) == []
    assert not [p for p in root.rglob("*") if ".tmp-" in p.name]


@pytest.mark.slow
def test_benchmark_script_runs_and_reports(tmp_path) -> None:
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_align.py"
    out = subprocess.run([sys.executable, str(script), "--width", "480", "--height", "300", "--seeds", "1", "--levels", "well,3@12", "--ref-frames", "1,4", "--apply-pairs", "2"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["accuracy"]["ll_mean_well"]["combined_mean_corner_px"] < 0.1
    assert set(result["accuracy"]) == {"ll_mean_well", "ll_mean_3_gain_12_frames_1", "ll_mean_3_gain_12_frames_4"}
    assert result["accuracy"]["ll_mean_3_gain_12_frames_4"]["combined_failures"] == 0
    entry = result["accuracy"]["ll_mean_3_gain_12_frames_4"]
    assert entry["gain_db"] == 12.0 and entry["check_correct_passes"] == 1 and entry["check_shifted_1_5px_fails"] == 1
    assert result["apply_pairs_per_s"] > 0 and result["apply_vs_plain_ratio"] > 0


def test_apply_refuses_metadata_that_breaks_the_name_grammar(tmp_path, truth, align_json) -> None:
    s = make_session(tmp_path / "site.h5", h_true=truth, ks=(1,), n_frames=1)
    with h5py.File(s, "a") as f:
        f["scenes/s01"].attrs["site"] = "north_gate"
    r = runner.invoke(app, ["apply", str(s), str(align_json), "--out", str(tmp_path / "o"), "--workers", "1", "-q"])
    assert r.exit_code == 2 and "scene 's01': site 'north_gate': a site holds only letters, digits and '-'" in r.output
    assert not (tmp_path / "o").exists()


def test_check_refuses_a_reference_flipped_unlike_the_alignment(session, align_json) -> None:
    r = runner.invoke(app, ["check", str(align_json), str(session), "--mirror", "none"])
    assert r.exit_code == 2 and "estimated with mirror 'wl'" in r.output
    r = runner.invoke(app, ["check", str(align_json), str(session)])
    assert r.exit_code == 0, r.output


def test_apply_refuses_two_scenes_with_the_same_release_names(tmp_path, truth, align_json) -> None:
    s = make_session(tmp_path / "dup.h5", h_true=truth, ks=(1,), n_frames=1)
    with h5py.File(s, "a") as f:
        f.copy("scenes/s01", "scenes/s02")
    r = runner.invoke(app, ["apply", str(s), str(align_json), "--out", str(tmp_path / "o"), "--workers", "1", "-q"])
    assert r.exit_code == 2 and "scenes need distinct (date, site, video_id)" in r.output


def test_bad_rig_config_is_a_clear_error(tmp_path, truth) -> None:
    s = make_session(tmp_path / "cfg.h5", h_true=truth, ks=(1,), n_frames=1)
    with h5py.File(s, "a") as f:
        f.attrs["rig_config"] = json.dumps({"mirror": "left"})
    r = runner.invoke(app, ["estimate", str(s), "--out", str(tmp_path / "A.json")])
    assert r.exit_code == 2 and "rig_config: field 'mirror' is 'left'" in r.output
    with h5py.File(s, "a") as f:
        f.attrs["rig_config"] = "{not json"
    r = runner.invoke(app, ["estimate", str(s), "--out", str(tmp_path / "A.json")])
    assert r.exit_code == 2 and "rig_config" in r.output and "JSON" in r.output  # worded by session_format or prepare
