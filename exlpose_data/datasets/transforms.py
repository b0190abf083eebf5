"""Crop geometry of top-down samples: box widening, aspect fit, the crop's affine transform, augmentation.

Coordinates are pixel-index coordinates (pixel ``i`` is centred on ``i``). The crop's affine transform maps
image coordinates to crop (network input) coordinates; its inverse maps predictions back to the image.

Crops are cut in two steps so that a packed image and a decoded PNG give bit-identical results: first the
integer region of interest (ROI) of the image that covers the crop's footprint is read, then the ROI is warped
(a constant padding value outside the image). Both paths read the same ROI values and run the same warp.

Heatmap conventions (``crop_to_heatmap``): ``"ours"`` maps crop pixel ``x`` to heatmap ``x / 4`` (192 -> 48),
targets peak at the nearest heatmap pixel and heatmap pixel ``j`` decodes to crop ``4j``. ``"reference"`` is
the ExLPose/CPN code's: in its corner-based crop coordinates (``u = x + 0.5``) the target peaks at
``floor(u / 4)`` and pixel ``j`` decodes to ``u = 4j + 2``, the centre of the 4-pixel cell; here that is the
map ``x -> (x + 0.5) / 4 - 0.5`` with the nearest pixel (``floor((x + 0.5) / 4)``, the same cell) and the
inverse ``4j + 1.5``. Both are unbiased; a model trained with one must be decoded with the same one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from .lowlight import value_scale

HeatmapConvention = Literal["ours", "reference"]
HEATMAP_CONVENTIONS: tuple[str, ...] = ("ours", "reference")
# How a test crop is cut: "ours" warps the float box with one affine (above); "official" is the authors' test
# loader's integer rectangle, cut and resized (:mod:`.official_crop`).
CropMode = Literal["ours", "official"]
CROP_MODES: tuple[str, ...] = ("ours", "official")
# How a crop's 0-255 values become input: "ours" always divides by 255; "official" divides only when the crop's
# maximum exceeds 1, as the authors' im_to_torch does.
InputScale = Literal["ours", "official"]
INPUT_SCALES: tuple[str, ...] = ("ours", "official")

__all__ = [
    "Augmentation",
    "CropSettings",
    "CROP_MODES",
    "CropMode",
    "INPUT_SCALES",
    "InputScale",
    "HEATMAP_CONVENTIONS",
    "HeatmapConvention",
    "train_crop_factor",
    "crop_box",
    "crop_affine",
    "apply_affine",
    "invert_affine",
    "heatmap_to_image",
    "heatmap_to_crop",
    "crop_to_heatmap",
    "sample_augmentation",
    "crop_roi",
    "read_roi",
    "warp_roi",
]

# Bilinear interpolation reads the pixel after the floor of a source coordinate; OpenCV also rounds source
# coordinates to 1/32 pixel. Two pixels of margin keep every read inside the ROI.
_ROI_MARGIN = 2


@dataclass(frozen=True)
class CropSettings:
    """How a person box becomes a crop (the reference's settings by default).

    Attributes:
        input_size: crop size ``(height, width)`` in pixels.
        widen: fraction of the box width / height added on *each* side (x, y).
        train_enlarge: extra factor on the widened box in training.
    """

    input_size: tuple[int, int] = (256, 192)
    widen: tuple[float, float] = (0.1, 0.15)
    train_enlarge: float = 1.25


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation; each part can be switched off.

    Attributes:
        scale_range: a factor ``s`` is drawn uniformly from this range (None: off). As in the reference code,
            the training crop (the test crop enlarged by ``CropSettings.train_enlarge``, 1.25) is then cut to a
            centred window covering ``min(1, s / train_enlarge)`` of it (:func:`train_crop_factor`): relative
            to the test crop the training crop is ``min(s, train_enlarge)``, 0.7-1.25 by default with about 15%
            of draws at exactly 1.25, so people are never smaller than at test time.
        rotation_deg: rotation drawn uniformly from ``[-rotation_deg, rotation_deg]`` degrees (0: off).
        flip_prob: probability of a horizontal flip (0: off). Flips swap the CrowdPose left/right joints.
    """

    scale_range: tuple[float, float] | None = (0.7, 1.35)
    rotation_deg: float = 0.0
    flip_prob: float = 0.0

    def __post_init__(self) -> None:
        if self.scale_range is not None and not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be 0 < low <= high, got {self.scale_range}")
        if self.rotation_deg < 0:
            raise ValueError(f"rotation_deg must be >= 0, got {self.rotation_deg}")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {self.flip_prob}")


def train_crop_factor(draw: float, train_enlarge: float) -> float:
    """The factor applied to the enlarged training crop for a scale draw: ``min(1, draw / train_enlarge)``.

    The reference crops the widened box x ``train_enlarge`` and then keeps a centred window of that crop whose
    half-size is ``min(half, half / train_enlarge * draw)``, so it zooms in (draw < enlarge) but never out.
    """
    return min(1.0, float(draw) / float(train_enlarge))


def crop_box(bbox_xywh: Any, settings: CropSettings, *, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Centre and size ``(w, h)`` of the crop of a person box.

    The box is widened by ``settings.widen`` per side, enlarged by ``train_enlarge`` in training and then
    aspect-fitted to the input size by growing its short side.
    """
    x, y, w, h = (float(v) for v in bbox_xywh)
    center = np.array([x + w / 2.0, y + h / 2.0])
    cw = w * (1.0 + 2.0 * settings.widen[0])
    ch = h * (1.0 + 2.0 * settings.widen[1])
    if train:
        cw *= settings.train_enlarge
        ch *= settings.train_enlarge
    in_h, in_w = settings.input_size
    aspect = in_w / in_h
    # A degenerate box still yields a finite crop: one pixel at least.
    cw, ch = max(cw, 1.0), max(ch, 1.0)
    if cw > ch * aspect:
        ch = cw / aspect
    else:
        cw = ch * aspect
    return center, np.array([cw, ch])


def crop_affine(
    center: np.ndarray, size_wh: np.ndarray, input_size: tuple[int, int], *, rotation_deg: float = 0.0, flip: bool = False
) -> np.ndarray:
    """The ``(2, 3)`` transform from image to crop coordinates.

    The crop centre maps to the centre of the ``input_size`` grid, ``size_wh`` maps to the grid's size, the
    image is rotated by ``rotation_deg`` (counter-clockwise) about the centre, then optionally mirrored.
    """
    in_h, in_w = input_size
    s = in_w / float(size_wh[0])
    a = math.radians(rotation_deg)
    cos, sin = math.cos(a) * s, math.sin(a) * s
    lin = np.array([[cos, sin], [-sin, cos]])
    if flip:
        lin[0] = -lin[0]
    dst_center = np.array([(in_w - 1) / 2.0, (in_h - 1) / 2.0])
    t = dst_center - lin @ np.asarray(center, dtype=np.float64)
    return np.hstack([lin, t[:, None]])


def apply_affine(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` transform to ``(N, 2)`` points."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ affine[:, :2].T + affine[:, 2]


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """The inverse of a ``(2, 3)`` transform (crop -> image for a crop's transform)."""
    return cv2.invertAffineTransform(np.asarray(affine, dtype=np.float64))


def _stride(input_size: tuple[int, int], heatmap_size: tuple[int, int]) -> np.ndarray:
    return np.array([input_size[1] / heatmap_size[1], input_size[0] / heatmap_size[0]])


def _check_convention(convention: str) -> None:
    if convention not in HEATMAP_CONVENTIONS:
        raise ValueError(f"unknown heatmap convention {convention!r}; choose one of {', '.join(HEATMAP_CONVENTIONS)}")


def crop_to_heatmap(
    points: np.ndarray, input_size: tuple[int, int], heatmap_size: tuple[int, int], convention: HeatmapConvention = "ours"
) -> np.ndarray:
    """Crop pixels to (continuous) heatmap pixels; targets peak at the nearest pixel of the result.

    ``"ours"``: ``crop_xy / stride`` (crop x = 4j peaks at heatmap pixel j for 192 -> 48). ``"reference"``:
    ``(crop_xy + 0.5) / stride - 0.5``, whose nearest pixel is the reference's ``floor(u / stride)`` with
    ``u = x + 0.5`` its corner-based crop coordinate (see the module docstring).
    """
    _check_convention(convention)
    stride = _stride(input_size, heatmap_size)
    pts = np.asarray(points, dtype=np.float64)
    if convention == "reference":
        return (pts + 0.5) / stride - 0.5
    return pts / stride


def heatmap_to_crop(
    points_hm: np.ndarray, input_size: tuple[int, int], heatmap_size: tuple[int, int], convention: HeatmapConvention = "ours"
) -> np.ndarray:
    """The inverse of :func:`crop_to_heatmap`: heatmap pixel ``j`` -> crop ``4j`` (ours) or ``4j + 1.5``
    (reference, its ``u = 4j + 2``)."""
    _check_convention(convention)
    stride = _stride(input_size, heatmap_size)
    pts = np.asarray(points_hm, dtype=np.float64)
    if convention == "reference":
        return (pts + 0.5) * stride - 0.5
    return pts * stride


def heatmap_to_image(
    points_hm: np.ndarray,
    affine: np.ndarray,
    input_size: tuple[int, int],
    heatmap_size: tuple[int, int],
    convention: HeatmapConvention = "ours",
) -> np.ndarray:
    """Map ``(N, 2)`` heatmap positions of a crop back to image coordinates through its ``meta["affine"]``
    (:func:`heatmap_to_crop` followed by the inverse crop transform)."""
    crop = heatmap_to_crop(points_hm, input_size, heatmap_size, convention)
    return apply_affine(crop, invert_affine(np.asarray(affine, dtype=np.float64)))


def sample_augmentation(rng: np.random.Generator, aug: Augmentation) -> tuple[float, float, bool]:
    """Draw ``(scale, rotation_deg, flip)``; parts that are off give 1.0, 0.0, False without drawing."""
    scale = float(rng.uniform(*aug.scale_range)) if aug.scale_range is not None else 1.0
    rotation = float(rng.uniform(-aug.rotation_deg, aug.rotation_deg)) if aug.rotation_deg > 0 else 0.0
    flip = bool(rng.random() < aug.flip_prob) if aug.flip_prob > 0 else False
    return scale, rotation, flip


def crop_roi(affine: np.ndarray, input_size: tuple[int, int], image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """The integer source rectangle ``(x0, y0, x1, y1)`` (exclusive ends) a crop reads from.

    It is clipped to the image: outside it the warp's constant border supplies the same zeros as padding
    would, so a crop reaching far beyond the image reads (and converts) no more than the image holds.
    """
    in_h, in_w = input_size
    corners = np.array([[0, 0], [in_w - 1, 0], [0, in_h - 1], [in_w - 1, in_h - 1]], dtype=np.float64)
    src = apply_affine(corners, invert_affine(affine))
    x0, y0 = np.floor(src.min(axis=0)).astype(int) - _ROI_MARGIN
    x1, y1 = np.ceil(src.max(axis=0)).astype(int) + _ROI_MARGIN + 1
    h, w = image_hw
    x0, y0 = min(max(int(x0), 0), w - 1), min(max(int(y0), 0), h - 1)
    x1, y1 = max(min(int(x1), w), x0 + 1), max(min(int(y1), h), y0 + 1)
    return x0, y0, x1, y1


def read_roi(source: Any, roi: tuple[int, int, int, int]) -> np.ndarray:
    """The pixels of ``roi`` (from :func:`crop_roi`, so inside the image) of an ``(H, W, 3)`` array-like: a numpy
    array, or a memory map of which only those rows are touched."""
    x0, y0, x1, y1 = roi
    return np.asarray(source[y0:y1, x0:x1])


def warp_roi(
    roi_pixels: np.ndarray,
    roi: tuple[int, int, int, int],
    affine: np.ndarray,
    input_size: tuple[int, int],
    border: tuple[float, float, float] | np.ndarray | None = None,
) -> np.ndarray:
    """Warp ROI pixels (uint8 or uint16 ``(h, w, 3)``, any channel order) into the crop: float32 ``(H, W, 3)``
    on the 0-255 scale (16-bit values / 257), bilinear, ``border`` outside the image.

    ``border`` holds the padding value per channel (in the pixels' channel order, on the 0-255 scale); None
    pads with zeros. Bilinear reads straddling the image edge mix image and padding, as resizing a padded
    image does.

    The warp runs on float32 so that the large low-light gain applied afterwards does not magnify 8-bit
    rounding of the interpolated values.
    """
    shifted = affine.copy()
    shifted[:, 2] += affine[:, :2] @ np.array([roi[0], roi[1]], dtype=np.float64)
    in_h, in_w = input_size
    scale = value_scale(roi_pixels.dtype)
    # The warp runs on the pixels' own scale; the padding is given on the 0-255 scale.
    value = (0.0, 0.0, 0.0) if border is None else tuple(float(v) / scale for v in np.asarray(border, dtype=np.float64))
    crop = cv2.warpAffine(
        roi_pixels.astype(np.float32), shifted, (in_w, in_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=value
    )
    if scale != 1.0:
        # Scaled after the (linear) warp: the crop is usually smaller than its ROI.
        crop *= np.float32(scale)
    return crop
