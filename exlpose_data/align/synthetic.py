"""Reference pairs with a known homography, for tests and the accuracy benchmark.

A textured scene (random shapes over multi-scale noise, or a photograph) is seen by the well-lit camera as is
and by the low-light camera through a small known homography, then darkened to a chosen 8-bit mean with
Poisson (shot) and Gaussian (read) noise added in the linear domain, as a beam-splitter rig records it.
The noise scale follows DOMAIN.md section 7: about 0.29 * 10^(gain/20) sRGB 8-bit units per electron in the
sRGB curve's linear segment (K0 0.36 DN/e- at 12 bit times 12.92 * 255 / 4095), read noise 2.9 e-.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..isp import linear_to_srgb, srgb_to_linear

__all__ = ["SyntheticPair", "textured_scene", "random_homography", "render_pair", "darken"]

_UNITS_PER_ELECTRON_0DB = 0.36 * 12.92 * 255.0 / 4095.0
_READ_NOISE_E = 2.9


@dataclass(frozen=True)
class SyntheticPair:
    """A reference pair (sRGB uint8 RGB images) and the homography mapping WL pixels to LL pixels;
    ``ll_frames`` (n, H, W, 3) are n LL frames of the static scene with independent noise (``ll`` is the first)."""

    wl: np.ndarray
    ll: np.ndarray
    homography: np.ndarray
    ll_frames: np.ndarray


def textured_scene(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """An sRGB uint8 (H, W, 3) scene of random shapes over multi-scale noise texture, band-limited."""
    base = np.zeros((height, width, 3), np.float32)
    for scale in (4, 16, 64):
        small = rng.random((max(2, height // scale), max(2, width // scale), 3), dtype=np.float32)
        base += cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) / 3.0
    img = np.clip(base * 200 + 20, 0, 255).astype(np.uint8)
    n_shapes = max(20, width * height // 8000)
    for _ in range(n_shapes):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 3)
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(4, max(6, min(width, height) // 8)))
        if kind == 0:
            cv2.circle(img, (x, y), size, color, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, (x, y), (x + size, y + int(size * rng.uniform(0.3, 2))), color, -1, cv2.LINE_AA)
        else:
            end = (x + int(rng.integers(-3 * size, 3 * size)), y + int(rng.integers(-3 * size, 3 * size)))
            cv2.line(img, (x, y), end, color, int(rng.integers(1, 4)), cv2.LINE_AA)
    # Band-limit so that resampling the scene is exact enough for sub-0.01 px ground truth.
    return cv2.GaussianBlur(img, (0, 0), 0.8)


def random_homography(width: int, height: int, rng: np.random.Generator, *, shift_px: float = 4.0, rotation_deg: float = 0.4, scale: float = 0.008, perspective: float = 2e-6) -> np.ndarray:
    """A small homography like a beam-splitter rig's: a few px shift, tenths of a degree, <1% scale."""
    cx, cy = (width - 1) / 2, (height - 1) / 2
    a = math.radians(rng.uniform(-rotation_deg, rotation_deg))
    s = 1 + rng.uniform(-scale, scale)
    centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], np.float64)
    rot = np.array([[s * math.cos(a), -s * math.sin(a), 0], [s * math.sin(a), s * math.cos(a), 0], [0, 0, 1]])
    persp = np.array([[1, 0, 0], [0, 1, 0], [rng.uniform(-perspective, perspective), rng.uniform(-perspective, perspective), 1]])
    back = np.array([[1, 0, cx + rng.uniform(-shift_px, shift_px)], [0, 1, cy + rng.uniform(-shift_px, shift_px)], [0, 0, 1]])
    h = back @ persp @ rot @ centre
    return h / h[2, 2]


def darken(srgb: np.ndarray, mean_8bit: float, rng: np.random.Generator, *, gain_db: float = 6.0) -> np.ndarray:
    """Render what the low-light camera stores: scaled to an 8-bit mean, shot + read noise, sRGB uint8.

    Args:
        srgb: clean sRGB uint8 image.
        mean_8bit: target mean of the dark image in 8-bit sRGB units (ExLPose LL-N ~3, LL-E ~1).
        rng: random generator.
        gain_db: the LL camera's gain; higher gain means fewer electrons per 8-bit unit, so more shot noise.
    """
    lin = srgb_to_linear(srgb.astype(np.float32) / 255.0).astype(np.float64)
    # In the sRGB curve's linear segment an 8-bit value v is linear v / (255 * 12.92).
    scale = mean_8bit / (255.0 * 12.92) / max(float(lin.mean()), 1e-9)
    units_per_e = _UNITS_PER_ELECTRON_0DB * 10 ** (gain_db / 20)
    electrons = lin * scale * 255.0 * 12.92 / units_per_e
    noisy_e = rng.poisson(electrons) + rng.normal(0.0, _READ_NOISE_E, electrons.shape)
    noisy_lin = np.clip(noisy_e * units_per_e / (255.0 * 12.92), 0.0, 1.0)
    return np.rint(linear_to_srgb(noisy_lin) * 255.0).astype(np.uint8)


def render_pair(
    width: int,
    height: int,
    *,
    seed: int = 0,
    ll_mean_8bit: float | None = None,
    gain_db: float = 6.0,
    scene: np.ndarray | None = None,
    mirror_wl: bool = False,
    ll_frames: int = 1,
) -> SyntheticPair:
    """A reference pair of ``width`` x ``height`` with a random small homography.

    Args:
        width, height: frame size of both cameras.
        seed: random seed (scene, homography and noise).
        ll_mean_8bit: darken the LL image to this 8-bit mean; None keeps it well exposed (no added noise).
        gain_db: LL gain for the noise model of :func:`darken`.
        scene: an sRGB uint8 texture (e.g. a photograph) to use instead of a random one; resized to fit.
        mirror_wl: mirror the WL image horizontally, as an uncorrected beam-splitter path would be.
        ll_frames: LL frames to record of the static scene, each with its own noise (a session reference).
    """
    rng = np.random.default_rng(seed)
    margin = 16
    big_size = (width + 2 * margin, height + 2 * margin)
    if scene is None:
        big = textured_scene(*big_size, rng)
    else:
        big = cv2.resize(scene, big_size, interpolation=cv2.INTER_AREA)
    h_true = random_homography(width, height, rng)
    wl = np.ascontiguousarray(big[margin : margin + height, margin : margin + width])
    to_big = np.array([[1, 0, margin], [0, 1, margin], [0, 0, 1]], np.float64)
    # LL(q) = scene(to_big @ H^-1 q): warpPerspective with M = H @ to_big^-1 samples src at M^-1 q.
    # Lanczos, not bicubic: bicubic resampling of the scene alone puts ~0.01 px of error into the ground truth.
    ll = cv2.warpPerspective(big, h_true @ np.linalg.inv(to_big), (width, height), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT)
    frames = np.stack([ll if ll_mean_8bit is None else darken(ll, ll_mean_8bit, rng, gain_db=gain_db) for _ in range(max(1, ll_frames))])
    if mirror_wl:
        wl = np.ascontiguousarray(wl[:, ::-1])
    return SyntheticPair(wl=wl, ll=frames[0], homography=h_true, ll_frames=frames)
