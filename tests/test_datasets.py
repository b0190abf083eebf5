"""Tests of exlpose_data.datasets and ``exlpose pack`` on small synthetic releases (320x200 PNGs)."""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from exlpose_data.cli.pack import app as pack_app
from exlpose_data.datasets import Augmentation, ExLPoseImages, ExLPoseTopDown, LowLightScaling, collate_images, heatmap_to_image, invert_affine, write_pack
from exlpose_data.datasets.lowlight import WL_NORMALISATIONS, ll_gains
from exlpose_data.datasets.sources import decode_image
from exlpose_data.datasets.targets import cpn_heatmaps
from exlpose_data.datasets.transforms import apply_affine, crop_to_heatmap
from exlpose_data.errors import InputError, UsageError
from exlpose_data.imageio import image_size
from exlpose_data.keypoints import crowdpose14
from exlpose_data.layout import write_pairs
from exlpose_data.naming import ImageName, parse_name

DATA = Path(__file__).parent / "data"
W, H = 320, 200
K = crowdpose14().num_keypoints
# Two people per image: boxes (x, y, w, h); joints spread over each box.
BOXES = [(40.0, 30.0, 70.0, 140.0), (180.0, 20.0, 90.0, 160.0)]


def _joints(box: tuple[float, float, float, float], rng: np.random.Generator) -> np.ndarray:
    x, y, w, h = box
    kp = np.zeros((K, 3))
    kp[:, 0] = x + rng.uniform(0.1, 0.9, K) * w
    kp[:, 1] = y + rng.uniform(0.1, 0.9, K) * h
    kp[:, 2] = 2
    kp[3, 2] = 0  # one unlabelled joint per person
    kp[3, :2] = 0
    return kp


def _names(n: int) -> list[tuple[ImageName, ImageName]]:
    out = []
    for i in range(n):
        wl_gain = (6.0, 18.0, 30.0)[i % 3]  # LL-N, LL-H, LL-E
        bright = ImageName(date="0212", site="park", video=5, ratio=400, frame=10 + i, gain_db=wl_gain, exposure_us=1250, condition="WL")
        out.append((bright, bright.twin()))
    return out


def make_release(root: Path, *, n_images: int = 3, pair_list: bool = True, ll_names: str = "bright", same_pixels: bool = False) -> Path:
    """A release-layout root with textured WL images, dark LL twins, one annotation file; returns its path.

    Each joint is marked by a white dot in both images, so a crop's geometry can be checked on its pixels.
    """
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i, (bright, dark) in enumerate(_names(n_images)):
        wl = cv2.GaussianBlur(rng.integers(0, 200, (H, W, 3), dtype=np.uint8), (5, 5), 0)
        for j, box in enumerate(BOXES):
            kp = _joints(box, rng)
            for x, y, v in kp:
                if v > 0:
                    cv2.circle(wl, (int(round(x)), int(round(y))), 2, (255, 255, 255), -1)
            anns.append({"id": len(anns), "image_id": 100 + i, "category_id": 1, "keypoints": kp.ravel().tolist(), "bbox": list(box), "num_keypoints": K - 1, "iscrowd": 0})
        ll = wl.copy() if same_pixels else (wl // 40).astype(np.uint8)
        for name, img in ((bright, wl), (dark, ll)):
            (root / name.relpath).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / name.relpath), img)
        images.append({"id": 100 + i, "file_name": (bright if ll_names == "bright" else dark).relpath, "width": W, "height": H, "crowdIndex": 0})
    # An instance without labelled joints is skipped by the top-down dataset.
    anns.append({"id": len(anns), "image_id": 100, "category_id": 1, "keypoints": [0] * (3 * K), "bbox": [1, 1, 5, 5], "num_keypoints": 0, "iscrowd": 0})
    if pair_list:
        write_pairs(root / "brightPath2darkPath.txt", [(b.relpath, d.relpath) for b, d in _names(n_images)])
    (root / "ann.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": [crowdpose14().coco_category()]}))
    return root


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_release(tmp_path_factory.mktemp("rel"))


@pytest.fixture(scope="module")
def pack_file(release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pack") / "pack.h5"
    result = CliRunner().invoke(pack_app, [str(release), "--out", str(out), "--ann", str(release / "ann.json"), "-q"])
    assert result.exit_code == 0, result.output
    return out


def test_pair_sample_shapes_dtypes_and_meta(release: Path) -> None:
    ds = ExLPoseTopDown(release, release / "ann.json", condition="pair")
    assert len(ds) == 6  # 3 images x 2 people; the unlabelled instance is skipped
    s = ds[2]
    assert s["ll"].shape == (3, 256, 192) and s["ll"].dtype == torch.float32
    assert s["wl"].shape == (3, 256, 192) and s["wl"].dtype == torch.float32
    assert s["heatmaps"].shape == (4, K, 64, 48) and s["heatmaps"].dtype == torch.float32
    assert s["target_weight"].shape == (K,) and s["target_weight"][3] == 0 and s["target_weight"].sum() > 0
    assert s["keypoints"].shape == (K, 3)
    valid = s["target_weight"] > 0
    assert torch.allclose(s["heatmaps"].amax(dim=(2, 3))[:, valid], torch.tensor(255.0))
    m = s["meta"]
    bright, dark = _names(3)[1]
    assert m["image_id"] == 101 and m["file_name"] == bright.relpath
    assert m["ll_file"] == dark.relpath and m["wl_file"] == bright.relpath
    assert np.array_equal(m["box"], np.array(BOXES[0]))
    assert m["affine"].shape == (2, 3)
    assert m["gain_db"] == 18.0 and m["ll_gain_db"] == dark.gain_db
    assert (m["exposure_us"], m["ratio"], m["split"]) == (1250, 400, "LL-H")
    assert [ds[i]["meta"]["split"] for i in (0, 2, 4)] == ["LL-N", "LL-H", "LL-E"]


def test_heatmap_peak_and_pixels_follow_keypoints_under_augmentation(release: Path) -> None:
    aug = Augmentation(scale_range=(0.7, 1.35), rotation_deg=40.0, flip_prob=0.5)
    ds = ExLPoseTopDown(release, release / "ann.json", condition="WL", augmentation=aug, wl_normalisation=None)
    torch.manual_seed(3)
    flips = set()
    checked = 0
    for _ in range(4):
        for i in range(len(ds)):
            s = ds[i]
            flips.add(s["meta"]["flipped"])
            kp = s["keypoints"].numpy()
            for j in np.flatnonzero(s["target_weight"].numpy()):
                for level in range(4):
                    hm = s["heatmaps"][level, j].numpy()
                    py, px = np.unravel_index(np.argmax(hm), hm.shape)
                    assert abs(px - kp[j, 0] / 4) <= 1 and abs(py - kp[j, 1] / 4) <= 1
                x, y = int(round(kp[j, 0])), int(round(kp[j, 1]))
                if 0 <= x < 192 and 0 <= y < 256:
                    # The white joint marker sits under the transformed keypoint.
                    assert s["wl"][:, y, x].min() > 0.9
                    checked += 1
            # The affine maps the original annotation (after the flip permutation) onto the keypoints.
            orig = ds.samples[i].keypoints
            if s["meta"]["flipped"]:
                orig = orig[crowdpose14().flip_index()]
            assert np.allclose(apply_affine(orig[:, :2], s["meta"]["affine"]), kp[:, :2], atol=1e-3)
            back = apply_affine(kp[:, :2], invert_affine(s["meta"]["affine"]))
            assert np.allclose(back, orig[:, :2], atol=1e-3)
            from_hm = heatmap_to_image(kp[:, :2] / 4, s["meta"]["affine"], (256, 192), (64, 48))
            assert np.allclose(from_hm, orig[:, :2], atol=1e-3)
    assert flips == {True, False} and checked > 200


def test_flip_swaps_left_and_right(release: Path) -> None:
    plain = ExLPoseTopDown(release, release / "ann.json", condition="LL", augmentation=Augmentation(scale_range=None))
    flipped = ExLPoseTopDown(release, release / "ann.json", condition="LL", augmentation=Augmentation(scale_range=None, flip_prob=1.0))
    a, b = plain[1], flipped[1]
    assert b["meta"]["flipped"] and not a["meta"]["flipped"]
    perm = crowdpose14().flip_index()
    assert list(perm[:2]) == [1, 0] and perm[12] == 12 and perm[13] == 13
    ka, kb = a["keypoints"].numpy(), b["keypoints"].numpy()
    assert np.allclose(kb[:, 0], 191 - ka[perm, 0], atol=1e-4)
    assert np.allclose(kb[:, 1], ka[perm, 1], atol=1e-4)
    assert np.array_equal(b["target_weight"].numpy(), a["target_weight"].numpy()[perm])
    # The image is mirrored too.
    assert torch.allclose(b["ll"], a["ll"].flip(-1), atol=1e-4)


def test_pair_crops_share_geometry(tmp_path: Path) -> None:
    root = make_release(tmp_path, n_images=1, same_pixels=True)
    aug = Augmentation(scale_range=(0.7, 1.35), rotation_deg=30.0, flip_prob=0.5)
    ds = ExLPoseTopDown(root, root / "ann.json", condition="pair", augmentation=aug, ll_scaling=None, wl_normalisation=None)
    torch.manual_seed(0)
    for _ in range(3):
        for i in range(len(ds)):
            s = ds[i]
            assert torch.equal(s["ll"], s["wl"])


def test_set_epoch_makes_in_process_draws_depend_on_seed_epoch_and_rank(release: Path) -> None:
    aug = Augmentation(scale_range=(0.7, 1.35), rotation_deg=30.0, flip_prob=0.5)
    ds = ExLPoseTopDown(release, release / "ann.json", condition="LL", augmentation=aug, input_size=(64, 48), heatmap_size=(16, 12))

    def draws() -> list[tuple[float, float, bool]]:
        return [(s["meta"]["scale"], s["meta"]["rotation_deg"], s["meta"]["flipped"]) for s in (ds[i] for i in range(len(ds)))]

    ds.set_epoch(0, seed=5)
    epoch0 = draws()
    ds.set_epoch(1, seed=5)
    epoch1 = draws()
    # A resumed run starts at epoch 1 without having drawn epoch 0, and with another torch seed: same draws.
    fresh = ExLPoseTopDown(release, release / "ann.json", condition="LL", augmentation=aug, input_size=(64, 48), heatmap_size=(16, 12))
    torch.manual_seed(123)
    fresh.set_epoch(1, seed=5)
    assert [(s["meta"]["scale"], s["meta"]["rotation_deg"], s["meta"]["flipped"]) for s in (fresh[i] for i in range(len(fresh)))] == epoch1
    assert epoch1 != epoch0
    ds.set_epoch(1, seed=5, rank=1)
    assert draws() != epoch1  # another process of the same run
    ds.set_epoch(1, seed=6)
    assert draws() != epoch1
    with pytest.raises(UsageError, match="epoch and rank must be non-negative"):
        ds.set_epoch(-1)


def test_low_light_scaling_mean_and_all_black_guard(release: Path, tmp_path: Path) -> None:
    ds = ExLPoseImages(release, release / "ann.json", condition="pair")
    s = ds[0]
    assert s["ll"].shape == (3, H, W)
    assert torch.allclose(s["ll"].double().mean(dim=(1, 2)), torch.full((3,), 0.4, dtype=torch.float64), atol=1e-5)
    assert s["ll"].max() > 1.0  # unclipped
    assert s["boxes"].shape == (3, 4) and s["keypoints"].shape == (3, K, 3)
    wl_raw = cv2.cvtColor(cv2.imread(str(release / s["meta"]["wl_file"])), cv2.COLOR_BGR2RGB) / 255.0
    # The reference's own WL statistics by default (its loaders' Normalize), ImageNet's on request.
    expected = (wl_raw - np.array([0.3457, 0.3460, 0.3463])) / np.array([0.1477, 0.1482, 0.1483])
    assert np.allclose(s["wl"].numpy().transpose(1, 2, 0), expected, atol=1e-5)
    imagenet = ExLPoseImages(release, release / "ann.json", condition="WL", wl_normalisation=WL_NORMALISATIONS["imagenet"])[0]
    expected = (wl_raw - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert np.allclose(imagenet["wl"].numpy().transpose(1, 2, 0), expected, atol=1e-5)
    # A crop carries the whole image's gain (0.4 / whole-image mean), not one from its own pixels.
    crop = ExLPoseTopDown(release, release / "ann.json", condition="LL", train=False)[0]["ll"]
    raw = ExLPoseTopDown(release, release / "ann.json", condition="LL", train=False, ll_scaling=None)[0]["ll"]
    whole = cv2.cvtColor(cv2.imread(str(release / s["meta"]["ll_file"])), cv2.COLOR_BGR2RGB).reshape(-1, 3).mean(axis=0) / 255
    assert np.allclose(crop.numpy(), raw.numpy() * (0.4 / whole)[:, None, None], rtol=1e-5, atol=1e-6)
    gains = ll_gains(np.zeros(3), LowLightScaling())
    assert np.all(np.isfinite(gains))
    black = tmp_path / "black"
    make_release(black, n_images=1)
    dark = black / _names(1)[0][1].relpath
    cv2.imwrite(str(dark), np.zeros((H, W, 3), np.uint8))
    z = ExLPoseTopDown(black, black / "ann.json", condition="LL", pad=None)[0]["ll"]
    assert torch.isfinite(z).all() and float(z.abs().max()) == 0.0


def test_packed_samples_identical_to_files(release: Path, pack_file: Path) -> None:
    aug = Augmentation(scale_range=(0.7, 1.35), rotation_deg=30.0, flip_prob=0.5)
    kw = dict(condition="pair", augmentation=aug)
    plain = ExLPoseTopDown(release, release / "ann.json", **kw)
    packed = ExLPoseTopDown(release, release / "ann.json", pack=pack_file, **kw)
    for ds in (plain, packed):
        torch.manual_seed(11)
        ds.out = [ds[i] for i in range(len(ds))] + [ds[i] for i in range(len(ds))]
    for a, b in zip(plain.out, packed.out):
        for key in ("ll", "wl", "heatmaps", "target_weight", "keypoints"):
            assert torch.equal(a[key], b[key]), key
        assert np.array_equal(a["meta"]["affine"], b["meta"]["affine"])
    # Crops near the border (out-of-image padding) are covered: the first box starts 40 px from the edge.
    assert any(s["meta"]["scale"] > 1.2 for s in plain.out)
    whole_a, whole_b = ExLPoseImages(release, release / "ann.json", "pair")[1], ExLPoseImages(release, release / "ann.json", "pair", pack=pack_file)[1]
    assert torch.equal(whole_a["ll"], whole_b["ll"]) and torch.equal(whole_a["wl"], whole_b["wl"])


def test_dataloader_two_workers(release: Path, pack_file: Path) -> None:
    for pack in (None, pack_file):
        ds = ExLPoseTopDown(release, release / "ann.json", condition="pair", pack=pack)
        loader = DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
        batches = list(loader)
        assert len(batches) == 3
        b = batches[0]
        assert b["ll"].shape == (2, 3, 256, 192) and b["heatmaps"].shape == (2, 4, K, 64, 48)
        assert b["meta"]["affine"].shape == (2, 2, 3) and b["meta"]["split"] == ["LL-N", "LL-N"]
        scales = torch.cat([x["meta"]["scale"] for x in batches])
        # Workers draw from their own streams: no two samples got the same scale.
        assert len(set(scales.tolist())) == len(ds)
    whole = ExLPoseImages(release, release / "ann.json", "LL", transforms=lambda s: {**s, "seen": True})
    images = DataLoader(whole, batch_size=2, num_workers=2, collate_fn=collate_images)
    batches = list(images)
    assert [len(b) for b in batches] == [2, 1] and all(s["seen"] for b in batches for s in b)


def test_missing_files_reported_at_construction(tmp_path: Path) -> None:
    root = make_release(tmp_path, n_images=3)
    for _, dark in _names(3)[:2]:
        (root / dark.relpath).unlink()
    with pytest.raises(InputError, match=r"^2 of 6 image files are missing under .*dark/imgs_0212_park_vid000005_exp400_dark_000010"):
        ExLPoseTopDown(root, root / "ann.json", condition="pair")
    # WL alone is complete.
    assert len(ExLPoseTopDown(root, root / "ann.json", condition="WL")) == 6


def test_pickled_dataset_holds_no_open_handles(release: Path, pack_file: Path) -> None:
    ds = ExLPoseTopDown(release, release / "ann.json", condition="pair", pack=pack_file, train=False)
    first = ds[0]
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.source._map is None and copy._rng is None
    assert torch.equal(copy[0]["ll"], first["ll"])
    files = ExLPoseTopDown(release, release / "ann.json", condition="pair", train=False)
    files[0]
    assert len(files.source._cache) == 2 and len(pickle.loads(pickle.dumps(files)).source._cache) == 0


def test_stale_pack_rejected(tmp_path: Path) -> None:
    root = make_release(tmp_path / "r", n_images=1)
    pack = write_pack(root, [n.relpath for n in _names(1)[0]], tmp_path / "p.h5")
    dark = root / _names(1)[0][1].relpath
    cv2.imwrite(str(dark), np.zeros((H, W, 3), np.uint8))
    with pytest.raises(InputError, match="stale pack: 1 image"):
        ExLPoseTopDown(root, root / "ann.json", condition="pair", pack=pack)
    dark.unlink()  # a pack works without the images
    assert len(ExLPoseTopDown(root, root / "ann.json", condition="pair", pack=pack)) == 2


def test_pack_missing_image_reported(release: Path, pack_file: Path, tmp_path: Path) -> None:
    bigger = make_release(tmp_path, n_images=4)
    with pytest.raises(InputError, match=r"^2 of 8 image files are missing from the pack"):
        ExLPoseTopDown(bigger, bigger / "ann.json", condition="pair", pack=pack_file)
    with h5py.File(pack_file, "r") as f:
        assert f["images/0"].dtype == np.uint8 and f["images/0"].shape == (H, W, 3) and f["images/0"].chunks is None


def test_dark_named_file_and_grammar_pairing(tmp_path: Path) -> None:
    root = make_release(tmp_path, n_images=2, pair_list=False, ll_names="dark")
    ds = ExLPoseTopDown(root, root / "ann.json", condition="pair")
    bright, dark = _names(2)[0]
    m = ds[0]["meta"]
    assert m["file_name"] == dark.relpath and m["wl_file"] == bright.relpath and m["gain_db"] == 6.0


def test_oc_set_index(tmp_path: Path) -> None:
    doc = json.loads((DATA / "ExLPose-OC_test_A7M3.json").read_text())
    for img in doc["images"]:
        p = tmp_path / img["file_name"]
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), np.full((40, 60, 3), 30, np.uint8))
    ann = DATA / "ExLPose-OC_test_A7M3.json"
    # Small stand-ins for the 6000x4000 JPEGs.
    ds = ExLPoseTopDown(tmp_path, ann, condition="LL", train=False, check_sizes=False)
    labelled = sum(1 for a in doc["annotations"] if any(v > 0 for v in a["keypoints"][2::3]) and not a["iscrowd"])
    assert len(ds) == labelled and labelled > 400
    m = ds[0]["meta"]
    assert m["file_name"].startswith("PID_A7M3/") and m["ll_file"] == m["file_name"] and m["wl_file"] == ""
    assert math.isnan(m["gain_db"]) and m["split"] == "" and m["ratio"] == -1
    with pytest.raises(UsageError, match="no WL file"):
        ExLPoseTopDown(tmp_path, ann, condition="WL")


def test_official_ll_test_file_loads_dark_twins(tmp_path: Path) -> None:
    """The real LL-A file names bright images; with grammar pairing the LL condition reads their dark twins."""
    ann = DATA / "ExLPose_test_LL-All.json"
    doc = json.loads(ann.read_text())
    tiny = np.full((4, 4, 3), 7, np.uint8)
    for img in doc["images"]:
        bright = parse_name(img["file_name"])
        for name in (bright, bright.twin()):
            (tmp_path / name.relpath).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / name.relpath), tiny)
    ds = ExLPoseTopDown(tmp_path, ann, condition="pair", train=False, check_sizes=False)  # 4x4 stand-ins
    splits = [img.split for img in ds.index.images]
    assert (splits.count("LL-N"), splits.count("LL-H"), splits.count("LL-E")) == (167, 169, 155)
    assert all(img.ll_path.startswith("dark/") and img.wl_path == img.file_name for img in ds.index.images)
    labelled = sum(1 for a in doc["annotations"] if any(v > 0 for v in a["keypoints"][2::3]))
    assert len(ds) == labelled and len(ds) > 2700
    assert ds[0]["ll"].shape == (3, 256, 192)


def test_detections_replace_boxes(release: Path, tmp_path: Path) -> None:
    dets = [
        {"image_id": 100, "category_id": 1, "bbox": [30, 20, 80, 150], "score": 0.9},
        {"image_id": 100, "category_id": 1, "bbox": [170, 10, 100, 170], "score": 0.95},
        {"image_id": 101, "category_id": 1, "bbox": [170, 10, 100, 170], "score": 0.05},
    ]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    ds = ExLPoseTopDown(release, release / "ann.json", condition="LL", train=False, detections=path, min_score=0.1)
    assert len(ds) == 2
    s = ds[0]
    assert set(s) == {"ll", "meta"} and s["meta"]["score"] == 0.95 and s["meta"]["ann_id"] == -1
    # A box at the image corner: the crop part outside the image holds the reference's padding, the pixel
    # means (122.7717, 115.9465, 102.9801) / 255 in plain x / 255 input; with pad=None it is black.
    path.write_text(json.dumps([{"image_id": 100, "bbox": [0, 0, 40, 80], "score": 1.0}]))
    corner = ExLPoseTopDown(release, release / "ann.json", condition="WL", train=False, detections=path, wl_normalisation=None)[0]
    inv = invert_affine(corner["meta"]["affine"])
    outside = apply_affine(np.array([[0.0, 0.0]]), inv)[0]
    assert outside[0] < -1 and outside[1] < -1
    assert np.allclose(corner["wl"][:, 0, 0].numpy(), np.array([122.7717, 115.9465, 102.9801]) / 255, atol=1e-6)
    black = ExLPoseTopDown(release, release / "ann.json", condition="WL", train=False, detections=path, wl_normalisation=None, pad=None)[0]
    assert float(black["wl"][:, 0, 0].abs().max()) == 0.0
    assert float(corner["wl"][:, 128, 96].max()) > 0
    path.write_text(json.dumps([{"image_id": 999, "bbox": [0, 0, 5, 5], "score": 1.0}]))
    with pytest.raises(InputError, match="image id"):
        ExLPoseTopDown(release, release / "ann.json", detections=path)


def test_gaussian_target_option(release: Path) -> None:
    ds = ExLPoseTopDown(release, release / "ann.json", condition="WL", target="gaussian", sigma=2.0, train=False)
    s = ds[0]
    assert s["heatmaps"].shape == (K, 64, 48)
    assert torch.allclose(s["heatmaps"].amax(dim=(1, 2))[s["target_weight"] > 0], torch.tensor(1.0))


def test_crop_to_heatmap_pixel_convention() -> None:
    xs = np.array([[x, 0.0] for x in (0, 1.9, 2, 4, 5.9, 186, 189)])
    px = np.floor(crop_to_heatmap(xs, (256, 192), (64, 48)) + 0.5)[:, 0]
    assert px.tolist() == [0, 0, 1, 1, 1, 47, 47]
    assert np.allclose(crop_to_heatmap(np.array([[8.0, 12.0]]), (256, 192), (64, 48)), [[2, 3]])


def test_cpn_targets_are_blurred_deltas_scaled_to_255() -> None:
    joints = np.array([[20.0, 30.0], [0.4, 1.6], [47.0, 63.0]])
    hm, weight = cpn_heatmaps(joints, np.array([True, True, True]), (64, 48))
    for level, k in enumerate((15, 11, 9, 7)):
        for j, (x, y) in enumerate([(20, 30), (0, 2), (47, 63)]):
            delta = np.zeros((64, 48), np.float32)
            delta[y, x] = 1.0
            blurred = cv2.GaussianBlur(delta, (k, k), 0, borderType=cv2.BORDER_CONSTANT)
            assert np.allclose(hm[level, j], blurred * 255 / blurred.max(), atol=1e-3)
    widths = [(hm[level, 0] > 255 / 2).sum() for level in range(4)]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[3]
    assert hm[0, 0, 30, 20] == 255 and weight[0] == 1


def test_pack_cli_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(pack_app, [str(tmp_path / "nope"), "--out", str(tmp_path / "p.h5")])
    assert result.exit_code == 2 and "no such dataset folder" in result.output
    root = make_release(tmp_path / "r", n_images=1)
    result = CliRunner().invoke(pack_app, [str(root), "--out", str(tmp_path / "all.h5"), "-q"])
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "all.h5", "r") as f:
        assert sorted(p.decode() for p in f["paths"][()]) == sorted([_names(1)[0][0].relpath, _names(1)[0][1].relpath])
    assert not list(tmp_path.glob(".*tmp-*"))


def _dark16(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    """A dark 16-bit image (values 0-1200, as ``exlpose-align apply --bits 16`` writes low-light frames)."""
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 1201, shape).astype(np.uint16), (3, 3), 0)


def test_16bit_images_keep_their_depth(tmp_path: Path) -> None:
    root = make_release(tmp_path / "r", n_images=2)
    (bright, dark), (bright2, dark2) = _names(2)
    ll16 = _dark16((H, W, 3))
    wl16 = np.dstack([_dark16((H, W, 3), seed=2) * 50, np.full((H, W), 65535, np.uint16)])  # with alpha
    cv2.imwrite(str(root / dark.relpath), ll16)
    cv2.imwrite(str(root / bright.relpath), wl16)
    gray16 = tmp_path / "gray16.png"
    cv2.imwrite(str(gray16), ll16[:, :, 0])
    decoded = decode_image(gray16)
    assert decoded.dtype == np.uint16 and decoded.shape == (H, W, 3) and np.array_equal(decoded[:, :, 2], ll16[:, :, 0])
    assert decode_image(root / bright.relpath).shape == (H, W, 3)  # alpha dropped
    cv2.imwrite(str(tmp_path / "float.tif"), np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InputError, match=r"float\.tif: float32 pixels; only 8- and 16-bit integer images are supported"):
        decode_image(tmp_path / "float.tif")

    ll_rgb = ll16[:, :, ::-1].astype(np.float64)
    mean16 = ll_rgb.reshape(-1, 3).mean(axis=0)
    whole = ExLPoseImages(root, root / "ann.json", "pair")[0]
    # Scaling works on the full 16-bit values: x * 0.4 / mean (the 8-bit cut kept only the values 0-4).
    assert np.allclose(whole["ll"].numpy().transpose(1, 2, 0), ll_rgb * 0.4 / mean16, atol=1e-5)
    wl_expected = (wl16[:, :, 2::-1] / 65535.0 - np.array([0.3457, 0.3460, 0.3463])) / np.array([0.1477, 0.1482, 0.1483])
    assert np.allclose(whole["wl"].numpy().transpose(1, 2, 0), wl_expected, atol=1e-5)

    ds = ExLPoseTopDown(root, root / "ann.json", condition="LL", train=False)
    s = ds[0]
    expected = cv2.warpAffine(ll_rgb.astype(np.float32), s["meta"]["affine"], (192, 256), flags=cv2.INTER_LINEAR) * (0.4 / mean16)
    assert np.allclose(s["ll"].numpy().transpose(1, 2, 0), expected, atol=1e-4)
    assert len(np.unique(s["ll"].numpy()[0])) > 1000

    # One pack holds 16-bit and 8-bit images, each in its own depth; packed samples stay bit-identical.
    pack = write_pack(root, [n.relpath for n in (bright, dark, bright2, dark2)], tmp_path / "p.h5")
    with h5py.File(pack, "r") as f:
        assert [f[f"images/{i}"].dtype for i in range(4)] == [np.uint16, np.uint16, np.uint8, np.uint8]
    aug = Augmentation(scale_range=(0.7, 1.35), rotation_deg=30.0, flip_prob=0.5)
    plain = ExLPoseTopDown(root, root / "ann.json", condition="pair", augmentation=aug)
    packed = ExLPoseTopDown(root, root / "ann.json", condition="pair", augmentation=aug, pack=pack)
    for i in range(len(plain)):
        torch.manual_seed(i)
        a = plain[i]
        torch.manual_seed(i)
        b = packed[i]
        assert torch.equal(a["ll"], b["ll"]) and torch.equal(a["wl"], b["wl"])
    whole_packed = ExLPoseImages(root, root / "ann.json", "pair", pack=pack)[0]
    assert torch.equal(whole["ll"], whole_packed["ll"]) and torch.equal(whole["wl"], whole_packed["wl"])


def test_old_pack_version_refused(tmp_path: Path) -> None:
    root = make_release(tmp_path / "r", n_images=1)
    pack = write_pack(root, [n.relpath for n in _names(1)[0]], tmp_path / "p.h5")
    with h5py.File(pack, "r+") as f:
        f.attrs["version"] = 1
    with pytest.raises(InputError, match=r"version 1, this toolkit reads version \d+; run 'exlpose pack' again"):
        ExLPoseTopDown(root, root / "ann.json", condition="pair", pack=pack)


def test_image_size_from_headers(tmp_path: Path) -> None:
    img = np.zeros((75, 120, 3), np.uint8)
    for name, params in (("a.png", []), ("a.jpg", []), ("p.jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])):
        cv2.imwrite(str(tmp_path / name), img, params)
        assert image_size(tmp_path / name) == (120, 75), name
    cv2.imwrite(str(tmp_path / "g16.png"), np.zeros((75, 120), np.uint16))
    assert image_size(tmp_path / "g16.png") == (120, 75)
    # An EXIF block before the frame header is skipped by its length.
    raw = (tmp_path / "a.jpg").read_bytes()
    app1 = b"Exif\x00\x00" + bytes(30000)
    (tmp_path / "exif.jpg").write_bytes(raw[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + raw[2:])
    assert image_size(tmp_path / "exif.jpg") == (120, 75) and cv2.imread(str(tmp_path / "exif.jpg")).shape == (75, 120, 3)
    (tmp_path / "cut.jpg").write_bytes(raw[:12])
    cv2.imwrite(str(tmp_path / "a.tif"), img)
    assert image_size(tmp_path / "cut.jpg") is None and image_size(tmp_path / "a.tif") is None and image_size(tmp_path / "nope.png") is None


def test_image_sizes_checked_against_records(tmp_path: Path) -> None:
    root = make_release(tmp_path / "r", n_images=2)
    dark = root / _names(2)[1][1].relpath
    cv2.imwrite(str(dark), np.full((75, 120, 3), 3, np.uint8))
    msg = rf"ann.json: 1 of 4 images differ in size from their annotation records, e.g. {dark} is 120x75, its record says {W}x{H}; .*check_sizes=False$"
    for cls in (ExLPoseTopDown, ExLPoseImages):
        with pytest.raises(InputError, match=msg):
            cls(root, root / "ann.json", condition="pair")
    assert len(ExLPoseTopDown(root, root / "ann.json", condition="WL")) == 4  # the bright images fit
    assert len(ExLPoseTopDown(root, root / "ann.json", condition="pair", check_sizes=False)) == 4
    # A pack is checked against the same records.
    pack = write_pack(root, [n.relpath for pair in _names(2) for n in pair], tmp_path / "p.h5")
    with pytest.raises(InputError, match=r"1 of 4 images differ .* in the pack .* is 120x75, its record says 320x200"):
        ExLPoseTopDown(root, root / "ann.json", condition="pair", pack=pack)
    # Formats without a header reader are checked when decoded.
    cv2.imwrite(str(tmp_path / "small.tif"), np.full((75, 120, 3), 3, np.uint8))
    (tmp_path / "small.tif").replace(dark)
    ds = ExLPoseImages(root, root / "ann.json", condition="LL")
    assert ds[0]["ll"].shape == (3, H, W)
    with pytest.raises(InputError, match=rf"^{dark}: decoded image is 120x75, its annotation record \(.*ann.json\) says {W}x{H}"):
        ds[1]


def test_stale_pack_same_byte_size_rejected(tmp_path: Path) -> None:
    root = make_release(tmp_path / "r", n_images=1)
    dark = root / _names(1)[0][1].relpath
    # Uncompressed PNGs: the byte size depends on the image size only, as for a re-aligned image that happens to
    # compress to the same size.
    cv2.imwrite(str(dark), np.full((H, W, 3), 2, np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 0])
    pack = write_pack(root, [n.relpath for n in _names(1)[0]], tmp_path / "p.h5")
    before = dark.stat()
    cv2.imwrite(str(dark), np.full((H, W, 3), 5, np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 0])
    # Re-alignment happens later than the pack; make that explicit rather than rely on the clock's granularity.
    os.utime(dark, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert dark.stat().st_size == before.st_size
    with pytest.raises(InputError, match=r"stale pack: 1 image\(s\) changed \(size or modification time\) since packing, e\.g\. dark/"):
        ExLPoseTopDown(root, root / "ann.json", condition="pair", pack=pack)
    with h5py.File(pack, "r") as f:
        assert int(f["mtimes"][1]) == before.st_mtime_ns


@pytest.mark.parametrize(("name", "why"), [("../secret/x.JPG", "'..' in path"), ("/abs/PID_A7M3/x.JPG", "absolute path"), ("PID_A7M3/../../x.JPG", "'..' in path")])
def test_unsafe_image_paths_refused(tmp_path: Path, name: str, why: str) -> None:
    doc = {"images": [{"id": 1, "file_name": "PID_A7M3/a.JPG", "width": 60, "height": 40}, {"id": 7, "file_name": name, "width": 60, "height": 40}],
           "annotations": [], "categories": [crowdpose14().coco_category()]}
    ann = tmp_path / "oc.json"
    ann.write_text(json.dumps(doc))
    msg = rf"^{ann}: image 7: file_name {name!r}: {why}; image paths must be relative to the image root$"
    for cls in (ExLPoseTopDown, ExLPoseImages):
        with pytest.raises(InputError, match=msg.replace(".", r"\.")):
            cls(tmp_path / "root", ann, condition="LL")
    result = CliRunner().invoke(pack_app, [str(tmp_path / "root"), "--out", str(tmp_path / "p.h5"), "--ann", str(ann), "--condition", "LL"])
    assert result.exit_code == 2 and f"image 7: file_name {name!r}" in result.output


def test_datasets_load_with_the_strict_model(release: Path, tmp_path: Path) -> None:
    """A keypoint given as a string is refused with its JSON location, not coerced into a training target."""
    doc = json.loads((release / "ann.json").read_text())
    doc["annotations"][1]["keypoints"][3] = "12.5"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"bad.json: annotations\[1\].keypoints\[3\]: Input should be a number \(got '12.5'\)"):
        ExLPoseTopDown(release, bad, condition="pair")
