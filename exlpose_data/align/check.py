"""Checking an alignment: what ``exlpose-align check`` reports, callable from a notebook or another tool.

Without a reference pair the report is built from what ALIGN.json stores; with one (flipped as the alignment
was estimated), the held-out displacements are measured again on it under the stored homography, PSNR/SSIM are
recomputed (binned) and a difference image can be plotted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .model import AlignModel
from .prepare import normalise_brightness
from .reference import ReferencePair, undistort_pair
from .validate import (
    Thresholds,
    aligned_reference,
    heldout_residuals,
    image_quality,
    measure_heldout,
    plot_difference,
    plot_residuals,
    residual_stats,
    threshold_failures,
    validation_positions,
)

__all__ = ["AlignmentReport", "check_alignment", "PLOT_FILES"]

PLOT_FILES = ("residuals.png", "difference.png")


@dataclass
class AlignmentReport:
    """The check's figures (pixels; PSNR in dB) and one message per exceeded limit (empty: the check passed)."""

    align: str
    heldout_count: int
    heldout_median_px: float | None
    heldout_p95_px: float | None
    heldout_noise_px: float | None
    corner_disagreement_px: float
    psnr_db: float | None
    ssim: float | None
    quality_bin: int | None
    crop: list[int]
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """The report as ``exlpose-align check --json`` prints it."""
        return asdict(self)


def check_alignment(
    model: AlignModel,
    limits: Thresholds = Thresholds(),
    *,
    pair: ReferencePair | None = None,
    plots: str | Path | None = None,
    source: str = "ALIGN.json",
) -> AlignmentReport:
    """Measure ``model`` against ``limits``; ``model``'s metrics and held-out matches are updated from ``pair``.

    Args:
        model: the alignment (ALIGN.json).
        limits: the limits to judge by.
        pair: a reference pair to measure on again, mirrored as ``model.mirror`` says.
        plots: folder for ``residuals.png`` (and ``difference.png`` with a pair).
        source: how to name the alignment in the report and in messages.

    Raises:
        UsageError: the pair's frame size differs from the alignment's.
    """
    background = None
    if pair is not None:
        wl_n, _ = normalise_brightness(pair.wl)
        ll_n, _ = normalise_brightness(pair.ll)
        if (wl_n.shape[1], wl_n.shape[0]) != tuple(model.frame_size):
            raise UsageError(f"reference pair is {wl_n.shape[1]}x{wl_n.shape[0]} but {source} is for {model.frame_size[0]}x{model.frame_size[1]}")
        warped, ll_crop = aligned_reference(wl_n, ll_n, model)
        model.metrics.psnr_db, model.metrics.ssim, model.metrics.quality_bin = image_quality(warped, ll_crop)
        background = ll_n
        geo = undistort_pair(pair, model.calibration) if model.calibration else pair
        stored = np.asarray(model.heldout_matches, np.float64).reshape(-1, 4)[:, :2]
        m = measure_heldout(
            normalise_brightness(geo.wl)[0], normalise_brightness(geo.ll)[0], model.matrix,
            validation_positions(stored, tuple(model.frame_size)), wl_valid=geo.wl_valid, ll_valid=geo.ll_valid,
        )
        model.heldout_matches = [tuple(row) for row in m.matches.tolist()]
        model.metrics.heldout_noise_px = float(np.median(m.noise_px)) if len(m.noise_px) else None
        if plots is not None:
            plot_difference(Path(plots) / PLOT_FILES[1], warped, ll_crop, smooth_sigma=1.0)
    residuals = heldout_residuals(model.matrix, model.heldout_matches)
    if plots is not None:
        plot_residuals(Path(plots) / PLOT_FILES[0], model, background)
    median, p95 = residual_stats(residuals)
    return AlignmentReport(
        align=source,
        heldout_count=len(residuals),
        heldout_median_px=median,
        heldout_p95_px=p95,
        heldout_noise_px=model.metrics.heldout_noise_px,
        corner_disagreement_px=model.metrics.corner_disagreement_px,
        psnr_db=model.metrics.psnr_db,
        ssim=model.metrics.ssim,
        quality_bin=model.metrics.quality_bin,
        crop=list(model.crop),
        failures=threshold_failures(model, limits, residuals),
    )
