"""Statistics of dark (lens-capped) frames: black level, temporal noise, row noise, hot pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from exlpose_data.errors import InputError
from exlpose_data.session_format import SessionReader

__all__ = ["dark_stats", "dark_report", "HOT_SIGMAS"]

# A pixel is hot when its mean over the frames exceeds the median by this many robust standard deviations.
HOT_SIGMAS = 8.0


def dark_stats(frames: np.ndarray) -> dict[str, float | int]:
    """Black level and noise of a stack of dark frames ``(n, H, W)``.

    Returns:
        mean_dn: mean level; temporal_noise_dn: mean per-pixel standard deviation over frames (0 for one frame);
        row_noise_dn: standard deviation of row means of the mean frame (fixed row pattern);
        hot_pixels: pixels of the mean frame above median + ``HOT_SIGMAS`` robust sigmas.
    """
    stack = np.asarray(frames, dtype=np.float64)
    mean_frame = stack.mean(axis=0)
    median = float(np.median(mean_frame))
    mad_sigma = 1.4826 * float(np.median(np.abs(mean_frame - median)))
    hot = int(np.count_nonzero(mean_frame > median + HOT_SIGMAS * max(mad_sigma, 0.5)))
    return {
        "mean_dn": float(stack.mean()),
        "temporal_noise_dn": float(stack.std(axis=0).mean()) if len(stack) > 1 else 0.0,
        "row_noise_dn": float((mean_frame - mean_frame.mean()).mean(axis=1).std()),
        "hot_pixels": hot,
    }


def dark_report(path: str | Path, scene: str = "darks") -> list[dict[str, Any]]:
    """One row per step and camera of a darks session: exposure, gain read back, and :func:`dark_stats`."""
    rows = []
    with SessionReader(path) as reader:
        if scene not in reader.scenes():
            raise InputError(f"{path}: no {scene!r} scene; record it with `exlpose-capture darks`")
        for step in reader.steps(scene):
            table = reader.frames_table(scene, step)
            if not len(table):
                continue
            n = len(table)
            for role in ("ll", "wl"):
                frames = np.stack([reader.pair(scene, step, i)[0 if role == "ll" else 1] for i in range(n)])
                rows.append(
                    {
                        "k": step,
                        "camera": role.upper(),
                        "exposure_us": float(table[f"{role}_exposure_us"].mean()),
                        "gain_db": float(table[f"{role}_gain_db"].mean()),
                        **dark_stats(frames),
                    }
                )
    return rows
