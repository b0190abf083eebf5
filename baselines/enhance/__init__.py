"""Image enhancement before pose estimation (Table 2's "enhancement + CPN" rows): LIME, any ONNX enhancer,
applied to the low-light images of a dataset as a transform, with a cache so training does not redo them.

Names are imported on first use, so that ``exlpose --help`` (which looks this package up) stays free of torch.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__all__ = ["ENHANCER_HELP", "Enhancer", "EnhancedSource", "enhance_bgr", "parse_enhancer", "enhance_dataset", "fill_cache",
           "config_enhancer", "attach_enhancer"]

_LAZY = {"ENHANCER_HELP": "base", "Enhancer": "base", "enhance_bgr": "base", "parse_enhancer": "base",
         "EnhancedSource": "transform", "enhance_dataset": "transform", "fill_cache": "transform"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def config_enhancer(cfg: Any) -> Any:
    """The enhancer a training configuration applies to its LL images (its ``enhancer`` or its variant's), or None."""
    from .base import parse_enhancer

    spec = cfg.enhancer or cfg.spec.enhancer
    return None if spec is None else parse_enhancer(spec, lime_downscale=cfg.lime_downscale)


def attach_enhancer(dataset: Any, cfg: Any, *, fill: bool = False) -> Any:
    """Route ``dataset``'s LL images through ``cfg``'s enhancer, cached in ``cfg.enhance_cache`` (default
    ``<output_dir>/enhanced``); with ``fill`` compute the missing cached images now. No-op without an enhancer."""
    from .transform import enhance_dataset, fill_cache

    enhancer = config_enhancer(cfg)
    if enhancer is None:
        return dataset
    cache = Path(cfg.enhance_cache) if cfg.enhance_cache is not None else Path(cfg.output_dir) / "enhanced"
    from exlpose_data.outputs import check_output

    # the cache never lies in (or is) the image folder it enhances: its PNGs would mix with the release's
    check_output(cache, inputs=[dataset.index.image_root], writes="folder", produces="enhancement cache", replaces=("folder",),
                 resumes=True, option="--enhance-cache")
    enhance_dataset(dataset, enhancer, cache)
    if fill:
        from exlpose_data.provenance import recorded_run

        # The cache folder is keyed by the enhancer's identity, so settings can never mix in it; the record says
        # what made it, and stays "incomplete" when a fill is interrupted. It owns no files: images cached for
        # another dataset sharing the folder are never removed by this fill.
        with recorded_run(dataset.source.folder, "enhancement cache", command="exlpose-train enhancement cache",
                          settings={"enhancer": enhancer.identity()}, inputs={}):
            fill_cache(dataset)
    return dataset
