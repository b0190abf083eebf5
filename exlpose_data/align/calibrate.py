"""Optional lens calibration of each camera from checkerboard views (OpenCV's pinhole + distortion model).

The result, one :class:`~exlpose_data.align.model.CameraCalibration` per camera, is stored in a
``CALIB.json`` (``{"ll": ..., "wl": ...}``) and passed to ``exlpose-align estimate --calibration``: the
homography is then estimated between the undistorted frames and ``apply`` composes undistortion and
homography into one remap. Only needed when distortion differs between the two cameras' paths enough to show
at the corners (residual plots tell).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from pydantic import ValidationError

from ..atomic import write_text_atomic
from ..errors import InputError, UsageError
from ..jsonio import dumps_json, load_json
from .model import CameraCalibration

__all__ = ["parse_pattern", "find_board", "calibrate_camera", "save_calibration", "load_calibration"]


def parse_pattern(text: str) -> tuple[int, int]:
    """``"9x6"`` -> (9, 6): inner corners per row and per column."""
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--pattern {text!r}: expected COLSxROWS of inner corners, e.g. 9x6") from None
    if cols < 2 or rows < 2:
        raise UsageError(f"--pattern {text!r}: needs at least 2x2 inner corners")
    return cols, rows


def find_board(gray: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """Sub-pixel inner corners (N, 1, 2) float32 of the checkerboard, or None when not found."""
    found, pts = cv2.findChessboardCorners(gray, pattern, flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not found:
        return None
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
    return cv2.cornerSubPix(gray, pts, (5, 5), (-1, -1), criteria)


def calibrate_camera(images: Sequence[np.ndarray], pattern: tuple[int, int], *, names: Sequence[str] | None = None, min_views: int = 5, fix_k3: bool = True) -> CameraCalibration:
    """Intrinsics and distortion (k1, k2, p1, p2, k3) from 8-bit grey checkerboard views of one camera.

    ``k3`` stays 0 by default: with boards that do not reach the frame corners it is poorly constrained and
    extrapolates wildly exactly where the two cameras' distortions matter most.

    Raises:
        InputError: fewer than ``min_views`` views show the whole board, or the views differ in size.
    """
    names = list(names) if names is not None else [f"view {i}" for i in range(len(images))]
    if not images:
        raise InputError("no checkerboard images given")
    size = (images[0].shape[1], images[0].shape[0])
    board = np.zeros((pattern[0] * pattern[1], 3), np.float32)
    board[:, :2] = np.mgrid[0 : pattern[0], 0 : pattern[1]].T.reshape(-1, 2)
    obj, img_pts, missed = [], [], []
    for img, name in zip(images, names):
        if (img.shape[1], img.shape[0]) != size:
            raise InputError(f"{name}: {img.shape[1]}x{img.shape[0]}, the first view is {size[0]}x{size[1]}")
        pts = find_board(img, pattern)
        if pts is None:
            missed.append(name)
            continue
        obj.append(board)
        img_pts.append(pts)
    if len(obj) < min_views:
        raise InputError(f"the {pattern[0]}x{pattern[1]} checkerboard was found in {len(obj)} of {len(images)} views (need {min_views}); not found in: {', '.join(missed[:5])}")
    rms, k, dist, _, _ = cv2.calibrateCamera(obj, img_pts, size, None, None, flags=cv2.CALIB_FIX_K3 if fix_k3 else 0)
    return CameraCalibration(camera_matrix=k.tolist(), dist_coeffs=dist.ravel().tolist(), image_size=size, rms_px=float(rms), n_views=len(obj))


def save_calibration(path: str | Path, calibration: dict[str, CameraCalibration]) -> Path:
    """Write ``{"ll": ..., "wl": ...}`` atomically."""
    doc = {k: v.model_dump(mode="json") for k, v in calibration.items()}
    return write_text_atomic(path, dumps_json(doc, indent=2, source=str(path)) + "\n")


def load_calibration(path: str | Path) -> dict[str, CameraCalibration]:
    """Read a ``CALIB.json``; both cameras are required."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such calibration file")
    data = load_json(p)
    out = {}
    for cam in ("ll", "wl"):
        if not isinstance(data, dict) or cam not in data:
            raise InputError(f"{p}: no {cam!r} camera calibration")
        try:
            out[cam] = CameraCalibration.model_validate(data[cam])
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InputError(f"{p}: field {cam}.{'.'.join(str(x) for x in first['loc'])}: {first['msg']}") from None
    return out
