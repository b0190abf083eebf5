"""Gradients of one lsbn-lupi step on 1 process x 8 pairs and on 2 gloo processes x 4 pairs (DDP), written to
``OUT`` for ``tests/test_reference_method.py``: ``python -m tests.ddp_gradients OUT``.

Two modes: ``frozen-bn`` (BatchNorm in eval mode, so only the losses' reductions depend on the split: the
reference's LUPI sum must keep its weight under DDP's gradient averaging) and ``sync-bn`` (training mode with
``--sync-bn``: statistics over the global batch, LSBN branches included).
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from baselines.config import make_config
from baselines.engine import PairModel, compute_losses
from baselines.models import build_cpn
from baselines.syncbn import convert_global_bn

K = 14
# In float64: at 64x48 the coarsest pyramid level is 2x2 pixels, where float32 BatchNorm over 16 values per
# channel is ill-conditioned enough to differ by a few percent between one and two reductions; float64 shows
# the two computations are the same (they agree to ~1e-13).
torch.set_default_dtype(torch.float64)
CFG = make_config({"variant": "lsbn-lupi", "backbone": "resnet18", "input_size": (64, 48), "heatmap_size": (16, 12),
                   "from_scratch": True, "lupi_weight": 2e5})  # LUPI a visible part of the gradient


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ll = torch.randn(8, 3, 64, 48, generator=g)
    return {
        "ll": ll, "wl": ll * 0.5 + 0.3 * torch.randn(8, 3, 64, 48, generator=g),
        "heatmaps": torch.rand(8, 4, K, 16, 12, generator=g) * 255,
        "target_weight": torch.ones(8, K), "visible_weight": (torch.rand(8, K, generator=g) > 0.2).float(),
    }


def _net(sync: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_cpn("resnet18", lsbn=True, heatmap_size=(16, 12))
    if sync:
        convert_global_bn(net)
    return net


def _grads(model: torch.nn.Module, net: torch.nn.Module, batch: dict[str, torch.Tensor], *, lupi: bool = True) -> dict[str, torch.Tensor]:
    cfg = CFG if lupi else make_config({**CFG.to_dict(), "variant": "lsbn"})
    losses = compute_losses(model({"ll": batch["ll"], "wl": batch["wl"]}), batch, cfg)
    net.zero_grad(set_to_none=True)
    losses["total"].backward()
    return {k: p.grad.detach().clone() for k, p in net.named_parameters() if p.grad is not None}


def _worker(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    batch = {k: v[4 * rank: 4 * rank + 4] for k, v in _batch().items()}
    result = {}
    for mode in ("frozen-bn", "sync-bn"):
        net = _net(sync=mode == "sync-bn")
        net.train(mode == "sync-bn")
        model = torch.nn.parallel.DistributedDataParallel(PairModel(net))
        result[mode] = _grads(model, net, batch)
    if rank == 0:
        torch.save(result, out)
    dist.barrier()
    dist.destroy_process_group()


def main(out: str) -> None:
    torch.set_num_threads(1)
    result: dict = {}
    batch = _batch()
    for mode in ("frozen-bn", "sync-bn"):
        net = _net(sync=False)
        net.train(mode == "sync-bn")
        result[mode] = {"single": _grads(PairModel(net), net, batch)}
    net = _net(sync=False).eval()
    pose = _grads(PairModel(net), net, batch, lupi=False)
    full = result["frozen-bn"]["single"]
    diff = sum(float((full[k] - pose[k]).pow(2).sum()) for k in full) ** 0.5
    result["lupi-share"] = diff / sum(float(full[k].pow(2).sum()) for k in full) ** 0.5
    with tempfile.TemporaryDirectory() as tmp:
        part = os.path.join(tmp, "double.pt")
        mp.spawn(_worker, args=(os.path.join(tmp, "init"), part), nprocs=2, join=True)
        double = torch.load(part, weights_only=True)
    for mode in ("frozen-bn", "sync-bn"):
        result[mode]["double"] = double[mode]
    torch.save(result, out)


if __name__ == "__main__":
    main(sys.argv[1])
