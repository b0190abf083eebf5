"""Estimator, geometry, model and validation of exlpose_data.align on small synthetic pairs with known homographies."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from exlpose_data.align.estimate import EstimateOptions, corner_error, estimate_homography
from exlpose_data.align.apply import check_crop_margin
from exlpose_data.align.geometry import INTERPOLATION_MARGIN_PX, INTERPOLATIONS, crop_margin_violation, transform_points, valid_crop, warp_maps
from exlpose_data.align.model import AlignModel
from exlpose_data.align.prepare import level_matrix, linear_gray, needs_flip, normalise_brightness
from exlpose_data.align.reference import ReferencePair, build_alignment
from exlpose_data.align.synthetic import darken, render_pair
from exlpose_data.align.validate import (
    Thresholds,
    aligned_reference,
    heldout_residuals,
    masked_psnr,
    masked_ssim,
    measure_displacements,
    measure_heldout,
    plot_difference,
    plot_residuals,
    quality_bin,
    threshold_failures,
    validation_positions,
)
from exlpose_data.errors import InputError, UsageError
from exlpose_data.session_format import FrameAttrs

W, H = 480, 300


def _norm(img: np.ndarray) -> np.ndarray:
    return normalise_brightness(linear_gray(img))[0]


@pytest.mark.parametrize(("ll_mean", "limit_px"), [(None, 0.02), (3.0, 0.25), (1.0, 0.45)])
def test_estimate_recovers_known_homography(ll_mean: float | None, limit_px: float) -> None:
    # 480x300 has 16x fewer pixels than a real frame, so the limits are looser than the benchmark's targets.
    p = render_pair(W, H, seed=2, ll_mean_8bit=ll_mean)
    e = estimate_homography(_norm(p.wl), _norm(p.ll))
    err = corner_error(e.homography, p.homography, (W, H))
    assert err < limit_px
    assert e.ecc_levels[-1] == 1  # full resolution last
    # The refinement improves on (or at least keeps) the feature start.
    assert err <= corner_error(e.initial, p.homography, (W, H)) + 0.01


def test_clean_pair_residuals_are_small() -> None:
    p = render_pair(W, H, seed=4)
    e = estimate_homography(_norm(p.wl), _norm(p.ll))
    assert e.initial_method == "sift+magsac" and e.n_inliers > 200
    res = heldout_residuals(e.homography, np.concatenate([e.heldout_wl, e.heldout_ll], axis=1))
    assert np.median(res) < 0.5


def test_degenerate_feature_fit_is_a_failed_level() -> None:
    from exlpose_data.align.estimate import _magsac

    rng = np.random.default_rng(0)
    src = rng.uniform(0, 400, (60, 2))
    h, n = _magsac(src, src * 0.01 + 5.0, 1.0)  # every match lands on a few pixels: a collapsing fit
    assert h is None and n == 0
    h, n = _magsac(src, src + [2.0, -1.0], 1.0)
    assert h is not None and n == 60 and np.allclose(h[:2, 2], [2.0, -1.0], atol=1e-6)


def test_textureless_reference_is_an_error() -> None:
    rng = np.random.default_rng(0)
    flat = np.full((H, W, 3), 120, np.uint8)
    dark = darken(flat, 3.0, rng)
    with pytest.raises(InputError, match="textureless"):
        estimate_homography(_norm(flat), _norm(dark))


def test_missing_flip_is_detected() -> None:
    p = render_pair(W, H, seed=1, ll_mean_8bit=3.0, mirror_wl=True)
    with pytest.raises(InputError, match="mirrored"):
        estimate_homography(_norm(p.wl), _norm(p.ll))


def test_unrelated_views_are_refused() -> None:
    a, b = render_pair(W, H, seed=5), render_pair(W, H, seed=55, ll_mean_8bit=3.0)
    with pytest.raises(InputError, match="ECC|refusing"):
        estimate_homography(_norm(a.wl), _norm(b.ll))


def test_averaged_reference_frames_make_a_high_gain_reference_usable() -> None:
    # 8-bit mean 2 at 24 dB (about 0.6 electrons per pixel): one frame is too noisy for features and for a
    # trustworthy identity start; the mean of 8 frames of the static reference is not.
    p = render_pair(W, H, seed=0, ll_mean_8bit=2.0, gain_db=24.0, ll_frames=8)
    assert p.ll_frames.shape == (8, H, W, 3) and np.array_equal(p.ll, p.ll_frames[0])
    with pytest.raises(InputError, match=r"correlates the pair 0\.\d+ at 1/4 resolution .*Average more reference frames"):
        estimate_homography(_norm(p.wl), _norm(p.ll))
    mean_ll = normalise_brightness(np.mean([linear_gray(f) for f in p.ll_frames], axis=0))[0]
    e = estimate_homography(_norm(p.wl), mean_ll)
    assert corner_error(e.homography, p.homography, (W, H)) < 0.4


def test_features_only_mode_refuses_when_matching_fails() -> None:
    p = render_pair(W, H, seed=1, ll_mean_8bit=1.0)
    with pytest.raises(InputError, match="too few feature matches"):
        estimate_homography(_norm(p.wl), _norm(p.ll), EstimateOptions(allow_ecc_only=False, min_inliers=400))


def test_size_mismatch_and_black_image() -> None:
    with pytest.raises(InputError, match="differ in size"):
        estimate_homography(np.ones((10, 20), np.float32), np.ones((10, 21), np.float32))
    with pytest.raises(InputError, match="entirely black"):
        normalise_brightness(np.zeros((4, 4), np.float32), "ll.png")


def test_level_matrix_keeps_pixel_centres() -> None:
    m = level_matrix((480, 300), (240, 150))
    # Full-frame pixels 0 and 1 average into binned pixel 0, whose centre is full-frame x = 0.5.
    assert transform_points(m, np.array([[0.5, 0.5]]))[0] == pytest.approx([0.0, 0.0])
    assert transform_points(m, np.array([[479.0, 299.0]]))[0] == pytest.approx([239.25, 149.25])


def test_warp_maps_and_crop_for_a_shift() -> None:
    h = np.array([[1, 0, 3.5], [0, 1, -2.0], [0, 0, 1]], np.float64)  # LL = WL shifted right 3.5, up 2
    mx, my = warp_maps(h, (0, 0, W, H))
    assert mx[10, 20] == pytest.approx(16.5) and my[10, 20] == pytest.approx(12.0)
    x0, y0, w, hh = valid_crop(mx, my, (W, H), margin=2.0)
    # Valid: 2 <= x - 3.5 <= 477 and 2 <= y + 2 <= 297.
    assert (x0, y0) == (6, 0) and (x0 + w - 1, y0 + hh - 1) == (W - 1, 295)


def test_crop_is_valid_under_rotation() -> None:
    p = render_pair(W, H, seed=7)
    mx, my = warp_maps(p.homography, (0, 0, W, H))
    x0, y0, w, h = valid_crop(mx, my, (W, H))
    sub_x, sub_y = mx[y0 : y0 + h, x0 : x0 + w], my[y0 : y0 + h, x0 : x0 + w]
    assert sub_x.min() >= 2 and sub_x.max() <= W - 3 and sub_y.min() >= 2 and sub_y.max() <= H - 3
    assert w * h > 0.9 * W * H


@pytest.mark.parametrize("interpolation", ["linear", "cubic", "lanczos"])
def test_crop_never_samples_replicated_border_pixels(interpolation: str) -> None:
    p = render_pair(W, H, seed=7)
    mx, my = warp_maps(p.homography, (0, 0, W, H))
    img = np.random.default_rng(0).random((H, W), np.float32)
    flag = INTERPOLATIONS[interpolation]

    def border_read(crop: tuple[int, int, int, int]) -> bool:
        x0, y0, w, h = crop
        sub = (mx[y0 : y0 + h, x0 : x0 + w], my[y0 : y0 + h, x0 : x0 + w])
        replicated = cv2.remap(img, *sub, flag, borderMode=cv2.BORDER_REPLICATE)
        # A pixel read outside the frame would bring in the huge constant instead of the replicated edge.
        constant = cv2.remap(img, *sub, flag, borderMode=cv2.BORDER_CONSTANT, borderValue=1e6)
        return not np.array_equal(replicated, constant)

    crop = valid_crop(mx, my, (W, H))  # ALIGN.json's crop: the widest kernel's margin
    assert not border_read(crop)
    x0, y0, w, h = crop
    assert crop_margin_violation(mx[y0 : y0 + h, x0 : x0 + w], my[y0 : y0 + h, x0 : x0 + w], (W, H), interpolation) == 0
    # The kernel's own margin is enough. Two pixels less reads the border: for Lanczos that is the old bicubic
    # margin of 2 px. (The margins are whole kernel half-widths; one pixel less fails only at fractional
    # source positions, the outermost tap having weight 0 at whole ones.)
    margin = INTERPOLATION_MARGIN_PX[interpolation]
    assert not border_read(valid_crop(mx, my, (W, H), margin=margin))
    if interpolation != "linear":
        assert border_read(valid_crop(mx, my, (W, H), margin=margin - 2))


def test_apply_refuses_a_crop_too_tight_for_lanczos() -> None:
    p = render_pair(W, H, seed=7, ll_mean_8bit=20.0)
    model = build_alignment([ReferencePair("r", linear_gray(p.wl), linear_gray(p.ll))], "none", [])
    check_crop_margin(model, "lanczos")
    mx, my = warp_maps(model.matrix, (0, 0, W, H))
    tight = model.model_copy(update={"crop": valid_crop(mx, my, (W, H), margin=2.0)})  # a cubic-only crop
    check_crop_margin(tight, "cubic")
    with pytest.raises(UsageError, match=r"--interpolation lanczos reads \(4 px\).*or use --interpolation linear or cubic"):
        check_crop_margin(tight, "lanczos")


def test_build_alignment_model_roundtrip_and_plots(tmp_path) -> None:
    p = render_pair(W, H, seed=3, ll_mean_8bit=20.0)
    model = build_alignment([ReferencePair("r", linear_gray(p.wl), linear_gray(p.ll))], "none", [])
    assert corner_error(model.matrix, p.homography, (W, H)) < 0.1
    assert model.metrics.heldout_count > 20 and model.metrics.heldout_median_px < 1.0
    assert model.metrics.psnr_db > 25 and 0.5 < model.metrics.ssim <= 1.0
    # Brightness ratio: a 20/~115 8-bit mean in the linear sRGB segment vs a gamma-encoded bright image.
    assert 0.005 < model.brightness_ratio < 0.05
    path = model.save(tmp_path / "ALIGN.json")
    again = AlignModel.load(path)
    assert np.allclose(again.matrix, model.matrix) and again.crop == model.crop
    assert threshold_failures(again, Thresholds(), heldout_residuals(again.matrix, again.heldout_matches)) == []
    res_png = plot_residuals(tmp_path / "res.png", again, linear_gray(p.ll))
    img = cv2.imread(str(res_png))
    assert img.shape == (500, 800, 3)  # small frames are enlarged for legible labels
    green = (img[:, :, 1] > 150) & (img[:, :, 0] < 50) & (img[:, :, 2] < 50)
    assert green.sum() > 100  # residual arrows under 0.5 px are drawn green


def test_two_references_are_combined() -> None:
    pairs = []
    truth = render_pair(W, H, seed=8).homography
    for mean in (12.0, 25.0):
        p = render_pair(W, H, seed=8, ll_mean_8bit=mean)
        pairs.append(ReferencePair(f"r{len(pairs)}", linear_gray(p.wl), linear_gray(p.ll)))
    model = build_alignment(pairs, "none", [])
    assert corner_error(model.matrix, truth, (W, H)) < 0.2
    assert model.metrics.reference_spread_px is not None and 0 < model.metrics.reference_spread_px < 0.3


def test_threshold_failure_messages_say_which_and_by_how_much(tmp_path) -> None:
    p = render_pair(W, H, seed=3, ll_mean_8bit=20.0)
    model = build_alignment([ReferencePair("r", linear_gray(p.wl), linear_gray(p.ll))], "none", [])
    shifted = model.model_copy(update={"homography": (np.array([[1, 0, 2.0], [0, 1, 0], [0, 0, 1]]) @ model.matrix).tolist()})
    res = heldout_residuals(shifted.matrix, shifted.heldout_matches)
    fails = threshold_failures(shifted, Thresholds(max_median_px=1.0, max_p95_px=None, max_corner_px=None), res)
    assert len(fails) == 1 and fails[0].startswith("held-out residual median") and "exceeds 1.000 px by" in fails[0]
    median = float(fails[0].split()[3])
    assert 1.5 < median < 2.5


def test_check_passes_a_correct_and_fails_a_shifted_alignment_at_ll_n_light() -> None:
    # LL-N: 8-bit mean 3 at 12 dB gain, about 3 electrons per pixel. SIFT points there are localised to ~1-2 px;
    # the measured displacements must see the homography's error instead.
    w, h = 320, 200
    p = render_pair(w, h, seed=3, ll_mean_8bit=3.0, gain_db=12.0)
    model = build_alignment([ReferencePair("r", linear_gray(p.wl), linear_gray(p.ll))], "none", [])
    assert corner_error(model.matrix, p.homography, (w, h)) < 0.3
    m = model.metrics
    assert m.heldout_count >= 10 and 0.05 < m.heldout_noise_px < 0.6
    assert m.heldout_median_px < 2 * m.heldout_noise_px
    assert threshold_failures(model, Thresholds(), heldout_residuals(model.matrix, model.heldout_matches)) == []
    # Against the true homography the measured correspondences scatter by their predicted noise, no more.
    truth_median = float(np.median(heldout_residuals(p.homography, model.heldout_matches)))
    assert truth_median < 2 * m.heldout_noise_px
    shift = np.array([[1, 0, 1.5], [0, 1, 0], [0, 0, 1]], np.float64)
    bad = model.model_copy(update={"homography": (shift @ model.matrix).tolist()})
    fails = threshold_failures(bad, Thresholds(), heldout_residuals(bad.matrix, bad.heldout_matches))
    assert fails and fails[0].startswith("held-out residual median")
    assert 1.2 < float(fails[0].split()[3]) < 1.8
    # Measured afresh under the shifted homography (as check does with a reference pair): the same verdict.
    wl_n, ll_n = _norm(p.wl), _norm(p.ll)
    again = measure_displacements(wl_n, ll_n, bad.matrix, validation_positions(np.asarray(model.heldout_matches)[:, :2], (w, h)))
    res = heldout_residuals(bad.matrix, again.matches)
    assert len(res) >= 10 and 1.2 < np.median(res) < 1.8
    assert threshold_failures(bad, Thresholds(), res, float(np.median(again.noise_px)))


def test_measurement_without_keypoints_uses_a_grid() -> None:
    pts = validation_positions(np.zeros((0, 2)), (320, 200))
    edge = 200 // 4 // 2 + 8  # half a 50 px patch and the 8 px search
    assert len(pts) >= 12 and pts.min() >= edge and pts[:, 0].max() <= 320 - edge and pts[:, 1].max() <= 200 - edge
    p = render_pair(320, 200, seed=4)
    m = measure_displacements(_norm(p.wl), _norm(p.ll), p.homography, pts)
    assert len(m.matches) >= 10
    assert np.median(heldout_residuals(p.homography, m.matches)) < 0.05 and np.all(m.noise_px < 0.05)


def test_noisy_measurements_grow_their_patches() -> None:
    p = render_pair(320, 200, seed=3, ll_mean_8bit=3.0, gain_db=20.0)
    wl, ll = _norm(p.wl), _norm(p.ll)
    pts = validation_positions(np.zeros((0, 2)), (320, 200))
    small = measure_displacements(wl, ll, p.homography, pts)
    grown = measure_heldout(wl, ll, p.homography, pts)
    assert small.patch_px == 50 and small.median_noise_px > 0.25
    assert grown.patch_px == 66 and grown.median_noise_px < 0.95 * small.median_noise_px
    clean = measure_heldout(wl, _norm(p.wl), np.eye(3), pts)  # already precise: no growth
    assert clean.patch_px == 50 and clean.median_noise_px < 0.05


def test_measurement_skips_patches_touching_filled_in_pixels() -> None:
    p = render_pair(320, 200, seed=4)
    pts = validation_positions(np.zeros((0, 2)), (320, 200))
    wl, ll = _norm(p.wl), _norm(p.ll)
    everything = measure_displacements(wl, ll, p.homography, pts)
    ll_valid = np.ones((200, 320), np.uint8)
    ll_valid[:, :160] = 0  # e.g. filled in by undistortion
    wl_valid = np.ones((200, 320), np.uint8)
    wl_valid[100:, :] = 0
    m = measure_displacements(wl, ll, p.homography, pts, ll_valid=ll_valid, wl_valid=wl_valid)
    assert 0 < len(m.matches) < len(everything.matches)
    patch = 50
    assert m.matches[:, 2].min() - patch / 2 - 8 >= 159 and m.matches[:, 1].max() + patch / 2 + 8 <= 101


def test_psnr_ssim_are_computed_binned_on_a_noisy_pair() -> None:
    p = render_pair(320, 200, seed=3, ll_mean_8bit=3.0, gain_db=12.0)
    model = build_alignment([ReferencePair("r", linear_gray(p.wl), linear_gray(p.ll))], "none", [])
    assert model.metrics.quality_bin in (4, 8)
    warped, ll_crop = aligned_reference(_norm(p.wl), _norm(p.ll), model)
    assert masked_psnr(warped, ll_crop) < model.metrics.psnr_db - 10  # a single noisy frame: noise-limited
    assert quality_bin(warped) == 1


def test_psnr_ssim_identity_and_difference_plot(tmp_path) -> None:
    rng = np.random.default_rng(0)
    a = rng.random((50, 60)).astype(np.float32)
    assert masked_psnr(a, a) == float("inf")
    assert masked_ssim(a, a) == pytest.approx(1.0)
    b = a + 0.01
    assert masked_psnr(a, b) == pytest.approx(10 * np.log10(np.percentile(a, 99.9) ** 2 / 1e-4), rel=1e-3)
    out = plot_difference(tmp_path / "d.png", a, b)
    assert cv2.imread(str(out)).shape == (667, 800, 3)


def test_align_model_load_errors(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        AlignModel.load(bad)
    p = render_pair(W, H, seed=3, ll_mean_8bit=20.0)
    model = build_alignment([ReferencePair("r", linear_gray(p.wl), linear_gray(p.ll))], "none", [])
    data = json.loads(model.model_dump_json())
    data["homography"] = [[1, 0], [0, 1]]
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match="field homography"):
        AlignModel.load(bad)
    data = json.loads(model.model_dump_json())
    data["crop"] = [0, 0, W + 5, H]
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match="exceeds the frame"):
        AlignModel.load(bad)
    with pytest.raises(InputError, match="no such alignment file"):
        AlignModel.load(tmp_path / "missing.json")


def test_needs_flip_respects_camera_side_mirroring() -> None:
    on_camera = FrameAttrs("BayerRG12", "RGGB", 12, 240.0, mirrored_x=True)
    plain = FrameAttrs("BayerRG12", "RGGB", 12, 240.0)
    assert needs_flip("wl", "wl", plain) and not needs_flip("wl", "wl", on_camera)
    assert not needs_flip("ll", "wl", plain) and not needs_flip("wl", "none", plain)


def test_isp_params_accepts_pylon_pattern_names() -> None:
    from exlpose_data.align.prepare import isp_params

    assert isp_params(FrameAttrs("BayerRG12", "RG", 12, 0.0)).pattern == "RGGB"
    assert isp_params(FrameAttrs("BayerGB8", "BayerGB", 8, 0.0)).pattern == "GBRG"
    assert isp_params(FrameAttrs("BayerBG12", "BGGR", 12, 240.0)).pattern == "BGGR"
    with pytest.raises(InputError, match="unknown Bayer pattern"):
        isp_params(FrameAttrs("BayerXY12", "XY", 12, 0.0), "s.h5: reference 'b' wl")
    with pytest.raises(InputError, match="without a 'bayer_pattern'"):
        isp_params(FrameAttrs("Mono12", None, 12, 0.0))


def test_binning_ladder_and_noise_blur() -> None:
    from exlpose_data.align.prepare import binning_ladder, noise_blur

    assert binning_ladder(1200, 150) == [1, 2, 4, 8]
    assert binning_ladder(1200, 150, start=3) == [3, 6]
    assert binning_ladder(100, 150) == [1]
    assert binning_ladder(1200, 0, max_bin=8) == [1, 2, 4, 8]
    rng = np.random.default_rng(0)
    noisy = (1.0 + 0.5 * rng.standard_normal((400, 400))).astype(np.float32)
    # sigma 0.5 -> 0.5 / 0.3 / (2 sqrt(pi)) = 0.470 px; clipped up to min_sigma, and to the 4 px cap.
    assert abs(noise_blur(noisy) - 0.5 / 0.3 / (2 * np.sqrt(np.pi))) < 0.02
    assert noise_blur(noisy, min_sigma=0.7) == 0.7
    assert noise_blur((1.0 + 10 * rng.standard_normal((100, 100))).astype(np.float32)) == 4.0
