"""Torch datasets of ExLPose-style paired low-light / well-lit images.

- :class:`ExLPoseTopDown`: person crops with CPN heatmap targets (the reference's crop and input settings).
- :class:`ExLPoseImages`: whole images with their annotations.
- :class:`ExLPoseOCN`: the same crops of ExLPose-OCN's two extra cameras (low-light only).
- :class:`ExLPoseDetection`: whole letterboxed images with CenterNet targets of every person box.
- :func:`write_pack`: decoded images in one HDF5 file for the fast path (``exlpose pack``).

The dataset classes need torch (the ``[train]`` extra); they are imported on first use, so that packing,
records and transforms work on a core install without it.
"""

from __future__ import annotations

import importlib
from typing import Any

from .centre_targets import DetectionAugmentation, prepare_image
from .lowlight import LowLightScaling, Normalisation
from .pack import PackSource, write_pack
from .transforms import Augmentation, apply_affine, heatmap_to_image, invert_affine

__all__ = [
    "ExLPoseTopDown",
    "ExLPoseImages",
    "ExLPoseOCN",
    "ExLPoseDetection",
    "DetectionAugmentation",
    "prepare_image",
    "collate_images",
    "Augmentation",
    "LowLightScaling",
    "Normalisation",
    "write_pack",
    "PackSource",
    "apply_affine",
    "invert_affine",
    "heatmap_to_image",
]

# name -> submodule, for the names that import torch.
_TORCH_NAMES = {
    "ExLPoseTopDown": ".topdown",
    "ExLPoseImages": ".images",
    "collate_images": ".images",
    "ExLPoseOCN": ".ocn",
    "ExLPoseDetection": ".detection",
}


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(_TORCH_NAMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
