"""Torch datasets of ExLPose-style paired low-light / well-lit images.

- :class:`ExLPoseTopDown`: person crops with CPN heatmap targets (the reference's crop and input settings).
- :class:`ExLPoseImages`: whole images with their annotations.
- :func:`write_pack`: decoded images in one HDF5 file for the fast path (``exlpose pack``).
"""

from .images import ExLPoseImages, collate_images
from .lowlight import LowLightScaling, Normalisation
from .pack import PackSource, write_pack
from .topdown import ExLPoseTopDown
from .transforms import Augmentation, apply_affine, heatmap_to_image, invert_affine

__all__ = [
    "ExLPoseTopDown",
    "ExLPoseImages",
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
