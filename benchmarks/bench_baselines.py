"""Speed and size of the reference method against its baseline, measured in one run; prints ONE JSON line.

- ``train_step_ratio``: seconds per training step of ``lsbn-lupi`` over ``baseline-all`` on the same batch
  (both variants run LL and WL through the network; lsbn-lupi adds the branch selection and the Gram loss).
  Target <= 1.15.
- ``inference_ratio``: batch-1 inference latency of the LSBN model over the BN model. Target within 5 %.
- Parameter overhead against the paper's 27.37 M -> 27.53 M: learnable parameters, and learnable parameters
  plus the LSBN branches' running statistics.

Runs alternate between the two models (ABAB...) so that load on a shared machine hits both alike; the ratio
of medians is reported.

Usage: ``python benchmarks/bench_baselines.py [--backbone resnet50] [--batch-size 4] [--steps 3] [--runs 15] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from baselines.config import make_config
from baselines.engine import PairModel, compute_losses, predict_heatmaps
from baselines.lsbn import LSBN2d
from baselines.models import build_cpn
from baselines.train import build_optimizer
from exlpose_data.keypoints import NUM_KEYPOINTS

PAPER_BASELINE_M = 27.37
PAPER_LSBN_M = 27.53


def _batch(batch_size: int, input_size: tuple[int, int], heatmap_size: tuple[int, int]) -> dict:
    g = torch.Generator().manual_seed(0)
    heatmaps = torch.rand(batch_size, 4, NUM_KEYPOINTS, *heatmap_size, generator=g) * 255.0
    return {
        "ll": torch.randn(batch_size, 3, *input_size, generator=g),
        "wl": torch.randn(batch_size, 3, *input_size, generator=g),
        "heatmaps": heatmaps,
        "target_weight": torch.ones(batch_size, NUM_KEYPOINTS),
        "visible_weight": torch.ones(batch_size, NUM_KEYPOINTS),
    }


def _trainer(variant: str, backbone: str, input_size: tuple[int, int], heatmap_size: tuple[int, int]):
    cfg = make_config({"variant": variant, "backbone": backbone, "input_size": input_size, "heatmap_size": heatmap_size})
    torch.manual_seed(0)
    net = build_cpn(backbone, lsbn=cfg.spec.lsbn, heatmap_size=heatmap_size)
    model = PairModel(net).train()
    optimizer, _ = build_optimizer(net, cfg)

    def step(batch: dict) -> float:
        start = time.perf_counter()
        losses = compute_losses(model({c: batch[c] for c in cfg.spec.conditions}), batch, cfg)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def _params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--input-size", type=int, nargs=2, default=(256, 192))
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per variant")
    parser.add_argument("--runs", type=int, default=15, help="timed inference runs per model")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is steadiest on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    input_size = tuple(args.input_size)
    heatmap_size = (input_size[0] // 4, input_size[1] // 4)

    batch = _batch(args.batch_size, input_size, heatmap_size)
    steps = {"baseline-all": _trainer("baseline-all", args.backbone, input_size, heatmap_size),
             "lsbn-lupi": _trainer("lsbn-lupi", args.backbone, input_size, heatmap_size)}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for i in range(args.steps + 1):
        for name, step in steps.items():
            t = step(batch)
            if i:  # the first step of each warms up allocators and kernels
                times[name].append(t)
    train_base = statistics.median(times["baseline-all"])
    train_ours = statistics.median(times["lsbn-lupi"])
    del steps

    torch.manual_seed(0)
    bn = build_cpn(args.backbone, heatmap_size=heatmap_size).eval()
    lsbn = build_cpn(args.backbone, lsbn=True, heatmap_size=heatmap_size).eval()
    x = torch.randn(1, 3, *input_size)
    lat: dict[str, list[float]] = {"bn": [], "lsbn": []}
    for i in range(args.runs + 2):
        for name, net in (("bn", bn), ("lsbn", lsbn)):
            start = time.perf_counter()
            predict_heatmaps(net, x, "ll", flip_test=False)
            if i >= 2:
                lat[name].append(time.perf_counter() - start)
    lat_bn, lat_lsbn = statistics.median(lat["bn"]), statistics.median(lat["lsbn"])

    base_params, lsbn_params = _params(bn), _params(lsbn)
    lsbn_stats = sum(
        b.numel() for m in lsbn.modules() if isinstance(m, LSBN2d) for k, b in m.named_buffers() if not k.endswith("num_batches_tracked")
    )
    print(json.dumps({
        "benchmark": "baselines",
        "backbone": args.backbone,
        "batch_size": args.batch_size,
        "input_size": list(input_size),
        "threads": torch.get_num_threads(),
        "train_step_s_baseline_all": round(train_base, 4),
        "train_step_s_lsbn_lupi": round(train_ours, 4),
        "train_step_ratio": round(train_ours / train_base, 4),
        "train_step_target": 1.15,
        "inference_ms_bn": round(1000 * lat_bn, 3),
        "inference_ms_lsbn": round(1000 * lat_lsbn, 3),
        "inference_ratio": round(lat_lsbn / lat_bn, 4),
        "inference_target": [0.95, 1.05],
        "params_baseline": base_params,
        "params_lsbn_learnable": lsbn_params,
        "params_lsbn_learnable_plus_branch_stats": lsbn_params + lsbn_stats,
        "params_overhead_learnable": lsbn_params - base_params,
        "params_ratio_to_paper_baseline": round(base_params / 1e6 / PAPER_BASELINE_M, 4),
        "params_ratio_to_paper_lsbn": round((lsbn_params + lsbn_stats) / 1e6 / PAPER_LSBN_M, 4),
    }))


if __name__ == "__main__":
    main()
