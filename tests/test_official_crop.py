"""The authors' test crop, decoding and input scale (``--crop/--decode/--input-scale official``), and imported
checkpoints running with them by default.

Expected values come from the authors' test loader's formulas (sohyun-l/ExLPose, pytorch-cpn
``dataloader/loader_eval_LL.py`` / ``loader_eval_WL.py``, ``256.192.model/test.py``), worked by hand on fixed
inputs in the comments, not from this package's code.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from baselines.checkpoint import checkpoint_origin, load_checkpoint, save_checkpoint
from baselines.cli import eval_app, predict_app, train_app
from baselines.config import make_config
from baselines.decode import decode_heatmaps
from baselines.inputs import inference_settings
from exlpose_data.datasets import ExLPoseTopDown
from exlpose_data.datasets.lowlight import PIXEL_MEANS, Normalisation
from exlpose_data.datasets.official_crop import official_affine, official_crop, official_input, official_rect, undivided_input
from exlpose_data.datasets.transforms import heatmap_to_image
from exlpose_data.errors import UsageError

from .test_baselines_train import make_tiny_release, one_torch_thread  # noqa: F401 (autouse fixture)


def test_rect_is_their_integer_box_widened_and_truncated():
    # GT_bbox = [int(10.7), int(5.2), int(20.3), int(18.1)] = [10, 5, 20, 18]; input 8x6, image 40x30 so add = 40.
    # width 10 * 1.2 = 12, height 13 * 1.3 = 16.9; 16.9 / 8 > 12 / 6, so size 16.9 on base 8.
    # centre (15 + 40, 11.5 + 40); half sizes 16.9 / 2 / 8 * 6 = 6.3375 and 8.45:
    # x: int(48.6625) = 48, int(61.3375) = 61; y: int(43.05) = 43, int(59.95) = 59; minus add.
    assert official_rect((10.7, 5.2, 9.6, 12.9), (30, 40), (8, 6)) == (8, 3, 21, 19)
    # The release-sized case: box (20, 15, 40, 90) in a 160x120 image, input 64x48: size 90 * 1.3 = 117 on base 64,
    # centre (40, 60) + 160; half sizes 117 / 2 / 64 * 48 = 43.875 and 58.5 -> x 156..243, y 161..278.
    assert official_rect((20, 15, 40, 90), (120, 160), (64, 48)) == (-4, 1, 83, 118)
    # A box thinner than a pixel: their int() ends coincide (their resize fails); one pixel here.
    x0, y0, x1, y1 = official_rect((5.2, 5.1, 0.3, 0.4), (20, 20), (8, 6))
    assert x1 - x0 >= 1 and y1 - y0 >= 1


def _image() -> np.ndarray:
    """12x10 BGR uint8 image whose pixels name their position: R = 10 y + x, G = 200 - R, B = 7."""
    y, x = np.mgrid[0:10, 0:12]
    r = 10 * y + x
    return np.stack([np.full_like(r, 7), 200 - r, r], axis=-1).astype(np.uint8)


def test_which_pixels_end_up_where():
    # Box (2.9, 1.4, 4.6, 4.9) -> GT_bbox [2, 1, 7, 6]; input 8x6, image 12x10 (add 12): width 5 * 1.2 = 6 on base 6
    # (6.5 / 8 < 6 / 6), centre (4.5, 3.5) + 12, half sizes 3 and 4 -> x int(13.5) = 13 .. int(19.5) = 19,
    # y int(11.5) = 11 .. int(19.5) = 19: the rectangle x 1..6, y -1..6 (ends exclusive 7, 7), exactly 6x8, so the
    # resize copies it: crop[i, j] = image[i - 1, j + 1], row 0 the padding.
    img = _image()
    rect = official_rect((2.9, 1.4, 4.6, 4.9), img.shape[:2], (8, 6))
    assert rect == (1, -1, 7, 7)
    r = 10 * np.arange(0, 7)[:, None] + np.arange(1, 7)[None, :]  # R of image rows 0..6, columns 1..6
    # WL: 8-bit, padded with the pixel means rounded (123, 116, 103), divided by 255.
    _, wl = official_crop(img, img.shape[:2], np.zeros(3), (2.9, 1.4, 4.6, 4.9), "WL", input_size=(8, 6), ll_scaling=None,
                          wl_normalisation=None, pad_rgb_255=PIXEL_MEANS, divide="ours")
    assert wl.shape == (8, 6, 3) and wl.dtype == np.float32
    np.testing.assert_array_equal(wl[0], np.tile(np.float32([123, 116, 103]) / np.float32(255), (6, 1)))
    np.testing.assert_array_equal(wl[1:, :, 0], r.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(wl[1:, :, 1], (200 - r).astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(wl[1:, :, 2], np.float32(7) / np.float32(255))
    # LL: brightened by 255 * 0.4 / mean per channel first, padded with the means as they are.
    means = np.array([40.0, 80.0, 10.0])  # RGB
    gain = 255 * 0.4 / means
    _, ll = official_crop(img, img.shape[:2], means, (2.9, 1.4, 4.6, 4.9), "LL", input_size=(8, 6), ll_scaling=None,
                          wl_normalisation=None, pad_rgb_255=PIXEL_MEANS, divide="ours")
    np.testing.assert_array_equal(ll[0], np.tile(np.float32(PIXEL_MEANS) / np.float32(255), (6, 1)))  # ll_scaling None: gain 1
    from exlpose_data.datasets.lowlight import LowLightScaling

    _, ll = official_crop(img, img.shape[:2], means, (2.9, 1.4, 4.6, 4.9), "LL", input_size=(8, 6), ll_scaling=LowLightScaling(),
                          wl_normalisation=None, pad_rgb_255=PIXEL_MEANS, divide="ours")
    np.testing.assert_allclose(ll[0], np.tile(np.asarray(PIXEL_MEANS) / 255, (6, 1)), rtol=1e-6)
    np.testing.assert_allclose(ll[1:, :, 0], r * gain[0] / 255, rtol=1e-6)
    np.testing.assert_allclose(ll[1:, :, 1], (200 - r) * gain[1] / 255, rtol=1e-6)
    np.testing.assert_allclose(ll[1:, :, 2], 7 * gain[2] / 255, rtol=1e-6)


def test_resize_repeats_the_rectangle_edge_where_a_warp_reads_beyond_it():
    # A 2x upscale of a rectangle: cv2.resize's first output column reads source x = (0 + 0.5) / 2 - 0.5 < 0, which
    # it clamps to the rectangle's own first column; the neighbour outside the rectangle never enters.
    img = np.zeros((10, 12, 3), np.uint8)
    img[:, :, 2] = np.arange(12, dtype=np.uint8)[None, :] * 20  # R = 20 x
    rect = (4, 2, 7, 6)  # 3 wide, 4 high -> 6x8
    from exlpose_data.datasets.official_crop import official_cut

    crop = official_cut(img, img.shape[:2], rect, (8, 6), brighten_rgb=None, pad_rgb_255=None)
    # columns: x = (j + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, 1.75, 2.25 -> clamped 0, then 80 + 20 x
    np.testing.assert_allclose(crop[0, :, 0], [80, 85, 95, 105, 115, 120], atol=0.5)


def test_affine_decodes_to_their_image_coordinates():
    # Their test.py: x = (4 j + 2) / 192 * (x1 - x0) + x0 (and so for y) for heatmap pixel j.
    rect = (-4, 1, 83, 118)
    hm = np.array([[0.0, 0.0], [11.25, 30.5], [47.0, 63.0]])
    xy = heatmap_to_image(hm, official_affine(rect, (256, 192)), (256, 192), (64, 48), "reference")
    expected = np.column_stack([(4 * hm[:, 0] + 2) / 192 * 87 - 4, (4 * hm[:, 1] + 2) / 256 * 117 + 1])
    np.testing.assert_allclose(xy, expected, atol=1e-9)


def test_their_input_scale_divides_only_above_one():
    dim = np.full((2, 2, 3), 0.75, np.float32)  # a crop whose maximum is not above 1 on the 0-255 scale
    bright = np.full((2, 2, 3), 51.0, np.float32)
    np.testing.assert_array_equal(official_input(dim, None, divide="official"), dim)
    np.testing.assert_array_equal(official_input(dim, None, divide="ours"), dim / np.float32(255))
    np.testing.assert_array_equal(official_input(bright, None, divide="official"), np.full((2, 2, 3), 0.2, np.float32))
    norm = Normalisation(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    np.testing.assert_allclose(official_input(bright, norm, divide="official"), (0.2 - 0.5) / 0.25, rtol=1e-6)
    # On our crop: LL input = raw * gain; their crop holds raw * 255 * gain, here 0.6 at most -> kept undivided.
    raw = np.full((2, 2, 3), 3.0, np.float32)
    gain = np.full(3, 0.2 / 255)
    ours = (raw * gain).astype(np.float32)
    np.testing.assert_allclose(undivided_input(ours, raw, gain * 255, np.zeros(3)), 0.6, rtol=1e-6)
    np.testing.assert_array_equal(undivided_input(ours, raw * 10, gain * 255, np.zeros(3)), ours)


def _well_map() -> np.ndarray:
    """16x12 map with no positive value: -1 everywhere, -100 at (row 9, column 4), -0.5 at (row 2, column 10)."""
    hm = np.full((16, 12), -1.0, np.float32)
    hm[9, 4] = -100.0
    hm[2, 10] = -0.5
    return hm


def test_decode_of_a_map_with_no_positive_value():
    # Theirs divides by the maximum (-0.5): the map becomes 2 everywhere, 1 at (2, 10) and 200 at the well (9, 4),
    # so the blurred peak is the well; the second highest blurred value is one of its four neighbours, which
    # moves the joint a quarter pixel along one axis. Its score is the unblurred value there / 255 + 0.5.
    maps = _well_map()[None, None]
    coords, scores = decode_heatmaps(maps, decode="official")
    x, y = coords[0, 0]
    assert abs(x - 4) + abs(y - 9) == pytest.approx(0.25)
    assert scores[0, 0] == pytest.approx(-100 / 255 + 0.5, rel=1e-6)
    # Ours blurs the map unnormalised: the zero padding is its highest value, so the joint lands on the map's edge.
    ours, _ = decode_heatmaps(maps, decode="ours")
    ox, oy = ours[0, 0]
    assert ox in (0.0, 11.0) or oy in (0.0, 15.0)
    # A map with a positive peak decodes the same either way.
    positive = -_well_map()[None, None]
    np.testing.assert_array_equal(decode_heatmaps(positive, decode="official")[0], decode_heatmaps(positive, decode="ours")[0])
    with pytest.raises(ValueError, match="unknown decode"):
        decode_heatmaps(maps, decode="theirs")


def test_origin_marker_and_defaults():
    cfg = make_config({"variant": "lsbn", "backbone": "resnet18"})
    assert checkpoint_origin({"format": "exlpose-cpn"}) == "trained"
    assert checkpoint_origin({"origin": "official"}) == "official"
    assert checkpoint_origin({"imported_from": "ref.pth.tar"}) == "official"  # imported before the marker existed
    official = inference_settings(cfg, "official")
    assert (official.crop, official.flip_test, official.decode, official.input_scale) == ("official",) * 4
    assert inference_settings(cfg, "official", crop="ours").as_dict() == {
        "crop": "ours", "flip_test": "official", "decode": "official", "input_scale": "official", "origin": "official"}
    trained = inference_settings(cfg, "trained")
    assert (trained.crop, trained.flip_test, trained.decode, trained.input_scale) == ("ours", cfg.flip_test, "ours", "ours")
    with pytest.raises(UsageError, match="--crop 'theirs'"):
        inference_settings(cfg, "trained", crop="theirs")


def test_dataset_cuts_their_crop(tmp_path):
    root = make_tiny_release(tmp_path / "release", n_images=1)
    ann = root / "annotations" / "ExLPose_test_LL-A.json"
    with pytest.raises(UsageError, match="test crop"):
        ExLPoseTopDown(root, ann, condition="LL", train=True, crop_mode="official")
    ds = ExLPoseTopDown(root, ann, condition="pair", train=False, input_size=(64, 48), heatmap_size=(16, 12), crop_mode="official")
    ours = ExLPoseTopDown(root, ann, condition="pair", train=False, input_size=(64, 48), heatmap_size=(16, 12))
    sample = ds[0]  # box (20, 15, 40, 90): rectangle x -4..83, y 1..118 (test_rect_is_their_integer_box_widened_and_truncated)
    rx, ry = 48 / 87, 64 / 117
    np.testing.assert_allclose(sample["meta"]["affine"], [[rx, 0, 4 * rx - 0.5], [0, ry, -ry - 0.5]], atol=1e-12)
    # Output column 0 reads the cut at x = 0.5 * 87 / 48 - 0.5 = 0.41, between its columns 0 and 1: image x -4 and -3,
    # both padding, so the LL input there is the pixel means / 255 and the WL input their rounded values normalised.
    ll0 = sample["ll"][:, :, 0].numpy()
    np.testing.assert_allclose(ll0, np.tile(np.asarray(PIXEL_MEANS)[:, None] / 255, (1, 64)), rtol=1e-5)
    wl_pad = (np.array([123, 116, 103]) / 255 - np.array([0.3457, 0.3460, 0.3463])) / np.array([0.1477, 0.1482, 0.1483])
    np.testing.assert_allclose(sample["wl"][:, :, 0].numpy(), np.tile(wl_pad[:, None], (1, 64)), rtol=1e-5)
    # Our crop of the same box differs (the float box, one warp).
    assert not np.allclose(ours[0]["meta"]["affine"], sample["meta"]["affine"])
    # The default stays ours.
    assert ExLPoseTopDown(root, ann, condition="LL", train=False).crop_mode == "ours"


@pytest.mark.slow
def test_imported_checkpoint_evaluates_and_predicts_the_authors_way(tmp_path):
    from .test_import_official import _randomised

    root = make_tiny_release(tmp_path / "release", n_images=1)
    state = {f"module.{k}": v for k, v in _randomised(True).state_dict().items()}
    torch.save({"epoch": 32, "state_dict": state}, tmp_path / "ref.pth.tar")
    runner = CliRunner()
    ours_ckpt = tmp_path / "ours.pth"
    r = runner.invoke(train_app, ["import-official", str(tmp_path / "ref.pth.tar"), "--out", str(ours_ckpt), "--input-size", "128x96"])
    assert r.exit_code == 0, r.output
    assert load_checkpoint(ours_ckpt)["origin"] == "official"
    args = ["model", str(ours_ckpt), "--dataset", str(root), "--splits", "LL-A", "--workers", "0", "--batch-size", "2"]
    r = runner.invoke(eval_app, [*args, "--save-predictions", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    assert "official checkpoint" in r.stdout and "crop official, flip test official, decode official, input scale official" in r.stdout
    table = json.loads((tmp_path / "p" / "evaluation.json").read_text())
    assert (table["crop"], table["flip_test"], table["decode"], table["input_scale"], table["origin"]) == ("official",) * 5
    official_preds = json.loads((tmp_path / "p" / "predictions_LL-A.json").read_text())
    official_ap = table["AP"]["LL-A"]
    # exlpose-eval table runs it the same way
    r = runner.invoke(eval_app, ["table", str(ours_ckpt), "--dataset", str(root), "--splits", "LL-A", "--workers", "0",
                                 "--batch-size", "2", "--out", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    (row,) = json.loads((tmp_path / "t" / "table.json").read_text())["rows"]
    assert (row["crop"], row["flip_test"], row["decode"], row["input_scale"], row["origin"]) == ("official",) * 5
    assert row["AP"]["LL-A"] == official_ap
    # and so does the trainer's --test-only
    r = runner.invoke(train_app, ["--resume", str(ours_ckpt), "--test-only", "--dataset", str(root), "--val-splits", "LL-A",
                                  "--workers", "0", "--batch-size", "4", "--no-progress"])
    assert r.exit_code == 0, r.output
    record = json.loads(r.stdout.strip().splitlines()[-1])
    assert (record["crop"], record["flip_test"], record["decode"], record["input_scale"]) == ("official",) * 4
    assert record["AP/LL-A"] == official_ap
    r = runner.invoke(eval_app, [*args, "--crop", "ours", "--json", "--save-predictions", str(tmp_path / "q")])
    assert r.exit_code == 0, r.output
    table = json.loads(r.stdout)
    assert table["crop"] == "ours" and table["flip_test"] == "official"
    assert json.loads((tmp_path / "q" / "predictions_LL-A.json").read_text()) != official_preds
    r = runner.invoke(eval_app, [*args, "--crop", "theirs"])
    assert r.exit_code == 2 and "--crop 'theirs'" in r.output
    # exlpose-predict: the same defaults, named in its header and its settings.
    dark = sorted((root / "dark").glob("*.png"))[:1]
    r = runner.invoke(predict_app, [str(ours_ckpt), str(dark[0]), "--out", str(tmp_path / "pred"), "--no-overlays"])
    assert r.exit_code == 0, r.output
    assert "crop official, flip test official" in r.output
    settings = json.loads((tmp_path / "pred" / "settings.json").read_text())
    assert (settings["crop"], settings["flip_test"], settings["decode"], settings["input_scale"]) == ("official",) * 4


@pytest.mark.slow
def test_trained_checkpoint_keeps_our_defaults(tmp_path):
    from baselines.models import build_cpn
    from baselines.predict import predict_to_folder

    root = make_tiny_release(tmp_path / "release", n_images=1)
    cfg = make_config({"variant": "lsbn", "backbone": "resnet18", "input_size": (64, 48), "heatmap_size": (16, 12)})
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "c.pth", model=build_cpn("resnet18", lsbn=True, heatmap_size=(16, 12)).state_dict(), config=cfg.to_dict(), epoch=0)
    lines: list[str] = []
    dark = sorted((root / "dark").glob("*.png"))[:1]
    predict_to_folder(ckpt, dark, tmp_path / "out", boxes={dark[0].name: [[20, 15, 40, 90]]}, overlays=False, notify=lines.append)
    assert lines == ["c.pth (trained checkpoint): crop ours, flip test ours, decode ours, input scale ours"]
    settings = json.loads((tmp_path / "out" / "settings.json").read_text())
    assert settings["crop"] == "ours" and settings["origin"] == "trained"
