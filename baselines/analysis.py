"""Fig. 6 of ExLPose: how far apart low-light and well-lit inputs are inside a trained network.

For each residual stage R1-R4 and one test split, every person crop is run through the network twice, its LL
crop through the LL path and its WL twin through the WL path (one branch each with LSBN). Two set distances
compare the LL and the WL crops' representations:

- *style gap*: between the set of LL Gram matrices and the set of WL Gram matrices, each normalised as in Eq. 3
  (``G / (2 C N)`` with ``N = H * W``, so the squared Euclidean distance of two normalised Grams is Eq. 3's term);
- *feature gap*: between the LL and WL feature maps, each flattened and divided by ``sqrt(C N)`` (so the squared
  distance is the mean squared feature difference, LUPI-feat's term; this normalisation is ours).

The set distance is Dubuisson and Jain's modified Hausdorff distance (:func:`modified_hausdorff`).

Gram matrices of early layers are large (C^2 values) and feature maps of late layers are larger than their
Grams, so each layer keeps the smaller form: the normalised Gram when ``C <= N``, else the scaled features, whose
Gram inner products follow from ``<F_a F_a^T, F_b F_b^T> = ||F_a^T F_b||^2``. Pairwise distances are computed
from inner products in float64.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["modified_hausdorff", "hausdorff_from_distances", "GAP_LAYERS", "GapResult", "feature_gaps", "plot_gaps", "DEFAULT_MAX_CROPS"]

# Indices into CPNOutput.features (C1, R1, R2, R3, R4) of the stages the figure shows.
GAP_LAYERS: dict[str, int] = {"R1": 1, "R2": 2, "R3": 3, "R4": 4}
# Crops per split whose representations are compared (ours; the paper does not say). Memory grows linearly (about
# 7 MB per crop for ResNet-50 at 256x192) and time quadratically.
DEFAULT_MAX_CROPS = 100


def hausdorff_from_distances(distances: np.ndarray) -> float:
    """Modified Hausdorff distance from the ``(n, m)`` matrix of pairwise distances between two sets.

    Raises:
        ValueError: either set is empty.
    """
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or 0 in d.shape:
        raise ValueError(f"need a non-empty (n, m) distance matrix, got shape {d.shape}")
    return float(max(d.min(axis=1).mean(), d.min(axis=0).mean()))


def modified_hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Dubuisson and Jain's modified Hausdorff distance between point sets ``a`` ``(n, d)`` and ``b`` ``(m, d)``.

    The larger of the two directed distances, each the mean over one set of the Euclidean distance to the
    nearest point of the other.

    Raises:
        ValueError: the arrays are not 2-D, have different widths, or one is empty.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need (n, d) and (m, d) arrays, got shapes {a.shape} and {b.shape}")
    from scipy.spatial.distance import cdist

    return hausdorff_from_distances(cdist(a, b))


@dataclass
class _LayerSet:
    """One condition's representations of one layer over the crops seen so far."""

    gram: list[torch.Tensor] = field(default_factory=list)  # (B, C*C) normalised Grams, or (B, C, N) scaled features
    feat: list[torch.Tensor] = field(default_factory=list)  # (B, C*N) scaled features

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat(self.gram), torch.cat(self.feat)


def _represent(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gram form (normalised Gram or Gram-scaled features) and the feature form of ``(B, C, H, W)`` maps."""
    b, c, h, w = f.shape
    n = h * w
    flat = f.flatten(2).double()
    if c <= n:
        gram = torch.bmm(flat, flat.transpose(1, 2)).div(2.0 * c * n).flatten(1).float()
    else:
        gram = flat.div(math.sqrt(2.0 * c * n)).float()
    return gram, flat.flatten(1).div(math.sqrt(c * n)).float()


def _gram_inner(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(n, m)`` inner products of the normalised Grams held in ``x`` and ``y`` (either form, the same for both)."""
    x, y = x.double(), y.double()
    if x.dim() == 2:
        return x @ y.T
    # <F_a F_a^T, F_b F_b^T> = ||F_a^T F_b||_F^2, one (N, N) product per pair, pairs of y one at a time.
    return torch.stack([torch.einsum("acn,cm->anm", x, yb).pow(2).sum(dim=(1, 2)) for yb in y], dim=1)


def _distances(inner: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    xx = torch.stack([inner(v[None], v[None])[0, 0] for v in x])
    yy = torch.stack([inner(v[None], v[None])[0, 0] for v in y])
    sq = xx[:, None] + yy[None, :] - 2.0 * inner(x, y)
    return sq.clamp_min(0.0).sqrt().numpy()


def _feat_inner(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return x.double() @ y.double().T


@dataclass(frozen=True)
class GapResult:
    """Style (Gram) and feature gaps per layer of one network on one split."""

    style: dict[str, float]
    feature: dict[str, float]
    crops: int

    def to_dict(self) -> dict[str, Any]:
        return {"style": self.style, "feature": self.feature, "crops": self.crops}


def _evenly_spaced(total: int, limit: int) -> list[int]:
    if total <= limit:
        return list(range(total))
    return sorted({int(i) for i in np.linspace(0, total - 1, limit).round()})


@torch.no_grad()
def feature_gaps(
    net: Any,
    cfg: Any,
    root: str | os.PathLike,
    ann_file: str | os.PathLike,
    device: torch.device,
    *,
    max_crops: int = DEFAULT_MAX_CROPS,
    batch_size: int = 16,
    workers: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> GapResult:
    """Fig. 6's distances for ``net`` on the person crops of ``ann_file`` (an LL split whose images have WL twins).

    Crops are cut at test time as the checkpoint's ``cfg`` says (pixel-aligned LL and WL crops, LL ones enhanced
    when it was trained with an enhancer); at most
    ``max_crops`` of them, evenly spaced over the split in file order, are compared.
    """
    from torch.utils.data import DataLoader, Subset

    from exlpose_data.datasets import ExLPoseTopDown
    
    from .inputs import dataset_options

    if max_crops < 1:
        raise ValueError(f"max_crops must be at least 1, got {max_crops}")
    from .enhance import attach_enhancer

    ds = attach_enhancer(ExLPoseTopDown(root, ann_file, condition="pair", train=False, **dataset_options(cfg)), cfg)
    subset = Subset(ds, _evenly_spaced(len(ds), max_crops))
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=workers)
    net.eval()
    sets: dict[str, dict[str, _LayerSet]] = {c: {name: _LayerSet() for name in GAP_LAYERS} for c in ("ll", "wl")}
    for batch in loader:
        for cond in ("ll", "wl"):
            feats = net(batch[cond].to(device), condition=cond).features
            for name, index in GAP_LAYERS.items():
                gram, feat = _represent(feats[index].float().cpu())
                sets[cond][name].gram.append(gram)
                sets[cond][name].feat.append(feat)
        if on_batch is not None:
            on_batch(batch["ll"].shape[0])
    style, feature = {}, {}
    for name in GAP_LAYERS:
        ll_gram, ll_feat = sets["ll"][name].stacked()
        wl_gram, wl_feat = sets["wl"][name].stacked()
        style[name] = hausdorff_from_distances(_distances(_gram_inner, ll_gram, wl_gram))
        feature[name] = hausdorff_from_distances(_distances(_feat_inner, ll_feat, wl_feat))
    return GapResult(style, feature, len(subset))


def plot_gaps(results: dict[str, GapResult], path: str | os.PathLike, *, title: str = "") -> None:
    """Grouped bar chart (layers R1-R4 on the x axis, one bar per network), style gap left, feature gap right,
    written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from exlpose_data.atomic import atomic_path

    layers = list(GAP_LAYERS)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.8 / max(len(results), 1)
    for ax, kind, label in ((axes[0], "style", "Gram (style) distance"), (axes[1], "feature", "feature distance")):
        for i, (name, res) in enumerate(results.items()):
            values = getattr(res, kind)
            ax.bar(np.arange(len(layers)) + (i - (len(results) - 1) / 2) * width, [values[l] for l in layers], width, label=name)
        ax.set_xticks(np.arange(len(layers)), layers)
        ax.set_ylabel(f"modified Hausdorff, {label}")
    axes[0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)

