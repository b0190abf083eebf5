"""The trainer against the reference recipe: the official flip test, pretraining, checkpoints, TensorBoard,
mixed precision, the benchmark mode and LUPI under several processes.

Expectations are hand computations from the reference code's rules (sohyun-l/ExLPose, pytorch-cpn/), not our
own functions run twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from baselines.checkpoint import checkpoint_config, load_checkpoint, save_checkpoint
from baselines.cli import eval_app, train_app
from baselines.config import make_config
from baselines.engine import predict_heatmaps
from baselines.models import build_cpn
from exlpose_data.errors import InputError

from .test_baselines_train import SMALL, make_tiny_release, one_torch_thread  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.slow  # trains and evaluates models

REPO = Path(__file__).parent.parent
K = 14


class _LinearNet(torch.nn.Module):
    """A stand-in network whose heatmaps are a known function of its input: channel k of pixel (i, j) is
    ``(k + 1) * x[0, 2i, 2j] + x[1, 2i, 2j + 1]`` (an 8x8 crop, 4x4 heatmaps)."""

    def forward(self, x: torch.Tensor, condition: str | None = None) -> SimpleNamespace:
        base = x[:, 0, ::2, ::2]
        other = x[:, 1, ::2, 1::2]
        maps = torch.stack([(k + 1) * base + other for k in range(K)], dim=1)
        return SimpleNamespace(heatmaps=maps)


def _by_hand(x: np.ndarray) -> np.ndarray:
    return np.stack([(k + 1) * x[0, ::2, ::2] + x[1, ::2, 1::2] for k in range(K)])


def test_official_flip_test_reproduces_the_reference_faults():
    rng = np.random.default_rng(0)
    small = rng.uniform(0, 0.9, (3, 8, 8))  # max <= 1: the mirrored input is left as it is
    big = rng.uniform(0, 3.0, (3, 8, 8))  # max > 1: its mirrored input is divided by 255 once more
    x = torch.tensor(np.stack([small, big]), dtype=torch.float32)
    out = predict_heatmaps(_LinearNet(), x, "ll", flip_test="official").numpy()
    # COCO-17's pairs on 14 joints, swapped in the reference's order.
    pairs = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)]
    for b, img in enumerate((small, big)):
        mirrored = img[:, :, ::-1] / (255.0 if img[:, :, ::-1].max() > 1 else 1.0)
        back = list(_by_hand(mirrored)[:, :, ::-1])
        for q, w in pairs:
            back[q], back[w] = back[w], back[q]
        expected = 0.5 * (_by_hand(img) + np.stack(back))
        assert np.allclose(out[b], expected, atol=1e-5), b
    # Ours swaps CrowdPose's pairs (0, 1), (2, 3), ... and leaves head and neck.
    ours = predict_heatmaps(_LinearNet(), x, "ll", flip_test="ours").numpy()
    none = predict_heatmaps(_LinearNet(), x, "ll", flip_test="none").numpy()
    assert np.allclose(none[0], _by_hand(small), atol=1e-6)
    assert not np.allclose(ours, out)


def test_flip_test_setting_and_old_boolean_configs():
    assert make_config({}).flip_test == "ours"
    assert make_config({"flip_test": True}).flip_test == "ours"
    assert make_config({"flip_test": False}).flip_test == "none"
    assert make_config({"flip_test": "official"}).flip_test == "official"
    with pytest.raises(InputError, match="flip_test"):
        make_config({"flip_test": "mirror"})


def test_version_1_checkpoints_keep_the_inputs_they_were_trained_with():
    old = {"format": "exlpose-cpn", "version": 1, "model": {}, "config": {"variant": "lsbn"}}
    cfg = make_config(checkpoint_config(old))
    assert (cfg.wl_normalisation, cfg.padding, cfg.global_mask) == ("imagenet", "zero", "labelled")
    new = {"format": "exlpose-cpn", "version": 2, "model": {}, "config": {"variant": "lsbn"}}
    cfg = make_config(checkpoint_config(new))
    assert (cfg.wl_normalisation, cfg.padding, cfg.global_mask) == ("reference", "mean", "visible")


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_release(tmp_path_factory.mktemp("release"))


def test_training_needs_pretrained_weights_or_from_scratch(release, tmp_path):
    runner = CliRunner()
    args = ["--dataset", str(release), "--output-dir", str(tmp_path / "x"), "--backbone", "resnet18", "--no-progress"]
    r = runner.invoke(train_app, args)
    assert r.exit_code == 2
    assert "no ImageNet weights given" in r.output and "--pretrained PATH" in r.output and "--from-scratch" in r.output
    assert "resnet50-19c8e357.pth" in r.output
    assert not (tmp_path / "x").exists()
    fake = tmp_path / "w.pth"
    fake.write_bytes(b"")
    r = runner.invoke(train_app, [*args, "--from-scratch", "--pretrained", str(fake)])
    assert r.exit_code == 2 and "exclude each other" in r.output


def _run(release: Path, out: Path, *extra: str) -> dict:
    r = CliRunner().invoke(train_app, ["--dataset", str(release), "--output-dir", str(out), *SMALL, "--steps-per-epoch", "2",
                                       "--val-splits", "", "--workers", "0", *extra])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_tensorboard_scalars_are_written(release, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    record = _run(release, tmp_path, "--variant", "lsbn-lupi", "--epochs", "1")
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss/total", "loss/lupi", "lr", "step/total", "step/pose_ll"} <= tags
    assert [e.step for e in acc.Scalars("step/total")] == [1, 2]
    assert acc.Scalars("loss/total")[0].value == pytest.approx(record["loss/total"], rel=1e-6)


@pytest.mark.parametrize("extra", [("--amp",), ("--channels-last",)])
def test_mixed_precision_and_channels_last_train_on_cpu(release, tmp_path, extra):
    record = _run(release, tmp_path, "--variant", "lsbn-lupi", "--epochs", "1", *extra)
    assert np.isfinite(record["loss/total"]) and record["loss/lupi"] >= 0


def test_benchmark_mode_reports_data_and_model_rates(release, tmp_path):
    r = CliRunner().invoke(train_app, ["--dataset", str(release), "--output-dir", str(tmp_path / "b"), *SMALL, "--variant", "lsbn-lupi",
                                       "--workers", "0", "--benchmark-steps", "2"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["data_samples_per_s"] > 0 and out["model_samples_per_s"] > 0
    assert out["bound"] == ("data" if out["data_samples_per_s"] < out["model_samples_per_s"] else "model")
    assert out["batch_size"] == 2 and out["device"] == "cpu"
    assert not (tmp_path / "b" / "checkpoint.pth").exists()


def test_eval_records_the_flip_test_used(release, tmp_path):
    cfg = make_config({"variant": "lsbn", "backbone": "resnet18", "input_size": (64, 48), "heatmap_size": (16, 12)})
    torch.manual_seed(0)
    net = build_cpn("resnet18", lsbn=True, heatmap_size=(16, 12))
    ckpt = save_checkpoint(tmp_path / "c.pth", model=net.state_dict(), config=cfg.to_dict(), epoch=0)
    args = ["model", str(ckpt), "--dataset", str(release), "--splits", "WL", "--workers", "0", "--json"]
    tables = {}
    for mode in ("ours", "official", "none"):
        r = CliRunner().invoke(eval_app, [*args, "--flip-test", mode, "--save-predictions", str(tmp_path / mode)])
        assert r.exit_code == 0, r.output
        tables[mode] = json.loads(r.stdout)
        assert tables[mode]["flip_test"] == mode
        assert json.loads((tmp_path / mode / "evaluation.json").read_text())["flip_test"] == mode
    r = CliRunner().invoke(eval_app, [*args, "--flip-test", "sideways"])
    assert r.exit_code == 2 and "--flip-test 'sideways'" in r.output


def test_lupi_weight_and_sync_bn_do_not_depend_on_the_world_size(tmp_path):
    """1 process x 8 pairs and 2 processes x 4 pairs (gloo, DDP) give the same gradients: with BatchNorm
    frozen (the LUPI sum's world-size factor alone), and in training mode with --sync-bn (global statistics,
    LSBN branches included)."""
    out = tmp_path / "grads.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "tests.ddp_gradients", str(out)], capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = torch.load(out, weights_only=True)
    for mode in ("frozen-bn", "sync-bn"):
        single, double = result[mode]["single"], result[mode]["double"]
        assert single.keys() == double.keys() and len(single) > 100
        scale = max(float(g.abs().max()) for g in single.values())
        # float64; gradients that are zero in exact arithmetic (a bias followed by BatchNorm) compare absolutely.
        worst = max(float((single[k] - double[k]).abs().max() / (single[k].abs().max() + 1e-9 * scale)) for k in single)
        assert worst < 1e-7, (mode, worst)  # a missing world-size factor would show as ~1e-2
    # Without the world-size factor the LUPI part of the gradient would halve: the check can fail.
    assert result["lupi-share"] > 0.01


def test_globalnet_convolutions_start_as_the_references():
    # N(0, sqrt(2 / n)) with n = k * k * out_channels (its globalNet.py), RefineNet at PyTorch's default.
    torch.manual_seed(0)
    net = build_cpn("resnet18", heatmap_size=(16, 12))
    w = net.global_net.predicts[0][1].weight.detach()  # 3x3, 256 -> 14
    assert float(w.std()) == pytest.approx((2.0 / (3 * 3 * 14)) ** 0.5, rel=0.05)
    lateral = net.global_net.laterals[0][0].weight.detach()  # 1x1, 512 -> 256
    assert float(lateral.std()) == pytest.approx((2.0 / 256) ** 0.5, rel=0.05)
    final = net.refine_net.final[1].weight.detach()  # PyTorch's kaiming_uniform(a=sqrt(5)): std 1 / sqrt(3 * fan_in)
    assert float(final.std()) == pytest.approx((1.0 / (3 * 256 * 9)) ** 0.5, rel=0.05)


def test_head_init_target_scale_matches_a_target_maps_statistics():
    import cv2

    from baselines.models.cpn import init_output_scale

    net = init_output_scale(build_cpn("resnet18", heatmap_size=(16, 12)))
    for level, k in enumerate((15, 11, 9, 7)):
        delta = np.zeros((16, 12))
        delta[8, 6] = 1.0
        target = cv2.GaussianBlur(delta, (k, k), 0, borderType=cv2.BORDER_CONSTANT)
        target = target / target.max() * 255
        bn = net.global_net.predict_norms[level]
        assert float(bn.weight[0].detach()) == pytest.approx(target.std(), rel=1e-4)
        assert float(bn.bias[3].detach()) == pytest.approx(target.mean(), rel=1e-4)
    final = net.refine_net.final[-1]
    assert float(final.weight[5].detach()) == pytest.approx(float(net.global_net.predict_norms[3].weight[0].detach()))
    assert make_config({}).head_init == "reference"  # the reference's weight 1, bias 0 by default
    assert float(build_cpn("resnet18", heatmap_size=(16, 12)).refine_net.final[-1].weight[0].detach()) == 1.0


def test_sync_bn_in_one_process_warns_and_trains(release, tmp_path):
    r = CliRunner().invoke(train_app, ["--dataset", str(release), "--output-dir", str(tmp_path), *SMALL, "--steps-per-epoch", "1",
                                       "--val-splits", "", "--workers", "0", "--variant", "lsbn", "--epochs", "1", "--sync-bn"])
    assert r.exit_code == 0, r.output
    assert "--sync-bn: one process" in r.stderr and "Traceback" not in r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["epoch"] == 1


def test_amp_on_a_cpu_without_bfloat16_units_warns():
    from baselines.train import TrainWarning, check_precision

    cpu, amp = torch.device("cpu"), make_config({"amp": True})
    with pytest.warns(TrainWarning, match="without bfloat16 units"):
        check_precision(amp, cpu, flags=[])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_precision(amp, cpu, flags=["amx_bf16", "avx512_bf16"])  # the units are there
        check_precision(make_config({"amp": False}), cpu, flags=[])  # float32: nothing to say
        check_precision(amp, torch.device("meta"), flags=[])  # not a CPU
