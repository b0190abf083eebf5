"""The training benchmarks run and print the one JSON line their docs promise (tiny sizes: this checks that they
work, not what they measure; the figures are in docs/baselines.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(script: str, *args: str, timeout: int = 900) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_bench_baselines_prints_its_ratios() -> None:
    (row,) = _run("bench_baselines.py", "--backbone", "resnet18", "--batch-size", "2", "--input-size", "64", "48",
                  "--steps", "1", "--runs", "1")
    assert row["benchmark"] == "baselines"
    assert row["train_step_ratio"] > 0 and row["inference_ratio"] > 0
    assert row["params_lsbn_learnable"] > row["params_baseline"]


def test_bench_precision_measures_four_modes() -> None:
    (row,) = _run("bench_precision.py", "--batch-size", "2", "--input-size", "64", "48", "--steps", "1", "--threads", "1")
    assert set(row["step_s"]) == {"fp32", "fp32_channels_last", "bf16", "bf16_channels_last"}
    assert row["ratio_to_fp32"]["fp32"] == 1.0
    assert all(v > 0 for v in row["step_s"].values())
    assert row["cpu_bf16_flags"] is None or isinstance(row["cpu_bf16_flags"], list)


def test_bench_learning_trains_evaluates_and_summarises(tmp_path: Path) -> None:
    rows = _run("bench_learning.py", "--out", str(tmp_path), "--scenes", "4", "--size", "320x200", "--test-fraction", "0.5",
                "--variants", "baseline-all,lsbn-lupi", "--steps", "2", "--epochs", "1", "--input-size", "64x48",
                "--batch-size", "2", "--train-eval", "2", "--workers", "0")
    runs, summary = rows[:-1], rows[-1]
    assert [r["variant"] for r in runs] == ["baseline-all", "lsbn-lupi"]
    assert all(r["steps"] == 2 and set(r["AP"]) == {"LL-N", "LL-H", "LL-E", "LL-A", "WL"} for r in runs)
    assert all(0.0 <= ap <= 1.0 for r in runs for ap in r["AP"].values())
    assert summary["bench"] == "learning-summary" and summary["steps"] == 2
    assert summary["settings"]["amp"] is False  # float32 by default: bfloat16 autocast was 2-3x slower on CPUs without bf16 units
    assert set(summary["targets"]) == {"WL", "LL-A"}


def test_bench_learning_starts_from_local_imagenet_weights(tmp_path: Path) -> None:
    import torch

    from baselines.models import resnet

    weights = tmp_path / "resnet18-imagenet.pth"
    torch.save(resnet(18, num_classes=1000).state_dict(), weights)  # torchvision's key names and shapes
    rows = _run("bench_learning.py", "--out", str(tmp_path / "runs"), "--scenes", "4", "--size", "320x200", "--test-fraction", "0.5",
                "--variants", "lsbn-lupi", "--steps", "1", "--epochs", "1", "--input-size", "64x48", "--batch-size", "2",
                "--train-eval", "0", "--workers", "0", "--pretrained", str(weights))
    summary = rows[-1]
    assert summary["settings"]["pretrained"] == str(weights) and "from_scratch" not in summary["settings"]
    saved = torch.load(tmp_path / "runs" / "lsbn-lupi-seed0" / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert saved["config"]["pretrained"] == str(weights) and saved["config"]["from_scratch"] is False


def test_gpu_check_runs_every_check_on_a_cpu_at_tiny_size() -> None:
    """What a lent GPU runs, at CI size: simulate, pipeline vs model rate, three variants trained and evaluated,
    one torchrun step; one JSON line per check."""
    rows = _run("gpu_check.py", "--device", "cpu", "--tiny")
    checks = [r["check"] for r in rows]
    assert checks == ["simulate", "pipeline", "train", "train", "train", "torchrun", "detector-pipeline", "detector", "table6-chain", "onnx", "onnx", "summary"]
    pipeline = rows[1]
    assert pipeline["data_samples_per_s"] > 0 and pipeline["model_samples_per_s"] > 0 and pipeline["bound"] in ("data", "model")
    trained = {r["variant"]: r for r in rows if r["check"] == "train"}
    assert list(trained) == ["baseline-all", "lsbn", "lsbn-lupi"] and all(r["ok"] and r["steps"] == 2 for r in trained.values())
    summary = rows[-1]
    assert summary["failures"] == 0 and set(trained["lsbn"]["AP"]) == set(summary["splits"]) and summary["splits"]
    assert all(0.0 <= ap <= 1.0 for r in trained.values() for ap in r["AP"].values())
    assert rows[5]["ok"] is True


def test_bench_detector_data_compares_three_loaders() -> None:
    (row,) = _run("bench_detector_data.py", "--pairs", "2", "--epochs", "1")
    assert row["benchmark"] == "detector_data_pair" and row["input_size"] == [512, 800]
    assert set(row["pairs_per_s"]) == {"naive", "files", "packed"} and all(v > 0 for v in row["pairs_per_s"].values())
    assert row["pack_identical_to_files"] is True
    assert row["packed_vs_naive"] == pytest.approx(row["pairs_per_s"]["packed"] / row["pairs_per_s"]["naive"], rel=0.02)
