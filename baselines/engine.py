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
from exlpose_data.lighting import Lighting

from .config import TrainConfig
from .decode import flip_back, official_flip_index, official_flip_input, predictions_from_heatmaps
from .losses import cpn_pose_loss, lupi_loss
from .loop import fit_epoch
from .precision import autocast, cpu_bf16_flags
from .models.cpn import CPN, CPNOutput

__all__ = [
    "PairModel",
    "compute_losses",
    "train_one_epoch",
    "autocast",
    "predict_heatmaps",
    "run_inference",
    "evaluate_split",
    "measure_latency",
    "world_size",
    "cpu_bf16_flags",
]


def world_size() -> int:
    """Processes of the running ``torchrun`` job (1 outside one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class PairModel(nn.Module):
    """Wraps a CPN: ``forward({"ll": x_ll, "wl": x_wl})`` -> ``{"ll": CPNOutput, "wl": CPNOutput}``."""

    def __init__(self, net: CPN) -> None:
        super().__init__()
        self.net = net

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, CPNOutput]:
        return {cond: self.net(x, condition=cond) for cond, x in inputs.items()}


def _float(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype != torch.float32 else t


def compute_losses(outputs: dict[str, CPNOutput], batch: dict[str, Any], cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """Pose loss per condition (same targets for both unless the batch holds a condition's own) plus the
    variant's LUPI term; ``total`` sums them. Variants whose ``pose_loss`` names fewer conditions skip the others.

    Losses are computed in float32 (outside any autocast region). GlobalNet's targets are masked by
    ``cfg.global_mask`` (the batch's ``visible_weight`` or ``target_weight``). The reference's Gram weighting sums
    LUPI over the whole batch; under ``torchrun`` each process holds ``1 / world_size`` of it and DDP averages the
    gradients, so the per-process sum is multiplied by the world size to keep the same weight as one process
    on the whole batch (means need no correction).
    """
    losses: dict[str, torch.Tensor] = {}
    total = None
    for cond, out in outputs.items():
        if cond not in (cfg.spec.pose_loss or outputs):
            continue
        # Unpaired samples (baselines.pairing) carry the WL crop's own targets as "<key>_wl".
        suffix = f"_{cond}" if f"heatmaps_{cond}" in batch else ""
        weight = batch["target_weight" + suffix]
        global_weight = batch.get("visible_weight" + suffix) if cfg.global_mask == "visible" else weight
        if global_weight is None:
            raise ValueError("global_mask 'visible' needs the batch's visible_weight (ExLPoseTopDown provides it)")
        pose = cpn_pose_loss([_float(g) for g in out.global_heatmaps], _float(out.heatmaps), batch["heatmaps" + suffix], weight,
                             top_k=cfg.ohkm_top_k, global_weight=global_weight)
        losses[f"pose_{cond}"] = pose.total
        total = pose.total if total is None else total + pose.total
    kind = cfg.lupi_kind
    if kind is not None:
        student = [_float(f) for f in outputs["ll"].features]
        teacher = [_float(f) for f in outputs["wl"].features]
        weight_lupi = cfg.lupi_feat_weight if kind == "feat" else cfg.lupi_weight
        scale = world_size() if kind == "gram-reference" else 1
        lupi = weight_lupi * scale * lupi_loss(kind, student, teacher)
        losses["lupi"] = lupi
        total = total + lupi
    losses["total"] = total  # type: ignore[assignment]
    return losses


_TARGET_KEYS = ("heatmaps", "target_weight", "visible_weight")
_TARGET_KEYS += tuple(f"{key}_wl" for key in _TARGET_KEYS)  # unpaired samples' own WL targets


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    device: torch.device,
    *,
    steps: int | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    scaler: Any = None,
    adaptation: Any = None,
) -> dict[str, float]:
    """Train the pose network for one pass over ``loader`` (at most ``steps`` batches); return the mean of each loss.

    The step itself (autocast, loss scaling, the NaN check on every process) is the shared one,
    :func:`baselines.loop.fit_epoch`; this gives it the pose variant's inputs, targets and
    :func:`compute_losses`.

    Args:
        model: a :class:`PairModel` (possibly inside DistributedDataParallel).
        loader: batches as the dataset collates them.
        optimizer: the optimiser.
        cfg: the run's configuration (variant, loss settings).
        device: where the batches go.
        steps: stop after this many batches.
        on_step: called after each step with its index and losses (progress bars, logging).
        scaler: a ``torch.amp.GradScaler`` for float16 mixed precision (CUDA with ``cfg.amp``).
        adaptation: a :class:`baselines.adaptation.Adaptation` adding loss terms and its own update (dann, advent).

    Raises:
        FloatingPointError: the loss became NaN or infinite, on any process of a distributed run (the step is
            not applied; every process raises, with the same message).
    """
    return fit_epoch(model, loader, optimizer, device, conditions=cfg.spec.conditions, target_keys=_TARGET_KEYS,
                     loss_fn=lambda outputs, batch: compute_losses(outputs, batch, cfg), amp=cfg.amp, channels_last=cfg.channels_last,
                     steps=steps, on_step=on_step, scaler=scaler, adaptation=adaptation)


def _flip_mode(flip_test: bool | str) -> str:
    if isinstance(flip_test, bool):
        return "ours" if flip_test else "none"
    if flip_test not in ("ours", "official", "none"):
        raise ValueError(f"unknown flip test {flip_test!r}; choose ours, official or none")
    return flip_test


@torch.no_grad()
def predict_heatmaps(
    net: CPN, images: torch.Tensor, condition: str, *, flip_test: bool | str = "ours", convention: str = "ours"
) -> torch.Tensor:
    """RefineNet heatmaps of a batch of crops, averaged with the flip-test pass when asked.

    ``flip_test``: ``"ours"`` (CrowdPose pairs and the sub-pixel shift of ``convention``), ``"official"`` (the
    reference's, see :mod:`baselines.decode`) or ``"none"``; True / False mean ``"ours"`` / ``"none"``.
    """
    mode = _flip_mode(flip_test)
    heatmaps = net(images, condition=condition).heatmaps.float()
    if mode == "ours":
        flipped = net(images.flip(-1), condition=condition).heatmaps.float()
        heatmaps = 0.5 * (heatmaps + flip_back(flipped, (images.shape[-2], images.shape[-1]), convention=convention))  # type: ignore[arg-type]
    elif mode == "official":
        flipped = net(official_flip_input(images), condition=condition).heatmaps.float()
        heatmaps = 0.5 * (heatmaps + flipped.flip(-1)[:, official_flip_index(flipped.shape[1])])
    return heatmaps


@torch.no_grad()
def run_inference(
    net: CPN,
    loader: Iterable[dict[str, Any]],
    condition: str,
    device: torch.device,
    *,
    flip_test: bool | str = "ours",
    convention: str = "ours",
    decode: str = "ours",
    on_batch: Callable[[int], None] | None = None,
) -> tuple[list[dict], float]:
    """COCO keypoint results for every crop of ``loader`` and the mean forward time per crop (seconds).

    Args:
        net: the CPN.
        loader: an ``ExLPoseTopDown`` loader (``train=False``) yielding ``condition``'s crops.
        condition: ``"ll"`` or ``"wl"`` (selects the input and the LSBN branch).
        device: where the crops go.
        flip_test: ``"ours"``, ``"official"`` or ``"none"`` (see :func:`predict_heatmaps`).
        convention: the heatmap convention the model was trained with.
        decode: ``"ours"`` or ``"official"`` (:func:`baselines.decode.decode_heatmaps`).
        on_batch: called with each batch's size (progress).
    """
    net.eval()
    results: list[dict] = []
    seconds, crops = 0.0, 0
    for batch in loader:
        images = batch[condition].to(device)
        start = time.perf_counter()
        heatmaps = predict_heatmaps(net, images, condition, flip_test=flip_test, convention=convention)
        seconds += time.perf_counter() - start
        crops += images.shape[0]
        input_size = (images.shape[-2], images.shape[-1])
        results.extend(predictions_from_heatmaps(heatmaps, batch["meta"], input_size, convention=convention, decode=decode))  # type: ignore[arg-type]
        if on_batch is not None:
            on_batch(images.shape[0])
    return results, (seconds / crops if crops else math.nan)


def evaluate_split(
    net: CPN,
    cfg: TrainConfig,
    root: Any,
    ann_file: Any,
    condition: str,
    device: torch.device,
    *,
    detections: Any = None,
    batch_size: int | None = None,
    workers: int | None = None,
    flip_test: bool | str | None = None,
    protocol: str | None = None,
    settings: Any = None,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[KeypointMetrics, list[dict]]:
    """Score ``net`` on one test split: crops cut as the checkpoint's ``cfg`` says (its input settings), run with
    its flip test and heatmap convention unless overridden, scored against ``ann_file``.

    Args:
        net: the CPN.
        cfg: the configuration the network was trained with (input settings, flip test, protocol).
        root: the image root.
        ann_file: the split's annotation file.
        condition: ``"LL"`` or ``"WL"``.
        device: where the crops go.
        detections: COCO detection results to crop instead of the ground-truth boxes.
        batch_size: crops per batch (default half the training batch).
        workers: data loader processes (default the training's).
        flip_test: ``"ours"``, ``"official"`` or ``"none"`` (default ``settings.flip_test``, else ``cfg.flip_test``).
        protocol: ``"crowdpose"`` or ``"fixed"`` (default ``cfg.eval_protocol``).
        settings: a :class:`baselines.inputs.InferenceSettings` (crop, flip test, decoding, input scale); default
            ours with ``cfg.flip_test``.
        on_start: called with the number of crops before inference (progress).
        on_batch: called with each batch's size (progress).
    """
    from torch.utils.data import DataLoader

    from exlpose_data.datasets import ExLPoseTopDown

    from .inputs import dataset_options

    from .enhance import attach_enhancer

    ds = ExLPoseTopDown(root, ann_file, condition=condition, train=False, detections=detections, **dataset_options(cfg, settings))  # type: ignore[arg-type]
    attach_enhancer(ds, cfg)
    if on_start is not None:
        on_start(len(ds))
    loader = DataLoader(ds, batch_size=batch_size or max(1, cfg.batch_size // 2), shuffle=False,
                        num_workers=cfg.workers if workers is None else workers, pin_memory=device.type == "cuda")
    if flip_test is None:
        flip_test = cfg.flip_test if settings is None else settings.flip_test
    results, _ = run_inference(net, loader, Lighting.parse(condition).key, device, flip_test=flip_test, convention=cfg.heatmap_convention,
                               decode="ours" if settings is None else settings.decode, on_batch=on_batch)
    return evaluate_keypoints(ann_file, results, protocol=protocol or cfg.eval_protocol), results  # type: ignore[arg-type]


@torch.no_grad()
def measure_latency(
    net: CPN, input_size: tuple[int, int], condition: str, device: torch.device, *, flip_test: bool | str = "ours", runs: int = 10, warmup: int = 2
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
