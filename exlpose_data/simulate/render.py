"""Scenes with people: placement on the ground plane, painter's-order compositing, exact keypoint ground truth.

People are drawn far to near over the background; a person-index map records who covers each pixel, so a joint
is visible (2) when its own body part is on top at its pixel, occluded (1) when another person or another part of
the same body covers it, and unlabelled (0, coordinates 0) outside the aligned release frame (the LL frame after
the alignment crop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .background import Background
from .figures import Appearance, draw_figure
from .poses import Pose, sample_pose

__all__ = ["Person", "FrameTruth", "sample_people", "render_frame"]

_CAMERA_HEIGHT_M = 1.5


@dataclass(frozen=True)
class Person:
    """A person in a frame: pose and outfit."""

    pose: Pose
    appearance: Appearance


@dataclass(frozen=True)
class FrameTruth:
    """Ground truth of one frame in the aligned release frame.

    Attributes:
        keypoints: one flat list of 14 (x, y, v) per labelled person.
        boxes: person boxes ``[x, y, w, h]``, clipped to the frame.
        person_map: (H, W) int16 index of the person covering each LL pixel (-1 = background), before the crop.
    """

    keypoints: list[list[float]]
    boxes: list[list[float]]
    person_map: np.ndarray


def sample_people(rng: np.random.Generator, size: tuple[int, int], horizon_y: float, count: int, focal_px: float) -> list[Pose]:
    """Poses of ``count`` people standing on a ground plane seen from a camera 1.5 m high.

    The feet row fixes the distance (``Z = f * 1.5 / (y_foot - horizon)``) and so the size: nearer people are
    lower in the image and larger.
    """
    w, h = size
    people = []
    for _ in range(count):
        stature = float(rng.choice([rng.uniform(1.1, 1.45), rng.uniform(1.5, 1.92)], p=[0.1, 0.9]))
        foot_y = float(rng.uniform(horizon_y + 0.12 * h * _CAMERA_HEIGHT_M / stature, 1.08 * h))
        distance = focal_px * _CAMERA_HEIGHT_M / (foot_y - horizon_y)
        height_px = focal_px * stature / distance
        foot_x = float(rng.uniform(-0.05, 1.05) * w)
        people.append(sample_pose(rng, (foot_x, foot_y), height_px, distance))
    return people


def render_frame(background: Background, people: list[Person], crop: tuple[int, int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, FrameTruth]:
    """Composite people over the background and derive their ground truth.

    Args:
        background: the scene without people (LL frame).
        people: the people of this frame.
        crop: ``(x0, y0, x1, y1)`` of the aligned release frame inside the LL frame.
        rng: random generator (texture details).

    Returns:
        (H, W, 3) float32 linear radiance in the LL frame, and the frame's truth.
    """
    h, w = background.illumination.shape
    radiance = background.radiance.copy()
    person_map = np.full((h, w), -1, dtype=np.int16)
    order = sorted(range(len(people)), key=lambda i: -people[i].pose.distance)
    layers = {}
    for idx in order:
        layer = draw_figure(people[idx].pose, people[idx].appearance, (w, h), rng)
        if layer is None:
            continue
        layers[idx] = layer
        ch, cw = layer.parts.shape
        win = (slice(layer.y0, layer.y0 + ch), slice(layer.x0, layer.x0 + cw))
        mask = layer.parts > 0
        light = background.illumination[win][mask]
        radiance[win][mask] = layer.reflectance[mask] * light[:, None]
        person_map[win][mask] = idx
    x0, y0, x1, y1 = crop
    keypoints, boxes = [], []
    for idx in sorted(layers):
        layer = layers[idx]
        joints = people[idx].pose.joints
        flat: list[float] = []
        labelled = 0
        for j, (x, y) in enumerate(joints):
            cx, cy = x - x0, y - y0
            if not (0 <= cx <= x1 - x0 - 1 and 0 <= cy <= y1 - y0 - 1):
                flat += [0.0, 0.0, 0]
                continue
            on_top = person_map[int(round(y)), int(round(x))] == idx
            flat += [round(float(cx), 2), round(float(cy), 2), 2 if (on_top and layer.self_visible[j]) else 1]
            labelled += 1
        bx, by, bw, bh = layer.box
        left, top = max(bx, x0), max(by, y0)
        right, bottom = min(bx + bw, x1), min(by + bh, y1)
        if labelled == 0 or right <= left or bottom <= top:
            continue
        keypoints.append(flat)
        boxes.append([round(left - x0, 2), round(top - y0, 2), round(right - left, 2), round(bottom - top, 2)])
    return radiance, FrameTruth(keypoints=keypoints, boxes=boxes, person_map=person_map)
