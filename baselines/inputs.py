"""What a checkpoint's configuration means for its inputs: the dataset options every command builds from it.

Training, evaluation and prediction all cut crops through :class:`exlpose_data.datasets.ExLPoseTopDown` (or
its functions) with these options, so a model always sees at test time the input it was trained on.
"""

from __future__ import annotations

from typing import Any

from exlpose_data.datasets.lowlight import PIXEL_MEANS, WL_NORMALISATIONS

from .config import TrainConfig

__all__ = ["dataset_options"]


def dataset_options(cfg: TrainConfig) -> dict[str, Any]:
    """Keyword arguments of ``ExLPoseTopDown`` for ``cfg``'s input settings (sizes, WL statistics, padding,
    heatmap convention)."""
    return {
        "input_size": tuple(cfg.input_size),
        "heatmap_size": tuple(cfg.heatmap_size),
        "wl_normalisation": WL_NORMALISATIONS[cfg.wl_normalisation],
        "pad": PIXEL_MEANS if cfg.padding == "mean" else None,
        "heatmap_convention": cfg.heatmap_convention,
    }
