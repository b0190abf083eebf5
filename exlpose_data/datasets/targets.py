"""Heatmap targets: CPN's multi-level blurred targets (the reference's) and a plain Gaussian option.

CPN target for one joint and one level: a single 1 at the joint's heatmap pixel, blurred with a
``k x k`` Gaussian kernel (OpenCV's sigma for that size), then scaled to a peak of 255. Levels use the kernels
15, 11, 9, 7 (coarse to fine). The peak of 255 matters: the reference's loss weights and its keypoint score
``peak / 255 + 0.5`` assume it.

Borders: ``border="zero"`` cuts the blur at the heatmap edge (a constant-zero border). ``border="reflect101"``
is what the reference gets from ``cv2.GaussianBlur``'s default border (BORDER_REFLECT_101): a joint near the
edge also receives its mirror image's mass, and the map is then scaled so that its maximum is ``peak``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["CPN_KERNELS", "TARGET_BORDERS", "joint_pixels", "cpn_heatmaps", "gaussian_heatmaps"]

CPN_KERNELS: tuple[int, ...] = (15, 11, 9, 7)
TARGET_BORDERS: tuple[str, ...] = ("zero", "reflect101")


def joint_pixels(joints_hm: np.ndarray, labelled: np.ndarray, heatmap_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Nearest heatmap pixel ``(K, 2)`` of each joint and whether it gets a target (labelled and inside)."""
    h, w = heatmap_size
    px = np.floor(np.asarray(joints_hm, dtype=np.float64) + 0.5).astype(np.int64)
    inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    return px, np.asarray(labelled, dtype=bool) & inside


def _kernel_at(kernel: np.ndarray, length: int, at: np.ndarray) -> np.ndarray:
    k = len(kernel)
    offset = np.arange(length)[None, :] - np.asarray(at)[:, None] + k // 2
    inside = (offset >= 0) & (offset < k)
    return np.where(inside, kernel[np.clip(offset, 0, k - 1)], 0.0)


def _blur_profile(k: int, length: int, at: np.ndarray, border: str = "zero") -> np.ndarray:
    """``(J, length)`` rows: a ``k``-tap Gaussian kernel (OpenCV's sigma for ``k``) centred at each ``at``,
    divided by its centre value; cut at the ends (``"zero"``) or with the mirror images BORDER_REFLECT_101
    adds (``"reflect101"``: a delta at ``p`` is also seen at ``-p`` and ``2 (length - 1) - p``)."""
    kernel = cv2.getGaussianKernel(k, 0, ktype=cv2.CV_64F).ravel()
    kernel = kernel / kernel[k // 2]
    at = np.asarray(at)
    out = _kernel_at(kernel, length, at)
    if border == "reflect101":
        out = out + np.where((at > 0)[:, None], _kernel_at(kernel, length, -at), 0.0)
        out = out + np.where((at < length - 1)[:, None], _kernel_at(kernel, length, 2 * (length - 1) - at), 0.0)
    elif border != "zero":
        raise ValueError(f"unknown target border {border!r}; choose one of {', '.join(TARGET_BORDERS)}")
    return out


def cpn_heatmaps(
    joints_hm: np.ndarray,
    labelled: np.ndarray,
    heatmap_size: tuple[int, int],
    *,
    kernels: tuple[int, ...] = CPN_KERNELS,
    peak: float = 255.0,
    border: str = "zero",
) -> tuple[np.ndarray, np.ndarray]:
    """Multi-level targets ``(L, K, h, w)`` float32 and the target weight ``(K,)`` float32.

    Blurring a single 1 with a separable Gaussian kernel gives the outer product of the kernel's column and
    row profiles around the joint, so the targets are built as those products directly.

    Args:
        joints_hm: ``(K, 2)`` joint positions in heatmap pixels.
        labelled: ``(K,)`` whether each joint is labelled (visibility > 0).
        heatmap_size: ``(h, w)``.
        kernels: odd Gaussian kernel sizes, one level each.
        peak: value of each heatmap's maximum.
        border: ``"zero"`` or ``"reflect101"`` (the reference's ``cv2.GaussianBlur`` default).
    """
    if any(k <= 0 or k % 2 == 0 for k in kernels):
        raise ValueError(f"kernel sizes must be positive and odd, got {kernels}")
    h, w = heatmap_size
    px, valid = joint_pixels(joints_hm, labelled, heatmap_size)
    out = np.zeros((len(kernels), len(px), h, w), dtype=np.float32)
    js = np.flatnonzero(valid)
    if len(js):
        for level, k in enumerate(kernels):
            rows = _blur_profile(k, h, px[js, 1], border)
            cols = _blur_profile(k, w, px[js, 0], border)
            # The separable blur's maximum is the product of the profiles' maxima (1 unless reflected mass
            # lifts a neighbour above the centre); the reference scales each map to that maximum.
            rows = rows / rows.max(axis=1, keepdims=True)
            cols = cols / cols.max(axis=1, keepdims=True)
            out[level, js] = (peak * rows[:, :, None] * cols[:, None, :]).astype(np.float32)
    return out, valid.astype(np.float32)


def gaussian_heatmaps(
    joints_hm: np.ndarray, labelled: np.ndarray, heatmap_size: tuple[int, int], *, sigma: float = 2.0, peak: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Plain Gaussian targets ``(K, h, w)`` float32 centred on each joint's nearest pixel, and ``(K,)`` weights."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    h, w = heatmap_size
    px, valid = joint_pixels(joints_hm, labelled, heatmap_size)
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    out = np.zeros((len(px), h, w), dtype=np.float32)
    for j in np.flatnonzero(valid):
        x, y = px[j]
        out[j] = peak * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2.0 * sigma**2))
    return out, valid.astype(np.float32)
