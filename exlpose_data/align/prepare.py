"""From recorded frames to what alignment works on: developed, mirrored, brightness-normalised images.

Release images go through the core's one raw -> RGB path (:func:`exlpose_data.isp.raw_to_rgb`). Estimation
works on linear grey images (raw frames demosaiced with black level subtracted but not clipped; image files
linearised from sRGB), divided by their mean so the ~100x darker low-light image and the well-lit one have
comparable values, and binned (area-averaged) for coarse levels, which is also the cheapest denoiser for shot
noise.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from ..errors import InputError
from ..isp import IspParams, demosaic, raw_to_rgb, srgb_to_linear
from ..session_format import FrameAttrs, SessionReader

__all__ = [
    "MirrorSide",
    "MIRROR_SIDES",
    "mirror_from_rig_config",
    "session_mirror",
    "needs_flip",
    "isp_params",
    "develop",
    "linear_gray",
    "develop_linear_gray",
    "normalise_brightness",
    "bin_image",
    "level_matrix",
    "feature_image",
    "noise_sigma",
    "binning_ladder",
    "noise_blur",
]

MirrorSide = Literal["none", "ll", "wl"]
MIRROR_SIDES: tuple[str, ...] = ("none", "ll", "wl")


def mirror_from_rig_config(config: dict, source: str = "rig_config") -> MirrorSide:
    """Which camera's frames are mirrored in software, from the rig config's ``mirror`` field (default none)."""
    side = config.get("mirror", "none")
    if side not in MIRROR_SIDES:
        raise InputError(f"{source}: field 'mirror' is {side!r}; expected one of {', '.join(MIRROR_SIDES)}")
    return side  # type: ignore[return-value]


def session_mirror(reader: SessionReader) -> MirrorSide:
    """The software mirroring a session's rig config asks for (``none`` without a config)."""
    try:
        config = reader.rig_config
    except ValueError as exc:
        raise InputError(f"{reader.path}: root attribute rig_config is not JSON ({exc})") from None
    if not isinstance(config, dict):
        raise InputError(f"{reader.path}: root attribute rig_config is not a JSON object")
    return mirror_from_rig_config(config, f"{reader.path}: rig_config")


def needs_flip(camera: Literal["ll", "wl"], mirror: MirrorSide, attrs: FrameAttrs | None = None) -> bool:
    """Whether ``camera``'s developed frames must be flipped here (not when the camera already did it)."""
    return mirror == camera and not (attrs is not None and attrs.mirrored_x)


# pylon names a Bayer layout by its first two pixels (PixelColorFilter "BayerRG", pixel format "BayerRG12");
# the ISP wants all four.
_PYLON_PATTERNS = {"RG": "RGGB", "BG": "BGGR", "GR": "GRBG", "GB": "GBRG"}


def isp_params(attrs: FrameAttrs, source: str = "frame") -> IspParams:
    """ISP settings of a raw Bayer dataset from its attributes (``bayer_pattern`` as ``RGGB`` or pylon's ``RG``)."""
    pattern = attrs.bayer_pattern
    if pattern is None:
        raise InputError(f"{source}: raw frames without a 'bayer_pattern' attribute (pixel_format {attrs.pixel_format!r})")
    pattern = _PYLON_PATTERNS.get(pattern.upper().removeprefix("BAYER"), pattern.upper())
    try:
        return IspParams(black_level=attrs.black_level, bit_depth=attrs.bit_depth, pattern=pattern)
    except ValueError as exc:
        raise InputError(f"{source}: {exc}") from None


def develop(frame: np.ndarray, attrs: FrameAttrs, *, out_bits: int = 8, flip: bool = False, source: str = "frame") -> np.ndarray:
    """One recorded frame as sRGB (H, W, 3) uint8/uint16, flipped horizontally after demosaicing if asked.

    Raw Bayer frames go through :func:`raw_to_rgb`; frames stored as RGB are only rescaled to ``out_bits``.
    """
    if frame.ndim == 2:
        rgb = raw_to_rgb(frame, isp_params(attrs, source), out_bits=out_bits)
    elif frame.ndim == 3 and frame.shape[2] == 3:
        rgb = _rescale_rgb(frame, attrs.bit_depth, out_bits)
    else:
        raise InputError(f"{source}: frame of shape {frame.shape}; expected (H, W) raw or (H, W, 3) RGB")
    return np.ascontiguousarray(rgb[:, ::-1]) if flip else rgb


def _rescale_rgb(frame: np.ndarray, bit_depth: int, out_bits: int) -> np.ndarray:
    if bit_depth == out_bits:
        return frame.astype(np.uint8 if out_bits == 8 else np.uint16)
    top = (1 << out_bits) - 1
    scaled = np.rint(frame.astype(np.float32) * (top / ((1 << bit_depth) - 1)))
    return np.clip(scaled, 0, top).astype(np.uint8 if out_bits == 8 else np.uint16)


def linear_gray(srgb: np.ndarray) -> np.ndarray:
    """Linear-light grey (float32, 0..1) of an sRGB uint8/uint16 image (H, W[, 3])."""
    if srgb.dtype not in (np.uint8, np.uint16):
        raise InputError(f"image of dtype {srgb.dtype}; expected 8- or 16-bit")
    top = 255.0 if srgb.dtype == np.uint8 else 65535.0
    lin = srgb_to_linear(srgb.astype(np.float32) / top)
    return lin.mean(axis=2, dtype=np.float32) if lin.ndim == 3 else lin


def develop_linear_gray(frames: np.ndarray, attrs: FrameAttrs, *, flip: bool = False, source: str = "frame") -> np.ndarray:
    """The mean over a static reference's frames (n, H, W[, 3]) as linear grey; averaging cuts LL noise.

    Raw Bayer frames are demosaiced (the core's demosaic) and only have their black level subtracted: no
    white balance, colour matrix or clipping. Clipping at black would rectify the read noise of a dark frame
    into a signal-dependent bias, and the colour matrix amplifies noise; measured at 960x600 with 4 DN of LL
    signal, the corner error is 25% lower than after developing through :func:`raw_to_rgb` (about equal at
    1.2 DN).
    Frames stored as RGB are linearised from sRGB.
    """
    stack = frames[None] if frames.ndim == 2 or (frames.ndim == 3 and frames.shape[-1] == 3) else frames
    if len(stack) == 0:
        raise InputError(f"{source}: no frames")
    total = np.zeros(stack.shape[1:3], np.float64)
    for frame in stack:
        if frame.ndim == 2:
            params = isp_params(attrs, source)
            cam = demosaic(np.ascontiguousarray(frame), params.pattern).astype(np.float32)
            gray = (cam.mean(axis=2) - params.black_level) / (params.white_level - params.black_level)
        else:
            gray = linear_gray(develop(frame, attrs, out_bits=16, source=source))
        total += gray
    gray = (total / len(stack)).astype(np.float32)
    return np.ascontiguousarray(gray[:, ::-1]) if flip else gray


def normalise_brightness(gray: np.ndarray, source: str = "image") -> tuple[np.ndarray, float]:
    """``gray / mean`` and the mean; an all-black image is an error (nothing to align)."""
    mean = float(gray.mean())
    if not mean > 0:
        raise InputError(f"{source}: the image is entirely black; nothing to align")
    return (gray / mean).astype(np.float32), mean


def bin_image(img: np.ndarray, factor: int) -> np.ndarray:
    """Area-average by ``factor`` (the size rounded down); identity for 1."""
    if factor == 1:
        return img
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)


def binning_ladder(short_side: int, min_side_px: int, *, start: int = 1, max_bin: int | None = None) -> list[int]:
    """``start, 2*start, 4*start, ...``, finest first: each power-of-two binning whose binned short side keeps at
    least ``min_side_px`` pixels (``start`` always; ``min_side_px=0`` sets no size limit), none above ``max_bin``."""
    bins = [start]
    while short_side // (bins[-1] * 2) >= min_side_px and (max_bin is None or bins[-1] * 2 <= max_bin):
        bins.append(bins[-1] * 2)
    return bins


def level_matrix(full_size: tuple[int, int], level_size: tuple[int, int]) -> np.ndarray:
    """3x3 map from full-frame pixel coordinates to a binned level's (OpenCV pixel centres)."""
    sx, sy = level_size[0] / full_size[0], level_size[1] / full_size[1]
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], np.float64)


def feature_image(norm_gray: np.ndarray, factor: int, blur_sigma: float) -> np.ndarray:
    """An 8-bit image for feature detection: binned, smoothed, square-rooted (stabilises shot-noise
    variance and compresses highlights like a display curve) and stretched to the 0.5-99.5 percentiles."""
    img = bin_image(norm_gray, factor)
    if blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur_sigma)
    img = np.sqrt(np.maximum(img, 0))
    lo, hi = np.percentile(img, (0.5, 99.5))
    if hi <= lo:
        return np.zeros(img.shape, np.uint8)
    return np.clip((img - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def noise_sigma(img: np.ndarray) -> float:
    """Robust white-noise estimate from horizontal differences (median absolute deviation)."""
    d = np.diff(img, axis=1)
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


def noise_blur(norm: np.ndarray, *, min_sigma: float = 0.0, max_sigma: float = 4.0) -> float:
    """Gaussian sigma (pixels of ``norm``) that brings a brightness-normalised image's pixel noise down to about
    30% of its mean, clipped to ``[min_sigma, max_sigma]``.

    Smoothing further loses ECC accuracy (measured at 1920x1200, LL-N light: 5% instead of 30% raises the
    corner error by about a third, 2% doubles it).
    """
    # Averaging over a Gaussian of sigma s divides white noise by about 2*sqrt(pi)*s.
    return float(np.clip(noise_sigma(norm) / 0.3 / (2 * np.sqrt(np.pi)), min_sigma, max_sigma))
