"""LIME against hand computations, the enhancer plumbing (dataset transform, cache, CLI), lime-baseline-all."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from baselines.enhance import EnhancedSource, enhance_bgr, enhance_dataset, fill_cache, parse_enhancer
from baselines.enhance.cli import app as enhance_app
from baselines.enhance.base import identity_key
from baselines.enhance.lime import (AMG_TOLERANCE, Lime, LimeSettings, _Multigrid, initial_illumination, lime_enhance, refine_illumination,
                                    smoothness_weights, system_matrix)
from exlpose_data.datasets import ExLPoseTopDown
from exlpose_data.errors import UsageError

from .test_baselines_train import one_torch_thread  # noqa: F401 (autouse fixture)
from .test_comparisons import sim  # noqa: F401 (fixture)

ALPHA, EPS, GAMMA = 0.15, 1e-3, 0.8


def test_initial_illumination_is_the_channel_maximum():
    img = np.array([[[0.1, 0.3, 0.2], [0.5, 0.0, 0.4]]])
    assert initial_illumination(img).tolist() == [[0.3, 0.5]]
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        initial_illumination(np.zeros((2, 2)))


@pytest.mark.parametrize("strategy", [1, 2, 3])
@pytest.mark.parametrize("vertical", [False, True])
def test_two_pixel_image_by_hand(strategy, vertical):
    img = np.array([[[0.2, 0.1, 0.1], [0.1, 0.4, 0.2]]])  # T0 = (0.2, 0.4), one difference of 0.2
    if vertical:
        img = img.transpose(1, 0, 2)
    g = 0.2
    # W = 1 (strategy 1) or 1 / (|grad| + eps) (2; 3 too: a Gaussian over a single difference is that difference).
    w = 1 / (g + EPS) if strategy == 1 else 1 / (g + EPS) ** 2
    aw = ALPHA * w
    # (I + alpha w D^T D) t = t0 with D = [-1, 1]: t1 + t2 = 0.6 and t2 - t1 = 0.2 / (1 + 2 alpha w).
    t = np.array([0.3 - 0.1 / (1 + 2 * aw), 0.3 + 0.1 / (1 + 2 * aw)])
    expected = np.clip(img.reshape(2, 3) / (t ** GAMMA)[:, None], 0, 1)  # 0.4 / 0.34^0.8 > 1 is clipped
    out = lime_enhance(img, LimeSettings(strategy=strategy))
    assert np.allclose(out.reshape(2, 3), expected, atol=1e-6)


def test_refinement_minimises_the_objective_on_a_small_grid():
    rng = np.random.default_rng(0)
    h, w = 3, 4
    t0 = rng.uniform(0.05, 0.5, (h, w))
    w_h, w_v = rng.uniform(0.1, 5, (h, w - 1)), rng.uniform(0.1, 5, (h - 1, w))
    # The objective ||t - t0||^2 + alpha sum w (t_j - t_i)^2, with its difference operator written out edge by edge.
    rows, weights = [], []
    for y in range(h):
        for x in range(w):
            for (dy, dx), wd in (((0, 1), w_h), ((1, 0), w_v)):
                if y + dy < h and x + dx < w:
                    r = np.zeros(h * w)
                    r[y * w + x], r[(y + dy) * w + x + dx] = -1, 1
                    rows.append(r)
                    weights.append(wd[y, x])
    d = np.array(rows)
    a = np.eye(h * w) + ALPHA * d.T @ np.diag(weights) @ d
    expected = np.linalg.solve(a, t0.ravel()).reshape(h, w)
    assert np.allclose(refine_illumination(t0, w_h, w_v, ALPHA), expected, atol=1e-12)
    # Strategy 3's weights at a pixel far from the border: W = 1 / (|Gaussian-smoothed grad| + eps).
    ramp = np.tile(np.arange(9) * 0.01, (9, 1))  # constant horizontal gradient 0.01, none vertical
    w_h3, w_v3 = smoothness_weights(ramp, LimeSettings())
    assert w_h3[4, 4] == pytest.approx(1 / (0.01 + EPS) ** 2) and w_v3[4, 4] == pytest.approx(1 / EPS**2)


def test_constant_and_black_images():
    img = np.broadcast_to(np.array([0.2, 0.1, 0.05]), (5, 6, 3))
    # No gradient: the refined map is T0 = 0.2 everywhere, whatever the scale it is solved at.
    for downscale in (1.0, 0.5):
        out = lime_enhance(img, LimeSettings(downscale=downscale))
        assert np.allclose(out, np.array([0.2, 0.1, 0.05]) / 0.2**GAMMA, atol=1e-6)
    assert np.array_equal(lime_enhance(np.zeros((4, 4, 3))), np.zeros((4, 4, 3)))
    bright = lime_enhance(np.full((3, 3, 3), 0.9))
    assert np.allclose(bright, 0.9**0.2, atol=1e-6)  # 0.9 / 0.9^0.8
    with pytest.raises(ValueError, match="strategy"):
        LimeSettings(strategy=4)  # type: ignore[arg-type]


def test_enhance_bgr_scales_both_depths_and_parse_enhancer():
    lime = Lime()
    img8 = np.full((2, 3, 3), 51, np.uint8)  # 0.2 in every channel
    out = enhance_bgr(lime, img8)
    assert out.dtype == np.uint16 and np.all(out == round(0.2 / 0.2**GAMMA * 65535))
    img16 = np.full((2, 3, 3), 13107, np.uint16)  # 0.2 as 16-bit
    assert np.array_equal(enhance_bgr(lime, img16), out)
    assert isinstance(parse_enhancer("lime"), Lime) and parse_enhancer("lime", lime_downscale=0.5).settings.downscale == 0.5
    with pytest.raises(UsageError, match="enhancer 'llflow'"):
        parse_enhancer("llflow")


def test_enhance_lime_cli(tmp_path):
    img = np.zeros((4, 5, 3), np.uint8)
    img[:] = (10, 20, 40)  # BGR: T0 = 40 / 255
    cv2.imwrite(str(tmp_path / "night.png"), img)
    runner = CliRunner()
    r = runner.invoke(enhance_app, ["lime", str(tmp_path / "night.png"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    got = cv2.imread(str(tmp_path / "out" / "night.png"), cv2.IMREAD_UNCHANGED)
    t = (40 / 255) ** GAMMA
    assert got.dtype == np.uint8 and np.abs(got.astype(float) - np.array([10, 20, 40]) / 255 / t * 255).max() <= 1
    r = runner.invoke(enhance_app, ["lime", str(tmp_path / "night.png"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0 and "already enhanced with these settings" in r.output  # a re-run skips done images
    r = runner.invoke(enhance_app, ["lime", str(tmp_path / "night.png"), "--out", str(tmp_path / "out"), "--gamma", "0.5"])
    assert r.exit_code == 2 and "pass --overwrite" in r.output
    r = runner.invoke(enhance_app, ["lime", str(tmp_path / "none.png"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "none.png: no such image or folder" in r.output
    r = runner.invoke(enhance_app, ["lime", str(tmp_path / "night.png"), "--out", str(tmp_path / "o"), "--strategy", "5"])
    assert r.exit_code == 2 and "strategy must be 1, 2 or 3" in r.output


class Counting:
    """An enhancer that doubles the image and counts its calls."""

    name = "double"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.clip(2 * rgb, 0, 1)

    def identity(self) -> dict:
        return {"enhancer": self.name}


def test_dataset_transform_enhances_ll_only_and_caches(sim, tmp_path):  # noqa: F811
    ann = sim / "annotations" / "ExLPose_test_LL-A.json"
    plain = ExLPoseTopDown(sim, ann, condition="pair", train=False, input_size=(64, 48), heatmap_size=(16, 12), ll_scaling=None, wl_normalisation=None)
    counting = Counting()
    ds = enhance_dataset(ExLPoseTopDown(sim, ann, condition="pair", train=False, input_size=(64, 48), heatmap_size=(16, 12),
                                        ll_scaling=None, wl_normalisation=None), counting, tmp_path / "cache")
    assert isinstance(ds.source, EnhancedSource)
    computed = fill_cache(ds, workers=1)  # in this process, where the calls are counted
    n_ll = len({img.ll_path for img in ds.index.images})
    assert computed == counting.calls == n_ll and fill_cache(ds) == 0  # the second pass finds everything cached
    a, b = plain[0], ds[0]
    assert np.array_equal(a["wl"].numpy(), b["wl"].numpy())
    inside = a["ll"].numpy() < 0.45  # below 0.5 the doubled value is not clipped (16-bit rounding aside)
    assert np.allclose(b["ll"].numpy()[inside], 2 * a["ll"].numpy()[inside], atol=2 / 255 + 1e-4)
    assert counting.calls == n_ll  # reading samples used the cache
    cached = sorted((tmp_path / "cache").rglob("*.png"))
    assert len(cached) == n_ll and cached[0].parent.parts[-2].startswith("double-")
    assert cv2.imread(str(cached[0]), cv2.IMREAD_UNCHANGED).dtype == np.uint16


@pytest.mark.slow
def test_lime_baseline_all_trains_and_evaluates(sim, tmp_path):  # noqa: F811
    from baselines.cli import train_app

    out = tmp_path / "run"
    r = CliRunner().invoke(train_app, ["--variant", "lime-baseline-all", "--dataset", str(sim), "--output-dir", str(out), "--backbone", "resnet18",
                                       "--input-size", "64x48", "--heatmap-size", "16x12", "--batch-size", "2", "--epochs", "1",
                                       "--steps-per-epoch", "2", "--workers", "0", "--no-progress", "--from-scratch", "--val-splits", "LL-A,WL"])
    assert r.exit_code == 0, r.output
    record = json.loads(r.stdout.strip().splitlines()[-1])
    assert 0 <= record["AP/LL-A"] <= 1 and record["loss/total"] > 0
    key_dirs = list((out / "enhanced").iterdir())
    assert len(key_dirs) == 1 and key_dirs[0].name.startswith("lime-")
    train_ll = {Path(p).name for p in (sim / "brightPath2darkPath.txt").read_text().split() if p.startswith("dark/")}
    assert {p.name[: -len(".png")] for p in key_dirs[0].rglob("*.png")} == train_ll  # train and test LL images, once each
    # the cache records what made it, and that the fill finished
    entry = json.loads((key_dirs[0] / ".exlpose-provenance.json").read_text())["steps"]["enhancement cache"]
    assert entry["state"] == "complete" and entry["settings"]["enhancer"]["enhancer"] == "lime"


def test_predict_enhances_ll_images_of_an_enhancer_checkpoint(tmp_path):
    from baselines.predict import predict

    from .test_comparisons import make_checkpoint

    night = np.full((60, 40, 3), 2, np.uint8)
    night[:, 20:] = 40  # LIME turns a 20:1 contrast into about 1.8:1, so the network sees another input
    cv2.imwrite(str(tmp_path / "night.png"), night)
    cv2.imwrite(str(tmp_path / "enhanced.png"), enhance_bgr(Lime(), night))
    lime_ckpt = make_checkpoint(tmp_path / "lime" / "checkpoint.pth", "lime-baseline-all", seed=5)
    plain_ckpt = make_checkpoint(tmp_path / "plain" / "checkpoint.pth", "baseline-all", seed=5)  # the same weights
    with_enhancer = predict(lime_ckpt, [tmp_path / "night.png"])
    by_hand = predict(plain_ckpt, [tmp_path / "enhanced.png"])
    raw = predict(plain_ckpt, [tmp_path / "night.png"])
    assert with_enhancer[0]["keypoints"] == by_hand[0]["keypoints"] != raw[0]["keypoints"]


def dark_image(h: int, w: int, seed: int) -> np.ndarray:
    """An LL-like RGB image on [0, 1]: a smooth scene of mean about 2 / 255 with shot noise, quantised to 8 bits."""
    rng = np.random.default_rng(seed)
    scene = cv2.resize(rng.uniform(0, 1, (max(2, h // 8), max(2, w // 8), 3)), (w, h), interpolation=cv2.INTER_CUBIC)
    scene = np.clip(scene, 0, None) * (2.0 / scene.mean())
    return np.clip(np.round(rng.poisson(scene * 4) / 4), 0, 255) / 255.0


@pytest.mark.parametrize("strategy", [1, 2, 3])
@pytest.mark.parametrize("shape", [(48, 64), (37, 101), (1, 900)])
def test_multigrid_solve_matches_the_direct_solve(strategy, shape):
    img = dark_image(*shape, seed=strategy)
    settings = LimeSettings(strategy=strategy)
    t0 = initial_illumination(img)
    weights = smoothness_weights(t0, settings)
    # big enough for a real hierarchy (the coarsest level is solved densely), so the multigrid cycle is what is tested
    assert len(_Multigrid(system_matrix(*weights, settings.alpha, t0.shape)).prolongators) >= 1
    direct = refine_illumination(t0, *weights, settings.alpha, "direct")
    amg = refine_illumination(t0, *weights, settings.alpha, "amg")
    residual = system_matrix(*weights, settings.alpha, t0.shape) @ amg.ravel() - t0.ravel()
    assert np.linalg.norm(residual) <= AMG_TOLERANCE * np.linalg.norm(t0)
    assert np.abs(amg - direct).max() < 1e-4 * t0.max()
    enhanced_direct = lime_enhance(img, LimeSettings(strategy=strategy, solver="direct"))
    enhanced = lime_enhance(img, settings)
    difference = np.abs(enhanced.astype(np.float64) - enhanced_direct)
    # the target is a mean difference of 0.01 on [0, 1]; measured: about 1e-8, far inside one 16-bit step
    assert difference.mean() < 1e-6 and difference.max() < 1 / 65535
    assert settings.solver == "amg"  # the default


def test_solver_setting_and_cache_identity():
    with pytest.raises(ValueError, match="solver must be amg or direct"):
        LimeSettings(solver="lu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="solver must be amg or direct"):
        refine_illumination(np.zeros((2, 2)), np.ones((2, 1)), np.ones((1, 2)), ALPHA, "lu")  # type: ignore[arg-type]
    # alpha 0 is the identity system: t = t0 by either solver
    t0 = np.arange(6.0).reshape(2, 3)
    assert np.array_equal(refine_illumination(t0, np.ones((2, 2)), np.ones((1, 3)), 0.0), t0)
    # The solver is not part of the cache key: both give the same image within 16-bit rounding, so caches filled by
    # the direct solve (before the solver was a setting) stay valid: the identity is the one they were keyed by.
    expected = {"enhancer": "lime", "alpha": 0.15, "sigma": 2.0, "gamma": 0.8, "eps": 1e-3, "strategy": 3,
                "illumination_floor": 1e-3, "downscale": 1.0}
    assert Lime().identity() == Lime(LimeSettings(solver="direct")).identity() == expected
    assert identity_key(Lime()) == identity_key(Lime(LimeSettings(solver="direct")))


def test_enhance_lime_cli_solver_option(tmp_path):
    img = (dark_image(40, 56, seed=7) * 255).round().astype(np.uint8)[:, :, ::-1]
    cv2.imwrite(str(tmp_path / "night.png"), img)
    runner = CliRunner()
    outputs = {}
    for solver in ("direct", "amg"):
        r = runner.invoke(enhance_app, ["lime", str(tmp_path / "night.png"), "--out", str(tmp_path / solver), "--bits", "16", "--solver", solver, "--workers", "1"])
        assert r.exit_code == 0, r.output
        outputs[solver] = cv2.imread(str(tmp_path / solver / "night.png"), cv2.IMREAD_UNCHANGED).astype(int)
    assert outputs["direct"].max() > 10000  # a real enhancement, not a black image
    assert np.abs(outputs["amg"] - outputs["direct"]).max() <= 1  # one 16-bit step at most
    r = runner.invoke(enhance_app, ["lime", str(tmp_path / "night.png"), "--out", str(tmp_path / "o"), "--solver", "cholesky"])
    assert r.exit_code == 2 and "solver must be amg or direct" in r.output
    r = runner.invoke(enhance_app, ["lime", str(tmp_path / "night.png"), "--out", str(tmp_path / "o"), "--workers", "0"])
    assert r.exit_code == 2 and "--workers" in r.output


def test_default_workers_follow_the_affinity(monkeypatch):
    from baselines.enhance.transform import default_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 3, 5})
    assert default_workers() == 3


@pytest.mark.slow
def test_workers_fill_and_cli_write_the_same_files_as_one_worker(sim, tmp_path):  # noqa: F811
    ann = sim / "annotations" / "ExLPose_test_LL-A.json"

    def dataset(cache: Path) -> ExLPoseTopDown:
        ds = ExLPoseTopDown(sim, ann, condition="pair", train=False, input_size=(64, 48), heatmap_size=(16, 12), ll_scaling=None, wl_normalisation=None)
        return enhance_dataset(ds, Lime(), cache)

    seen: list[str] = []
    one, two = dataset(tmp_path / "one"), dataset(tmp_path / "two")
    n = fill_cache(one, workers=1)
    assert n >= 2 and fill_cache(two, on_image=seen.append, workers=2) == n and sorted(seen) == sorted(two.source.paths)
    files_one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    files_two = sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.png"))
    assert len(files_one) == n and files_one == files_two
    assert all((tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes() for f in files_one)
    # the command: three images in two worker processes, the same files as in one
    images = sorted((sim / "dark").rglob("*.png"))[:3]
    assert len(images) == 3
    for workers in (1, 2):
        r = CliRunner().invoke(enhance_app, ["lime", *map(str, images), "--out", str(tmp_path / f"cli{workers}"), "--workers", str(workers)])
        assert r.exit_code == 0, r.output
    assert all((tmp_path / "cli1" / f"{p.stem}.png").read_bytes() == (tmp_path / "cli2" / f"{p.stem}.png").read_bytes() for p in images)
