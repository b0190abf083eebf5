"""One command that proves the reference trainer on a GPU: data, training, evaluation, torchrun.

    python benchmarks/gpu_check.py                            # a CUDA machine: the reference size, ~2 min per variant
    python benchmarks/gpu_check.py --device cpu --tiny        # anywhere (CI): a tiny release and model, a few steps

On the device it simulates a release with all cores (200 scenes by default), measures the data pipeline's samples/s
beside the model's (``exlpose-train --benchmark-steps``: the accelerator must not wait for data), trains
``baseline-all``, ``lsbn`` and ``lsbn-lupi`` from scratch at the reference size (ResNet-50, 256x192 input, 64x48
heatmaps, 32 pairs per step, AMP, channels-last) for ``--minutes`` each (the step count is fixed from the measured
model rate before training, the same for every variant), evaluates each on LL-N/H/E/A and WL (the splits the
simulated test scenes fill), and runs one training step under ``torchrun`` with one process. Every result is one
JSON line on stdout (``"check"`` names it); the last line sums up. Then the person detector of Table 6: an
``lsbn-lupi`` detector's data pipeline beside its model rate, trained ``--detector-steps`` steps (300 by default; ResNet-50, 512x800 input, 32 pairs per
step, AMP), its box AP on LL-A and WL, its boxes feeding the ``lsbn-lupi`` pose network (``exlpose-eval model
--boxes``), and both models exported to ONNX with their parity checks.

Each check runs the toolkit's own commands in subprocesses, exactly as a user would, so the figures include process
start-up; a failing command ends the check with its exit code and the tail of its error output.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("baseline-all", "lsbn", "lsbn-lupi")
SPLITS = ("LL-N", "LL-H", "LL-E", "LL-A", "WL")
REFERENCE = {"backbone": "resnet50", "input_size": "256x192", "heatmap_size": "64x48", "batch_size": 32}
TINY = {"backbone": "resnet18", "input_size": "64x48", "heatmap_size": "16x12", "batch_size": 4}
DETECTOR = {"backbone": "resnet50", "input_size": "512x800", "batch_size": 32}
TINY_DETECTOR = {"backbone": "resnet18", "input_size": "64x96", "batch_size": 4}
ROOT = Path(__file__).resolve().parents[1]


class CheckFailed(RuntimeError):
    """A toolkit command failed; the message holds its exit code and the end of its error output."""


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def exlpose(args: list[str], *, env: dict[str, str] | None = None, timeout: float | None = None) -> tuple[str, float]:
    """Run ``exlpose ARGS`` from this checkout; (stdout, seconds)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "exlpose", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    if proc.returncode != 0:
        raise CheckFailed(f"exlpose {' '.join(args[:2])} exited {proc.returncode}: {proc.stderr.strip()[-600:]}")
    return proc.stdout, time.perf_counter() - start


def last_json(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


def train_args(size: dict, args: argparse.Namespace, release: Path, out: Path, variant: str) -> list[str]:
    gpu = args.device.startswith("cuda")
    return ["--variant", variant, "--dataset", str(release), "--output-dir", str(out), "--backbone", size["backbone"],
            "--input-size", size["input_size"], "--heatmap-size", size["heatmap_size"], "--batch-size", str(size["batch_size"]),
            "--device", args.device, "--workers", str(args.workers), "--from-scratch", "--val-splits", "", "--no-progress",
            "--seed", str(args.seed), *(["--amp", "--channels-last"] if gpu else [])]


def training_samples(release: Path, *, images: bool) -> int:
    """Samples per epoch of the release's training file: its images (the detector) or its labelled people (pose)."""
    doc = json.loads((release / "annotations" / "ExLPose_train_LL.json").read_text())
    if images:
        return len(doc["images"])
    return sum(1 for a in doc["annotations"] if not a.get("iscrowd") and any(v > 0 for v in a["keypoints"][2::3]))


def schedule(steps: int, samples: int, batch: int) -> tuple[int, int]:
    """``(epochs, steps per epoch)`` that train at least ``steps`` steps: ``--steps-per-epoch`` only caps an epoch,
    so a small release needs several epochs (the loader drops the last partial batch)."""
    per_epoch = min(steps, samples // batch)
    if per_epoch < 1:
        raise CheckFailed(f"the training file holds {samples} samples, fewer than one batch of {batch}: simulate more scenes")
    return -(-steps // per_epoch), per_epoch


def filled_splits(release: Path) -> list[str]:
    """The test splits whose annotation file holds at least one person."""
    out = []
    for split in SPLITS:
        f = release / "annotations" / f"ExLPose_test_{split}.json"
        if f.is_file() and json.loads(f.read_text())["annotations"]:
            out.append(split)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--tiny", action="store_true", help="a tiny release and model, a few steps: the CPU check CI runs")
    parser.add_argument("--minutes", type=float, default=2.0, help="training budget per variant (default 2)")
    parser.add_argument("--scenes", type=int, default=None, help="simulated scenes (default 200; 4 with --tiny)")
    parser.add_argument("--workers", type=int, default=None, help="data loader processes (default min(8, CPUs); 0 with --tiny)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per variant, instead of the --minutes budget")
    parser.add_argument("--detector-steps", type=int, default=None, help="person-detector training steps (default 300; 2 with --tiny)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for the release and runs (default: a temporary one)")
    args = parser.parse_args(argv)
    size = TINY if args.tiny else REFERENCE
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    args.workers = (0 if args.tiny else min(8, cpus)) if args.workers is None else args.workers
    scenes = args.scenes or (4 if args.tiny else 200)
    frame = "192x120" if args.tiny else "640x400"
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        release = work / "release"
        try:
            if not (release / "manifest.json").is_file():
                _, seconds = exlpose(["simulate", "release", "--out", str(release), "--scenes", str(scenes), "--size", frame,
                                      "--frames", "1", "--seed", str(args.seed), "--workers", "0", "--quiet"])
                emit({"check": "simulate", "scenes": scenes, "size": frame, "workers": cpus, "seconds": round(seconds, 1)})
            steps_probe = 3 if args.tiny else 20
            out, _ = exlpose(["train", *train_args(size, args, release, work / "bench", "lsbn-lupi"), "--benchmark-steps", str(steps_probe)])
            rates = last_json(out)
            emit({"check": "pipeline", "device": args.device, **{k: rates[k] for k in rates if k != "check"},
                  "gpu_waits_for_data": rates.get("bound") == "data"})
            model_rate = float(rates.get("model_samples_per_s") or 1.0)
            steps = args.steps or max(2, int(args.minutes * 60 * model_rate / size["batch_size"]))
            if args.tiny and args.steps is None:
                steps = 2
        except CheckFailed as exc:
            emit({"check": "setup", "ok": False, "error": str(exc)})
            return 1
        splits = filled_splits(release)
        for variant in VARIANTS:
            run = work / "runs" / variant
            try:
                epochs, per_epoch = schedule(steps, training_samples(release, images=False), size["batch_size"])
                _, train_s = exlpose(["train", *train_args(size, args, release, run, variant), "--epochs", str(epochs),
                                      "--steps-per-epoch", str(per_epoch), *(["--overwrite"] if run.exists() else [])])
                out, eval_s = exlpose(["eval", "model", str(run / "checkpoint.pth"), "--dataset", str(release), "--splits", ",".join(splits),
                                       "--device", args.device, "--workers", str(args.workers), "--json"])
                table = last_json(out)
                emit({"check": "train", "variant": variant, "steps": epochs * per_epoch, "epochs": epochs, "pairs_per_step": size["batch_size"], "train_seconds": round(train_s, 1),
                      "eval_seconds": round(eval_s, 1), "AP": {k: round(v, 4) for k, v in table["AP"].items()}, "ok": True})
            except CheckFailed as exc:
                failures += 1
                emit({"check": "train", "variant": variant, "ok": False, "error": str(exc)})
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "baselines.cli", "train",
               *train_args(size, args, release, work / "torchrun", "lsbn-lupi"), "--epochs", "1", "--steps-per-epoch", "1"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        ok = proc.returncode == 0 and (work / "torchrun" / "checkpoint.pth").is_file()
        failures += not ok
        emit({"check": "torchrun", "processes": 1, "steps": 1, "ok": ok, "seconds": round(time.perf_counter() - start, 1),
              **({} if ok else {"error": proc.stderr.strip()[-600:]})})
        failures += detector_checks(args, release, work, splits)
        emit({"check": "summary", "device": args.device, "tiny": args.tiny, "size": size, "splits": splits, "failures": failures})
    return 1 if failures else 0


def detector_checks(args: argparse.Namespace, release: Path, work: Path, splits: list[str]) -> int:
    """Train, evaluate and export the person detector; feed its boxes to the lsbn-lupi pose run. Returns failures."""
    size = TINY_DETECTOR if args.tiny else DETECTOR
    steps = args.detector_steps or (2 if args.tiny else 300)
    run = work / "runs" / "detector"
    gpu = args.device.startswith("cuda")
    failures = 0
    common = ["--variant", "lsbn-lupi", "--dataset", str(release), "--output-dir", str(run), "--backbone", size["backbone"],
              "--input-size", size["input_size"], "--batch-size", str(size["batch_size"]), "--device", args.device, "--workers", str(args.workers),
              "--from-scratch", "--val-splits", "", "--no-progress", "--seed", str(args.seed), *(["--amp", "--channels-last"] if gpu else [])]
    try:
        out, _ = exlpose(["detect", "train", *common, "--benchmark-steps", "3" if args.tiny else "20"])
        rates = last_json(out)
        emit({"check": "detector-pipeline", **{k: rates[k] for k in rates if k != "check"}, "gpu_waits_for_data": rates.get("bound") == "data"})
        epochs, per_epoch = schedule(steps, training_samples(release, images=True), size["batch_size"])
        _, train_s = exlpose(["detect", "train", *common, "--epochs", str(epochs), "--steps-per-epoch", str(per_epoch),
                              *(["--overwrite"] if run.exists() else [])])
        box_splits = [s for s in ("LL-A", "WL") if s in splits]
        out, eval_s = exlpose(["detect", "eval", str(run / "checkpoint.pth"), "--dataset", str(release), "--splits", ",".join(box_splits),
                               "--device", args.device, "--workers", str(args.workers), "--json"])
        table = last_json(out)
        emit({"check": "detector", "variant": "lsbn-lupi", "steps": epochs * per_epoch, "epochs": epochs, "pairs_per_step": size["batch_size"], "input_size": size["input_size"],
              "train_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1), "box_AP": {k: round(v, 4) for k, v in table["AP"].items()},
              "box_AP50": {k: round(v, 4) for k, v in table["AP50"].items()}, "ok": True})
    except CheckFailed as exc:
        emit({"check": "detector", "ok": False, "error": str(exc)})
        return 1
    pose = work / "runs" / "lsbn-lupi" / "checkpoint.pth"
    try:
        boxes = work / "boxes_LL.json"
        exlpose(["detect", "predict", str(run / "checkpoint.pth"), "--dataset", str(release), "--split", "LL-A", "--out", str(boxes),
                 "--device", args.device, "--overwrite"])
        out, seconds = exlpose(["eval", "model", str(pose), "--dataset", str(release), "--splits", "LL-A", "--boxes", str(boxes),
                                "--device", args.device, "--workers", str(args.workers), "--json"])
        emit({"check": "table6-chain", "pose": "lsbn-lupi", "boxes": "detections", "AP": last_json(out)["AP"], "seconds": round(seconds, 1), "ok": True})
    except CheckFailed as exc:
        failures += 1
        emit({"check": "table6-chain", "ok": False, "error": str(exc)})
    for name, ckpt in (("pose", pose), ("detector", run / "checkpoint.pth")):
        try:
            out, seconds = exlpose(["export", "onnx", str(ckpt), "--out", str(work / f"{name}.onnx"), "--overwrite"])
            emit({"check": "onnx", "model": name, "ok": True, "seconds": round(seconds, 1)})
        except CheckFailed as exc:
            failures += 1
            emit({"check": "onnx", "model": name, "ok": False, "error": str(exc)})
    return failures


if __name__ == "__main__":
    sys.exit(main())
