"""Torch datasets of ExLPose-style paired low-light / well-lit images.

- :class:`ExLPoseTopDown`: person crops with CPN heatmap targets (the reference's crop and input settings).
- :class:`ExLPoseImages`: whole images with their annotations.
- :class:`ExLPoseOCN`: the same crops of ExLPose-OCN's two extra cameras (low-light only).
- :func:`write_pack`: decoded images in one HDF5 file for the fast path (``exlpose pack``).
"""

from .images import ExLPoseImages, collate_images
from .lowlight import LowLightScaling, Normalisation
from .ocn import ExLPoseOCN
from .pack import PackSource, write_pack
from .topdown import ExLPoseTopDown
from .transforms import Augmentation, apply_affine, heatmap_to_image, invert_affine

__all__ = [
    "ExLPoseTopDown",
    "ExLPoseImages",
    "ExLPoseOCN",
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
