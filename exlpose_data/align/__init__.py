"""Alignment of the two cameras: a homography from static reference pairs, its validation, aligned export.

Modules: :mod:`.model` (ALIGN.json), :mod:`.prepare` (develop, mirror, normalise), :mod:`.estimate`
(SIFT + MAGSAC, ECC), :mod:`.geometry` (remap tables, valid crop), :mod:`.validate` (residuals, PSNR/SSIM,
plots), :mod:`.reference` (reference pairs -> ALIGN.json), :mod:`.calibrate` (checkerboard intrinsics),
:mod:`.apply` (session -> release layout), :mod:`.synthetic` (pairs with a known homography).
"""

from .model import AlignModel

__all__ = ["AlignModel"]
