"""The authors' test crop (sohyun-l/ExLPose, ``pytorch-cpn/dataloader/loader_eval_LL.py`` / ``loader_eval_WL.py``).

Facts of their test loaders, reproduced here so that an imported checkpoint sees the input it was published with:

- The box is their ``_trans.json`` ``GT_bbox``: the corners truncated to integers,
  ``[int(x), int(y), int(x + w), int(y + h)]`` (``exlpose_data.official``'s rule).
- The image is padded by ``add = max(H, W)`` pixels on every side with the pixel means (122.7717, 115.9465,
  102.9801 RGB); the LL image is brightened first (``x * 255 * 0.4 / mean`` per channel, float64), so its padding
  is the means as they are, and the WL image is 8-bit, so its padding is the means rounded (123, 116, 103).
- The crop is the box widened by 0.1 (x) / 0.15 (y) per side, ``size`` its height when
  ``height / 256 > width / 192`` (else its width), limited so that the rectangle stays inside the padded image;
  the rectangle's ends are ``int(centre -/+ size / 2 / base * input)`` per axis (``base`` the input side that
  ``size`` belongs to), in padded coordinates, so ``int()`` is a floor.
- That rectangle (ends exclusive) is cut out and resized to the input with ``cv2.resize`` (bilinear): the LL
  crop on float64 values, the WL crop on 8-bit values (rounded by OpenCV).
- ``im_to_torch`` divides by 255 only when the crop's maximum exceeds 1 (:func:`divides_by_255`); WL crops are
  then normalised with the dataset statistics.
- Joints map to the crop as ``u = (x - x0) * input_w / (x1 - x0)`` (and so for y), in the corner-based crop
  coordinates their targets (``floor(u / 4)``) and their decoding (``x = (4j + 2) / ratio + x0``) use. In this
  package's pixel-index crop coordinates that is ``u - 0.5`` (:func:`official_affine`), which with the
  ``"reference"`` heatmap convention decodes to exactly their image coordinates.

The sampling grid of ``cv2.resize`` is not that map (it reads crop pixel ``i`` at ``x0 + (i + 0.5) / ratio - 0.5``),
and the resize repeats the cut rectangle's edge pixels where a warp would read its neighbours; a model trained
with their loaders learnt both, which is why the crop matters to an imported checkpoint.

One deviation, where theirs fails: a box less than one pixel wide or high (their ``int()`` ends coincide and the
resize of an empty cut raises) gets a one-pixel rectangle.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

# The _trans.json box rule has one home (exlpose_data.official); it is private there.
from ..official import gt_bbox
from .lowlight import LowLightScaling, Normalisation, value_scale

__all__ = ["official_rect", "official_affine", "official_brightening", "official_cut", "divides_by_255", "official_input", "official_crop",
           "undivided_input"]


def official_rect(
    bbox_xywh: Any, image_hw: tuple[int, int], input_size: tuple[int, int] = (256, 192), widen: tuple[float, float] = (0.1, 0.15)
) -> tuple[int, int, int, int]:
    """The integer rectangle ``(x0, y0, x1, y1)`` (ends exclusive, image coordinates, possibly beyond the image)
    their test loader cuts for a person box ``(x, y, w, h)`` in an image of ``image_hw``."""
    x1, y1, x2, y2 = (float(v) for v in gt_bbox(bbox_xywh))
    h_img, w_img = image_hw
    add = max(h_img, w_img)
    height, width = input_size
    cx = (x1 + x2) / 2.0 + add
    cy = (y1 + y2) / 2.0 + add
    crop_w = (x2 - x1) * (1 + widen[0] * 2)
    crop_h = (y2 - y1) * (1 + widen[1] * 2)
    if crop_h / height > crop_w / width:
        size, base = crop_h, height
    else:
        size, base = crop_w, width
    padded_w, padded_h = w_img + 2 * add, h_img + 2 * add
    size = min(size, cx / width * base * 2.0 - 1.0)
    size = min(size, (padded_w - cx) / width * base * 2.0 - 1)
    size = min(size, cy / height * base * 2.0 - 1.0)
    size = min(size, (padded_h - cy) / height * base * 2.0 - 1)
    min_x = int(cx - size / 2.0 / base * width)
    max_x = int(cx + size / 2.0 / base * width)
    min_y = int(cy - size / 2.0 / base * height)
    max_y = int(cy + size / 2.0 / base * height)
    return min_x - add, min_y - add, max(max_x, min_x + 1) - add, max(max_y, min_y + 1) - add


def official_affine(rect: tuple[int, int, int, int], input_size: tuple[int, int]) -> np.ndarray:
    """The ``(2, 3)`` image -> crop transform (pixel-index coordinates) of their joint mapping for ``rect``:
    ``(x - x0) * input_w / (x1 - x0) - 0.5`` (and so for y)."""
    x0, y0, x1, y1 = rect
    height, width = input_size
    rx, ry = width / float(x1 - x0), height / float(y1 - y0)
    return np.array([[rx, 0.0, -x0 * rx - 0.5], [0.0, ry, -y0 * ry - 0.5]])


def official_brightening(rgb_means_255: np.ndarray, scaling: LowLightScaling | None) -> np.ndarray:
    """Their LL factor per channel, ``255 * 0.4 / mean`` (ones without LL scaling); our floor of the mean
    (``scaling.min_mean``) keeps an all-black image finite where theirs divides by zero."""
    if scaling is None:
        return np.ones(3)
    means = np.maximum(np.asarray(rgb_means_255, dtype=np.float64), 255.0 * scaling.min_mean)
    return 255.0 * scaling.target_mean / means


def official_cut(
    pixels_bgr: Any,
    image_hw: tuple[int, int],
    rect: tuple[int, int, int, int],
    input_size: tuple[int, int],
    *,
    brighten_rgb: np.ndarray | None,
    pad_rgb_255: tuple[float, float, float] | None,
) -> np.ndarray:
    """Their crop of ``rect``: float32 ``(H, W, 3)`` RGB on the 0-255 scale, before ``im_to_torch``.

    Only the part of the (virtually) padded image inside ``rect`` is built: the image pixels it covers and the
    padding around them, which is what slicing their padded image gives.

    Args:
        pixels_bgr: ``(H, W, 3)`` uint8 or uint16 BGR array-like (a memory map is read only inside ``rect``).
        image_hw: the image's ``(H, W)``.
        rect: from :func:`official_rect`.
        input_size: crop ``(height, width)``.
        brighten_rgb: LL: the per-channel factor of their brightening (``255 * 0.4 / mean``); the crop is then
            built on float64 values as theirs. None: WL, built on the image's own integer values.
        pad_rgb_255: padding RGB on the 0-255 scale (their pixel means), None for zeros.
    """
    x0, y0, x1, y1 = rect
    h_img, w_img = image_hw
    height, width = input_size
    ix0, iy0 = min(max(x0, 0), w_img), min(max(y0, 0), h_img)
    ix1, iy1 = max(min(x1, w_img), ix0), max(min(y1, h_img), iy0)
    inside = np.asarray(pixels_bgr[iy0:iy1, ix0:ix1])
    scale = value_scale(inside.dtype)
    pad_bgr = (np.zeros(3) if pad_rgb_255 is None else np.asarray(pad_rgb_255, dtype=np.float64))[::-1]
    # Work in BGR and swap the channels of the small result: every step is per channel, so the values are theirs.
    sides = (iy0 - y0, y1 - iy1, ix0 - x0, x1 - ix1)  # top, bottom, left, right padding
    if brighten_rgb is not None:
        factor = np.asarray(brighten_rgb, dtype=np.float64)[::-1] * scale
        if inside.size:
            # uint8 -> float64 times the factor: the same IEEE products as their float64 image (cv2, faster than numpy)
            values = cv2.multiply(inside, (*factor.tolist(), 0.0), dtype=cv2.CV_64F) if scale == 1.0 else inside * factor
        else:
            values = np.zeros((iy1 - iy0, ix1 - ix0, 3))
        cut = _pad(values, sides, pad_bgr)
        return np.ascontiguousarray(cv2.resize(cut, (width, height))[..., ::-1]).astype(np.float32)
    # OpenCV rounds a padding value into an integer image (their copyMakeBorder on the 8-bit WL image).
    info = np.iinfo(inside.dtype)
    cut = _pad(inside if inside.size else np.zeros((iy1 - iy0, ix1 - ix0, 3), inside.dtype), sides,
               np.clip(np.round(pad_bgr / scale), info.min, info.max))
    crop = np.ascontiguousarray(cv2.resize(cut, (width, height))[..., ::-1]).astype(np.float32)
    if scale != 1.0:
        crop *= np.float32(scale)
    return crop


def _pad(values: np.ndarray, sides: tuple[int, int, int, int], value_bgr: np.ndarray) -> np.ndarray:
    """``values`` with ``sides`` (top, bottom, left, right) pixels of ``value_bgr`` around it."""
    if not any(sides):
        return values
    if values.shape[0] == 0 or values.shape[1] == 0:  # the rectangle lies wholly outside the image
        h, w = values.shape[0] + sides[0] + sides[1], values.shape[1] + sides[2] + sides[3]
        out = np.empty((h, w, 3), values.dtype)
        out[:] = value_bgr.astype(values.dtype) if values.dtype.kind == "f" else value_bgr
        return out
    return cv2.copyMakeBorder(values, *sides, cv2.BORDER_CONSTANT, value=(*value_bgr.tolist(), 0.0))


def divides_by_255(crop_255: np.ndarray) -> bool:
    """Whether their ``im_to_torch`` divides a crop by 255: only when its maximum exceeds 1."""
    return bool(np.max(crop_255) > 1)


def official_input(crop_255: np.ndarray, normalisation: Normalisation | None, *, divide: str) -> np.ndarray:
    """Network input (float32 ``(H, W, 3)`` RGB) of a crop from :func:`official_cut`: divided by 255 (always
    with ``divide="ours"``, as their ``im_to_torch`` with ``"official"``), then normalised when given (WL)."""
    x = crop_255 / np.float32(255.0) if divide == "ours" or divides_by_255(crop_255) else crop_255
    if normalisation is not None:
        x = (x - np.asarray(normalisation.mean, dtype=np.float32)) / np.asarray(normalisation.std, dtype=np.float32)
    return x.astype(np.float32, copy=False)


def official_crop(
    pixels_bgr: Any,
    image_hw: tuple[int, int],
    rgb_means_255: np.ndarray,
    bbox_xywh: Any,
    condition: str,
    *,
    input_size: tuple[int, int],
    widen: tuple[float, float] = (0.1, 0.15),
    ll_scaling: LowLightScaling | None,
    wl_normalisation: Normalisation | None,
    pad_rgb_255: tuple[float, float, float] | None,
    divide: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Their test crop of one person box: ``(affine, input)``, the image -> crop transform of their joint map and
    the float32 ``(H, W, 3)`` RGB network input (``condition`` ``"LL"`` brightened, ``"WL"`` normalised)."""
    rect = official_rect(bbox_xywh, image_hw, input_size, widen)
    brighten = official_brightening(rgb_means_255, ll_scaling) if condition == "LL" else None
    crop = official_cut(pixels_bgr, image_hw, rect, input_size, brighten_rgb=brighten, pad_rgb_255=pad_rgb_255)
    return official_affine(rect, input_size), official_input(crop, wl_normalisation if condition != "LL" else None, divide=divide)


def undivided_input(input_rgb: np.ndarray, raw_bgr_255: np.ndarray, brighten_rgb: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Their ``im_to_torch`` rule on one of our crops (``input = raw * gain + offset``): when the crop their
    loader would hold (``raw * brighten``, 0-255 scale) has no value above 1, it is not divided by 255, so the
    input becomes ``(input - offset) * 255 + offset``; otherwise ``input_rgb`` is returned as it is."""
    top = float(np.max(raw_bgr_255.reshape(-1, 3).max(axis=0)[::-1] * np.asarray(brighten_rgb, dtype=np.float64)))
    if top > 1:
        return input_rgb
    off = np.asarray(offset, dtype=np.float32)
    return ((input_rgb - off) * np.float32(255.0) + off).astype(np.float32, copy=False)
