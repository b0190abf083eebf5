"""Training-step time of lsbn-lupi in float32 and bfloat16 autocast, contiguous and channels-last; prints ONE JSON line.

Whether ``--amp`` and ``--channels-last`` pay off depends on the processor: bfloat16 autocast is fast only where
the CPU has bfloat16 matrix instructions (AMX, AVX512-BF16) and otherwise converts every operand. This script
measures the four combinations on the same batch, alternating them run by run (ABCDABCD...) so that load on a
shared machine hits all alike, and reports medians and ratios against float32 contiguous (the baseline).

Usage: ``python benchmarks/bench_precision.py [--backbone resnet18] [--batch-size 16] [--input-size 128 96]
[--steps 4] [--threads 2]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from baselines.config import make_config
from baselines.engine import PairModel, autocast, compute_losses, cpu_bf16_flags
from baselines.models import build_cpn
from baselines.train import build_optimizer
from exlpose_data.keypoints import NUM_KEYPOINTS

MODES = {"fp32": (False, False), "fp32_channels_last": (False, True), "bf16": (True, False), "bf16_channels_last": (True, True)}


def _batch(batch_size: int, input_size: tuple[int, int], heatmap_size: tuple[int, int]) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "ll": torch.randn(batch_size, 3, *input_size, generator=g),
        "wl": torch.randn(batch_size, 3, *input_size, generator=g),
        "heatmaps": torch.rand(batch_size, 4, NUM_KEYPOINTS, *heatmap_size, generator=g) * 255.0,
        "target_weight": torch.ones(batch_size, NUM_KEYPOINTS),
        "visible_weight": torch.ones(batch_size, NUM_KEYPOINTS),
    }


def _trainer(backbone: str, input_size: tuple[int, int], heatmap_size: tuple[int, int], amp: bool, channels_last: bool, batch: dict):
    cfg = make_config({"variant": "lsbn-lupi", "backbone": backbone, "input_size": input_size, "heatmap_size": heatmap_size,
                       "amp": amp, "channels_last": channels_last})
    torch.manual_seed(0)
    net = build_cpn(backbone, lsbn=True, heatmap_size=heatmap_size)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = PairModel(net).train()
    optimizer, _ = build_optimizer(net, cfg)
    inputs = {c: batch[c].contiguous(memory_format=torch.channels_last) if channels_last else batch[c] for c in ("ll", "wl")}
    device = torch.device("cpu")

    def step() -> float:
        start = time.perf_counter()
        with autocast(device, amp):
            outputs = model(inputs)
        loss = compute_losses(outputs, batch, cfg)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per step")
    parser.add_argument("--input-size", type=int, nargs=2, default=(128, 96))
    parser.add_argument("--steps", type=int, default=4, help="timed steps per mode (after one warm-up step each)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    input_size = tuple(args.input_size)
    heatmap_size = (input_size[0] // 4, input_size[1] // 4)
    batch = _batch(args.batch_size, input_size, heatmap_size)
    steps = {name: _trainer(args.backbone, input_size, heatmap_size, amp, cl, batch) for name, (amp, cl) in MODES.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(args.steps + 1):
        for name, step in steps.items():
            t = step()
            if i:
                times[name].append(t)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    print(json.dumps({
        "benchmark": "precision",
        "backbone": args.backbone, "batch_size": args.batch_size, "input_size": list(input_size), "threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "cpu_bf16_flags": cpu_bf16_flags(),
        "step_s": {name: round(v, 4) for name, v in median.items()},
        "ratio_to_fp32": {name: round(v / median["fp32"], 3) for name, v in median.items()},
    }))


if __name__ == "__main__":
    main()
