"""Measured validation of an alignment: held-out residuals, corner disagreement, masked PSNR/SSIM, plots.

Residuals measure the homography, not keypoint noise: at each held-out match (a SIFT keypoint kept out of the
robust fit; a grid of patch centres where there are too few) the local displacement between the LL image and
the WL image warped by the homography is measured to sub-pixel on a smoothed full-resolution patch pair (ECC,
translation only), and each measurement's own noise is predicted from the LL noise and the patch's gradients.
Plots are drawn with OpenCV (no plotting library) and written atomically as PNG.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..atomic import write_image_atomic
from .geometry import transform_points, warp_maps
from .model import AlignModel
from .prepare import bin_image, binning_ladder, noise_blur, noise_sigma

__all__ = [
    "Thresholds",
    "Measurement",
    "patch_size",
    "validation_positions",
    "measure_displacements",
    "measure_heldout",
    "heldout_residuals",
    "residual_stats",
    "aligned_reference",
    "masked_psnr",
    "masked_ssim",
    "quality_bin",
    "image_quality",
    "threshold_failures",
    "plot_residuals",
    "plot_difference",
]


@dataclass(frozen=True)
class Thresholds:
    """Limits of ``exlpose-align check``; None disables a limit.

    The residual limits are raised to a multiple of the measurement's own noise (median predicted per-point
    noise): ``median_noise_factor`` x noise for the median, ``p95_noise_factor`` x noise for the 95th
    percentile, so a correct alignment measured on a noisy reference passes and the limit says how much
    misalignment the measurement could have seen.
    """

    max_median_px: float | None = 0.5
    max_p95_px: float | None = 1.5
    # Off by default: at LL-E light the SIFT start is pixels off (4.7-6.8 px at 27 dB for estimates 0.14-0.34 px
    # from the truth), so the disagreement measures the start's noise; the residuals measure the homography.
    max_corner_px: float | None = None
    min_psnr_db: float | None = None
    min_ssim: float | None = None
    median_noise_factor: float = 2.0
    p95_noise_factor: float = 4.0


@dataclass
class Measurement:
    """Measured correspondences: (N, 4) ``(x_wl, y_wl, x_ll, y_ll)``, each one's predicted noise (px, length
    of the 2-D standard deviation) and the patch side they were measured with."""

    matches: np.ndarray
    noise_px: np.ndarray
    patch_px: int = 0

    @property
    def median_noise_px(self) -> float | None:
        return float(np.median(self.noise_px)) if len(self.noise_px) else None


def patch_size(size: tuple[int, int]) -> int:
    """Patch side for :func:`measure_displacements`: 96 px, smaller on frames under 384 px high."""
    return int(min(96, min(size) // 4))


def validation_positions(heldout_wl: np.ndarray, size: tuple[int, int], min_count: int = 16) -> np.ndarray:
    """WL positions to measure at: the held-out keypoints, topped up with a grid of patch centres when there
    are fewer than ``min_count`` of them (an identity start has none)."""
    pts = np.asarray(heldout_wl, np.float64).reshape(-1, 2)
    if len(pts) >= min_count:
        return pts
    w, h = size
    patch = patch_size(size)
    step = max(8, (patch * 3) // 4)
    edge = patch // 2 + 8
    xs = np.arange(edge, w - edge, step, dtype=np.float64)
    ys = np.arange(edge, h - edge, step, dtype=np.float64)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    return np.concatenate([pts, grid], axis=0)


def measure_displacements(
    wl: np.ndarray,
    ll: np.ndarray,
    homography: np.ndarray,
    positions_wl: np.ndarray,
    *,
    patch_px: int | None = None,
    search_px: int = 8,
    max_noise_px: float = 1.0,
    wl_valid: np.ndarray | None = None,
    ll_valid: np.ndarray | None = None,
) -> Measurement:
    """Where each WL position really lies in the LL frame, measured around where ``homography`` puts it.

    For each position a ``patch_px`` square LL patch around the predicted point is compared with the WL image
    warped into the same place: both smoothed by the same Gaussian (set from the LL noise, so the
    comparison is between denoised patches) and registered by ECC with a translation. The predicted noise of
    each measurement is the LL pixel noise over the root of the summed squared gradients of the (gain-matched)
    WL patch, per axis (the Cramer-Rao bound for a translation); measurements noisier than ``max_noise_px``
    (flat patches), ones that do not converge or run into the search border, and patches leaving the frame
    are dropped.

    Args:
        wl, ll: brightness-normalised linear grey images, in the homography's frames.
        homography: WL -> LL, the one the measurement starts from.
        positions_wl: (N, 2) WL pixel positions.
        patch_px: side of the compared patch (full-resolution pixels); None: :func:`patch_size`.
        search_px: largest displacement measured.
        max_noise_px: measurements predicted noisier than this are dropped.
        wl_valid, ll_valid: masks (nonzero = real content, e.g. not filled in by undistortion); patches that
            would compare filled-in pixels are dropped.
    """
    h_img, w_img = ll.shape
    patch_px = patch_px or patch_size((w_img, h_img))
    sigma = noise_sigma(ll)
    # Smoothing to about 30% residual pixel noise, as for ECC in estimation; at least 0.7 px so the gradients
    # are smooth, at most 4 px (the default) so the patch keeps its structure.
    blur = noise_blur(ll, min_sigma=0.7)
    pts = np.asarray(positions_wl, np.float64).reshape(-1, 2)
    predicted = transform_points(homography, pts) if len(pts) else np.zeros((0, 2))
    half, size = patch_px // 2, patch_px + 2 * search_px
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-4)
    rows, noise = [], []
    for p, (qx, qy) in zip(pts, predicted):
        x0, y0 = int(round(qx)) - half, int(round(qy)) - half
        if x0 - search_px < 0 or y0 - search_px < 0 or x0 + patch_px + search_px > w_img or y0 + patch_px + search_px > h_img:
            continue
        if ll_valid is not None and not np.all(ll_valid[y0 - search_px : y0 + patch_px + search_px, x0 - search_px : x0 + patch_px + search_px]):
            continue
        map_x, map_y = warp_maps(homography, (x0 - search_px, y0 - search_px, size, size))
        if wl_valid is not None and not np.all(cv2.remap(wl_valid.astype(np.uint8), map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)):
            continue
        inp = cv2.GaussianBlur(cv2.remap(wl, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE), (0, 0), blur)
        tpl = cv2.GaussianBlur(np.ascontiguousarray(ll[y0 : y0 + patch_px, x0 : x0 + patch_px]), (0, 0), blur)
        warp = np.array([[1, 0, search_px], [0, 1, search_px]], np.float32)
        try:
            # ECC maps template (LL) coordinates to input (WL warped) ones: LL(z) ~ WLwarped(z + d).
            _, warp = cv2.findTransformECC(tpl, inp, warp, cv2.MOTION_TRANSLATION, criteria, None, 1)
        except cv2.error:
            continue
        d = warp[:, 2].astype(np.float64) - search_px
        if not np.all(np.isfinite(d)) or np.abs(d).max() > search_px - 1:
            continue
        ref = inp[search_px : search_px + patch_px, search_px : search_px + patch_px].astype(np.float64)
        a, b = ref - ref.mean(), tpl - tpl.mean()
        gain = float((a * b).sum() / max(float((a * a).sum()), 1e-12))
        gy, gx = np.gradient(ref)
        var = sigma**2 / max(gain**2, 1e-12) * (1 / max(float((gx * gx).sum()), 1e-12) + 1 / max(float((gy * gy).sum()), 1e-12))
        if gain <= 0 or not np.sqrt(var) <= max_noise_px:
            continue
        # A WL feature shown at q in the warped image lies at q - d in the LL image.
        rows.append((p[0], p[1], qx - d[0], qy - d[1]))
        noise.append(float(np.sqrt(var)))
    return Measurement(np.asarray(rows, np.float64).reshape(-1, 4), np.asarray(noise, np.float64), patch_px)


def measure_heldout(
    wl: np.ndarray, ll: np.ndarray, homography: np.ndarray, positions_wl: np.ndarray, *, target_noise_px: float = 0.25, max_positions: int = 100, **kwargs: Any
) -> Measurement:
    """:func:`measure_displacements` at up to ``max_positions`` positions (evenly picked), with patches grown
    (x2, up to a third of the short side or 288 px) while the median predicted noise exceeds
    ``target_noise_px``: the noise falls about as the patch side grows (measured at LL-E 27 dB, 8 frames:
    0.82 px at 96 px, 0.46 px at 256 px), so a noisy reference still resolves a misalignment of a pixel or two.
    Other arguments go to :func:`measure_displacements`."""
    h_img, w_img = ll.shape
    cap = min(288, min(h_img, w_img) // 3)
    pts = np.asarray(positions_wl, np.float64).reshape(-1, 2)
    if len(pts) > max_positions:  # bounds the time large patches take
        positions_wl = pts[np.linspace(0, len(pts) - 1, max_positions).round().astype(int)]
    m = measure_displacements(wl, ll, homography, positions_wl, **kwargs)
    while m.patch_px < cap and (m.median_noise_px is None or m.median_noise_px > target_noise_px):
        bigger = measure_displacements(wl, ll, homography, positions_wl, patch_px=min(cap, 2 * m.patch_px), **kwargs)
        if len(bigger.matches) < min(10, len(m.matches)):
            break  # larger patches leave the frame at too many positions
        m = bigger
    return m


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


def quality_bin(ll: np.ndarray, max_noise: float = 0.1, max_bin: int = 8) -> int:
    """Binning (a power of two) that brings the LL image's pixel noise down to ``max_noise`` of its mean,
    at most ``max_bin``: PSNR/SSIM of a single noisy frame measure its noise, not the alignment."""
    mean = max(float(ll.mean()), 1e-12)
    ladder = binning_ladder(min(ll.shape[:2]), 0, max_bin=max_bin)
    return next((b for b in ladder if noise_sigma(bin_image(ll, b)) / mean <= max_noise), ladder[-1])


def image_quality(warped: np.ndarray, ll_crop: np.ndarray) -> tuple[float, float, int]:
    """Masked PSNR (dB), SSIM and the binning they were computed at, on the pair from
    :func:`aligned_reference` binned (area-averaged) by :func:`quality_bin` of the LL side."""
    b = quality_bin(ll_crop)
    a, c = bin_image(warped, b), bin_image(ll_crop, b)
    return masked_psnr(a, c), masked_ssim(a, c), b


def threshold_failures(model: AlignModel, limits: Thresholds, residuals: np.ndarray, noise_px: float | None = None) -> list[str]:
    """One message per exceeded limit, saying which and by how much.

    ``noise_px`` (default: the model's ``heldout_noise_px``) raises the residual limits as
    :class:`Thresholds` says.
    """
    out: list[str] = []
    median, p95 = residual_stats(residuals)
    corner = model.metrics.corner_disagreement_px
    noise = model.metrics.heldout_noise_px if noise_px is None else noise_px

    def over(name: str, value: float | None, limit: float | None, unit: str = "px", noise_factor: float = 0.0) -> None:
        if limit is None or value is None:
            return
        raised = noise is not None and noise_factor * noise > limit
        if raised:
            limit = noise_factor * noise
        if value > limit:
            why = f" ({noise_factor:g} x the measurement noise {noise:.3f} {unit})" if raised else ""
            out.append(f"{name} {value:.3f} {unit} exceeds {limit:.3f} {unit}{why} by {value - limit:.3f} {unit}")

    def under(name: str, value: float | None, limit: float | None, unit: str) -> None:
        if limit is not None and value is not None and value < limit:
            out.append(f"{name} {value:.3f}{unit} is below {limit:.3f}{unit} by {limit - value:.3f}{unit}")

    over("held-out residual median", median, limits.max_median_px, noise_factor=limits.median_noise_factor)
    over("held-out residual 95th percentile", p95, limits.max_p95_px, noise_factor=limits.p95_noise_factor)
    over("initial/refined corner disagreement", corner, limits.max_corner_px)
    under("masked PSNR", model.metrics.psnr_db, limits.min_psnr_db, " dB")
    under("masked SSIM", model.metrics.ssim, limits.min_ssim, "")
    if (limits.max_median_px is not None or limits.max_p95_px is not None) and median is None:
        out.append("no held-out displacement could be measured (patches leave the frame, are flat, or the homography is far off)")
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
    write_image_atomic(path, canvas)
    return Path(path)


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
    write_image_atomic(path, img)
    return Path(path)
