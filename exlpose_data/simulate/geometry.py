"""Beam-splitter geometry: where the well-lit (WL) camera looks relative to the low-light (LL) one.

Convention (the alignment convention of the toolkit): a WL pixel ``x_wl`` (after demosaic and mirroring, full
frame, OpenCV pixel centres) sees the scene point that the LL camera images at

    ``x_ll = H @ d(x_wl)``,   ``d(x) = c + (x - c) * (1 + k1 r^2 + k2 r^4)``,   ``r = |x - c| / f``

with ``H`` the true homography (a few pixels, tenths of a degree, under 1% scale) and ``d`` an optional residual
radial distortion of the WL path (identity when ``k1 = k2 = 0``). The scene is rendered in the LL frame, so the
noisy camera's image is never resampled; the WL image is rendered through the map, and aligned back with its
inverse, the way ``exlpose-align`` warps the clean image into the noisy camera's frame.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MAX_DISTORTION", "GeometryParams", "BeamSplitter", "check_distortion", "radial_slope", "sample_beam_splitter", "valid_crop"]

MAX_DISTORTION = 0.5


class GeometryParams(BaseModel):
    """Ranges the per-scene beam-splitter geometry is drawn from.

    Attributes:
        max_shift_px: largest translation per axis.
        max_rotation_deg: largest in-plane rotation.
        max_scale: largest relative scale difference (0.005 = 0.5%).
        max_perspective: largest perspective term, in units of 1/image width.
        k1: residual radial distortion of the WL path (0 = none), at most 0.5 in size: about 12% displacement at
            the corners of a 16:10 frame with the default focal length, far more than two lenses of one model differ.
            :func:`check_distortion` also refuses values that fold the given frame (narrow or portrait frames reach
            larger radii).
        k2: fourth-order residual radial distortion, bounded the same way.
        focal_px: focal length in pixels for the distortion radius (default 1.2 x width, an 8 mm lens at 3.45 um).
        mirror: which camera's image the splitter mirrors horizontally (``none``, ``ll`` or ``wl``); raw feeds are
            written mirrored, release images after flipping back.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_shift_px: float = Field(3.0, ge=0)
    max_rotation_deg: float = Field(0.15, ge=0)
    max_scale: float = Field(0.003, ge=0, lt=0.01)
    max_perspective: float = Field(0.002, ge=0)
    k1: float = Field(0.0, ge=-MAX_DISTORTION, le=MAX_DISTORTION)
    k2: float = Field(0.0, ge=-MAX_DISTORTION, le=MAX_DISTORTION)
    focal_px: float | None = Field(None, gt=0)
    mirror: str = Field("none", pattern="^(none|ll|wl)$")


def radial_slope(r2: np.ndarray | float, k1: float, k2: float) -> np.ndarray | float:
    """``d/dr [r (1 + k1 r^2 + k2 r^4)]`` at ``r^2 = r2``."""
    return 1.0 + 3.0 * k1 * r2 + 5.0 * k2 * r2 * r2


def check_distortion(size: tuple[int, int], k1: float, k2: float, focal_px: float | None = None) -> None:
    """Refuse a radial distortion that folds the frame: the distorted radius must keep growing out to the corners
    (with 10% to spare for the homography's shift), at least half as fast as the undistorted one.

    Raises:
        ValueError: naming k1, k2 and the frame size.
    """
    w, h = size
    focal = focal_px if focal_px is not None else 1.2 * w
    r_max = 1.1 * math.hypot((w - 1) / 2.0, (h - 1) / 2.0) / focal
    r2 = np.linspace(0.0, r_max, 256) ** 2
    if (radial_slope(r2, k1, k2) < 0.5).any():
        raise ValueError(f"radial distortion k1={k1:g}, k2={k2:g} folds a {w}x{h} frame (focal {focal:g} px) towards the "
                         "corners; use smaller values")


class BeamSplitter:
    """The WL -> LL pixel map of one scene (see the module docstring)."""

    def __init__(self, homography: np.ndarray, size: tuple[int, int], *, k1: float = 0.0, k2: float = 0.0, focal_px: float | None = None):
        self.homography = np.asarray(homography, dtype=np.float64)
        self.width, self.height = size
        self.k1, self.k2 = float(k1), float(k2)
        self.focal_px = float(focal_px if focal_px is not None else 1.2 * self.width)
        self.centre = ((self.width - 1) / 2.0, (self.height - 1) / 2.0)

    @property
    def has_distortion(self) -> bool:
        return self.k1 != 0.0 or self.k2 != 0.0

    def _distort(self, pts: np.ndarray) -> np.ndarray:
        if not self.has_distortion:
            return pts
        c = np.asarray(self.centre)
        rel = (pts - c) / self.focal_px
        r2 = np.sum(rel * rel, axis=-1, keepdims=True)
        return c + rel * self.focal_px * (1.0 + self.k1 * r2 + self.k2 * r2 * r2)

    def _undistort(self, pts: np.ndarray) -> np.ndarray:
        if not self.has_distortion:
            return pts
        c = np.asarray(self.centre)
        target = (pts - c) / self.focal_px
        rd = np.sqrt(np.sum(target * target, axis=-1, keepdims=True))
        # Newton on the radius, r (1 + k1 r^2 + k2 r^4) = rd: converges wherever the map grows with the radius
        # (checked for the whole frame by check_distortion), where a fixed-point iteration diverges at the corners.
        r = rd.copy()
        for _ in range(12):
            r2 = r * r
            f = r * (1.0 + self.k1 * r2 + self.k2 * r2 * r2) - rd
            r -= f / radial_slope(r2, self.k1, self.k2)
        scale = np.divide(r, rd, out=np.ones_like(rd), where=rd > 0)
        return c + target * scale * self.focal_px

    @staticmethod
    def _apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
        homog = pts @ h[:, :2].T + h[:, 2]
        return homog[..., :2] / homog[..., 2:3]

    def wl_to_ll(self, pts: np.ndarray) -> np.ndarray:
        """Map (..., 2) WL pixel coordinates to LL pixel coordinates."""
        return self._apply_h(self.homography, self._distort(np.asarray(pts, dtype=np.float64)))

    def ll_to_wl(self, pts: np.ndarray) -> np.ndarray:
        """Map (..., 2) LL pixel coordinates to WL pixel coordinates."""
        return self._undistort(self._apply_h(np.linalg.inv(self.homography), np.asarray(pts, dtype=np.float64)))

    def _grid(self) -> np.ndarray:
        xs, ys = np.meshgrid(np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64))
        return np.stack([xs, ys], axis=-1)

    def _remap(self, image: np.ndarray, mapping) -> np.ndarray:
        pts = mapping(self._grid()).astype(np.float32)
        return cv2.remap(image, pts[..., 0], pts[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def render_wl(self, scene_ll: np.ndarray) -> np.ndarray:
        """What the WL camera sees of a scene image given in the LL frame: ``wl(x) = scene(wl_to_ll(x))``."""
        if not self.has_distortion:
            # warpPerspective computes dst(x) = src(M^-1 x); M = H^-1 gives scene(H x).
            return cv2.warpPerspective(scene_ll, np.linalg.inv(self.homography), (self.width, self.height),
                                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return self._remap(scene_ll, self.wl_to_ll)

    def align_wl(self, wl: np.ndarray) -> np.ndarray:
        """Warp a WL image into the LL frame: ``aligned(x) = wl(ll_to_wl(x))``."""
        if not self.has_distortion:
            return cv2.warpPerspective(wl, self.homography, (self.width, self.height), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REPLICATE)
        return self._remap(wl, self.ll_to_wl)


def sample_beam_splitter(rng: np.random.Generator, size: tuple[int, int], params: GeometryParams) -> BeamSplitter:
    """Draw one scene's geometry: rotation, scale and shift about the image centre plus a small perspective."""
    w, h = size
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    theta = math.radians(rng.uniform(-1, 1) * params.max_rotation_deg)
    scale = 1.0 + rng.uniform(-1, 1) * params.max_scale
    tx, ty = rng.uniform(-1, 1, 2) * params.max_shift_px
    px, py = rng.uniform(-1, 1, 2) * params.max_perspective / w
    to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=np.float64)
    similarity = np.array([[scale * math.cos(theta), -scale * math.sin(theta), 0],
                           [scale * math.sin(theta), scale * math.cos(theta), 0],
                           [px, py, 1]], dtype=np.float64)
    back = np.array([[1, 0, cx + tx], [0, 1, cy + ty], [0, 0, 1]], dtype=np.float64)
    hmat = back @ similarity @ to_centre
    return BeamSplitter(hmat / hmat[2, 2], size, k1=params.k1, k2=params.k2, focal_px=params.focal_px)


def valid_crop(splitter: BeamSplitter, samples_per_edge: int = 64) -> tuple[int, int, int, int]:
    """The largest axis-aligned box ``(x0, y0, x1, y1)`` (inclusive-exclusive) of LL pixels that the WL frame covers.

    The WL border is sampled densely (distortion bends it) and mapped into the LL frame; the box keeps only
    pixels whose WL source lies inside the WL frame, the release's alignment crop.
    """
    w, h = splitter.width, splitter.height
    t = np.linspace(0.0, 1.0, samples_per_edge)
    left = np.stack([np.zeros_like(t), t * (h - 1)], -1)
    right = np.stack([np.full_like(t, w - 1), t * (h - 1)], -1)
    top = np.stack([t * (w - 1), np.zeros_like(t)], -1)
    bottom = np.stack([t * (w - 1), np.full_like(t, h - 1)], -1)
    x0 = max(0, math.ceil(splitter.wl_to_ll(left)[:, 0].max()))
    x1 = min(w, math.floor(splitter.wl_to_ll(right)[:, 0].min()) + 1)
    y0 = max(0, math.ceil(splitter.wl_to_ll(top)[:, 1].max()))
    y1 = min(h, math.floor(splitter.wl_to_ll(bottom)[:, 1].min()) + 1)
    if x1 - x0 < w // 2 or y1 - y0 < h // 2:
        raise ValueError("the beam-splitter geometry leaves less than half the frame overlapping")
    return x0, y0, x1, y1
