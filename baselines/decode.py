"""From heatmaps to keypoints: CPN's decoding, a correct flip test, and mapping back to the image.

Decoding (as the reference): per joint, the heatmap is normalised to a maximum of 1, zero-padded by 10 pixels,
blurred with a 21x21 Gaussian; the position is the blurred maximum moved a quarter pixel towards the second
highest pixel, clamped to the heatmap. The joint's score is ``peak / 255 + 0.5``, read on the *unblurred*
heatmap at the rounded position (the reference's scale for peak-255 targets); an instance scores its box
score times the mean joint score.

Coordinates follow :mod:`exlpose_data.datasets` (its ``crop_to_heatmap`` / ``heatmap_to_image`` pair, one
convention for targets and predictions).

Flip test (``"ours"``, the default): the crop is mirrored, its heatmaps are mirrored back with the CrowdPose
left/right joints swapped, shifted by the sub-pixel offset mirroring introduces on a strided grid (none under
the reference heatmap convention, whose cells are flip-symmetric), and averaged with the plain pass.
``"official"`` reproduces the reference code's test-time flip, faults included, so that published numbers can
be compared: the heatmaps are mirrored back without a shift and with COCO's 17-joint swap pairs
``(1, 2), (3, 4), ..., (11, 12)`` applied to the 14 CrowdPose joints (it swaps right shoulder with left elbow,
right ankle with head, ...), and the mirrored input is divided by 255 once more whenever its maximum exceeds 1
(its ``im_to_torch`` runs twice on that path).

Decoding a heatmap with no positive value (``decode``): ``"ours"`` blurs it unnormalised; ``"official"`` divides
it by its maximum as the reference does whatever its sign (and, as the reference, normalises and scores in the
maps' own precision, float32 from the network), so a negative maximum flips the map and the decoded
joint lands on its most negative region (a maximum of 0 gives NaN and infinities, decoded as the reference's
argmax of them does).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from exlpose_data.datasets.transforms import HeatmapConvention, crop_to_heatmap, heatmap_to_image
from exlpose_data.keypoints import crowdpose14

__all__ = ["flip_back", "official_flip_index", "official_flip_input", "decode_heatmaps", "predictions_from_heatmaps", "HEATMAP_PEAK",
           "REFERENCE_FLIP_PAIRS", "DECODES"]

# How a heatmap with no positive value is decoded (module docstring).
DECODES: tuple[str, ...] = ("ours", "official")

# The swap pairs of the reference code's test configs: COCO-17's (eyes, ears, shoulders, ...) on 14 joints.
REFERENCE_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12))

HEATMAP_PEAK = 255.0
_BORDER = 10
_BLUR = (21, 21)
_DELTA = 0.25


def official_flip_index(num_keypoints: int = 14) -> list[int]:
    """The channel permutation the reference's swaps of :data:`REFERENCE_FLIP_PAIRS` amount to."""
    perm = list(range(num_keypoints))
    for a, b in REFERENCE_FLIP_PAIRS:
        perm[a], perm[b] = perm[b], perm[a]
    return perm


def official_flip_input(images: torch.Tensor) -> torch.Tensor:
    """The reference's mirrored input: each crop mirrored, then divided by 255 when its maximum exceeds 1."""
    flipped = images.flip(-1)
    big = flipped.flatten(1).amax(dim=1) > 1
    scale = torch.where(big, torch.full_like(big, 1 / 255, dtype=flipped.dtype), torch.ones_like(big, dtype=flipped.dtype))
    return flipped * scale.view(-1, *([1] * (flipped.dim() - 1)))


def flip_back(
    heatmaps: torch.Tensor,
    input_size: tuple[int, int],
    flip_index: Sequence[int] | None = None,
    convention: HeatmapConvention = "ours",
) -> torch.Tensor:
    """Heatmaps of mirrored crops mapped onto the unmirrored crops.

    The maps are mirrored, the CrowdPose left/right joints swapped, and the result shifted by the sub-pixel
    offset mirroring introduces on the heatmap grid: with ``f`` the datasets' crop -> heatmap map
    (``crop_to_heatmap``, affine), a crop pixel ``x`` mirrors to ``W - 1 - x``, whose heatmap position mirrored
    back is ``w - 1 - f(W - 1 - x)``, off from ``f(x)`` by ``s = f(0) + f(W - 1) - (w - 1)`` for every ``x``
    (0.75 for 192 -> 48 with ``f(x) = x / 4``). The shift is undone by linear interpolation.

    Args:
        heatmaps: ``(B, K, h, w)`` predicted on mirrored crops.
        input_size: crop ``(H, W)``.
        flip_index: joint permutation (CrowdPose's by default).
        convention: the heatmap convention the model was trained with (its map gives the shift: 0.75 for ours,
            0 for the reference's).
    """
    perm = list(crowdpose14().flip_index() if flip_index is None else flip_index)
    out = heatmaps.flip(-1)[:, perm]
    w = out.shape[-1]
    ends = crop_to_heatmap(np.array([[0.0, 0.0], [input_size[1] - 1.0, 0.0]]), input_size, tuple(heatmaps.shape[-2:]), convention)
    shift = float(ends[0, 0] + ends[1, 0] - (w - 1))
    if abs(shift) < 1e-9:  # a flip-symmetric grid (the reference convention): nothing to undo
        return out
    whole = int(np.floor(shift))
    frac = shift - whole
    if whole:  # integer part: move the maps, repeating the edge column
        idx = torch.clamp(torch.arange(w, device=out.device) - whole, 0, w - 1)
        out = out[..., idx]
    if frac > 1e-9:
        prev = out[..., torch.clamp(torch.arange(w, device=out.device) - 1, 0, w - 1)]
        out = (1.0 - frac) * out + frac * prev
    return out


def decode_heatmaps(heatmaps: np.ndarray | torch.Tensor, peak: float = HEATMAP_PEAK, *, decode: str = "ours") -> tuple[np.ndarray, np.ndarray]:
    """Joint positions ``(B, K, 2)`` in heatmap pixels and scores ``(B, K)`` (``value / peak + 0.5``).

    Args:
        heatmaps: ``(B, K, h, w)``.
        peak: target peak the network was trained with (255 for CPN targets).
        decode: ``"ours"`` or ``"official"``: how a map with no positive value is normalised (module docstring).
    """
    if decode not in DECODES:
        raise ValueError(f"unknown decode {decode!r}; choose {' or '.join(DECODES)}")
    native = heatmaps.detach().cpu().numpy() if isinstance(heatmaps, torch.Tensor) else np.asarray(heatmaps)
    maps = native.astype(np.float64, copy=False)
    official = decode == "official"
    b, k, h, w = maps.shape
    coords = np.zeros((b, k, 2))
    scores = np.zeros((b, k))
    padded = np.zeros((h + 2 * _BORDER, w + 2 * _BORDER))
    for i in range(b):
        for j in range(k):
            hm = maps[i, j]
            top = hm.max()
            padded[:] = 0.0
            if official:  # the reference's arithmetic: in the maps' own precision, whatever the maximum's sign
                with np.errstate(divide="ignore", invalid="ignore"):
                    padded[_BORDER:-_BORDER, _BORDER:-_BORDER] = native[i, j] / native[i, j].max()
            elif top > 0:
                padded[_BORDER:-_BORDER, _BORDER:-_BORDER] = hm / top
            else:  # nowhere positive: no peak to normalise; blurred unnormalised (argmax still defined)
                padded[_BORDER:-_BORDER, _BORDER:-_BORDER] = hm
            blurred = cv2.GaussianBlur(padded, _BLUR, 0)
            y, x = np.unravel_index(int(blurred.argmax()), blurred.shape)
            blurred[y, x] = 0.0
            py, px = np.unravel_index(int(blurred.argmax()), blurred.shape)
            dx, dy = float(px - x), float(py - y)
            fx, fy = float(x - _BORDER), float(y - _BORDER)
            norm = (dx * dx + dy * dy) ** 0.5
            if norm > 1e-3:
                fx += _DELTA * dx / norm
                fy += _DELTA * dy / norm
            fx = min(max(fx, 0.0), w - 1.0)
            fy = min(max(fy, 0.0), h - 1.0)
            coords[i, j] = fx, fy
            at = (int(round(fy)), int(round(fx)))
            # the reference scores in the maps' own precision too
            one = native.dtype.type if official and native.dtype.kind == "f" else np.float64
            scores[i, j] = float(one(native[i, j][at]) / one(peak) + one(0.5))
    return coords, scores


def predictions_from_heatmaps(
    heatmaps: torch.Tensor,
    meta: dict,
    input_size: tuple[int, int],
    *,
    peak: float = HEATMAP_PEAK,
    category_id: int = 1,
    convention: HeatmapConvention = "ours",
    decode: str = "ours",
) -> list[dict]:
    """COCO keypoint results for a batch of crops (``meta`` as collated by the dataset: image_id, affine, score);
    heatmap positions map to the crop by ``convention`` (the one the model was trained with), maps with no
    positive value are decoded as ``decode`` says."""
    coords, scores = decode_heatmaps(heatmaps, peak, decode=decode)
    heatmap_size = tuple(heatmaps.shape[-2:])
    affines = meta["affine"].numpy() if isinstance(meta["affine"], torch.Tensor) else np.asarray(meta["affine"])
    xy = np.stack([heatmap_to_image(c, a, input_size, heatmap_size, convention) for c, a in zip(coords, affines)])  # type: ignore[arg-type]
    image_ids = [int(v) for v in meta["image_id"]]
    box_scores = [float(v) for v in meta["score"]]
    results = []
    for i, image_id in enumerate(image_ids):
        kps = np.column_stack([xy[i], scores[i]]).ravel()
        results.append(
            {
                "image_id": image_id,
                "category_id": category_id,
                "keypoints": [round(float(v), 3) for v in kps],
                "score": float(box_scores[i] * scores[i].mean()),
            }
        )
    return results
