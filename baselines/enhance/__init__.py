"""Image enhancement before pose estimation (Table 2's "enhancement + CPN" rows): LIME, any ONNX enhancer,
applied to the low-light images of a dataset as a transform, with a cache so training does not redo them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import ENHANCER_HELP, Enhancer, enhance_bgr, parse_enhancer
from .transform import EnhancedSource, enhance_dataset, fill_cache

__all__ = ["ENHANCER_HELP", "Enhancer", "EnhancedSource", "enhance_bgr", "parse_enhancer", "enhance_dataset", "fill_cache",
           "config_enhancer", "attach_enhancer"]


def config_enhancer(cfg: Any) -> Enhancer | None:
    """The enhancer a training configuration applies to its LL images (its ``enhancer`` or its variant's), or None."""
    spec = cfg.enhancer or cfg.spec.enhancer
    return None if spec is None else parse_enhancer(spec, lime_downscale=cfg.lime_downscale)


def attach_enhancer(dataset: Any, cfg: Any, *, fill: bool = False) -> Any:
    """Route ``dataset``'s LL images through ``cfg``'s enhancer, cached in ``cfg.enhance_cache`` (default
    ``<output_dir>/enhanced``); with ``fill`` compute the missing cached images now. No-op without an enhancer."""
    enhancer = config_enhancer(cfg)
    if enhancer is None:
        return dataset
    cache = Path(cfg.enhance_cache) if cfg.enhance_cache is not None else Path(cfg.output_dir) / "enhanced"
    enhance_dataset(dataset, enhancer, cache)
    if fill:
        fill_cache(dataset)
    return dataset
