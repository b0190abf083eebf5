"""Figures, occlusion ground truth and beam-splitter geometry of the simulator."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from exlpose_data.isp import raw_to_rgb
from exlpose_data.keypoints import KEYPOINT_NAMES
from exlpose_data.naming import ImageName, parse_name
from exlpose_data.schema import load_document
from exlpose_data.simulate.background import Background, procedural_background
from exlpose_data.simulate.config import SimulationConfig
from exlpose_data.simulate.figures import draw_figure, sample_appearance
from exlpose_data.simulate.geometry import GeometryParams, check_distortion, sample_beam_splitter, valid_crop
from exlpose_data.simulate.pipeline import SceneSimulator
from exlpose_data.simulate.poses import J, poses_from_document, sample_pose
from exlpose_data.simulate.render import Person, render_frame

DATA = Path(__file__).parent / "data"
SIZE = (320, 200)


def _flat_background(size=SIZE) -> Background:
    w, h = size
    return Background(radiance=np.full((h, w, 3), 0.2, np.float32), illumination=np.ones((h, w), np.float32), horizon_y=h * 0.4)


def test_every_joint_lies_on_its_own_figure():
    rng = np.random.default_rng(0)
    for _ in range(60):
        pose = sample_pose(rng, (160.0, 190.0), float(rng.uniform(60, 180)), 5.0)
        # Draw on a canvas that holds the whole figure so every joint can be checked.
        big = replace(pose, joints=pose.joints + 400)
        layer = draw_figure(big, sample_appearance(rng), (1000, 1000), rng)
        for j, (x, y) in enumerate(big.joints):
            part = layer.parts[int(round(y)) - layer.y0, int(round(x)) - layer.x0]
            assert part > 0, f"{KEYPOINT_NAMES[j]} is off the figure"


def test_visible_keypoints_are_on_the_person_and_hidden_ones_covered():
    rng = np.random.default_rng(1)
    bg = _flat_background()
    people = [Person(sample_pose(rng, (float(x), 190.0), 150.0, float(d)), sample_appearance(rng))
              for x, d in ((140, 6.0), (170, 4.0), (200, 5.0))]
    _, truth = render_frame(bg, people, (0, 0, *SIZE), rng)
    assert len(truth.keypoints) == 3
    counts = {0: 0, 1: 0, 2: 0}
    for idx, kp in enumerate(truth.keypoints):
        for j, (x, y, v) in enumerate(np.asarray(kp).reshape(-1, 3)):
            counts[int(v)] += 1
            if v == 2:
                assert truth.person_map[int(round(y)), int(round(x))] == idx
            if v == 0:
                assert x == y == 0
                jx, jy = people[idx].pose.joints[j]
                assert not (0 <= jx <= SIZE[0] - 1 and 0 <= jy <= SIZE[1] - 1)
    assert counts[1] > 0 and counts[2] > 0  # overlapping people hide some joints


def test_person_in_front_occludes_and_frame_edge_unlabels():
    rng = np.random.default_rng(2)
    back = sample_pose(rng, (160.0, 190.0), 150.0, 8.0)
    front = replace(back, depth=back.depth - 4.0, joints=back.joints + [6.0, 0.0])
    app = sample_appearance(rng)
    _, truth = render_frame(_flat_background(), [Person(back, app), Person(front, app)], (0, 0, *SIZE), rng)
    hidden = np.asarray(truth.keypoints[0]).reshape(-1, 3)
    shown = np.asarray(truth.keypoints[1]).reshape(-1, 3)
    assert hidden[J["neck"], 2] == 1 and hidden[J["left_hip"], 2] == 1
    assert (shown[:, 2] == 2).sum() >= 10
    # Shift the only person so its left half leaves the crop: those joints become unlabelled (0, 0, 0).
    _, cut = render_frame(_flat_background(), [Person(back, app)], (160, 0, 320, 200), rng)
    kp = np.asarray(cut.keypoints[0]).reshape(-1, 3)
    left_of_crop = back.joints[:, 0] < 160
    assert left_of_crop.any() and (kp[left_of_crop] == 0).all()
    np.testing.assert_allclose(kp[~left_of_crop, 0], np.round(back.joints[~left_of_crop, 0] - 160, 2))
    x, y, w, h = cut.boxes[0]
    assert x >= 0 and x + w <= 160 and y >= 0 and y + h <= 200


def test_geometry_maps_invert_and_stay_small():
    rng = np.random.default_rng(3)
    for k1 in (0.0, 0.02):
        sp = sample_beam_splitter(rng, (1920, 1200), GeometryParams(k1=k1))
        pts = rng.uniform([0, 0], [1919, 1199], (50, 2))
        np.testing.assert_allclose(sp.ll_to_wl(sp.wl_to_ll(pts)), pts, atol=1e-6)
        corners = np.array([[0, 0], [1919, 0], [0, 1199], [1919, 1199]], float)
        shift = np.abs(sp.wl_to_ll(corners) - corners).max()
        assert shift < 4 + 0.006 * 1130 + 0.3 / 57.3 * 1130 + 0.002 * 1130 + (30 if k1 else 0)
        x0, y0, x1, y1 = valid_crop(sp)
        assert 1900 <= x1 - x0 <= 1920 and 1170 <= y1 - y0 <= 1200


@pytest.mark.parametrize(("k1", "k2", "size"), [(-0.45, 0.0, (1920, 1200)), (0.5, -0.5, (1920, 1200)), (-0.2, 0.1, (200, 320))])
def test_strong_accepted_distortions_invert_over_the_whole_frame(k1, k2, size):
    # Strongest values the fold check lets through: the inverse map still returns every pixel (a fixed-point
    # inversion was off by hundreds of pixels at such corners).
    check_distortion(size, k1, k2)
    sp = sample_beam_splitter(np.random.default_rng(0), size, GeometryParams(k1=k1, k2=k2))
    xs, ys = np.meshgrid(np.linspace(0, size[0] - 1, 25), np.linspace(0, size[1] - 1, 25))
    pts = np.stack([xs, ys], -1).reshape(-1, 2)
    np.testing.assert_allclose(sp.wl_to_ll(sp.ll_to_wl(pts)), pts, atol=1e-6)


@pytest.mark.parametrize(("k1", "k2", "size"), [(-0.5, -0.5, (1920, 1200)), (-0.1, 0.0, (32, 200)), (0.0, -0.3, (1200, 1920))])
def test_distortions_that_fold_the_frame_are_refused(k1, k2, size):
    with pytest.raises(ValueError, match=f"folds a {size[0]}x{size[1]} frame"):
        check_distortion(size, k1, k2)


def test_render_then_align_returns_the_ll_frame():
    rng = np.random.default_rng(4)
    background = procedural_background(rng, SIZE)
    assert background.radiance.dtype == background.illumination.dtype == np.float32
    scene = background.radiance
    for k1 in (0.0, 0.03):
        sp = sample_beam_splitter(rng, SIZE, GeometryParams(max_shift_px=3, k1=k1))
        x0, y0, x1, y1 = valid_crop(sp)
        back = sp.align_wl(sp.render_wl(scene))[y0:y1, x0:x1]
        err = np.abs(back - scene[y0:y1, x0:x1])
        assert np.median(err) < 0.02 * scene.mean()


@pytest.mark.parametrize("mirror", ["none", "ll", "wl"])
def test_true_homography_aligns_the_developed_reference_pair(mirror):
    cfg = SimulationConfig(width=320, height=200, geometry=GeometryParams(mirror=mirror, max_shift_px=4))
    sim = SceneSimulator(cfg, 11, 0)
    raw_ll, raw_wl = sim.reference()
    isp = cfg.isp_params()
    ll = raw_to_rgb(raw_ll, isp).astype(np.float32)
    wl = raw_to_rgb(raw_wl, isp)
    if mirror == "ll":
        ll = cv2.flip(ll, 1)
    if mirror == "wl":
        wl = cv2.flip(wl, 1)
    x0, y0, x1, y1 = sim.crop
    ll = cv2.GaussianBlur(ll, (0, 0), 1.0)  # average the noise down so the misalignment dominates

    def error(h: np.ndarray) -> float:
        warped = cv2.GaussianBlur(cv2.warpPerspective(wl, h, (320, 200)).astype(np.float32), (0, 0), 1.0)
        return float(np.abs(warped - ll)[y0 + 4:y1 - 4, x0 + 4:x1 - 4].mean())

    truth = np.asarray(sim.truth([]).geometry.homography)
    shifts = [(dx, dy) for dx in (-1, -0.5, 0, 0.5, 1) for dy in (-1, -0.5, 0, 0.5, 1)]
    errors = {s: error(np.array([[1, 0, s[0]], [0, 1, s[1]], [0, 0, 1]]) @ truth) for s in shifts}
    assert min(errors, key=errors.get) == (0, 0)
    assert errors[(0, 0)] < 0.9 * errors[(1, 1)]


def test_poses_from_the_official_test_file_keep_people_and_positions():
    doc = load_document(DATA / "ExLPose_test_LL-All.json")
    sources = poses_from_document(doc, (1920, 1200))
    assert len(sources) == 50
    first = doc.images[0]
    same = [a for a in doc.annotations if a.image_id == first.id]
    scene = next(s for s in sources if first.file_name.split("_exp")[0].endswith(s.key))
    counts = {len(f) for f in scene.frames}
    assert len(same) in counts
    pose = scene.frames[0][0]
    assert pose.joints.shape == (14, 2) and np.isfinite(pose.joints).all()
    # Labelled joints keep their (scaled) positions.
    all_joints = np.concatenate([p.joints for f in scene.frames for p in f])
    for ann in same[:3]:
        kp = np.asarray(ann.keypoints).reshape(-1, 3)
        lab = kp[:, 2] > 0
        scaled = kp[lab, :2] * [1920 / first.width, 1200 / first.height]
        assert np.min(np.abs(all_joints[None, :, :] - scaled[:, None, :]).sum(-1), axis=1).max() < 1e-6


@pytest.mark.parametrize("site", ["sim", ""])
def test_scene_id_is_the_one_release_names_give(site):
    sim = SceneSimulator(SimulationConfig(width=64, height=48, frames_per_scene=1, site=site, date="0212"), 0, 4)
    name = parse_name(ImageName(date="0212", site=site, video=5, ratio=100, frame=0, gain_db=1.0, exposure_us=500,
                                condition="LL").relpath)
    assert sim.scene_id == name.scene_id == ("0212_sim_vid000005" if site else "0212_vid000005")
