"""Whole-image detector inputs and CenterNet training targets (numpy only).

A one-class person detector in the style of CenterNet (Zhou, Wang and Krähenbühl, "Objects as Points", 2019)
predicts, on a grid ``stride`` (4) times coarser than its input, a centre heatmap (one Gaussian peak per person),
the box size and the sub-cell offset of each centre. This module builds its inputs and targets:

- :func:`letterbox_affine`: the image fitted inside the input keeping its aspect, centred, with the training
  augmentation (scale about the input centre, shift, horizontal flip) in the same ``(2, 3)`` transform.
- :func:`prepare_image`: any decoded image as network input, scaled exactly as the pose datasets scale theirs
  (:mod:`.lowlight`: the LL gain from the whole image's means, WL normalisation, the reference's padding).
- :func:`centre_targets`: heatmap, sizes, offsets, cell indices and mask of the boxes of one input.

Coordinates are pixel-index coordinates as in :mod:`.transforms` (pixel ``i`` is centred on ``i``); an input
position ``x`` lies in output cell ``floor(x / stride)`` at offset ``x / stride - floor(x / stride)``, so a
decoder gets ``x`` back as ``(cell + offset) * stride``.

Gaussian radius. CenterNet draws each centre with a radius that depends on the box size, chosen so that a box
of the right size whose centre is ``r`` off in both x and y still overlaps the true box with IoU >= ``t``
(0.7). For a ``w x h`` box shifted by ``(r, r)`` the intersection is ``(w - r)(h - r)`` and the union
``2wh - (w - r)(h - r)``, so ``IoU >= t`` is ``(w - r)(h - r) >= k wh`` with ``k = 2t / (1 + t)``, i.e.
``r^2 - (w + h) r + (1 - k) wh >= 0``. The smaller root, ``r = ((w + h) - sqrt((w + h)^2 - 4 (1 - k) wh)) / 2``,
is the largest shift that keeps the overlap (the larger one exceeds the box). ``1 - k = (1 - t) / (1 + t)``.
This is the shifted-box case of CornerNet's radius (Law and Deng 2018), which CenterNet reuses; CenterNet's
published code takes the minimum with two further cases (corners moved inwards / outwards) written with a slip
in the quadratic formula (no division by ``2a``), which gives radii about three times larger than any of the
exact cases. Here the radius is the exact shifted-box one, as the docstring of :func:`gaussian_radius` says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UsageError
from ..lighting import Lighting
from .lowlight import PIXEL_MEANS, LowLightScaling, Normalisation, bgr_to_input, input_affine, padding_value, rgb_means
from .transforms import apply_affine, crop_roi, read_roi, warp_roi

__all__ = [
    "RADIUS_RULES",
    "DetectionAugmentation",
    "sample_detection_augmentation",
    "gaussian_radius",
    "draw_gaussian",
    "letterbox_affine",
    "boxes_to_input",
    "centre_targets",
    "warp_image",
    "prepare_image",
]

_DEFAULT_LL = LowLightScaling()
_DEFAULT_WL = Normalisation()


@dataclass(frozen=True)
class DetectionAugmentation:
    """Training augmentation of whole-image detector inputs (each part can be switched off).

    Attributes:
        scale_range: a factor drawn uniformly from this range scales the letterboxed image about the input
            centre (None: off).
        shift: a shift drawn uniformly from ``[-shift, shift]`` per axis, as a fraction of the input's width and
            height (0: off).
        flip_prob: probability of a horizontal flip (0: off).
    """

    scale_range: tuple[float, float] | None = (0.6, 1.4)
    shift: float = 0.1
    flip_prob: float = 0.5

    def __post_init__(self) -> None:
        if self.scale_range is not None and not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise UsageError(f"scale_range must be 0 < low <= high, got {self.scale_range}")
        if not (math.isfinite(self.shift) and 0.0 <= self.shift < 1.0):
            raise UsageError(f"shift must be in [0, 1), got {self.shift}")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise UsageError(f"flip_prob must be in [0, 1], got {self.flip_prob}")


def sample_detection_augmentation(rng: np.random.Generator, aug: DetectionAugmentation) -> tuple[float, tuple[float, float], bool]:
    """Draw ``(scale, (shift_x, shift_y), flip)``; parts that are off give 1.0, (0, 0), False without drawing."""
    scale = float(rng.uniform(*aug.scale_range)) if aug.scale_range is not None else 1.0
    shift = (float(rng.uniform(-aug.shift, aug.shift)), float(rng.uniform(-aug.shift, aug.shift))) if aug.shift > 0 else (0.0, 0.0)
    flip = bool(rng.random() < aug.flip_prob) if aug.flip_prob > 0 else False
    return scale, shift, flip


RADIUS_RULES: tuple[str, ...] = ("exact", "centernet")


def gaussian_radius(h: float, w: float, min_overlap: float = 0.7, rule: str = "exact") -> float:
    """The largest centre shift ``r`` (in x and in y at once) that keeps a ``w x h`` box's IoU with itself
    shifted by ``(r, r)`` at ``min_overlap`` or more (derivation in the module docstring; CenterNet, Zhou et
    al. 2019, draws its centre Gaussians with a radius of this kind). In the units of ``h`` and ``w``.

    ``rule="centernet"`` gives the radius CenterNet's (and CornerNet's) published code computes instead: the
    smallest root of three quadratics (a box shifted by ``r``, shrunk by ``r``, grown by ``r``), each solved as
    ``(b + sqrt(b^2 - 4ac)) / 2`` without dividing by ``a`` — the known slip that makes those radii about three
    times larger than the geometry asks (a 20x40 box: 7 against 2). Offered for comparing with CenterNet."""
    if not 0.0 < min_overlap < 1.0:
        raise UsageError(f"min_overlap must be in (0, 1), got {min_overlap}")
    if rule not in RADIUS_RULES:
        raise UsageError(f"radius rule {rule!r}: choose one of {', '.join(RADIUS_RULES)}")
    h, w = float(h), float(w)
    if h <= 0 or w <= 0:
        return 0.0
    if rule == "centernet":
        o = min_overlap
        roots = []
        for a, b, c in ((1.0, h + w, w * h * (1 - o) / (1 + o)), (4.0, 2 * (h + w), (1 - o) * w * h), (4 * o, -2 * o * (h + w), (o - 1) * w * h)):
            roots.append((b + math.sqrt(b * b - 4 * a * c)) / 2.0)
        return min(roots)
    b = h + w
    c = w * h * (1.0 - min_overlap) / (1.0 + min_overlap)
    return (b - math.sqrt(b * b - 4.0 * c)) / 2.0


def draw_gaussian(heatmap: np.ndarray, centre_xy_int: tuple[int, int], radius: int) -> np.ndarray:
    """Draw a peak-1 Gaussian of ``radius`` cells (``sigma = (2 radius + 1) / 6``, as CenterNet) at an integer
    cell of a 2-D ``heatmap``, keeping the larger value where peaks overlap (in place; returns ``heatmap``)."""
    radius = max(0, int(radius))
    x, y = int(centre_xy_int[0]), int(centre_xy_int[1])
    h, w = heatmap.shape
    if not (0 <= x < w and 0 <= y < h):
        return heatmap
    sigma = (2 * radius + 1) / 6.0
    x0, x1 = max(0, x - radius), min(w, x + radius + 1)
    y0, y1 = max(0, y - radius), min(h, y + radius + 1)
    dx = np.arange(x0, x1, dtype=np.float64) - x
    dy = np.arange(y0, y1, dtype=np.float64) - y
    g = np.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2.0 * sigma * sigma))
    np.maximum(heatmap[y0:y1, x0:x1], g.astype(heatmap.dtype), out=heatmap[y0:y1, x0:x1])
    return heatmap


def letterbox_affine(
    image_hw: tuple[int, int], input_hw: tuple[int, int], *, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0), flip: bool = False
) -> np.ndarray:
    """The float64 ``(2, 3)`` transform from image to input pixels.

    The image is fitted inside ``input_hw`` keeping its aspect and centred (the image centre maps to the input
    centre), then scaled by ``scale`` about the input centre and moved by ``shift`` (fractions of the input
    width and height); ``flip`` finally mirrors the input horizontally.
    """
    ih, iw = (float(v) for v in image_hw)
    h, w = (float(v) for v in input_hw)
    if ih <= 0 or iw <= 0 or h <= 0 or w <= 0 or not (math.isfinite(scale) and scale > 0):
        raise UsageError(f"letterbox needs positive sizes and scale, got image {image_hw}, input {input_hw}, scale {scale}")
    s = min(w / iw, h / ih) * float(scale)
    src_c = np.array([(iw - 1.0) / 2.0, (ih - 1.0) / 2.0])
    dst_c = np.array([(w - 1.0) / 2.0 + shift[0] * w, (h - 1.0) / 2.0 + shift[1] * h])
    lin = np.array([[s, 0.0], [0.0, s]])
    t = dst_c - lin @ src_c
    affine = np.hstack([lin, t[:, None]])
    if flip:
        affine[0] = -affine[0]
        affine[0, 2] += w - 1.0
    return affine


def boxes_to_input(boxes_xywh: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Image ``(N, 4)`` xywh boxes as ``(N, 4)`` xyxy boxes in input pixels (their corners through ``affine``)."""
    b = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    corners = np.stack([np.stack([x0, y0], 1), np.stack([x1, y0], 1), np.stack([x0, y1], 1), np.stack([x1, y1], 1)], 1)
    mapped = apply_affine(corners.reshape(-1, 2), affine).reshape(-1, 4, 2)
    return np.concatenate([mapped.min(axis=1), mapped.max(axis=1)], axis=1)


def _check_input_size(input_hw: tuple[int, int], stride: int) -> tuple[int, int]:
    h, w = (int(v) for v in input_hw)
    if stride <= 0 or h <= 0 or w <= 0 or h % stride or w % stride:
        raise UsageError(f"input size {tuple(input_hw)} (H, W) must be positive multiples of the stride {stride}")
    return h, w


def centre_targets(boxes_xyxy_input: np.ndarray, input_hw: tuple[int, int], *, stride: int = 4, max_objects: int, min_overlap: float = 0.7,
                   radius_rule: str = "exact") -> dict[str, Any]:
    """CenterNet targets of one input's boxes.

    Boxes are clipped to the input (``[0, W] x [0, H]``); a box whose clipped width or height is below one
    pixel, or whose centre lies outside the output grid, is left out (augmentation moved it away) and counted in
    ``dropped``.

    Args:
        boxes_xyxy_input: ``(N, 4)`` boxes in input pixels.
        input_hw: input ``(H, W)``, multiples of ``stride``.
        stride: output stride.
        max_objects: rows of the per-object arrays (``M``); more kept boxes than that is an error.
        min_overlap: IoU the Gaussian radius keeps (:func:`gaussian_radius`).
        radius_rule: ``"exact"`` or ``"centernet"`` (:func:`gaussian_radius`).

    Returns:
        ``heatmap`` float32 ``(1, H/stride, W/stride)``; ``size`` float32 ``(M, 2)`` box w, h in output cells;
        ``offset`` float32 ``(M, 2)`` centre / stride minus its cell; ``index`` int64 ``(M,)`` ``cy * w_out + cx``;
        ``mask`` float32 ``(M,)`` 1 for a box; ``boxes`` float32 ``(M, 4)`` the clipped input-pixel boxes;
        ``count`` the boxes kept and ``dropped`` the boxes left out (ints). Rows past ``count`` are zero.

    Raises:
        UsageError: the input size is not a multiple of the stride, or more than ``max_objects`` boxes are kept.
    """
    h, w = _check_input_size(input_hw, stride)
    if max_objects < 0:
        raise UsageError(f"max_objects must be >= 0, got {max_objects}")
    h_out, w_out = h // stride, w // stride
    boxes = np.asarray(boxes_xyxy_input, dtype=np.float64).reshape(-1, 4)
    clipped = np.column_stack([np.clip(boxes[:, 0], 0, w), np.clip(boxes[:, 1], 0, h), np.clip(boxes[:, 2], 0, w), np.clip(boxes[:, 3], 0, h)])
    bw, bh = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    centre = np.column_stack([clipped[:, 0] + clipped[:, 2], clipped[:, 1] + clipped[:, 3]]) / (2.0 * stride)
    cell = np.floor(centre)
    keep = (bw >= 1.0) & (bh >= 1.0) & (cell[:, 0] >= 0) & (cell[:, 0] < w_out) & (cell[:, 1] >= 0) & (cell[:, 1] < h_out)
    count = int(keep.sum())
    if count > max_objects:
        raise UsageError(f"{count} boxes in one input, more than max_objects={max_objects}")
    heatmap = np.zeros((1, h_out, w_out), dtype=np.float32)
    size = np.zeros((max_objects, 2), dtype=np.float32)
    offset = np.zeros((max_objects, 2), dtype=np.float32)
    index = np.zeros(max_objects, dtype=np.int64)
    mask = np.zeros(max_objects, dtype=np.float32)
    out_boxes = np.zeros((max_objects, 4), dtype=np.float32)
    for j, n in enumerate(np.flatnonzero(keep)):
        cw, ch = bw[n] / stride, bh[n] / stride
        cx, cy = int(cell[n, 0]), int(cell[n, 1])
        draw_gaussian(heatmap[0], (cx, cy), int(gaussian_radius(ch, cw, min_overlap, radius_rule)))
        size[j] = (cw, ch)
        offset[j] = centre[n] - cell[n]
        index[j] = cy * w_out + cx
        mask[j] = 1.0
        out_boxes[j] = clipped[n]
    return {"heatmap": heatmap, "size": size, "offset": offset, "index": index, "mask": mask, "boxes": out_boxes, "count": count, "dropped": int(len(boxes) - count)}


def warp_image(
    pixels: Any,
    image_hw: tuple[int, int],
    rgb_means_255: np.ndarray,
    condition: str,
    affine: np.ndarray,
    input_hw: tuple[int, int],
    *,
    ll_scaling: LowLightScaling | None = _DEFAULT_LL,
    wl_normalisation: Normalisation | None = _DEFAULT_WL,
    pad: tuple[float, float, float] | None = PIXEL_MEANS,
) -> np.ndarray:
    """An ``(H, W, 3)`` BGR uint8/uint16 image (array or memory map) warped by ``affine`` into float32 ``(3, H, W)``
    network input: bilinear on the raw pixels, then the condition's per-channel gain and offset (LL gain from
    ``rgb_means_255``, the whole image's means), ``pad`` (RGB, 0-255 scale) outside the image."""
    input_hw = (int(input_hw[0]), int(input_hw[1]))
    gain, offset = input_affine(condition, rgb_means_255, ll_scaling, wl_normalisation)
    border = padding_value(condition, pad, gain, offset)
    roi = crop_roi(affine, input_hw, image_hw)
    raw = warp_roi(read_roi(pixels, roi), roi, affine, input_hw, border)
    return np.ascontiguousarray(bgr_to_input(raw, gain, offset).transpose(2, 0, 1))


def prepare_image(
    bgr_pixels: np.ndarray,
    condition: str,
    input_size: tuple[int, int],
    *,
    ll_scaling: LowLightScaling | None = _DEFAULT_LL,
    wl_normalisation: Normalisation | None = _DEFAULT_WL,
    pad: tuple[float, float, float] | None = PIXEL_MEANS,
) -> tuple[np.ndarray, np.ndarray]:
    """Any decoded image as detector input, as the detection dataset's test path makes it.

    Args:
        bgr_pixels: ``(H, W, 3)`` BGR uint8 or uint16 image.
        condition: ``"LL"`` or ``"WL"`` (any spelling :meth:`Lighting.parse` reads).
        input_size: input ``(height, width)``.
        ll_scaling, wl_normalisation, pad: as :class:`~exlpose_data.datasets.detection.ExLPoseDetection`.

    Returns:
        float32 ``(3, H, W)`` input and the float64 ``(2, 3)`` image -> input transform (the letterbox).
    """
    pixels = np.asarray(bgr_pixels)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise UsageError(f"expected an (H, W, 3) BGR image, got shape {pixels.shape}")
    try:
        cond = Lighting.parse(condition).value
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    hw = (int(pixels.shape[0]), int(pixels.shape[1]))
    affine = letterbox_affine(hw, input_size)
    image = warp_image(pixels, hw, rgb_means(pixels), cond, affine, input_size, ll_scaling=ll_scaling, wl_normalisation=wl_normalisation, pad=pad)
    return image, affine
