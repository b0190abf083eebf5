"""Decoding a CenterNet-style person detector's outputs into boxes (Zhou et al., "Objects as Points", 2019).

:func:`decode_centres` is plain tensor operations (sigmoid, 3x3 max-pooling for peaks instead of NMS, top-k,
gathers), so it runs inside an ONNX graph (opset 17, dynamic batch) as well as in torch; :class:`CentreDecoder`
is the same as a module, to append to a network before export. :func:`boxes_to_image` maps one image's boxes
from input pixels back to the image through the inverse of the letterbox transform the input was made with
(:func:`exlpose_data.datasets.centre_targets.letterbox_affine`, flip included).

Geometry (the targets' of :func:`exlpose_data.datasets.centre_targets.centre_targets`): a peak at output cell
``(x, y)`` with offset ``(dx, dy)`` and size ``(w, h)`` (output cells) is the box centred on
``((x + dx) * stride, (y + dy) * stride)`` of ``(w * stride) x (h * stride)`` input pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from exlpose_data.datasets.transforms import apply_affine, invert_affine

__all__ = ["decode_centres", "CentreDecoder", "boxes_to_image"]


def decode_centres(
    heatmap_logits: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, *, stride: int = 4, top_k: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``K = min(top_k, h * w)`` highest heatmap peaks of each image as boxes.

    Args:
        heatmap_logits: ``(B, 1, h, w)`` centre heatmap before the sigmoid.
        size: ``(B, 2, h, w)`` box width and height in output cells.
        offset: ``(B, 2, h, w)`` centre offset within its cell.
        stride: output stride (input pixels per output cell).
        top_k: boxes per image.

    Returns:
        ``boxes`` ``(B, K, 4)`` xyxy in input pixels and ``scores`` ``(B, K)`` (sigmoid of the peak), by falling
        score. A cell is a peak when no neighbour of its 3x3 window scores higher.
    """
    if heatmap_logits.dim() != 4 or heatmap_logits.shape[1] != 1:
        raise ValueError(f"heatmap_logits must be (B, 1, h, w), got {tuple(heatmap_logits.shape)}")
    b, _, h, w = heatmap_logits.shape
    if size.shape[1:] != (2, h, w) or offset.shape[1:] != (2, h, w):
        raise ValueError(f"size and offset must be (B, 2, {h}, {w}), got {tuple(size.shape)} and {tuple(offset.shape)}")
    k = min(int(top_k), int(h) * int(w))
    heat = torch.sigmoid(heatmap_logits)
    peaks = heat * (F.max_pool2d(heat, kernel_size=3, stride=1, padding=1) == heat).to(heat.dtype)
    scores, cells = torch.topk(peaks.flatten(1), k, dim=1)
    ys = torch.div(cells, w, rounding_mode="floor")
    xs = cells - ys * w
    size_flat, offset_flat = size.flatten(2), offset.flatten(2)
    bw = size_flat[:, 0].gather(1, cells)
    bh = size_flat[:, 1].gather(1, cells)
    cx = xs.to(heat.dtype) + offset_flat[:, 0].gather(1, cells)
    cy = ys.to(heat.dtype) + offset_flat[:, 1].gather(1, cells)
    boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=2) * float(stride)
    return boxes, scores


class CentreDecoder(nn.Module):
    """:func:`decode_centres` as a module (``forward(heatmap_logits, size, offset) -> (boxes, scores)``)."""

    def __init__(self, stride: int = 4, top_k: int = 100) -> None:
        super().__init__()
        self.stride = int(stride)
        self.top_k = int(top_k)

    def forward(self, heatmap_logits: torch.Tensor, size: torch.Tensor, offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return decode_centres(heatmap_logits, size, offset, stride=self.stride, top_k=self.top_k)


def boxes_to_image(
    boxes: np.ndarray | torch.Tensor,
    scores: np.ndarray | torch.Tensor,
    affine: np.ndarray,
    image_hw: tuple[int, int] | np.ndarray,
    *,
    min_score: float = 0.0,
) -> list[list[float]]:
    """One image's decoded boxes as ``[x, y, w, h, score]`` rows in image pixels, by falling score.

    Args:
        boxes: ``(K, 4)`` xyxy in input pixels.
        scores: ``(K,)``.
        affine: the ``(2, 3)`` image -> input transform the input was made with (``meta["affine"]``).
        image_hw: the image's ``(height, width)``; boxes are clipped to ``[0, width] x [0, height]``.
        min_score: boxes scoring below this are left out.

    Boxes with no width or height left after clipping are left out.
    """
    b = np.asarray(boxes.detach().cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64).reshape(-1)
    if len(b) != len(s):
        raise ValueError(f"{len(b)} boxes but {len(s)} scores")
    inverse = invert_affine(np.asarray(affine, dtype=np.float64))
    corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [0, 3]], b[:, [2, 3]]], axis=1)
    mapped = apply_affine(corners.reshape(-1, 2), inverse).reshape(-1, 4, 2)
    h, w = (float(v) for v in np.asarray(image_hw).reshape(2))
    lo = np.clip(mapped.min(axis=1), 0.0, [w, h])
    hi = np.clip(mapped.max(axis=1), 0.0, [w, h])
    size = hi - lo
    keep = (size[:, 0] > 0) & (size[:, 1] > 0) & (s >= min_score) & np.isfinite(s)
    order = np.argsort(-s[keep], kind="stable")
    rows = np.column_stack([lo[keep], size[keep], s[keep]])[order]
    return [[float(v) for v in row] for row in rows]
