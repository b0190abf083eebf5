"""Measured validation of an alignment: held-out residuals, corner disagreement, masked PSNR/SSIM, plots.

Plots are drawn with OpenCV (no plotting library) and written atomically as PNG.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..atomic import atomic_path
from .geometry import transform_points, warp_maps
from .model import AlignModel

__all__ = [
    "Thresholds",
    "heldout_residuals",
    "residual_stats",
    "aligned_reference",
    "masked_psnr",
    "masked_ssim",
    "threshold_failures",
    "plot_residuals",
    "plot_difference",
]


@dataclass(frozen=True)
class Thresholds:
    """Limits of ``exlpose-align check``; None disables a limit.

    The residual defaults allow for keypoint localisation noise of features matched on a binned, noisy level:
    a correct homography still shows residuals of tenths of a pixel there.
    """

    max_median_px: float | None = 1.5
    max_p95_px: float | None = 4.0
    max_corner_px: float | None = 3.0
    min_psnr_db: float | None = None
    min_ssim: float | None = None


def heldout_residuals(homography: np.ndarray, matches: np.ndarray) -> np.ndarray:
    """Residual lengths (px) of (N, 4) ``(x_wl, y_wl, x_ll, y_ll)`` matches under ``homography``."""
    m = np.asarray(matches, np.float64).reshape(-1, 4)
    if len(m) == 0:
        return np.zeros(0)
    return np.linalg.norm(transform_points(homography, m[:, :2]) - m[:, 2:], axis=1)


def residual_stats(residuals: np.ndarray) -> tuple[float | None, float | None]:
    """Median and 95th percentile, or (None, None) without residuals."""
    if len(residuals) == 0:
        return None, None
    return float(np.median(residuals)), float(np.percentile(residuals, 95))


def aligned_reference(wl: np.ndarray, ll: np.ndarray, model: AlignModel) -> tuple[np.ndarray, np.ndarray]:
    """The reference pair as compared: WL warped into the LL crop, and the LL crop mapped onto the WL's
    brightness by a least-squares gain and offset (a black-level or flare offset is not misalignment)."""
    map_x, map_y = warp_maps(model.matrix, model.crop, model.calibration)
    warped = cv2.remap(wl, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE).astype(np.float64)
    x0, y0, w, h = model.crop
    ll_crop = ll[y0 : y0 + h, x0 : x0 + w].astype(np.float64)
    # Model LL = gain * WL + offset + noise (the clean image is the regressor) and invert it.
    cov = float(((ll_crop - ll_crop.mean()) * (warped - warped.mean())).mean())
    gain = cov / max(float(warped.var()), 1e-12)
    if gain <= 0:
        gain = float(ll_crop.mean()) / max(float(warped.mean()), 1e-12)  # no shared structure: means only
    matched = (ll_crop - ll_crop.mean()) / gain + warped.mean()
    return warped.astype(np.float32), matched.astype(np.float32)


def _data_range(ref: np.ndarray) -> float:
    return max(float(np.percentile(ref, 99.9)), 1e-6)


def masked_psnr(ref: np.ndarray, test: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR (dB) over ``mask``, the data range being the reference's 99.9th percentile."""
    m = np.ones(ref.shape, bool) if mask is None else mask
    mse = float(np.mean((ref[m] - test[m]) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(_data_range(ref) ** 2 / mse))


def masked_ssim(ref: np.ndarray, test: np.ndarray, mask: np.ndarray | None = None, sigma: float = 1.5) -> float:
    """Mean SSIM (Gaussian window, the usual constants) over the pixels of ``mask``."""
    a, b = ref.astype(np.float64), test.astype(np.float64)
    c1, c2 = (0.01 * _data_range(ref)) ** 2, (0.03 * _data_range(ref)) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (0, 0), sigma)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    m = np.ones(ref.shape, bool) if mask is None else mask
    return float(ssim[m].mean())


def threshold_failures(model: AlignModel, limits: Thresholds, residuals: np.ndarray) -> list[str]:
    """One message per exceeded limit, saying which and by how much."""
    out: list[str] = []
    median, p95 = residual_stats(residuals)
    corner = model.metrics.corner_disagreement_px

    def over(name: str, value: float | None, limit: float | None, unit: str = "px") -> None:
        if limit is not None and value is not None and value > limit:
            out.append(f"{name} {value:.3f} {unit} exceeds {limit:.3f} {unit} by {value - limit:.3f} {unit}")

    def under(name: str, value: float | None, limit: float | None, unit: str) -> None:
        if limit is not None and value is not None and value < limit:
            out.append(f"{name} {value:.3f}{unit} is below {limit:.3f}{unit} by {limit - value:.3f}{unit}")

    over("held-out residual median", median, limits.max_median_px)
    over("held-out residual 95th percentile", p95, limits.max_p95_px)
    over("initial/refined corner disagreement", corner, limits.max_corner_px)
    under("masked PSNR", model.metrics.psnr_db, limits.min_psnr_db, " dB")
    under("masked SSIM", model.metrics.ssim, limits.min_ssim, "")
    if (limits.max_median_px is not None or limits.max_p95_px is not None) and median is None:
        out.append("no held-out matches to measure residuals on (the estimate started from the identity)")
    return out


def _to_u8(img: np.ndarray) -> np.ndarray:
    root = np.sqrt(np.maximum(img, 0))
    lo, hi = np.percentile(root, (0.5, 99.5))
    return np.clip((root - lo) * (255.0 / max(hi - lo, 1e-9)), 0, 255).astype(np.uint8)


def _fit_width(img: np.ndarray, max_width: int, min_width: int = 800) -> tuple[np.ndarray, float]:
    """Resize into [min_width, max_width] so that labels stay legible on small frames."""
    scale = min(max_width, max(min_width, img.shape[1])) / img.shape[1]
    if scale != 1.0:
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
        img = cv2.resize(img, (int(round(img.shape[1] * scale)), int(round(img.shape[0] * scale))), interpolation=interp)
    return img, scale


def _write_png(path: Path, img: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), img):
            raise OSError(f"could not write {path}")
    return path


def plot_residuals(path: str | Path, model: AlignModel, background: np.ndarray | None = None, *, max_width: int = 1280) -> Path:
    """Residual vectors of the held-out matches over the LL frame, magnified, coloured by length.

    Args:
        path: PNG to write.
        model: the alignment (its held-out matches and homography).
        background: LL-frame linear grey image to draw on (dimmed), or None for black.
        max_width: the plot's width limit in pixels.
    """
    w, h = model.frame_size
    base = np.zeros((h, w), np.uint8) if background is None else (_to_u8(background) // 3)
    canvas, scale = _fit_width(cv2.cvtColor(base, cv2.COLOR_GRAY2BGR), max_width)
    m = np.asarray(model.heldout_matches, np.float64).reshape(-1, 4)
    res_vec = transform_points(model.matrix, m[:, :2]) - m[:, 2:] if len(m) else np.zeros((0, 2))
    lengths = np.linalg.norm(res_vec, axis=1)
    p95 = float(np.percentile(lengths, 95)) if len(lengths) else 0.0
    # Magnify so the 95th-percentile residual is drawn 4% of the plot's width long.
    magnify = 0.04 * canvas.shape[1] / max(p95 * scale, 1e-6)
    for (x, y), v, n in zip(m[:, 2:] * scale, res_vec * scale, lengths):
        colour = (0, 200, 0) if n <= 0.5 else (0, 200, 255) if n <= 1.5 else (0, 0, 255)
        start = (int(round(x)), int(round(y)))
        end = (int(round(x + v[0] * magnify)), int(round(y + v[1] * magnify)))
        cv2.arrowedLine(canvas, start, end, colour, 1, cv2.LINE_AA, tipLength=0.3)
    x0, y0, cw, ch = (int(round(v * scale)) for v in model.crop)
    cv2.rectangle(canvas, (x0, y0), (x0 + cw - 1, y0 + ch - 1), (255, 255, 0), 1)
    median, p95v = residual_stats(lengths)
    text = f"held-out residuals x{magnify:.0f}: n={len(lengths)}" + (f" median {median:.2f} px, p95 {p95v:.2f} px" if median is not None else "")
    cv2.putText(canvas, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(canvas, "green <= 0.5 px, orange <= 1.5 px, red > 1.5 px; cyan: crop", (8, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return _write_png(Path(path), canvas)


def plot_difference(path: str | Path, warped_wl: np.ndarray, ll: np.ndarray, *, smooth_sigma: float = 0.0, max_width: int = 1280) -> Path:
    """Absolute difference of the aligned pair (inside the crop) as a colour-mapped PNG.

    Args:
        path: PNG to write.
        warped_wl, ll: the pair from :func:`aligned_reference`.
        smooth_sigma: Gaussian smoothing of both first, so LL noise does not hide misalignment edges.
        max_width: the plot's width limit in pixels.
    """
    a, b = warped_wl, ll
    if smooth_sigma > 0:
        a, b = cv2.GaussianBlur(a, (0, 0), smooth_sigma), cv2.GaussianBlur(b, (0, 0), smooth_sigma)
    diff = np.abs(a - b)
    top = max(float(np.percentile(diff, 99.5)), 1e-9)
    img = cv2.applyColorMap(np.clip(diff * (255.0 / top), 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    img, _ = _fit_width(img, max_width)
    cv2.putText(img, f"|aligned WL - LL|, white = {top:.3g} x mean", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return _write_png(Path(path), img)
