"""Input scaling: the paper's low-light brightening and well-lit mean/std normalisation.

Low-light (LL) input: each channel is multiplied so that its *whole-image* mean becomes 0.4 on a 0-1 scale
(the reference computes ``x * 255 * 0.4 / mean`` on 0-255 values, then divides by 255), unclipped and not
mean/std-normalised. The mean is taken over the whole image before cropping, so every crop of an image gets
the same gain. The reference has no guard for an all-black image; here a channel mean below ``min_mean``
counts as ``min_mean``, so an all-black image stays black instead of becoming NaN.

Well-lit (WL) input: ``(x / 255 - mean) / std`` with the ExLPose dataset's own statistics by default, as the
reference code normalises (mean 0.3457/0.3460/0.3463, std 0.1477/0.1482/0.1483, RGB, on [0, 1]);
``WL_NORMALISATIONS["imagenet"]`` keeps the ImageNet statistics instead.

Padding: the reference pads every image with the pixel means (122.8, 115.9, 103.0 RGB on the 0-255 scale)
before cropping, after the LL brightening, so a crop reaching beyond the image sees mean grey in the input of
either condition (:func:`padding_value`); ``pad=None`` pads with zeros.

Everything here works on the 0-255 scale. 16-bit images (``exlpose-align apply --bits 16``) are brought to it
by :func:`value_scale` (``x / 257``, so 65535 -> 255) without rounding to 8 bits, so the fine steps of a
dark 16-bit image survive the x50 low-light gain.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "LowLightScaling",
    "Normalisation",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "REFERENCE_WL_MEAN",
    "REFERENCE_WL_STD",
    "WL_NORMALISATIONS",
    "PIXEL_MEANS",
    "padding_value",
    "value_scale",
    "rgb_means",
    "ll_gains",
    "wl_affine",
    "bgr_to_input",
    "input_affine",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# The reference code's WL statistics (its loaders' Normalize), RGB on [0, 1].
REFERENCE_WL_MEAN: tuple[float, float, float] = (0.3457, 0.3460, 0.3463)
REFERENCE_WL_STD: tuple[float, float, float] = (0.1477, 0.1482, 0.1483)
# The reference code's padding value (its configs' pixel_means), RGB on the 0-255 scale.
PIXEL_MEANS: tuple[float, float, float] = (122.7717, 115.9465, 102.9801)


@dataclass(frozen=True)
class LowLightScaling:
    """The paper's LL brightening.

    Attributes:
        target_mean: per-channel whole-image mean after scaling, on a 0-1 scale.
        min_mean: floor of the measured mean (0-1 scale) guarding against all-black images.
    """

    target_mean: float = 0.4
    min_mean: float = 1e-3

    def __post_init__(self) -> None:
        if not (self.target_mean > 0 and self.min_mean > 0):
            raise ValueError(f"target_mean and min_mean must be positive, got {self.target_mean}, {self.min_mean}")


@dataclass(frozen=True)
class Normalisation:
    """``(x / 255 - mean) / std`` per channel (RGB order)."""

    mean: tuple[float, float, float] = REFERENCE_WL_MEAN
    std: tuple[float, float, float] = REFERENCE_WL_STD

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError(f"normalisation needs 3 means and 3 positive stds, got mean={self.mean} std={self.std}")


WL_NORMALISATIONS: dict[str, Normalisation] = {
    "reference": Normalisation(REFERENCE_WL_MEAN, REFERENCE_WL_STD),
    "imagenet": Normalisation(IMAGENET_MEAN, IMAGENET_STD),
}


def value_scale(dtype: np.dtype | type) -> float:
    """The factor bringing pixel values of ``dtype`` to the 0-255 scale: 1 for uint8, 1/257 for uint16."""
    dt = np.dtype(dtype)
    if dt == np.uint8:
        return 1.0
    if dt == np.uint16:
        return 1.0 / 257.0
    raise ValueError(f"pixel type {dt}: expected uint8 or uint16")


def rgb_means(bgr_image: np.ndarray) -> np.ndarray:
    """Per-channel mean (R, G, B order, 0-255 scale, float64) of a whole decoded ``(H, W, 3)`` BGR uint8 or
    uint16 image."""
    return np.asarray(cv2.mean(bgr_image)[:3][::-1], dtype=np.float64) * value_scale(bgr_image.dtype)


def ll_gains(means_255: np.ndarray, scaling: LowLightScaling) -> np.ndarray:
    """Per-channel factors mapping 0-255 pixel values to the scaled LL input."""
    means01 = np.maximum(np.asarray(means_255, dtype=np.float64) / 255.0, scaling.min_mean)
    return scaling.target_mean / (255.0 * means01)


def bgr_to_input(pixels_bgr: np.ndarray, gain: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """RGB ``pixels * gain + offset`` per channel of a float32 ``(H, W, 3)`` BGR array, as float32.

    One ``cv2.transform`` pass does the channel swap and the affine together.
    """
    m = np.zeros((3, 4), dtype=np.float64)
    m[[0, 1, 2], [2, 1, 0]] = gain
    m[:, 3] = offset
    return cv2.transform(pixels_bgr, m)


def wl_affine(norm: Normalisation | None) -> tuple[np.ndarray, np.ndarray]:
    """Gain and offset turning 0-255 values into normalised WL input (``x / 255`` when ``norm`` is None)."""
    if norm is None:
        return np.full(3, 1.0 / 255.0), np.zeros(3)
    mean = np.asarray(norm.mean, dtype=np.float64)
    std = np.asarray(norm.std, dtype=np.float64)
    return 1.0 / (255.0 * std), -mean / std


def input_affine(
    condition: str, rgb_means_255: np.ndarray, ll_scaling: LowLightScaling | None, wl_normalisation: Normalisation | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel gain and offset turning an image's 0-255 RGB values into network input.

    LL images get the paper's scaling (``x / 255`` when ``ll_scaling`` is None); WL images the normalisation.
    """
    if condition == "LL":
        if ll_scaling is None:
            return wl_affine(None)
        return ll_gains(rgb_means_255, ll_scaling), np.zeros(3)
    return wl_affine(wl_normalisation)


def padding_value(condition: str, pad_rgb_255: tuple[float, float, float] | None, gain: np.ndarray, offset: np.ndarray) -> np.ndarray | None:
    """The raw padding value (BGR, 0-255 scale) that becomes the reference's padding in the network input.

    The reference pads the WL image with ``pad`` as it is and the LL image with ``pad`` after brightening (so
    the LL input sees ``pad / 255``, unnormalised, and the WL input ``(pad / 255 - mean) / std``). Crops here are
    warped on raw pixels and then mapped by ``input = raw * gain + offset`` (:func:`input_affine`), so the raw
    value is ``pad`` for WL and ``(pad / 255 - offset) / gain`` for LL. None when ``pad_rgb_255`` is None (zeros).
    """
    if pad_rgb_255 is None:
        return None
    pad = np.asarray(pad_rgb_255, dtype=np.float64)
    if condition == "LL":
        raw_rgb = (pad / 255.0 - np.asarray(offset, dtype=np.float64)) / np.asarray(gain, dtype=np.float64)
    else:
        raw_rgb = pad
    return raw_rgb[::-1].copy()
