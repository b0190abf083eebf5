"""Backgrounds: procedural night-time streets (buildings, lit windows, poles, trees, cars, paved ground under pools
of lamp light) or user photographs, as linear radiance plus the illumination field that also lights the people.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..isp import srgb_to_linear

__all__ = ["Background", "procedural_background", "photo_background", "list_background_images"]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Background:
    """A scene without people.

    Attributes:
        radiance: (H, W, 3) float32 linear radiance (reflectance x illumination + light sources).
        illumination: (H, W) float32 light falling on things placed in the scene (people).
        horizon_y: image row of the horizon (people's feet stand below it).
    """

    radiance: np.ndarray
    illumination: np.ndarray
    horizon_y: float


def _value_noise(rng: np.random.Generator, size: tuple[int, int], cells: int, octaves: int = 3) -> np.ndarray:
    """Smooth random texture in [0, 1] from upsampled random grids (cheap: a few resizes)."""
    w, h = size
    out = np.zeros((h, w), dtype=np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = cells * (2**o)
        grid = rng.random((max(2, n * h // w), max(2, n)), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)
        total += amp
        amp *= 0.5
    return out / total


def _illumination(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Ambient light with a gradient plus a few lamp pools, built at 1/8 resolution then upsampled."""
    w, h = size
    sw, sh = max(w // 8, 2), max(h // 8, 2)
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (xx / sw - 0.5) * np.cos(angle) + (yy / sh - 0.5) * np.sin(angle)
    light = np.float32(rng.uniform(0.08, 0.3)) * (1 + np.float32(rng.uniform(0.2, 0.8)) * ramp)
    for _ in range(int(rng.integers(1, 5))):
        cx, cy = rng.uniform(-0.1, 1.1) * sw, rng.uniform(0.2, 1.0) * sh
        radius = rng.uniform(0.08, 0.35) * sw
        light += np.float32(rng.uniform(0.6, 2.5)) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))
    return cv2.resize(np.maximum(light, 0.02), (w, h), interpolation=cv2.INTER_LINEAR)


def _colour(rng: np.random.Generator, lo: float, hi: float, tint: float = 0.15) -> tuple[float, float, float]:
    base = rng.uniform(lo, hi)
    return tuple(float(np.clip(base * rng.uniform(1 - tint, 1 + tint), 0, 1)) for _ in range(3))


def procedural_background(rng: np.random.Generator, size: tuple[int, int]) -> Background:
    """A textured, cluttered street scene with a lighting gradient (reflectance in linear sRGB)."""
    w, h = size
    horizon = float(rng.uniform(0.3, 0.55) * h)
    hy = int(horizon)
    refl = np.empty((h, w, 3), dtype=np.float32)
    refl[:hy] = _colour(rng, 0.05, 0.2)
    refl[hy:] = _colour(rng, 0.08, 0.3, tint=0.08)
    emission = np.zeros((h, w, 3), dtype=np.float32)
    # Buildings with window grids, some lit.
    x = -int(rng.integers(0, w // 6))
    while x < w:
        bw = int(rng.uniform(0.12, 0.4) * w)
        top = int(rng.uniform(0.0, 0.8) * hy)
        wall = _colour(rng, 0.05, 0.5)
        cv2.rectangle(refl, (x, top), (x + bw, hy), wall, -1)
        step_x, step_y = max(int(rng.uniform(0.02, 0.05) * w), 6), max(int(rng.uniform(0.04, 0.08) * h), 6)
        lit_share = rng.uniform(0.0, 0.5)
        lamp = np.array(_colour(rng, 1.5, 4.0, tint=0.3), dtype=np.float32)
        for wy in range(top + step_y // 2, hy - step_y // 2, step_y):
            for wx in range(x + step_x // 2, x + bw - step_x // 2, step_x):
                p0, p1 = (wx, wy), (wx + step_x // 2, wy + step_y // 2)
                if rng.random() < lit_share:
                    cv2.rectangle(emission, p0, p1, tuple(float(v) for v in lamp), -1)
                else:
                    cv2.rectangle(refl, p0, p1, _colour(rng, 0.01, 0.08), -1)
        x += bw + int(rng.integers(0, w // 20 + 1))
    # Ground: pavement texture and joints that get denser toward the horizon.
    ground = 0.6 + 0.8 * _value_noise(rng, size, cells=int(rng.integers(24, 64)))
    refl[hy:] *= ground[hy:, :, None]
    y, gap = float(h), 0.08 * h
    while y > hy + 2 and gap >= 3:
        cv2.line(refl, (0, int(y)), (w, int(y)), (0.03, 0.03, 0.03), max(1, int(gap / 25)))
        y -= gap
        gap *= 0.85
    # Clutter: poles with lamps, trees, parked cars.
    for _ in range(int(rng.integers(2, 9))):
        kind = rng.choice(["pole", "tree", "car"])
        cx = int(rng.uniform(0, w))
        base = int(rng.uniform(hy, h * 1.05))
        scale = (base - horizon + 0.05 * h) / h
        if kind == "pole":
            top = int(base - scale * 2.2 * h)
            cv2.rectangle(refl, (cx, top), (cx + max(2, int(0.012 * w * scale)), base), _colour(rng, 0.05, 0.3), -1)
            cv2.circle(emission, (cx, top), max(2, int(0.012 * w * scale)), (3.0, 2.6, 1.8), -1)
        elif kind == "tree":
            r = max(4, int(scale * 0.5 * h))
            cv2.rectangle(refl, (cx - r // 10, base - r), (cx + r // 10, base), _colour(rng, 0.03, 0.12), -1)
            leaves = np.array(_colour(rng, 0.03, 0.15), dtype=np.float32) * np.array([0.6, 1.0, 0.5], dtype=np.float32)
            cv2.ellipse(refl, (cx, base - r), (r, int(r * 0.8)), 0, 0, 360, tuple(float(v) for v in leaves), -1)
        else:
            cw, chh = int(scale * 1.2 * h), int(scale * 0.4 * h)
            cv2.rectangle(refl, (cx, base - chh), (cx + cw, base), _colour(rng, 0.05, 0.6, tint=0.4), -1)
            cv2.rectangle(refl, (cx + cw // 6, base - chh - chh // 2), (cx + 5 * cw // 6, base - chh), (0.02, 0.02, 0.03), -1)
    texture = 0.75 + 0.5 * _value_noise(rng, size, cells=int(rng.integers(60, 160)), octaves=2)
    refl *= texture[..., None]
    np.clip(refl, 0, 1, out=refl)
    light = _illumination(rng, size)
    light = light.astype(np.float32)
    radiance = (refl * light[..., None] + emission).astype(np.float32)
    return Background(radiance=radiance, illumination=light, horizon_y=horizon)


def list_background_images(folder: str | Path) -> list[Path]:
    """Image files of a background folder, sorted by name."""
    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"{d}: background folder does not exist")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{d}: no background images (png, jpg, bmp, tif)")
    return files


def photo_background(rng: np.random.Generator, path: Path, size: tuple[int, int]) -> Background:
    """A user photograph, centre-cropped to the aspect ratio and resized, with a mild lighting gradient."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{path}: not a readable image")
    w, h = size
    ih, iw = img.shape[:2]
    scale = max(w / iw, h / ih)
    cw, ch = int(round(w / scale)), int(round(h / scale))
    x0, y0 = (iw - cw) // 2, (ih - ch) // 2
    img = cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
    refl = srgb_to_linear(cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)
    yy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    light = np.broadcast_to(1.0 + np.float32(rng.uniform(-0.4, 0.4)) * yy, (h, w)).astype(np.float32)
    return Background(radiance=(refl * light[..., None]).astype(np.float32), illumination=light,
                      horizon_y=float(rng.uniform(0.35, 0.5) * h))
