"""Drawing one person: shaded tapered capsules for limbs, a torso polygon, a head with hair, clothing textures.

A figure is drawn into a canvas the size of its box with OpenCV primitives (sub-pixel, ``shift=4``), far parts
first so the person occludes itself correctly. Each pixel records which body part covers it, which gives exact
self-occlusion of the joints; the scene compositor does the same across people.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..isp import srgb_to_linear
from .poses import J, Pose

__all__ = ["Appearance", "FigureLayer", "sample_appearance", "draw_figure", "PARTS", "JOINT_PARTS"]

PARTS = ("torso", "neck", "head", "hair", "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm",
         "left_hand", "right_hand", "left_thigh", "right_thigh", "left_shin", "right_shin", "left_foot", "right_foot")
P = {name: i + 1 for i, name in enumerate(PARTS)}  # 0 = background

# The parts a joint belongs to: a joint covered by any other part of its own body is self-occluded.
JOINT_PARTS: dict[str, tuple[str, ...]] = {"head": ("head", "hair"), "neck": ("neck", "torso", "head", "hair")}
for _side in ("left", "right"):
    JOINT_PARTS.update({
        f"{_side}_shoulder": ("torso", f"{_side}_upper_arm"),
        f"{_side}_elbow": (f"{_side}_upper_arm", f"{_side}_forearm"),
        f"{_side}_wrist": (f"{_side}_forearm", f"{_side}_hand"),
        f"{_side}_hip": ("torso", f"{_side}_thigh"),
        f"{_side}_knee": (f"{_side}_thigh", f"{_side}_shin"),
        f"{_side}_ankle": (f"{_side}_shin", f"{_side}_foot"),
    })

_SHIFT = 4
_ONE = 1 << _SHIFT
_SHIRTS = [(30, 30, 35), (200, 200, 195), (40, 50, 90), (120, 30, 35), (60, 90, 60), (150, 120, 90), (90, 90, 95),
           (230, 180, 40), (20, 90, 140), (170, 60, 120), (240, 240, 235), (70, 45, 30)]
_TROUSERS = [(25, 25, 30), (40, 50, 80), (70, 70, 75), (110, 95, 70), (150, 150, 150), (60, 40, 30), (20, 30, 60)]
_SKIN = [(240, 200, 170), (225, 180, 145), (200, 150, 110), (160, 110, 80), (110, 75, 55), (80, 55, 40)]
_HAIR = [(20, 15, 10), (50, 35, 25), (90, 60, 35), (160, 130, 80), (120, 120, 120), (30, 30, 30)]
_SHOES = [(20, 20, 20), (230, 230, 230), (80, 50, 30), (60, 60, 70)]


@dataclass(frozen=True)
class Appearance:
    """Colours (linear sRGB reflectance) and clothing of one person."""

    shirt: np.ndarray
    trousers: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    shoes: np.ndarray
    short_sleeves: bool
    shorts: bool
    pattern: str  # "plain", "stripes", "checks" or "blotches"
    pattern_period: float  # in units of body height
    pattern_angle: float
    pattern_contrast: float


def _colour(rng: np.random.Generator, table: list[tuple[int, int, int]]) -> np.ndarray:
    base = np.asarray(table[int(rng.integers(len(table)))], dtype=np.float32)
    jitter = rng.normal(1.0, 0.08, 3).astype(np.float32)
    return srgb_to_linear(np.clip(base * jitter, 0, 255) / 255.0)


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """A random outfit."""
    return Appearance(
        shirt=_colour(rng, _SHIRTS), trousers=_colour(rng, _TROUSERS), skin=_colour(rng, _SKIN),
        hair=_colour(rng, _HAIR), shoes=_colour(rng, _SHOES),
        short_sleeves=bool(rng.random() < 0.3), shorts=bool(rng.random() < 0.15),
        pattern=str(rng.choice(["plain", "stripes", "checks", "blotches"], p=[0.4, 0.25, 0.15, 0.2])),
        pattern_period=float(rng.uniform(0.02, 0.08)), pattern_angle=float(rng.uniform(0, math.pi)),
        pattern_contrast=float(rng.uniform(0.2, 0.6)),
    )


@dataclass(frozen=True)
class FigureLayer:
    """A drawn person: the canvas sits at ``(x0, y0)`` of the scene.

    Attributes:
        x0: left column of the canvas in the scene.
        y0: top row of the canvas in the scene.
        parts: (h, w) uint8 body-part id per pixel (0 = not this person).
        reflectance: (h, w, 3) float32 linear reflectance with shading.
        self_visible: (14,) bool, joint not hidden by another part of the same body.
        box: person box ``[x, y, w, h]`` in scene pixels (the whole figure, clipped to the scene).
    """

    x0: int
    y0: int
    parts: np.ndarray
    reflectance: np.ndarray
    self_visible: np.ndarray
    box: tuple[float, float, float, float]


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * _ONE).astype(np.int32)


def _capsule(a: np.ndarray, b: np.ndarray, ra: float, rb: float) -> np.ndarray:
    """Convex outline of two discs joined by tangents (a tapered capsule)."""
    t = np.linspace(0, 2 * math.pi, 16, endpoint=False)
    ring = np.stack([np.cos(t), np.sin(t)], -1)
    pts = np.concatenate([a + ring * ra, b + ring * rb]).astype(np.float32)
    return cv2.convexHull(pts)[:, 0, :]


def _shrink(poly: np.ndarray, factor: float) -> np.ndarray:
    c = poly.mean(0)
    return c + (poly - c) * factor


# Nested fills: the outer band darker, the core lit, which reads as a rounded limb.
_SHADE_LAYERS = ((1.0, 0.55), (0.72, 0.8), (0.38, 1.0))


def _texture(app: Appearance, shape: tuple[int, int], height_px: float, rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    if app.pattern == "plain":
        return np.ones(shape, dtype=np.float32)
    if app.pattern == "blotches":
        cells = max(2, int(1.0 / app.pattern_period / 3))
        small = rng.random((max(2, cells * h // max(w, 1) + 1), cells), dtype=np.float32)
        field = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        return (1.0 - app.pattern_contrast * np.clip(field, 0, 1)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = max(2.0, app.pattern_period * height_px)
    u = (xx * math.cos(app.pattern_angle) + yy * math.sin(app.pattern_angle)) / period
    stripes = (np.floor(u) % 2).astype(np.float32)
    if app.pattern == "checks":
        v = (-xx * math.sin(app.pattern_angle) + yy * math.cos(app.pattern_angle)) / period
        stripes = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    return 1.0 - app.pattern_contrast * stripes


def draw_figure(pose: Pose, app: Appearance, scene_size: tuple[int, int], rng: np.random.Generator) -> FigureLayer | None:
    """Draw one person; None when the figure lies wholly outside the scene.

    Args:
        pose: the joints.
        app: colours and clothing.
        scene_size: (width, height) of the scene.
        rng: random generator (texture details).
    """
    h = pose.height_px
    r = h * pose.build
    jt, dp = pose.joints, pose.depth
    W, H = scene_size
    margin = 0.12 * h + 2
    lo = np.floor(jt.min(0) - margin).astype(int)
    hi = np.ceil(jt.max(0) + margin).astype(int)
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], W), min(hi[1], H)
    if x1 <= x0 or y1 <= y0:
        return None
    origin = np.array([x0, y0], dtype=np.float64)
    p = {name: jt[i] - origin for name, i in J.items()}
    z = {name: dp[i] for name, i in J.items()}

    shapes: list[tuple[float, str, str, object]] = []  # (depth, part, kind, geometry)

    def limb(part: str, a: str, b: str, ra: float, rb: float) -> None:
        shapes.append(((z[a] + z[b]) / 2, part, "capsule", (p[a], p[b], ra * r, rb * r)))

    hip_mid = (p["left_hip"] + p["right_hip"]) / 2
    shoulder_mid = (p["left_shoulder"] + p["right_shoulder"]) / 2
    torso_axis = hip_mid - shoulder_mid
    torso_len = float(np.hypot(*torso_axis)) or 1.0
    across = np.array([-torso_axis[1], torso_axis[0]]) / torso_len
    sw = max(float(np.hypot(*(p["left_shoulder"] - p["right_shoulder"]))) / 2, 0.07 * r)
    hw = max(float(np.hypot(*(p["left_hip"] - p["right_hip"]))) / 2, 0.06 * r)
    torso = np.array([shoulder_mid + across * (sw + 0.03 * r), shoulder_mid - across * (sw + 0.03 * r),
                      hip_mid - across * (hw + 0.045 * r), hip_mid + across * (hw + 0.045 * r)])
    torso = np.concatenate([torso, [p["neck"] + across * 0.05 * r, p["neck"] - across * 0.05 * r]])
    torso_depth = float(np.mean([z["left_shoulder"], z["right_shoulder"], z["left_hip"], z["right_hip"]]))
    shapes.append((torso_depth, "torso", "poly", cv2.convexHull(torso.astype(np.float32))[:, 0, :]))

    head_axis = p["head"] - p["neck"]
    head_len = float(np.hypot(*head_axis)) or 1.0
    head_centre = p["neck"] + head_axis * 0.6
    head_angle = math.degrees(math.atan2(head_axis[1], head_axis[0]))
    head_axes = (head_len * 0.45, max(head_len * 0.34, 0.05 * r))
    facing = math.cos(pose.yaw)
    shapes.append((z["neck"] + 0.01, "neck", "capsule", (p["neck"], head_centre, 0.032 * r, 0.032 * r)))
    shapes.append((z["head"], "head", "ellipse", (head_centre, head_axes, head_angle, 0, 360)))
    # Hair caps the top of the head; seen from behind it covers the whole head.
    hair_arc = (0, 360) if facing < -0.3 else (-100, 100)  # angle 0 points from the neck to the head top
    hair_shift = head_axis / head_len * head_axes[0] * 0.12
    shapes.append((z["head"] - 1e-3, "hair", "ellipse", (head_centre + hair_shift, (head_axes[0] * 1.02, head_axes[1] * 1.04), head_angle, *hair_arc)))

    for side in ("left", "right"):
        limb(f"{side}_upper_arm", f"{side}_shoulder", f"{side}_elbow", 0.036, 0.03)
        limb(f"{side}_forearm", f"{side}_elbow", f"{side}_wrist", 0.029, 0.022)
        wrist, elbow = p[f"{side}_wrist"], p[f"{side}_elbow"]
        d = wrist - elbow
        d = d / (float(np.hypot(*d)) or 1.0)
        shapes.append((z[f"{side}_wrist"] - 1e-3, f"{side}_hand", "capsule", (wrist, wrist + d * 0.05 * r, 0.024 * r, 0.028 * r)))
        limb(f"{side}_thigh", f"{side}_hip", f"{side}_knee", 0.058, 0.043)
        limb(f"{side}_shin", f"{side}_knee", f"{side}_ankle", 0.04, 0.028)
        toe = np.array([0.06 * r * math.sin(pose.yaw), 0.03 * r])
        shapes.append((z[f"{side}_ankle"] - 1e-3, f"{side}_foot", "capsule", (p[f"{side}_ankle"], p[f"{side}_ankle"] + toe, 0.03 * r, 0.028 * r)))

    shapes.sort(key=lambda s: -s[0])  # far first: painter's order within the body
    ch, cw = y1 - y0, x1 - x0
    parts = np.zeros((ch, cw), dtype=np.uint8)
    shade = np.zeros((ch, cw), dtype=np.float32)
    for _, part, kind, geo in shapes:
        pid = P[part]
        if kind == "capsule":
            a, b, ra, rb = geo
            for scale, value in _SHADE_LAYERS:
                poly = _fixed(_capsule(a, b, max(ra * scale, 0.5), max(rb * scale, 0.5)))
                if scale == 1.0:
                    cv2.fillConvexPoly(parts, poly, pid, cv2.LINE_8, _SHIFT)
                cv2.fillConvexPoly(shade, poly, value, cv2.LINE_8, _SHIFT)
        elif kind == "poly":
            for scale, value in _SHADE_LAYERS:
                poly = _fixed(_shrink(geo, scale))
                if scale == 1.0:
                    cv2.fillConvexPoly(parts, poly, pid, cv2.LINE_8, _SHIFT)
                cv2.fillConvexPoly(shade, poly, 0.35 + 0.65 * value, cv2.LINE_8, _SHIFT)
        else:
            centre, axes, angle, start, end = geo
            for scale, value in _SHADE_LAYERS:
                c = tuple(int(v) for v in _fixed(centre))
                ax = tuple(max(int(v), 1) for v in _fixed(np.asarray(axes) * scale))
                if scale == 1.0:
                    cv2.ellipse(parts, c, ax, angle, start, end, pid, -1, cv2.LINE_8, _SHIFT)
                cv2.ellipse(shade, c, ax, angle, start, end, value, -1, cv2.LINE_8, _SHIFT)

    palette = np.zeros((len(PARTS) + 1, 3), dtype=np.float32)
    for part in PARTS:
        palette[P[part]] = app.shirt
    for part in ("neck", "head", "left_hand", "right_hand"):
        palette[P[part]] = app.skin
    palette[P["hair"]] = app.hair
    for side in ("left", "right"):
        if app.short_sleeves:
            palette[P[f"{side}_forearm"]] = app.skin
        palette[P[f"{side}_thigh"]] = app.trousers
        palette[P[f"{side}_shin"]] = app.skin if app.shorts else app.trousers
        palette[P[f"{side}_foot"]] = app.shoes
    cloth = np.zeros(len(PARTS) + 1, dtype=bool)
    cloth[[P[n] for n in PARTS if n.endswith(("torso", "arm"))]] = True
    refl = palette[parts]
    textured = cloth[parts]
    if app.pattern != "plain" and textured.any():
        refl[textured] *= _texture(app, (ch, cw), h, rng)[textured][:, None]
    # Light from above: a soft top-to-bottom falloff over the body.
    falloff = np.linspace(1.0, 0.75, ch, dtype=np.float32)[:, None]
    refl *= (shade * falloff)[..., None]

    self_visible = np.zeros(len(J), dtype=bool)
    for name, i in J.items():
        xi, yi = int(round(p[name][0])), int(round(p[name][1]))
        if 0 <= xi < cw and 0 <= yi < ch:
            self_visible[i] = PARTS[parts[yi, xi] - 1] in JOINT_PARTS[name] if parts[yi, xi] else False
        else:
            self_visible[i] = True  # outside the scene: the compositor marks it unlabelled
    ys, xs = np.nonzero(parts)
    if len(xs) == 0:
        return None
    box = (float(xs.min() + x0), float(ys.min() + y0), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))
    return FigureLayer(x0=x0, y0=y0, parts=parts, reflectance=refl, self_visible=self_visible, box=box)
