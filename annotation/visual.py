"""Drawing for people who check labels: brightened low-light images and skeletons (OpenCV)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from exlpose_data.keypoints import crowdpose14

__all__ = ["brighten", "read_fitted", "draw_person", "caption", "LL_GAIN"]

LL_GAIN = 30.0
# BGR: left limbs blue, right limbs red, the head/neck/torso line green (as our label configs colour them).
_LEFT, _RIGHT, _CENTRE, _BOX = (180, 119, 31), (40, 39, 214), (44, 160, 44), (14, 127, 255)


def brighten(image: np.ndarray, gain: float | None = LL_GAIN, target_mean: float | None = None) -> np.ndarray:
    """A dark 8-bit image made visible: times ``gain``, or scaled so its mean is ``target_mean`` (0-255)."""
    img = image.astype(np.float32)
    if target_mean is not None:
        mean = float(img.mean())
        gain = target_mean / mean if mean > 0 else 1.0
    return np.clip(img * float(gain or 1.0), 0, 255).astype(np.uint8)


def read_fitted(path: Path, width: int, fallback_size: tuple[int, int]) -> tuple[np.ndarray, float, bool]:
    """(image resized to ``width``, scale from image to thumbnail pixels, whether the file was read).

    A missing or unreadable file gives a grey image of ``fallback_size`` (w, h) so labels still show.
    """
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    found = img is not None
    if img is None:
        w, h = fallback_size
        img = np.full((max(h, 1), max(w, 1), 3), 64, np.uint8)
    scale = width / img.shape[1]
    thumb = cv2.resize(img, (width, max(1, round(img.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    if not found:
        cv2.putText(thumb, "missing", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
    return thumb, scale, found


def _colour(name: str) -> tuple[int, int, int]:
    return _LEFT if name.startswith("left") else _RIGHT if name.startswith("right") else _CENTRE


def draw_person(img: np.ndarray, keypoints: list[float], bbox: list[float], scale: float, *, highlight: bool = False) -> None:
    """Draw one person's box, limbs and joints onto ``img`` (in place); ``highlight`` thickens a flagged person."""
    spec = crowdpose14()
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
    pts = np.round(kp[:, :2] * scale).astype(int)
    x, y, w, h = (np.asarray(bbox) * scale).round().astype(int)
    thick = 2 if highlight else 1
    cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), (0, 255, 255) if highlight else _BOX, thick)
    for a, b in spec.skeleton:
        if kp[a, 2] > 0 and kp[b, 2] > 0:
            # A limb takes the side of its outer joint, so left arm/leg lines are blue and right ones red.
            cv2.line(img, tuple(pts[a]), tuple(pts[b]), _colour(spec.keypoints[b]), thick + 1, cv2.LINE_AA)
    for j, name in enumerate(spec.keypoints):
        if kp[j, 2] > 0:
            filled = -1 if kp[j, 2] >= 2 else 1  # occluded joints drawn hollow
            cv2.circle(img, tuple(pts[j]), 3, _colour(name), filled, cv2.LINE_AA)


def caption(img: np.ndarray, text: str, height: int = 22) -> np.ndarray:
    """``img`` with a black bar of ``text`` underneath."""
    bar = np.zeros((height, img.shape[1], 3), np.uint8)
    cv2.putText(bar, text, (4, height - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
    return np.vstack([img, bar])
