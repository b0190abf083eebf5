"""One training epoch and one evaluation pass (torchvision ``references/`` style).

``PairModel`` runs the CPN once per lighting condition of a batch inside a single ``forward``, so DDP sees one
forward per step even though LL and WL inputs go through separately (each with its own LSBN branch and its
own BatchNorm batch statistics).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from exlpose_data.evaluation import KeypointMetrics, evaluate_keypoints

from .config import TrainConfig
from .decode import flip_back, predictions_from_heatmaps
from .losses import cpn_pose_loss, lupi_loss
from .models.cpn import CPN, CPNOutput

__all__ = ["PairModel", "compute_losses", "train_one_epoch", "predict_heatmaps", "run_inference", "evaluate", "measure_latency"]


class PairModel(nn.Module):
    """Wraps a CPN: ``forward({"ll": x_ll, "wl": x_wl})`` -> ``{"ll": CPNOutput, "wl": CPNOutput}``."""

    def __init__(self, net: CPN) -> None:
        super().__init__()
        self.net = net

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, CPNOutput]:
        return {cond: self.net(x, condition=cond) for cond, x in inputs.items()}


def compute_losses(outputs: dict[str, CPNOutput], batch: dict[str, Any], cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """Pose loss per condition (same targets for both) plus the variant's LUPI term; ``total`` sums them."""
    targets = batch["heatmaps"]
    weight = batch["target_weight"]
    losses: dict[str, torch.Tensor] = {}
    total = None
    for cond, out in outputs.items():
        pose = cpn_pose_loss(out.global_heatmaps, out.heatmaps, targets, weight, top_k=cfg.ohkm_top_k)
        losses[f"pose_{cond}"] = pose.total
        total = pose.total if total is None else total + pose.total
    kind = cfg.lupi_kind
    if kind is not None:
        lupi = cfg.lupi_weight * lupi_loss(kind, outputs["ll"].features, outputs["wl"].features)
        losses["lupi"] = lupi
        total = total + lupi
    losses["total"] = total  # type: ignore[assignment]
    return losses


def _inputs(batch: dict[str, Any], conditions: Iterable[str], device: torch.device) -> dict[str, torch.Tensor]:
    return {c: batch[c].to(device, non_blocking=True) for c in conditions}


def _check_finite(total: torch.Tensor, step: int) -> None:
    """Raise FloatingPointError on every process when the loss of any process is NaN or infinite.

    Under DDP a process that raised alone would leave the others waiting in the next collective (the gradient
    all-reduce) for ever, so every process's loss is gathered first (one small all-reduce per step) and all
    raise together with the same message.
    """
    loss = total.detach().reshape(1)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        losses = loss.new_zeros(dist.get_world_size())
        losses[dist.get_rank()] = loss[0]
        dist.all_reduce(losses)  # NaN or inf on one process stays NaN or inf in its slot
    else:
        losses = loss
    values = losses.tolist()
    bad = [rank for rank, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        where = f" on process {', '.join(map(str, bad))} of {len(values)}" if len(values) > 1 else ""
        raise FloatingPointError(f"loss is {values[bad[0]]} at step {step}{where}: lower the learning rate or check the inputs")


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    device: torch.device,
    *,
    steps: int | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """Train for one pass over ``loader`` (at most ``steps`` batches); return the mean of each loss.

    Args:
        model: a :class:`PairModel` (possibly inside DistributedDataParallel).
        loader: batches as the dataset collates them.
        optimizer: the optimiser.
        cfg: the run's configuration (variant, loss settings).
        device: where the batches go.
        steps: stop after this many batches.
        on_step: called after each step with its index and losses (progress bars, logging).

    Raises:
        FloatingPointError: the loss became NaN or infinite, on any process of a distributed run (the step is
            not applied; every process raises, with the same message).
    """
    model.train()
    sums: dict[str, float] = {}
    n = 0
    targets_keys = ("heatmaps", "target_weight")
    for i, batch in enumerate(loader):
        if steps is not None and i >= steps:
            break
        for key in targets_keys:
            batch[key] = batch[key].to(device, non_blocking=True)
        outputs = model(_inputs(batch, cfg.spec.conditions, device))
        losses = compute_losses(outputs, batch, cfg)
        _check_finite(losses["total"], i)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        values = {k: float(v.detach()) for k, v in losses.items()}
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        n += 1
        if on_step is not None:
            on_step(i, values)
    return {k: v / max(n, 1) for k, v in sums.items()}


@torch.no_grad()
def predict_heatmaps(net: CPN, images: torch.Tensor, condition: str, *, flip_test: bool = True) -> torch.Tensor:
    """RefineNet heatmaps of a batch of crops, averaged with the flip-test pass when asked."""
    heatmaps = net(images, condition=condition).heatmaps
    if flip_test:
        flipped = net(images.flip(-1), condition=condition).heatmaps
        heatmaps = 0.5 * (heatmaps + flip_back(flipped, (images.shape[-2], images.shape[-1])))
    return heatmaps


@torch.no_grad()
def run_inference(
    net: CPN,
    loader: Iterable[dict[str, Any]],
    condition: str,
    device: torch.device,
    *,
    flip_test: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[list[dict], float]:
    """COCO keypoint results for every crop of ``loader`` and the mean forward time per crop (seconds).

    Args:
        net: the CPN.
        loader: an ``ExLPoseTopDown`` loader (``train=False``) yielding ``condition``'s crops.
        condition: ``"ll"`` or ``"wl"`` (selects the input and the LSBN branch).
        device: where the crops go.
        flip_test: average with the mirrored crop's heatmaps.
        on_batch: called with each batch's size (progress).
    """
    net.eval()
    results: list[dict] = []
    seconds, crops = 0.0, 0
    for batch in loader:
        images = batch[condition].to(device)
        start = time.perf_counter()
        heatmaps = predict_heatmaps(net, images, condition, flip_test=flip_test)
        seconds += time.perf_counter() - start
        crops += images.shape[0]
        input_size = (images.shape[-2], images.shape[-1])
        results.extend(predictions_from_heatmaps(heatmaps, batch["meta"], input_size))
        if on_batch is not None:
            on_batch(images.shape[0])
    return results, (seconds / crops if crops else math.nan)


def evaluate(
    net: CPN,
    loader: Iterable[dict[str, Any]],
    ann_file: Any,
    condition: str,
    device: torch.device,
    *,
    protocol: str = "crowdpose",
    flip_test: bool = True,
) -> tuple[KeypointMetrics, list[dict]]:
    """Predict every crop of ``loader`` and score the results against ``ann_file``."""
    results, _ = run_inference(net, loader, condition, device, flip_test=flip_test)
    return evaluate_keypoints(ann_file, results, protocol=protocol), results  # type: ignore[arg-type]


@torch.no_grad()
def measure_latency(
    net: CPN, input_size: tuple[int, int], condition: str, device: torch.device, *, flip_test: bool = True, runs: int = 10, warmup: int = 2
) -> float:
    """Median seconds of one crop's inference (batch 1, flip test as asked), after ``warmup`` runs."""
    net.eval()
    x = torch.randn(1, 3, *input_size, device=device)
    times = []
    for i in range(warmup + runs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        predict_heatmaps(net, x, condition, flip_test=flip_test)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return float(sorted(times)[len(times) // 2])
