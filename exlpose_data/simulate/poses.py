"""People's 2-D poses: a small articulated model with joint-angle limits, or poses read from an annotation file.

A pose holds the 14 CrowdPose joints in LL pixel coordinates plus a depth per joint (metres from the camera) that
orders limbs and people when drawing. Segment lengths are fractions of the body height (Drillis-Contini
anthropometry); the head joint is the top of the head and the neck joint the base of the neck, as CrowdPose labels
them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from ..errors import InputError
from ..keypoints import KEYPOINT_NAMES
from ..naming import parse_name
from ..schema import AnnotationDocument

__all__ = ["Pose", "J", "sample_pose", "move_pose", "poses_from_document", "SourceScene"]

J = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# Fractions of the standing height.
_HEAD = 0.18
_SHOULDER_HALF = 0.13
_HIP_HALF = 0.085
_TORSO = 0.29
_UPPER_ARM = 0.186
_FOREARM = 0.146
_THIGH = 0.245
_SHIN = 0.246
_ANKLE_HEIGHT = 0.039


@dataclass(frozen=True)
class Pose:
    """One person's joints.

    Attributes:
        joints: (14, 2) pixel coordinates in the LL frame (before the alignment crop).
        depth: (14,) distance of each joint from the camera in metres (orders drawing).
        height_px: standing body height in pixels (sets limb thickness).
        yaw: facing angle in radians (0 = facing the camera, pi = back to it).
        build: limb-thickness factor (1 = average).
    """

    joints: np.ndarray
    depth: np.ndarray
    height_px: float
    yaw: float
    build: float = 1.0

    @property
    def distance(self) -> float:
        return float(np.mean(self.depth))


def _dir(angle: float) -> np.ndarray:
    """Unit vector at ``angle`` radians from straight down, positive toward +x."""
    return np.array([math.sin(angle), math.cos(angle)])


def _depth_offsets(yaw: float) -> np.ndarray:
    """Per-joint depth offsets (m): the side turned to the camera is nearer, arms sit in front of the chest."""
    off = np.zeros(len(KEYPOINT_NAMES))
    for name, i in J.items():
        side = 1.0 if name.startswith("left") else -1.0 if name.startswith("right") else 0.0
        off[i] = side * math.sin(yaw) * 0.15
        if "elbow" in name or "wrist" in name:
            off[i] -= 0.08 * math.cos(yaw)
    off[J["head"]] = -0.02 * math.cos(yaw)
    return off


def sample_pose(rng: np.random.Generator, foot_xy: tuple[float, float], height_px: float, distance_m: float) -> Pose:
    """A plausible pose standing on ``foot_xy`` (standing, walking, gesturing or crouching).

    Args:
        rng: random generator.
        foot_xy: ground point under the person in pixels.
        height_px: standing height in pixels.
        distance_m: distance from the camera (orders people).
    """
    h = float(height_px)
    yaw = float(rng.uniform(-math.pi, math.pi))
    kind = rng.choice(["stand", "walk", "gesture", "crouch"], p=[0.4, 0.3, 0.18, 0.12])
    facing = 1.0 if math.cos(yaw) >= 0 else -1.0  # person's left on image +x when facing the camera
    width_factor = 0.3 + 0.7 * abs(math.cos(yaw))
    forward = 1.0 if math.sin(yaw) >= 0 else -1.0  # image direction the person's front turns toward in side view
    deg = math.radians

    lean = rng.normal(0, deg(4)) if kind != "crouch" else forward * rng.uniform(deg(5), deg(30))
    joints = np.zeros((len(KEYPOINT_NAMES), 2))
    hip_mid = np.zeros(2)
    up = -_dir(lean)
    neck = hip_mid + up * _TORSO * h
    joints[J["neck"]] = neck
    joints[J["head"]] = neck - _dir(lean + rng.uniform(-deg(15), deg(15))) * _HEAD * h
    across = np.array([math.cos(lean), -math.sin(lean)])  # torso's image-x axis
    for side, sign in (("left", 1.0), ("right", -1.0)):
        img_side = sign * facing
        shoulder = neck + across * img_side * _SHOULDER_HALF * h * width_factor
        hip = hip_mid + across * img_side * _HIP_HALF * h * width_factor
        if kind == "gesture" and (sign > 0) == (rng.random() < 0.5):
            abduction, bend = rng.uniform(deg(60), deg(170)), rng.uniform(0, deg(100))
        elif kind == "walk":
            abduction, bend = rng.uniform(deg(-15), deg(30)), rng.uniform(0, deg(60))
        elif kind == "crouch":
            abduction, bend = rng.uniform(deg(10), deg(60)), rng.uniform(deg(20), deg(120))
        else:
            abduction, bend = rng.uniform(deg(3), deg(25)), rng.uniform(0, deg(35))
        upper = lean + img_side * abduction
        bend_dir = -img_side if rng.random() < 0.7 else img_side  # elbows mostly fold toward the body's midline
        elbow = shoulder + _dir(upper) * _UPPER_ARM * h
        wrist = elbow + _dir(upper + bend_dir * bend) * _FOREARM * h
        if kind == "crouch":
            thigh = forward * rng.uniform(deg(45), deg(95))
            shin = thigh - forward * rng.uniform(deg(50), deg(120))
        elif kind == "walk":
            thigh = sign * forward * rng.uniform(deg(5), deg(25))
            shin = thigh - forward * rng.uniform(0, deg(40))
        else:
            thigh = img_side * rng.uniform(0, deg(12))
            shin = thigh - img_side * rng.uniform(0, deg(8))
        knee = hip + _dir(thigh) * _THIGH * h
        ankle = knee + _dir(shin) * _SHIN * h
        for name, point in (("shoulder", shoulder), ("elbow", elbow), ("wrist", wrist), ("hip", hip), ("knee", knee), ("ankle", ankle)):
            joints[J[f"{side}_{name}"]] = point
    ground_y = max(joints[J["left_ankle"], 1], joints[J["right_ankle"], 1]) + _ANKLE_HEIGHT * h
    joints += np.array([foot_xy[0] - hip_mid[0], foot_xy[1] - ground_y])
    build = float(rng.uniform(0.85, 1.2))
    return Pose(joints=joints, depth=distance_m + _depth_offsets(yaw), height_px=h, yaw=yaw, build=build)


def move_pose(rng: np.random.Generator, pose: Pose, step_px: np.ndarray) -> Pose:
    """The same person a video frame later: shifted by ``step_px`` with small limb jitter."""
    jitter = rng.normal(0, 0.006 * pose.height_px, pose.joints.shape)
    jitter[[J["neck"], J["left_hip"], J["right_hip"]]] = 0.0  # keep the trunk rigid
    return replace(pose, joints=pose.joints + step_px + jitter)


@lru_cache(maxsize=1)
def _template() -> np.ndarray:
    """A standing, camera-facing pose of height 1 with the ground point at the origin."""
    t = np.zeros((len(KEYPOINT_NAMES), 2))
    neck = np.array([0.0, -(1 - _HEAD)])
    t[J["neck"]] = neck
    t[J["head"]] = neck + [0, -_HEAD]
    for side, sign in (("left", 1.0), ("right", -1.0)):
        sh = neck + [sign * _SHOULDER_HALF, 0]
        hip = neck + [sign * _HIP_HALF, _TORSO]
        for name, point in (("shoulder", sh), ("elbow", sh + [sign * 0.03, _UPPER_ARM]), ("wrist", sh + [sign * 0.04, _UPPER_ARM + _FOREARM]),
                            ("hip", hip), ("knee", hip + [0, _THIGH]), ("ankle", hip + [0, _THIGH + _SHIN])):
            t[J[f"{side}_{name}"]] = point
    return t


@dataclass(frozen=True)
class SourceScene:
    """People of one scene of an annotation file: ``frames[i]`` lists the poses of video frame ``i``."""

    key: str
    frames: list[list[Pose]]


def _pose_from_keypoints(kp: np.ndarray, bbox: list[float], focal_px: float) -> Pose | None:
    """Complete an annotated person: missing joints come from a standing template fitted to the labelled ones."""
    template = _template()
    labelled = kp[:, 2] > 0
    scale, offset = 0.0, np.zeros(2)
    if labelled.sum() >= 2:
        t, p = template[labelled], kp[labelled, :2]
        tc, pc = t - t.mean(0), p - p.mean(0)
        var = float((tc * tc).sum())
        if var > 0:
            scale = float((tc * pc).sum() / var)
            offset = p.mean(0) - scale * t.mean(0)
    box_h = float(bbox[3]) if len(bbox) == 4 else 0.0
    if scale <= 0.3 * box_h or scale <= 4:
        if box_h <= 4:
            return None
        scale = box_h
        offset = np.array([bbox[0] + bbox[2] / 2.0, bbox[1] + bbox[3]])
    joints = np.where(labelled[:, None], kp[:, :2], template * scale + offset)
    facing_camera = joints[J["left_shoulder"], 0] >= joints[J["right_shoulder"], 0]
    yaw = 0.0 if facing_camera else math.pi
    distance = focal_px * 1.7 / scale
    return Pose(joints=joints, depth=distance + _depth_offsets(yaw), height_px=scale, yaw=yaw)


def poses_from_document(doc: AnnotationDocument, size: tuple[int, int], *, source: str = "annotation file") -> list[SourceScene]:
    """People positions and poses of every scene of a CrowdPose document, scaled to ``size`` (width, height).

    Images of one (scene, frame) share their people (one annotation serves every exposure of a frame); images
    whose names do not follow the release grammar each form a scene of one frame.
    """
    w, h = size
    by_image = defaultdict(list)
    for ann in doc.annotations:
        by_image[ann.image_id].append(ann)
    groups: dict[str, dict[int, list[Pose]]] = {}
    for img in doc.images:
        try:
            name = parse_name(img.file_name)
            key, frame = name.scene_id, name.frame
        except InputError:
            key, frame = img.file_name, 0
        frames = groups.setdefault(key, {})
        if frame in frames:
            continue
        if img.width <= 0 or img.height <= 0:
            raise InputError(f"{source}: image {img.file_name!r} has no size")
        sx, sy = w / img.width, h / img.height
        people = []
        for ann in by_image.get(img.id, []):
            kp = np.asarray(ann.keypoints, dtype=np.float64).reshape(-1, 3)
            if kp.shape[0] != len(KEYPOINT_NAMES):
                raise InputError(f"{source}: annotation {ann.id} has {kp.shape[0]} joints, expected {len(KEYPOINT_NAMES)}")
            kp[:, 0] *= sx
            kp[:, 1] *= sy
            bbox = [ann.bbox[0] * sx, ann.bbox[1] * sy, ann.bbox[2] * sx, ann.bbox[3] * sy] if len(ann.bbox) == 4 else []
            pose = _pose_from_keypoints(kp, bbox, 1.2 * w)
            if pose is not None:
                people.append(pose)
        frames[frame] = people
    if not groups:
        raise InputError(f"{source}: no images to take poses from")
    return [SourceScene(key=k, frames=[f[i] for i in sorted(f)]) for k, f in groups.items()]
