"""LIME (Guo, Li and Ling, "LIME: Low-Light Image Enhancement via Illumination Map Estimation", TIP 2017).

1. Initial illumination: the per-pixel maximum over the RGB channels, ``T0 = max_c L_c``.
2. Refinement (the paper's sped-up solver, its Eq. 19): ``T`` minimises
   ``||T - T0||^2 + alpha * sum_x sum_{d in h, v} w_d(x) (grad_d T(x))^2`` with
   ``w_d(x) = W_d(x) / (|grad_d T0(x)| + eps)``, i.e. ``T`` solves the sparse linear system
   ``(I + alpha * sum_d D_d^T diag(w_d) D_d) t = t0`` (``D_d`` forward differences inside the image).
   ``W_d`` by the paper's three strategies: 1: ``W = 1``; 2: ``W = 1 / (|grad_d T0| + eps)``;
   3: ``W = 1 / (|G_sigma * grad_d T0| + eps)`` (a normalised Gaussian window, so its sum is 1).
3. Gamma correction ``T <- T^gamma``, then ``R = L / T`` per channel, clipped to [0, 1].

The paper's optional BM3D denoising of the result is not applied. Defaults: alpha 0.15, sigma 2, gamma 0.8,
eps 1e-3 and strategy 3, as we read the paper's experiments. ``illumination_floor`` (ours) keeps black pixels
from dividing by zero; ``downscale`` (ours, default 1: off) solves for the illumination on a smaller image and
resizes it back, trading detail for speed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import cv2
import numpy as np

__all__ = ["LimeSettings", "initial_illumination", "smoothness_weights", "refine_illumination", "lime_illumination", "lime_enhance", "Lime"]


@dataclass(frozen=True)
class LimeSettings:
    """LIME's parameters (see the module docstring)."""

    alpha: float = 0.15
    sigma: float = 2.0
    gamma: float = 0.8
    eps: float = 1e-3
    strategy: Literal[1, 2, 3] = 3
    illumination_floor: float = 1e-3
    downscale: float = 1.0

    def __post_init__(self) -> None:
        if self.strategy not in (1, 2, 3):
            raise ValueError(f"LIME strategy must be 1, 2 or 3, got {self.strategy!r}")
        if not (self.alpha >= 0 and self.sigma > 0 and self.gamma > 0 and self.eps > 0 and self.illumination_floor > 0):
            raise ValueError(f"LIME settings out of range: {self}")
        if not 0 < self.downscale <= 1:
            raise ValueError(f"LIME downscale must be in (0, 1], got {self.downscale}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def initial_illumination(rgb: np.ndarray) -> np.ndarray:
    """``max_c L_c`` of an ``(H, W, 3)`` image on [0, 1], float64 ``(H, W)``."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"need an (H, W, 3) image, got shape {rgb.shape}")
    return rgb.max(axis=2).astype(np.float64)


def smoothness_weights(t0: np.ndarray, settings: LimeSettings) -> tuple[np.ndarray, np.ndarray]:
    """``w_h`` ``(H, W-1)`` and ``w_v`` ``(H-1, W)``: the weights of the squared forward differences."""
    from scipy.ndimage import gaussian_filter

    out = []
    for grad in (np.diff(t0, axis=1), np.diff(t0, axis=0)):
        magnitude = np.abs(grad) + settings.eps
        if settings.strategy == 1:
            big_w = np.ones_like(grad)
        elif settings.strategy == 2:
            big_w = 1.0 / magnitude
        else:
            big_w = 1.0 / (np.abs(gaussian_filter(grad, settings.sigma, mode="nearest")) + settings.eps) if grad.size else grad
        out.append(big_w / magnitude)
    return out[0], out[1]


def refine_illumination(t0: np.ndarray, w_h: np.ndarray, w_v: np.ndarray, alpha: float) -> np.ndarray:
    """Solve ``(I + alpha * (D_h^T W_h D_h + D_v^T W_v D_v)) t = t0`` by a sparse direct factorisation."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    h, w = t0.shape
    n = h * w
    # Each edge (i, j) of weight a adds a to A[i, i] and A[j, j] and -a to A[i, j] and A[j, i].
    horizontal = np.zeros((h, w))
    horizontal[:, :-1] = alpha * w_h  # edge between pixel i and i + 1
    vertical = np.zeros((h, w))
    vertical[:-1, :] = alpha * w_v  # edge between pixel i and i + w
    eh, ev = horizontal.ravel(), vertical.ravel()
    diag = 1.0 + eh + ev
    diag[1:] += eh[:-1]
    diag[w:] += ev[: n - w]
    bands, offsets = [diag], [0]
    if w > 1:  # (a one-column image has no horizontal edge, and its +-1 bands would be the vertical ones)
        bands += [-eh[:-1], -eh[:-1]]
        offsets += [1, -1]
    if h > 1:
        bands += [-ev[: n - w], -ev[: n - w]]
        offsets += [w, -w]
    a = sp.diags(bands, offsets, shape=(n, n), format="csc")
    # The matrix is symmetric positive definite: a symmetric ordering (minimum degree on A + A^T) and no
    # pivoting off the diagonal roughly halve the factorisation time of SuperLU's default.
    lu = splu(a, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
    return lu.solve(t0.ravel()).reshape(h, w)


def lime_illumination(rgb: np.ndarray, settings: LimeSettings = LimeSettings()) -> np.ndarray:
    """The refined, gamma-corrected illumination map ``T`` ``(H, W)`` of an RGB image on [0, 1]."""
    t0 = initial_illumination(rgb)
    h, w = t0.shape
    small = t0
    if settings.downscale < 1:
        size = (max(1, round(w * settings.downscale)), max(1, round(h * settings.downscale)))
        small = cv2.resize(t0, size, interpolation=cv2.INTER_AREA)
    t = refine_illumination(small, *smoothness_weights(small, settings), settings.alpha)
    if settings.downscale < 1:
        t = cv2.resize(t, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.maximum(t, settings.illumination_floor) ** settings.gamma


def lime_enhance(rgb: np.ndarray, settings: LimeSettings = LimeSettings()) -> np.ndarray:
    """LIME's enhanced image ``L / T`` of an ``(H, W, 3)`` RGB image on [0, 1], float32 on [0, 1]."""
    rgb = np.asarray(rgb, dtype=np.float64)
    t = lime_illumination(rgb, settings)
    return np.clip(rgb / t[:, :, None], 0.0, 1.0).astype(np.float32)


class Lime:
    """LIME as an enhancer (see :mod:`baselines.enhance.base`): RGB float on [0, 1] in and out."""

    name = "lime"

    def __init__(self, settings: LimeSettings = LimeSettings()) -> None:
        self.settings = settings

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return lime_enhance(rgb, self.settings)

    def identity(self) -> dict[str, Any]:
        """What determines the output (cache key)."""
        return {"enhancer": self.name, **self.settings.to_dict()}
