"""Proof that the reference trainer learns: baseline-all, lsbn and lsbn-lupi from scratch (or from local ImageNet
weights, ``--pretrained PATH``) on a synthetic release.

    python benchmarks/bench_learning.py                      # 1 seed, ~15 minutes per variant on 2 cores
    python benchmarks/bench_learning.py --seeds 3 --minutes 15 --out runs/bench-learning

A synthetic release with exact labels (``exlpose simulate release``) is written once; every variant then trains
with the same seed, the same number of steps and the same settings (a small backbone and input, so that a run
fits on two CPU cores) and is evaluated on the test scenes with the CrowdPose protocol (LL-N/H/E/A and WL,
ground-truth boxes, our flip test). The number of steps is fixed from the budget before training: the
slowest variant's step time is measured on the release's own crops, and every variant gets the steps that
variant needs to stay inside ``--minutes``. Defaults: 8 pairs per step at a learning rate of 1e-3 (the reference
uses 32 and 5e-4; with a budget of minutes, twice the steps of half the pairs at twice the rate learnt more from the
same number of pairs: see docs/baselines.md), halved once at three quarters of the run (``--schedule compressed``
squeezes the reference's five halvings into the run instead: at a few hundred steps that leaves most of the run at
a thirty-second of the rate), float32 and channels-last (``--amp`` for bfloat16 autocast).

Prints one JSON line per (variant, seed) and a last summary line: mean and spread of each variant's AP per
split, the LL-A ordering, and LL-A ratios against baseline-all measured in the same run, plus whether
lsbn-lupi met the targets (WL AP >= 0.50, LL-A AP >= 0.30).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = ("baseline-all", "lsbn", "lsbn-lupi")
SPLITS = ["LL-N", "LL-H", "LL-E", "LL-A", "WL"]
TARGETS = {"WL": 0.50, "LL-A": 0.30}
REFERENCE_MILESTONES = (6, 12, 18, 24, 30)
REFERENCE_EPOCHS = 32


def simulated_release(root: Path, scenes: int, frames: int, size: str, seed: int, test_fraction: float) -> Path:
    if (root / "annotations" / "ExLPose_train_LL.json").exists():
        return root
    cmd = [sys.executable, "-c", "from exlpose.cli import main; main()", "simulate", "release", "--out", str(root), "--scenes", str(scenes), "--size", size,
           "--frames", str(frames), "--seed", str(seed), "--test-fraction", str(test_fraction)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return root


def settings(args: argparse.Namespace, release: Path, variant: str, seed: int, out: Path, steps: int) -> dict:
    epochs = args.epochs
    if args.schedule == "compressed":  # the reference's halvings at 6/32, 12/32, ... of the run
        milestones = sorted({max(1, round(m * epochs / REFERENCE_EPOCHS)) for m in REFERENCE_MILESTONES})
    else:  # one halving at three quarters of the run
        milestones = [max(1, round(0.75 * epochs))]
    return {
        "variant": variant, "dataset": str(release), "output_dir": str(out), "backbone": args.backbone,
        "input_size": args.input_size, "heatmap_size": [args.input_size[0] // 4, args.input_size[1] // 4],
        "batch_size": args.batch_size, "epochs": epochs, "steps_per_epoch": max(1, steps // epochs),
        "lr": args.lr, "lr_milestones": milestones, "seed": seed, "workers": args.workers,
        **({"pretrained": str(args.pretrained)} if args.pretrained else {"from_scratch": True}),
        "head_init": args.head_init, "val_splits": SPLITS, "eval_every": 0, "deterministic": False,
        "amp": args.amp, "channels_last": args.channels_last,
    }


def step_seconds(args: argparse.Namespace, release: Path, variant: str) -> float:
    """Seconds per training step of ``variant`` (model only, on the release's own first batch)."""
    from baselines.config import make_config
    from baselines.train import benchmark

    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(settings(args, release, variant, 0, Path(tmp), 1))
        result = benchmark(cfg, steps=3)
    return args.batch_size / min(result["model_samples_per_s"], result["data_samples_per_s"])


def train_ap(cfg, out: Path, images: int) -> float:
    """WL AP of the run's checkpoint on its first ``images`` training images (GT boxes, the run's flip test)."""
    from baselines.checkpoint import load_model
    from baselines.engine import evaluate_split
    from exlpose_data.release import open_release

    doc = json.loads(open_release(cfg.dataset).annotation_file("train_WL").read_text())
    keep = {im["id"] for im in doc["images"][:images]}
    subset = {**doc, "images": [im for im in doc["images"] if im["id"] in keep],
              "annotations": [a for a in doc["annotations"] if a["image_id"] in keep]}
    path = out / "train_WL_subset.json"
    path.write_text(json.dumps(subset))
    net, _ = load_model(out / "checkpoint.pth")
    metrics, _ = evaluate_split(net, cfg, cfg.dataset, path, "WL", torch.device("cpu"))
    return round(metrics.AP, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="folder for the release and the runs (default: a temporary one)")
    parser.add_argument("--release", type=Path, default=None, help="an existing synthetic release to train on")
    parser.add_argument("--scenes", type=int, default=200, help="simulated scenes (80 %% train, 20 %% test)")
    parser.add_argument("--frames", type=int, default=1, help="video frames per scene (each with the 5 exposure steps)")
    parser.add_argument("--size", default="640x400")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of the scenes held out for testing")
    parser.add_argument("--train-eval", type=int, default=100,
                        help="also score WL AP on this many training images (the generalisation gap; 0 to skip)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per variant (the ordering study uses 3)")
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget per variant and seed")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--input-size", type=lambda t: [int(v) for v in t.split("x")], default=[128, 96])
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per step (the reference: 32)")
    parser.add_argument("--epochs", type=int, default=16, help="epochs the step budget is divided into (the schedule's unit)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (the reference: 5e-4)")
    parser.add_argument("--schedule", default="late", choices=["late", "compressed"],
                        help="late: lr halved once at 3/4 of the run (default); compressed: the reference's five halvings at "
                             "6/32, 12/32, ... of the run, which leave a run of a few hundred steps at 1/32 of the lr for most of it")
    parser.add_argument("--pretrained", type=Path, default=None,
                        help="a local torchvision ImageNet checkpoint of --backbone to start from (default: from scratch)")
    parser.add_argument("--head-init", default="reference", choices=["reference", "target-scale"])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False,
                        help="bfloat16 autocast on CPU (off by default: on this project's 2-core Xeon, which has no bfloat16 "
                             "matrix units, it made a step about 3x slower than float32)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--steps", type=int, default=None, help="fix the steps instead of deriving them from --minutes")
    args = parser.parse_args()

    from baselines.config import make_config
    from baselines.train import run

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        base = args.out or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        release = args.release or simulated_release(base / "release", args.scenes, args.frames, args.size, seed=1000, test_fraction=args.test_fraction)
        variants = [v for v in args.variants.split(",") if v]
        if args.steps is None:
            per_step = max(step_seconds(args, release, v) for v in variants)
            # 85 % of the budget for steps; evaluation and epoch ends take the rest.
            steps = max(args.epochs, int(0.85 * args.minutes * 60 / per_step))
        else:
            per_step, steps = None, args.steps
        rows = []
        for seed in range(args.seeds):
            for variant in variants:
                out = base / f"{variant}-seed{seed}"
                cfg = make_config(settings(args, release, variant, seed, out, steps))
                start = time.perf_counter()
                record = run(cfg)
                seconds = time.perf_counter() - start
                row = {"variant": variant, "seed": seed, "steps": cfg.epochs * (cfg.steps_per_epoch or 0), "seconds": round(seconds, 1),
                       "AP": {s: round(record[f"AP/{s}"], 4) for s in SPLITS},
                       "AP_train_WL": train_ap(cfg, out, args.train_eval) if args.train_eval else None, "loss_first_epoch": round(json.loads((out / "metrics.json").read_text())[0]["loss/total"], 2),
                       "loss_last_epoch": round(record["loss/total"], 2)}
                rows.append(row)
                print(json.dumps({"bench": "learning", **row}), flush=True)
        summary: dict = {"bench": "learning-summary", "release": str(release), "seeds": args.seeds, "steps": steps,
                         "measured_step_s": None if per_step is None else round(per_step, 3), "settings": {k: v for k, v in settings(args, release, "lsbn-lupi", 0, base, steps).items()
                                                                              if k not in ("variant", "dataset", "output_dir", "seed")}}
        stats = {}
        for variant in variants:
            mine = [r for r in rows if r["variant"] == variant]
            stats[variant] = {s: {"mean": round(statistics.fmean(r["AP"][s] for r in mine), 4),
                                  "spread": round(max(r["AP"][s] for r in mine) - min(r["AP"][s] for r in mine), 4)} for s in SPLITS}
        summary["AP"] = stats
        summary["LL-A_ordering"] = sorted(variants, key=lambda v: -stats[v]["LL-A"]["mean"])
        if "baseline-all" in stats:
            ref = stats["baseline-all"]["LL-A"]["mean"]
            summary["LL-A_ratio_to_baseline_all"] = {v: round(stats[v]["LL-A"]["mean"] / ref, 3) if ref > 0 else None for v in variants}
        if "lsbn-lupi" in stats:
            summary["targets"] = {s: {"target": t, "measured": stats["lsbn-lupi"][s]["mean"], "met": stats["lsbn-lupi"][s]["mean"] >= t}
                                  for s, t in TARGETS.items()}
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
