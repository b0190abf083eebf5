"""Where each low-light pixel samples the well-lit frame, and the rectangle where that is defined.

The WL image is resampled exactly once: lens undistortion of both cameras and the homography are composed
into one pair of remap tables, evaluated only over the crop.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from .model import CameraCalibration

__all__ = ["transform_points", "warp_maps", "valid_crop", "INTERPOLATIONS", "INTERPOLATION_MARGIN_PX", "CROP_MARGIN_PX", "crop_margin_violation"]

INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}

# Pixels an interpolation reads beyond the sample position (OpenCV's kernels: bilinear reads floor(x)..+1,
# bicubic floor(x)-1..+2, Lanczos4 floor(x)-3..+4): every source position must stay this far inside the WL
# frame, or the sample mixes in replicated border pixels.
INTERPOLATION_MARGIN_PX = {"linear": 1.0, "cubic": 2.0, "lanczos": 4.0}

# ALIGN.json's crop keeps the widest kernel's margin, so one crop (one release frame, one set of annotation
# coordinates) is valid whichever interpolation apply uses.
CROP_MARGIN_PX = max(INTERPOLATION_MARGIN_PX.values())


def transform_points(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 3x3 homography to (N, 2) points."""
    return cv2.perspectiveTransform(np.asarray(pts, np.float64).reshape(-1, 1, 2), np.asarray(h, np.float64)).reshape(-1, 2)


def warp_maps(
    homography: np.ndarray,
    roi: tuple[int, int, int, int],
    calibration: Mapping[str, CameraCalibration] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Remap tables (float32, ``roi`` sized) giving for each LL pixel in ``roi`` its WL source position.

    Args:
        homography: WL -> LL (undistorted frames when ``calibration`` is given).
        roi: ``[x0, y0, w, h]`` of LL pixels to compute.
        calibration: ``{"ll": ..., "wl": ...}`` intrinsics, or None for a pure homography.
    """
    x0, y0, w, h = roi
    xs, ys = np.meshgrid(np.arange(x0, x0 + w, dtype=np.float64), np.arange(y0, y0 + h, dtype=np.float64))
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1)
    h_inv = np.linalg.inv(np.asarray(homography, np.float64))
    if calibration is None:
        src = transform_points(h_inv, pts)
    else:
        ll, wl = calibration["ll"], calibration["wl"]
        k_ll, d_ll = np.asarray(ll.camera_matrix), np.asarray(ll.dist_coeffs)
        k_wl, d_wl = np.asarray(wl.camera_matrix), np.asarray(wl.dist_coeffs)
        undist_ll = cv2.undistortPoints(pts.reshape(-1, 1, 2), k_ll, d_ll, P=k_ll).reshape(-1, 2)
        undist_wl = transform_points(h_inv, undist_ll)
        normalised = transform_points(np.linalg.inv(k_wl), undist_wl)
        rays = np.concatenate([normalised, np.ones((len(normalised), 1))], axis=1)
        src, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), k_wl, d_wl)
        src = src.reshape(-1, 2)
    return src[:, 0].reshape(h, w).astype(np.float32), src[:, 1].reshape(h, w).astype(np.float32)


def valid_crop(map_x: np.ndarray, map_y: np.ndarray, src_size: tuple[int, int], margin: float = CROP_MARGIN_PX) -> tuple[int, int, int, int]:
    """The largest-found axis-aligned rectangle ``[x0, y0, w, h]`` of the maps' frame whose every pixel samples
    inside the source frame (``margin`` pixels in).

    Greedy: shrink the side whose border row or column holds the most invalid pixels until none is left.
    For the near-rectangular regions of a beam-splitter rig this loses at most a pixel per side.
    """
    sw, sh = src_size
    valid = (map_x >= margin) & (map_x <= sw - 1 - margin) & (map_y >= margin) & (map_y <= sh - 1 - margin)
    bad = np.pad((~valid).astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def count(x0: int, y0: int, x1: int, y1: int) -> int:  # invalid pixels in [x0, x1) x [y0, y1)
        return int(bad[y1, x1] - bad[y0, x1] - bad[y1, x0] + bad[y0, x0])

    x0, y0, x1, y1 = 0, 0, valid.shape[1], valid.shape[0]
    while x1 > x0 and y1 > y0 and count(x0, y0, x1, y1):
        sides = {
            "left": count(x0, y0, x0 + 1, y1) / (y1 - y0),
            "right": count(x1 - 1, y0, x1, y1) / (y1 - y0),
            "top": count(x0, y0, x1, y0 + 1) / (x1 - x0),
            "bottom": count(x0, y1 - 1, x1, y1) / (x1 - x0),
        }
        if max(sides.values()) == 0:
            # Invalid pixels only inside (a non-convex region): cut towards the half that holds more of them.
            mx, my = (x0 + x1) // 2, (y0 + y1) // 2
            sides = {"left": count(x0, y0, mx, y1), "right": count(mx, y0, x1, y1), "top": count(x0, y0, x1, my), "bottom": count(x0, my, x1, y1)}
        side = max(sides, key=sides.__getitem__)
        if side == "left":
            x0 += 1
        elif side == "right":
            x1 -= 1
        elif side == "top":
            y0 += 1
        else:
            y1 -= 1
    if x1 <= x0 or y1 <= y0:
        return (0, 0, 0, 0)
    return (x0, y0, x1 - x0, y1 - y0)


def crop_margin_violation(map_x: np.ndarray, map_y: np.ndarray, src_size: tuple[int, int], interpolation: str) -> float:
    """How far (px) the maps' source positions come closer to the WL frame's edge than ``interpolation``
    needs; 0 when every sample reads real pixels only."""
    sw, sh = src_size
    m = INTERPOLATION_MARGIN_PX[interpolation]
    lows = (m - float(map_x.min()), m - float(map_y.min()))
    highs = (float(map_x.max()) - (sw - 1 - m), float(map_y.max()) - (sh - 1 - m))
    return max(0.0, *lows, *highs)
