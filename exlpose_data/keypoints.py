"""The 14 CrowdPose joints: names, flip pairs, skeleton, OKS sigmas and joint weights.

Everything is read from ``data/crowdpose14.json``, the one place these facts live.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = ["KeypointSpec", "crowdpose14", "NUM_KEYPOINTS", "KEYPOINT_NAMES"]


@dataclass(frozen=True)
class KeypointSpec:
    """Keypoint metadata of a pose format.

    Args:
        name: short name of the format.
        keypoints: joint names in annotation order.
        flip_pairs: index pairs swapped by a horizontal flip.
        skeleton: 0-based index pairs drawn as limbs.
        sigmas: per-joint OKS sigmas.
        joint_weights: per-joint loss weights.
        category: the COCO category record (without keypoints/skeleton).
        area_factor: CrowdPose's object scale is ``bbox_w * bbox_h * area_factor``.
        max_dets: detections per image the CrowdPose evaluator keeps.
    """

    name: str
    keypoints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    joint_weights: tuple[float, ...]
    category: dict
    area_factor: float
    max_dets: int

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def flip_index(self) -> np.ndarray:
        """Permutation ``p`` such that ``flipped[j] = original[p[j]]`` after a horizontal flip."""
        perm = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def sigmas_array(self) -> np.ndarray:
        return np.asarray(self.sigmas, dtype=np.float64)

    def coco_category(self) -> dict:
        """The category record as CrowdPose files carry it (0-based skeleton)."""
        return {**self.category, "keypoints": list(self.keypoints), "skeleton": [list(p) for p in self.skeleton]}


@lru_cache(maxsize=1)
def crowdpose14() -> KeypointSpec:
    """The CrowdPose 14-joint specification used by ExLPose."""
    raw = json.loads(resources.files("exlpose_data").joinpath("data/crowdpose14.json").read_text())
    spec = KeypointSpec(
        name=raw["name"],
        keypoints=tuple(raw["keypoints"]),
        flip_pairs=tuple(tuple(p) for p in raw["flip_pairs"]),
        skeleton=tuple(tuple(p) for p in raw["skeleton"]),
        sigmas=tuple(raw["sigmas"]),
        joint_weights=tuple(raw["joint_weights"]),
        category=raw["category"],
        area_factor=raw["crowdpose_area_factor"],
        max_dets=raw["crowdpose_max_dets"],
    )
    n = spec.num_keypoints
    if not (len(spec.sigmas) == len(spec.joint_weights) == n):
        raise ValueError("crowdpose14.json: sigmas/joint_weights length differs from the joint count")
    return spec


NUM_KEYPOINTS: int = crowdpose14().num_keypoints
KEYPOINT_NAMES: tuple[str, ...] = crowdpose14().keypoints
