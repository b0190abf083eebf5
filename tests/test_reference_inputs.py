"""The training inputs follow the ExLPose reference code (pytorch-cpn/dataloader/loader_training_pair.py):
scale augmentation, WL statistics, mean padding, target cells, GlobalNet's visibility mask.

Each expectation is computed by hand from the reference's rules or by the function the reference calls
(cv2.GaussianBlur for its targets), not by our own code.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from exlpose_data.datasets import Augmentation, ExLPoseTopDown
from exlpose_data.datasets.targets import cpn_heatmaps
from exlpose_data.datasets.transforms import crop_to_heatmap, heatmap_to_crop, sample_augmentation, train_crop_factor

from .test_datasets import BOXES, make_release

PIXEL_MEANS = np.array([122.7717, 115.9465, 102.9801])


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_release(tmp_path_factory.mktemp("refin"))


def test_training_crop_is_min_of_the_draw_and_1_25_relative_to_the_test_crop() -> None:
    # Reference: crop x1.25, then a centred window of min(1, U(0.7, 1.35) / 1.25) of it.
    assert train_crop_factor(0.7, 1.25) == pytest.approx(0.56)
    assert train_crop_factor(1.0, 1.25) == pytest.approx(0.8)
    assert train_crop_factor(1.3, 1.25) == 1.0
    rng = np.random.default_rng(0)
    draws = np.array([sample_augmentation(rng, Augmentation())[0] for _ in range(20000)])
    relative = 1.25 * np.array([train_crop_factor(d, 1.25) for d in draws])
    assert relative.min() >= 0.7 and relative.max() == pytest.approx(1.25)
    # P(draw >= 1.25) = 0.10 / 0.65 = 15.4 %; zoom-in only: never larger than the x1.25 crop.
    assert np.mean(relative == 1.25) == pytest.approx(0.10 / 0.65, abs=0.01)
    assert np.mean(relative) == pytest.approx((0.55 * (0.7 + 1.25) / 2 + 0.10 * 1.25) / 0.65, abs=0.005)


def test_dataset_crop_size_follows_the_scale_rule(release: Path) -> None:
    size = (64, 48)
    test = ExLPoseTopDown(release, release / "ann.json", condition="LL", input_size=size, heatmap_size=(16, 12), train=False)
    train = ExLPoseTopDown(release, release / "ann.json", condition="LL", input_size=size, heatmap_size=(16, 12), train=True)
    train.set_epoch(0, seed=3)
    x, y, w, h = BOXES[0]
    # Test crop by hand: widened 0.1 / 0.15 per side, then the short side grown to the 48:64 aspect.
    cw, ch = w * 1.2, h * 1.3
    test_width = max(cw, ch * 48 / 64)
    assert test[0]["meta"]["affine"][0, 0] == pytest.approx(48 / test_width)
    assert test[0]["meta"]["scale"] == 1.0
    seen = []
    for _ in range(40):
        s = train[0]
        rel = s["meta"]["scale"]
        assert 0.7 - 1e-9 <= rel <= 1.25 + 1e-9
        assert s["meta"]["affine"][0, 0] == pytest.approx(48 / (test_width * rel))
        seen.append(rel)
    assert max(seen) == pytest.approx(1.25) and min(seen) < 1.0


def test_padding_is_the_pixel_means_in_both_conditions(release: Path, tmp_path: Path) -> None:
    dets = tmp_path / "corner.json"
    dets.write_text(json.dumps([{"image_id": 100, "bbox": [0, 0, 40, 80], "score": 1.0}]))
    ds = ExLPoseTopDown(release, release / "ann.json", condition="pair", train=False, detections=dets)
    s = ds[0]
    # LL: padded after brightening, then / 255 (unnormalised).
    assert np.allclose(s["ll"][:, 0, 0].numpy(), PIXEL_MEANS / 255, atol=1e-5)
    # WL: padded, / 255, then the reference's Normalize.
    wl = (PIXEL_MEANS / 255 - np.array([0.3457, 0.3460, 0.3463])) / np.array([0.1477, 0.1482, 0.1483])
    assert np.allclose(s["wl"][:, 0, 0].numpy(), wl, atol=1e-5)


def test_reference_heatmap_cells_and_decoding_by_hand() -> None:
    # Crop x = 5.4 is the reference's u = 5.9: peak at floor(5.9 / 4) = 1; y = 9.0 -> u = 9.5 -> 2.
    hm = crop_to_heatmap(np.array([[5.4, 9.0]]), (64, 48), (16, 12), "reference")
    assert np.array_equal(np.floor(hm + 0.5), [[1.0, 2.0]])
    # Cell j decodes to u = 4j + 2, i.e. crop x = 4j + 1.5.
    assert np.allclose(heatmap_to_crop(np.array([[1.0, 2.0]]), (64, 48), (16, 12), "reference"), [[5.5, 9.5]])
    # Ours: nearest pixel of x / 4, decoded at 4j.
    assert np.array_equal(np.floor(crop_to_heatmap(np.array([[5.4, 9.0]]), (64, 48), (16, 12)) + 0.5), [[1.0, 2.0]])
    assert np.allclose(heatmap_to_crop(np.array([[1.0, 2.0]]), (64, 48), (16, 12)), [[4.0, 8.0]])
    u = np.array([[3.99, 0.0], [4.0, 0.0]]) - 0.5  # the cell boundary u = 4 lies at crop x = 3.5
    assert np.floor(crop_to_heatmap(u, (64, 48), (16, 12), "reference")[:, 0] + 0.5).tolist() == [0.0, 1.0]


@pytest.mark.parametrize("j", [(0, 0), (1, 3), (5, 7), (11, 15), (10, 14), (6, 2)])
def test_reference_targets_equal_cv2_gaussian_blur_of_a_delta(j: tuple[int, int]) -> None:
    # The reference: heatmap[y][x] = 1; cv2.GaussianBlur(heatmap, (k, k), 0); heatmap /= max / 255.
    x, y = j
    h, w = 16, 12
    px = np.array([[float(x if x < w else w - 1), float(y)]])
    targets, weight = cpn_heatmaps(px, np.array([True]), (h, w), border="reflect101")
    for level, k in enumerate((15, 11, 9, 7)):
        delta = np.zeros((h, w))
        delta[int(y), int(px[0, 0])] = 1.0
        ref = cv2.GaussianBlur(delta, (k, k), 0)
        ref = ref / (ref.max() / 255)
        assert np.allclose(targets[level, 0], ref, atol=1e-3), (k, j)
    assert weight.tolist() == [1.0]


def test_reference_convention_dataset_targets_match_cv2(release: Path) -> None:
    ds = ExLPoseTopDown(release, release / "ann.json", condition="LL", input_size=(64, 48), heatmap_size=(16, 12), train=False,
                        heatmap_convention="reference")
    s = ds[0]
    kp = s["keypoints"].numpy()
    for joint in np.flatnonzero(s["target_weight"].numpy()):
        u = kp[joint, :2] + 0.5
        cx, cy = int(np.floor(u[0] / 4)), int(np.floor(u[1] / 4))
        delta = np.zeros((16, 12))
        delta[cy, cx] = 1.0
        ref = cv2.GaussianBlur(delta, (7, 7), 0)
        assert np.allclose(s["heatmaps"][-1, joint].numpy(), ref / ref.max() * 255, atol=1e-3)


def test_global_mask_is_visible_joints_only(release: Path, tmp_path: Path) -> None:
    doc = json.loads((release / "ann.json").read_text())
    kp = doc["annotations"][0]["keypoints"]
    kp[2] = 1  # joint 0 labelled but not visible
    (tmp_path / "v1.json").write_text(json.dumps(doc))
    s = ExLPoseTopDown(release, tmp_path / "v1.json", condition="LL", train=False)[0]
    assert s["target_weight"][0] == 1.0 and s["visible_weight"][0] == 0.0
    others = s["target_weight"][1:]
    assert (s["visible_weight"][1:] == others).all()
