"""The detector's losses: CenterNet's penalty-reduced focal loss on the centre heatmap and L1 losses on the box
size and centre offset at the people's centre cells (Zhou et al. 2019, Eq. 1-3), plus the variant's LUPI term
(:func:`baselines.losses.lupi_loss`, as for the pose network)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..losses import lupi_loss
from .config import DetectConfig
from .model import DetectorOutput

__all__ = ["focal_loss", "gathered_l1", "detection_losses", "compute_detect_losses"]


def focal_loss(logits: torch.Tensor, target: torch.Tensor, *, alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """Penalty-reduced pixel-wise focal loss, summed and divided by the number of centres (at least 1).

    ``target`` is the Gaussian-splatted centre map (1 exactly at centres); negatives near a centre are weighted
    down by ``(1 - target)^beta``.
    """
    logits = logits.float()
    pos = target.eq(1).float()
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    p = log_p.exp()
    pos_loss = (pos * (1 - p).pow(alpha) * log_p).sum()
    neg_loss = ((1 - pos) * (1 - target).pow(beta) * p.pow(alpha) * log_not_p).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def gathered_l1(prediction: torch.Tensor, index: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean L1 per coordinate between ``prediction`` ``(B, 2, h, w)`` read at the cells ``index`` ``(B, M)`` and
    ``target`` ``(B, M, 2)``, over the real objects (``mask`` ``(B, M)``; 0 when there are none)."""
    b, c = prediction.shape[:2]
    flat = prediction.float().reshape(b, c, -1)
    picked = flat.gather(2, index.unsqueeze(1).expand(b, c, index.shape[1])).transpose(1, 2)  # (B, M, 2)
    weight = mask.unsqueeze(-1)
    return F.l1_loss(picked * weight, target.float() * weight, reduction="sum") / (mask.sum() * c).clamp(min=1.0)


def detection_losses(out: DetectorOutput, batch: dict[str, Any], cfg: DetectConfig) -> dict[str, torch.Tensor]:
    """``heatmap``, ``size`` and ``offset`` losses of one condition's output against the batch's targets."""
    index, mask = batch["index"], batch["mask"]
    return {
        "heatmap": focal_loss(out.heatmap, batch["heatmap"]),
        "size": cfg.size_weight * gathered_l1(out.size, index, batch["size"], mask),
        "offset": cfg.offset_weight * gathered_l1(out.offset, index, batch["offset"], mask),
    }


def compute_detect_losses(outputs: dict[str, DetectorOutput], batch: dict[str, Any], cfg: DetectConfig) -> dict[str, torch.Tensor]:
    """Per condition the three detection losses (named ``<loss>_<condition>``), plus LUPI for ``lsbn-lupi``; ``total``
    sums them. The targets are shared: an LL image and its WL twin hold the same people at the same place."""
    from ..engine import world_size

    losses: dict[str, torch.Tensor] = {}
    for cond, out in outputs.items():
        for name, value in detection_losses(out, batch, cfg).items():
            losses[f"{name}_{cond}"] = value
    total = sum(losses.values())
    kind = cfg.lupi_kind
    if kind is not None:
        student = [f.float() for f in outputs["ll"].features]
        teacher = [f.float() for f in outputs["wl"].features]
        scale = world_size() if kind == "gram-reference" else 1  # the reference's sum over the global batch
        losses["lupi"] = cfg.lupi_weight * scale * lupi_loss(kind, student, teacher)
        total = total + losses["lupi"]
    losses["total"] = total  # type: ignore[assignment]
    return losses
