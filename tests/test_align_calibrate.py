"""Checkerboard lens calibration and its composition with the homography into one remap."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from exlpose_data.align.calibrate import calibrate_camera, load_calibration, parse_pattern, save_calibration
from exlpose_data.align.estimate import corner_error
from exlpose_data.align.geometry import warp_maps
from exlpose_data.align.model import AlignModel, CameraCalibration
from exlpose_data.align.prepare import linear_gray
from exlpose_data.align.reference import ReferencePair, build_alignment
from exlpose_data.align.synthetic import render_pair
from exlpose_data.cli.align import app
from exlpose_data.errors import InputError, UsageError

W, H = 480, 300
K = np.array([[420.0, 0, 240.0], [0, 420.0, 150.0], [0, 0, 1]])
PATTERN = (7, 5)
SQUARE = 24  # texture pixels per board square


def _board_texture() -> np.ndarray:
    cols, rows = PATTERN[0] + 1, PATTERN[1] + 1
    margin = SQUARE
    tex = np.full((rows * SQUARE + 2 * margin, cols * SQUARE + 2 * margin), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            if (r + c) % 2 == 0:
                tex[margin + r * SQUARE : margin + (r + 1) * SQUARE, margin + c * SQUARE : margin + (c + 1) * SQUARE] = 0
    return tex


def _view(rvec: np.ndarray, tvec: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """The board seen by camera (K, dist) at pose (rvec, tvec); board units are squares."""
    tex = _board_texture()
    rot, _ = cv2.Rodrigues(rvec)
    # Texture pixel (u, v) is board point ((u - 2*SQUARE) / SQUARE, (v - 2*SQUARE) / SQUARE) - inner corner (0,0) at 2*SQUARE.
    tex_to_board = np.array([[1 / SQUARE, 0, -2.0], [0, 1 / SQUARE, -2.0], [0, 0, 1]])
    board_to_img = K @ np.column_stack([rot[:, 0], rot[:, 1], tvec])
    ideal = cv2.warpPerspective(tex, board_to_img @ tex_to_board, (W, H), flags=cv2.INTER_AREA, borderValue=128)
    xs, ys = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    und = cv2.undistortPoints(np.stack([xs.ravel(), ys.ravel()], 1).reshape(-1, 1, 2), K, dist, P=K).reshape(H, W, 2).astype(np.float32)
    return cv2.remap(ideal, und[..., 0], und[..., 1], cv2.INTER_LINEAR, borderValue=128)


def _views(dist: np.ndarray, n: int = 10) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        rvec = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), rng.uniform(-0.2, 0.2)])
        tvec = np.array([-3.0 + rng.uniform(-1.5, 1.5), -2.0 + rng.uniform(-1, 1), 9.0 + rng.uniform(-1, 2)])
        out.append(_view(rvec, tvec, dist))
    return out


def test_calibration_recovers_intrinsics_and_distortion() -> None:
    dist = np.array([-0.15, 0.05, 0, 0, 0])
    cal = calibrate_camera(_views(dist), PATTERN)
    k = np.asarray(cal.camera_matrix)
    assert k[0, 0] == pytest.approx(420, rel=0.02) and k[1, 1] == pytest.approx(420, rel=0.02)
    assert k[0, 2] == pytest.approx(240, abs=4) and k[1, 2] == pytest.approx(150, abs=4)
    # Distortion coefficients trade off against each other; what must match is where they send pixels.
    corners = np.array([[[0.0, 0.0]], [[W - 1.0, H - 1.0]], [[0.0, H / 2]]])
    truth = cv2.undistortPoints(corners, K, dist, P=K)
    found = cv2.undistortPoints(corners, k, np.asarray(cal.dist_coeffs), P=K)
    assert np.abs(found - truth).max() < 2.0  # at the frame corners, beyond the boards: within ~10% of the distortion
    assert np.abs(truth - corners).max() > 15  # the lens distorts a lot there
    assert cal.rms_px < 0.2 and cal.n_views >= 6 and cal.image_size == (W, H)


def test_too_few_views_and_bad_pattern() -> None:
    blank = [np.full((H, W), 128, np.uint8)] * 6
    with pytest.raises(InputError, match="found in 0 of 6 views"):
        calibrate_camera(blank, PATTERN)
    with pytest.raises(UsageError, match="COLSxROWS"):
        parse_pattern("nine")


def _cal(dist: list[float]) -> CameraCalibration:
    return CameraCalibration(camera_matrix=K.tolist(), dist_coeffs=dist, image_size=(W, H), rms_px=0.1, n_views=8)


def test_composed_remap_is_undistort_homography_distort() -> None:
    same = {"ll": _cal([-0.1, 0, 0, 0, 0]), "wl": _cal([-0.1, 0, 0, 0, 0])}
    mx, my = warp_maps(np.eye(3), (0, 0, W, H), same)
    xs, ys = np.meshgrid(np.arange(W), np.arange(H))
    # Same lens on both sides and the identity: every LL pixel samples itself (up to the iterative undistortion).
    assert np.abs(mx - xs).max() < 0.05 and np.abs(my - ys).max() < 0.05
    shift = np.array([[1, 0, 2.0], [0, 1, 0], [0, 0, 1]])
    differ = {"ll": _cal([0.0] * 5), "wl": _cal([-0.1, 0, 0, 0, 0])}
    mx, my = warp_maps(shift, (0, 0, W, H), differ)
    # LL centre pixel (an undistorted LL camera) -> WL undistorted (238, 150) -> distorted by WL's barrel lens.
    expected, _ = cv2.projectPoints(np.array([[(238 - 240) / 420, 0, 1.0]]), np.zeros(3), np.zeros(3), K, np.array([-0.1, 0, 0, 0, 0]))
    assert mx[150, 240] == pytest.approx(expected[0, 0, 0], abs=1e-3) and my[150, 240] == pytest.approx(150, abs=1e-3)
    # At the corner the WL lens's barrel distortion pulls the sample towards the centre.
    assert mx[0, 0] > 0 - 2 + 1 and my[0, 0] > 1


def test_calibrate_command_writes_calib_json(tmp_path) -> None:
    args = ["calibrate", "--pattern", "7x5", "--out", str(tmp_path / "CALIB.json")]
    for cam, dist in (("ll", [-0.15, 0.05, 0, 0, 0]), ("wl", [-0.05, 0, 0, 0, 0])):
        for i, img in enumerate(_views(np.array(dist), n=8)):
            path = tmp_path / f"{cam}{i}.png"
            cv2.imwrite(str(path), img)
            args += [f"--{cam}", str(path)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    cal = load_calibration(tmp_path / "CALIB.json")
    assert cal["ll"].dist_coeffs[0] < cal["wl"].dist_coeffs[0] < 0  # LL has the stronger barrel
    assert cal["ll"].rms_px < 0.2 and cal["wl"].rms_px < 0.2
    (tmp_path / "bad.json").write_text('{"ll": {}}')
    with pytest.raises(InputError, match="field ll"):
        load_calibration(tmp_path / "bad.json")


def _distort(img: np.ndarray, dist: list[float]) -> np.ndarray:
    """What a lens with ``dist`` (and matrix K) records of the ideal pinhole image ``img``."""
    xs, ys = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    pts = np.stack([xs.ravel(), ys.ravel()], 1).reshape(-1, 1, 2)
    und = cv2.undistortPoints(pts, K, np.array(dist), P=K).reshape(H, W, 2).astype(np.float32)
    return cv2.remap(img, und[..., 0], und[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def test_estimate_with_calibration_recovers_homography_between_undistorted_frames() -> None:
    ll_dist, wl_dist = [-0.12, 0.0, 0.0, 0.0, 0.0], [0.03, 0.0, 0.0, 0.0, 0.0]  # the two paths' lenses differ
    p = render_pair(W, H, seed=6)
    ref = ReferencePair("r", linear_gray(_distort(p.wl, wl_dist)), linear_gray(_distort(p.ll, ll_dist)))
    cal = {"ll": _cal(ll_dist), "wl": _cal(wl_dist)}
    with_cal = build_alignment([ref], "none", [], calibration=cal)
    assert corner_error(with_cal.matrix, p.homography, (W, H)) < 0.15
    assert with_cal.calibration is not None and with_cal.calibration["ll"].dist_coeffs[0] == -0.12
    # The composed remap aligns the recorded (distorted) pair; no plain homography can.
    plain = build_alignment([ref], "none", [])
    assert with_cal.metrics.psnr_db > 35 and with_cal.metrics.psnr_db > plain.metrics.psnr_db + 5
    assert with_cal.metrics.heldout_median_px < 0.1 < plain.metrics.heldout_median_px


def test_estimate_command_takes_a_calibration(tmp_path) -> None:
    dist = [-0.08, 0.0, 0.0, 0.0, 0.0]
    p = render_pair(W, H, seed=9)
    cv2.imwrite(str(tmp_path / "wl.png"), _distort(p.wl, dist)[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "ll.png"), _distort(p.ll, dist)[:, :, ::-1])
    save_calibration(tmp_path / "CALIB.json", {"ll": _cal(dist), "wl": _cal(dist)})
    out = tmp_path / "ALIGN.json"
    r = CliRunner().invoke(app, ["estimate", "--wl", str(tmp_path / "wl.png"), "--ll", str(tmp_path / "ll.png"), "--calibration", str(tmp_path / "CALIB.json"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    model = AlignModel.load(out)
    assert model.calibration is not None and [i.role for i in model.inputs] == ["wl", "ll", "calibration"]
    assert corner_error(model.matrix, p.homography, (W, H)) < 0.1
    r = CliRunner().invoke(app, ["estimate", "--wl", str(tmp_path / "wl.png"), "--ll", str(tmp_path / "ll.png"), "--calibration", str(tmp_path / "nope.json")])
    assert r.exit_code == 2 and "no such calibration file" in r.output
