"""Losses of the reference method: CPN's pose loss and the LUPI distillation terms (ExLPose Eq. 1 and 3).

Pose loss (Eq. 1 as CPN computes it): GlobalNet gets an L2 loss on every pyramid level against targets
blurred with kernels 15/11/9/7 (coarse to fine), halved per level; RefineNet gets a per-joint L2 loss against
the finest target, restricted to labelled joints, of which only the 8 largest of 14 per sample count (online
hard keypoint mining). GlobalNet's targets are kept only for the joints of its mask (the reference's: visible
joints, v = 2) and are all zero elsewhere, so it learns to predict nothing there (CPN's behaviour); RefineNet
ignores unlabelled joints. Targets peak at 255, as in the reference.

LUPI (Eq. 3): for each layer l of C1, R1-R4 with ``F`` the ``(C, N = H*W)`` feature matrix and ``G = F F^T``,
``1 / (4 C^2 N^2) * sum_ij (G_low - G_well)^2``, summed over layers. The well-lit features are the teacher and
receive no gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "PoseLoss",
    "cpn_pose_loss",
    "ohkm",
    "gram_matrix",
    "gram_distance_sq",
    "lupi_gram_per_sample",
    "lupi_gram_loss",
    "lupi_feat_loss",
    "lupi_loss",
    "LupiKind",
    "REFERENCE_LUPI_SCALE",
]

LupiKind = Literal["gram", "gram-reference", "feat"]

# The reference code's weighting: 1e-4 x 0.2 per layer, with Eq. 3's 1/4 (see lupi_loss).
REFERENCE_LUPI_SCALE = 1e-4 * 0.2


class PoseLoss(NamedTuple):
    """``total = global_loss + refine_loss`` (scalars)."""

    total: torch.Tensor
    global_loss: torch.Tensor
    refine_loss: torch.Tensor


def ohkm(per_joint: torch.Tensor, top_k: int = 8) -> torch.Tensor:
    """Online hard keypoint mining: mean over the batch of the mean of each sample's ``top_k`` largest losses.

    Args:
        per_joint: ``(B, K)`` losses.
        top_k: joints kept per sample.
    """
    k = min(top_k, per_joint.shape[1])
    return per_joint.topk(k, dim=1, sorted=False).values.sum(dim=1).div(k).mean()


def cpn_pose_loss(
    global_heatmaps: Sequence[torch.Tensor],
    heatmaps: torch.Tensor,
    targets: torch.Tensor,
    target_weight: torch.Tensor,
    *,
    top_k: int = 8,
    global_weight: torch.Tensor | None = None,
) -> PoseLoss:
    """CPN's loss.

    Args:
        global_heatmaps: GlobalNet outputs, coarse to fine, each ``(B, K, h, w)``.
        heatmaps: RefineNet output ``(B, K, h, w)``.
        targets: ``(B, L, K, h, w)`` targets, one level per GlobalNet output, coarse (kernel 15) to fine (7).
        target_weight: ``(B, K)``, > 0 for labelled joints (RefineNet's mask).
        top_k: joints kept by online hard keypoint mining.
        global_weight: ``(B, K)``, > 0 for the joints GlobalNet's targets keep (default ``target_weight``; the
            reference keeps visible joints only).
    """
    if targets.dim() != 5 or targets.shape[1] != len(global_heatmaps):
        raise ValueError(f"targets must be (B, {len(global_heatmaps)}, K, h, w), got {tuple(targets.shape)}")
    labelled = (target_weight > 0).to(targets.dtype)
    mask = ((target_weight if global_weight is None else global_weight) > 0).to(targets.dtype)[:, :, None, None]
    global_loss = sum(F.mse_loss(out, targets[:, i] * mask) / 2.0 for i, out in enumerate(global_heatmaps))
    per_joint = (heatmaps - targets[:, -1]).pow(2).mean(dim=(2, 3)) * labelled
    refine_loss = ohkm(per_joint, top_k)
    return PoseLoss(global_loss + refine_loss, global_loss, refine_loss)  # type: ignore[arg-type]


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``G = F F^T`` of ``(B, C, H, W)`` features as ``(B, C, C)``."""
    f = features.flatten(2)
    return torch.bmm(f, f.transpose(1, 2))


def _check_pairs(student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]) -> None:
    if len(student_feats) != len(teacher_feats) or not student_feats:
        raise ValueError(f"need the same non-zero number of student and teacher layers, got {len(student_feats)} and {len(teacher_feats)}")
    for i, (s, t) in enumerate(zip(student_feats, teacher_feats)):
        if s.shape != t.shape or s.dim() != 4:
            raise ValueError(f"layer {i}: student {tuple(s.shape)} and teacher {tuple(t.shape)} must be equal (B, C, H, W)")


def gram_distance_sq(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``sum_ij (G_s - G_t)^2`` per sample, ``(B,)``, for ``(B, C, H, W)`` features.

    Computed from ``D = S - T`` and ``P = S + T`` (``S``, ``T`` the ``C x N`` matrices, ``N = H*W``), in which
    ``S S^T - T T^T = (P D^T + D P^T) / 2`` exactly, so every term is proportional to the difference. Expanding
    ``G_s`` and ``G_t`` separately and subtracting cancels catastrophically in float32 once the student is close
    to the teacher (the distance is ~1e-6 of each Gram's norm), which is exactly where distillation ends up.

    With ``C <= N`` the symmetrised ``C x C`` product is one ``C^2 N`` product (half the direct form's two). With
    ``C > N`` (R3, R4 of a ResNet-50 at 256x192: 1024 x 192, 2048 x 48) the trace identities
    ``||P D^T||^2 = <D^T D, P^T P>`` and ``<P D^T, D P^T> = <M, M^T>`` with ``M = P^T D`` give
    ``0.5 * (<D^T D, P^T P> + <M, M^T>)`` from three ``N x N`` products at ``C N^2`` each, which makes the LUPI
    term several times cheaper on those layers.
    """
    s = student.flatten(2)
    t = teacher.flatten(2)
    d = s - t
    p = s + t
    c, n = s.shape[1], s.shape[2]
    if c <= n:
        a = torch.bmm(p, d.transpose(1, 2))
        return 0.25 * (a + a.transpose(1, 2)).pow(2).sum(dim=(1, 2))
    pt = p.transpose(1, 2)
    m = torch.bmm(pt, d)
    dd = torch.bmm(d.transpose(1, 2), d)
    pp = torch.bmm(pt, p)
    return 0.5 * ((dd * pp).sum(dim=(1, 2)) + (m * m.transpose(1, 2)).sum(dim=(1, 2)))


def lupi_gram_per_sample(student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """Eq. 3 for each sample, ``(B,)``, summed over the layers; the teacher is detached."""
    _check_pairs(student_feats, teacher_feats)
    total = student_feats[0].new_zeros(student_feats[0].shape[0])
    for s, t in zip(student_feats, teacher_feats):
        _, c, h, w = s.shape
        n = h * w
        total = total + gram_distance_sq(s, t.detach()) / (4.0 * c * c * n * n)
    return total


def lupi_gram_loss(student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """Eq. 3 of ExLPose averaged over the batch (student: low-light features; teacher: well-lit, detached).

    Args:
        student_feats: ``(B, C, H, W)`` tensors, one per layer (C1, R1-R4).
        teacher_feats: tensors of the same shapes.
    """
    return lupi_gram_per_sample(student_feats, teacher_feats).mean()


def lupi_feat_loss(student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """LUPI-feat (the paper's ablation): mean squared feature difference per layer, summed over layers."""
    _check_pairs(student_feats, teacher_feats)
    return sum(F.mse_loss(s, t.detach()) for s, t in zip(student_feats, teacher_feats))  # type: ignore[return-value]


def lupi_loss(kind: LupiKind, student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """The LUPI term of a variant, before the config's ``lupi_weight``.

    ``gram``: Eq. 3 averaged over the batch. ``gram-reference``: the reference code's weighting of the same
    terms, ``1e-4 * 0.2 * sum over the batch`` (its ``/4`` is Eq. 3's own factor), tuned for peak-255
    heatmaps. ``feat``: :func:`lupi_feat_loss`.
    """
    if kind == "gram":
        return lupi_gram_loss(student_feats, teacher_feats)
    if kind == "gram-reference":
        return REFERENCE_LUPI_SCALE * lupi_gram_per_sample(student_feats, teacher_feats).sum()
    if kind == "feat":
        return lupi_feat_loss(student_feats, teacher_feats)
    raise ValueError(f"unknown LUPI loss {kind!r}; choose gram, gram-reference or feat")
