"""Tests of the CenterNet detector's data: centre targets, letterboxing, ExLPoseDetection and box decoding."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from baselines.detect.decode import CentreDecoder, boxes_to_image, decode_centres
from exlpose_data.datasets import ExLPoseDetection, write_pack
from exlpose_data.datasets.centre_targets import (
    DetectionAugmentation,
    boxes_to_input,
    centre_targets,
    draw_gaussian,
    gaussian_radius,
    letterbox_affine,
    prepare_image,
)
from exlpose_data.datasets.detection import prepare_image as prepare_image_reexported
from exlpose_data.datasets.records import build_index, needed_paths
from exlpose_data.datasets.sources import decode_image
from exlpose_data.datasets.transforms import apply_affine
from exlpose_data.errors import UsageError

from .test_datasets import BOXES, H, W, make_release

INPUT = (64, 96)  # (H, W): the 320x200 images fit by width (x0.3), 2 px bands top and bottom


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_release(tmp_path_factory.mktemp("det"))
    doc = json.loads((root / "ann.json").read_text())
    # A crowd region on image 101: not one person, so no target.
    doc["annotations"].append({"id": len(doc["annotations"]), "image_id": 101, "category_id": 1, "keypoints": [0] * 42,
                               "bbox": [120.0, 100.0, 50.0, 60.0], "num_keypoints": 0, "iscrowd": 1})
    (root / "crowd.json").write_text(json.dumps(doc))
    return root


# -- centre targets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("h, w", [(10.0, 10.0), (40.0, 12.0), (3.0, 90.0)])
def test_gaussian_radius_is_the_shift_that_keeps_the_overlap(h: float, w: float) -> None:
    r = gaussian_radius(h, w, 0.7)
    box = np.array([0.0, 0.0, w, h])
    assert _iou(box, box + [r, r, r, r]) == pytest.approx(0.7, abs=1e-12)
    assert _iou(box, box + [r + 0.01] * 4) < 0.7
    # A square's radius by hand: r/s = (2 - sqrt(4 - 4 * 0.3/1.7)) / 2.
    assert gaussian_radius(10, 10) == pytest.approx(10 * (2 - math.sqrt(4 - 4 * 0.3 / 1.7)) / 2, rel=1e-12)
    assert gaussian_radius(0, 5) == 0.0


def test_draw_gaussian_values_and_max_combine() -> None:
    hm = np.zeros((9, 12), np.float32)
    draw_gaussian(hm, (4, 4), 2)
    sigma = 5 / 6
    assert hm[4, 4] == 1.0 and hm[4, 5] == pytest.approx(math.exp(-1 / (2 * sigma**2)), rel=1e-6)
    assert hm[6, 6] == pytest.approx(math.exp(-8 / (2 * sigma**2)), rel=1e-6) and hm[4, 7] == 0.0  # radius 2: no further
    before = hm.copy()
    draw_gaussian(hm, (6, 4), 1)  # a smaller peak two cells right: max, not sum
    assert hm[4, 6] == 1.0 and hm[4, 5] == pytest.approx(max(before[4, 5], math.exp(-1 / (2 * 0.5**2))), rel=1e-6)
    assert hm[4, 4] == 1.0
    draw_gaussian(hm, (11, 0), 2)  # at the corner: clipped, no error
    assert hm[0, 11] == 1.0


def test_letterbox_affine_fits_centres_scales_shifts_and_flips() -> None:
    a = letterbox_affine((H, W), INPUT)
    # 320x200 into 96x64 fits by width: x0.3; the image centre lands on the input centre.
    assert a[0, 0] == pytest.approx(0.3) and a[1, 1] == pytest.approx(0.3)
    assert apply_affine(np.array([[(W - 1) / 2, (H - 1) / 2]]), a) == pytest.approx(np.array([[47.5, 31.5]]))
    # The image's pixel edges (-0.5 .. W - 0.5) span the input's width exactly.
    assert apply_affine(np.array([[-0.5, 0], [W - 0.5, 0]]), a)[:, 0] == pytest.approx([-0.5, 95.5])
    s = letterbox_affine((H, W), INPUT, scale=2.0, shift=(0.25, -0.5))
    assert s[0, 0] == pytest.approx(0.6)
    assert apply_affine(np.array([[(W - 1) / 2, (H - 1) / 2]]), s) == pytest.approx(np.array([[47.5 + 24, 31.5 - 32]]))
    f = letterbox_affine((H, W), INPUT, flip=True)
    p = np.array([[10.0, 20.0], [300.0, 150.0]])
    fp, pp = apply_affine(p, f), apply_affine(p, a)
    assert fp[:, 0] == pytest.approx(95 - pp[:, 0]) and fp[:, 1] == pytest.approx(pp[:, 1])


def test_centre_targets_values() -> None:
    boxes = np.array([[10.0, 6.0, 30.0, 46.0], [60.0, 10.0, 70.0, 20.0], [100.0, 10.0, 120.0, 30.0], [90.0, 40.0, 90.5, 60.0]])
    t = centre_targets(boxes, (64, 96), stride=4, max_objects=4)
    assert t["heatmap"].shape == (1, 16, 24) and t["heatmap"].dtype == np.float32
    assert t["count"] == 2 and t["dropped"] == 2  # one box outside the input, one 0.5 px wide
    # Box 1: centre (20, 26) -> cell (5, 6), offset (0, 0.5); 5 x 10 cells.
    assert t["heatmap"][0, 6, 5] == 1.0 and t["index"][0] == 6 * 24 + 5
    assert t["size"][0].tolist() == [5.0, 10.0] and t["offset"][0].tolist() == [0.0, 0.5]
    # Box 2: centre (65, 15) -> cell (16, 3), offset (0.25, 0.75); 2.5 x 2.5 cells, radius int(0.23) = 0.
    assert t["index"][1] == 3 * 24 + 16 and t["offset"][1].tolist() == [0.25, 0.75] and t["size"][1].tolist() == [2.5, 2.5]
    assert t["heatmap"][0, 3, 16] == 1.0 and t["heatmap"][0, 3, 17] == 0.0
    # 5 x 10 cells: radius int(0.61) = 0, a one-cell peak; a 20 x 40-cell box gets radius int(2.45) = 2.
    assert int(gaussian_radius(10.0, 5.0)) == 0 and t["heatmap"][0, 6, 6] == 0.0 and t["heatmap"][0, 5, 5] == 0.0
    assert int(gaussian_radius(40.0, 20.0)) == 2
    assert t["mask"].tolist() == [1, 1, 0, 0] and t["boxes"][2:].sum() == 0 and t["index"].dtype == np.int64
    # Clipped to the input: a box reaching past the left edge keeps its inside part.
    c = centre_targets(np.array([[-20.0, 0.0, 20.0, 40.0]]), (64, 96), max_objects=1)
    assert c["boxes"][0].tolist() == [0.0, 0.0, 20.0, 40.0] and c["size"][0].tolist() == [5.0, 10.0]
    with pytest.raises(UsageError, match="multiples of the stride"):
        centre_targets(boxes, (62, 96), max_objects=4)
    with pytest.raises(UsageError, match="max_objects=1"):
        centre_targets(boxes, (64, 96), max_objects=1)


# -- the dataset ---------------------------------------------------------------------------------------------


def test_pair_sample_shapes_targets_and_meta(release: Path) -> None:
    ds = ExLPoseDetection(release, release / "crowd.json", condition="pair", input_size=INPUT, train=False)
    # Image 100 holds the two people and a box without labelled joints: all three are people for a detector.
    assert len(ds) == 3 and ds.max_objects == 3
    s = ds[0]
    assert s["ll"].shape == (3, 64, 96) and s["wl"].shape == (3, 64, 96) and s["ll"].dtype == torch.float32
    assert s["heatmap"].shape == (1, 16, 24) and s["size"].shape == (3, 2) and s["index"].dtype == torch.int64
    m = s["meta"]
    assert m["image_id"] == 100 and m["num_boxes"] == 3 and m["dropped"] == 0 and not m["flipped"] and m["split"] == "LL-N"
    assert m["image_hw"].tolist() == [H, W] and m["image_hw"].dtype == np.int64 and m["affine"].dtype == np.float64
    expected = np.clip(boxes_to_input(np.array([*BOXES, (1, 1, 5, 5)]), m["affine"]), 0, [96, 64, 96, 64])
    assert s["boxes"].numpy() == pytest.approx(expected.astype(np.float32), abs=1e-5)
    assert s["mask"].tolist() == [1.0, 1.0, 1.0]
    # The crowd region of image 101 gets no target.
    crowd_image = ds[1]
    assert crowd_image["meta"]["num_boxes"] == 2 and crowd_image["mask"].tolist() == [1.0, 1.0, 0.0]
    batch = default_collate([ds[0], ds[1]])
    assert batch["heatmap"].shape == (2, 1, 16, 24) and batch["meta"]["affine"].shape == (2, 2, 3)
    assert batch["meta"]["num_boxes"].tolist() == [3, 2] and batch["meta"]["ll_file"][0].startswith("dark/")


def test_max_objects_too_small_names_the_image(release: Path) -> None:
    with pytest.raises(UsageError, match=r"image 100 .*holds 3 people, more than max_objects=2"):
        ExLPoseDetection(release, release / "ann.json", input_size=INPUT, max_objects=2)
    assert ExLPoseDetection(release, release / "ann.json", input_size=INPUT, train=False, max_objects=5)[0]["size"].shape == (5, 2)
    with pytest.raises(UsageError, match="multiples of the stride"):
        ExLPoseDetection(release, release / "ann.json", input_size=(66, 96))


def test_test_path_equals_prepare_image(release: Path) -> None:
    assert prepare_image_reexported is prepare_image
    index = build_index(release, release / "ann.json", "pair", skip_unlabelled=False)
    for cond in ("LL", "WL"):
        ds = ExLPoseDetection(release, release / "ann.json", condition=cond, input_size=INPUT, train=False)
        for i in range(len(ds)):
            image, affine = prepare_image(decode_image(release / index.images[i].path(cond)), cond, INPUT)
            sample = ds[i]
            assert np.array_equal(sample[cond.lower()].numpy(), image)
            assert np.array_equal(sample["meta"]["affine"], affine)
    # LL inputs are brightened from the whole image's means: per-channel mean 0.4 over the image part.
    ll, _ = prepare_image(decode_image(release / index.images[0].path("LL")), "ll", INPUT)
    assert ll[:, 4:-4, 2:-2].mean(axis=(1, 2)) == pytest.approx([0.4] * 3, abs=0.02)
    with pytest.raises(UsageError, match="unknown lighting"):
        prepare_image(np.zeros((4, 4, 3), np.uint8), "night", INPUT)


def test_pair_shares_one_augmented_affine(tmp_path: Path) -> None:
    root = make_release(tmp_path, n_images=2, same_pixels=True)
    aug = DetectionAugmentation(scale_range=(0.6, 1.4), shift=0.2, flip_prob=0.5)
    ds = ExLPoseDetection(root, root / "ann.json", condition="pair", input_size=INPUT, augmentation=aug, ll_scaling=None, wl_normalisation=None)
    torch.manual_seed(3)
    samples = [ds[i % 2] for i in range(8)]
    assert {s["meta"]["flipped"] for s in samples} == {True, False}
    assert len({float(s["meta"]["affine"][1, 1]) for s in samples}) == 8
    for n, s in enumerate(samples):
        assert torch.equal(s["ll"], s["wl"])  # same pixels, same transform, same scaling
        kept = s["mask"].sum().item()
        assert s["meta"]["num_boxes"] == kept and s["meta"]["num_boxes"] + s["meta"]["dropped"] == (3 if n % 2 == 0 else 2)
        expected = boxes_to_input(np.array([*BOXES, (1, 1, 5, 5)]), s["meta"]["affine"])
        clipped = np.clip(expected, 0, [96, 64, 96, 64])
        # Every kept target box is a clipped image box through the sample's own affine.
        for box in s["boxes"][: int(kept)].numpy():
            assert np.abs(clipped - box).max(axis=1).min() < 1e-4


def test_set_epoch_seeds_in_process_draws(release: Path) -> None:
    ds = ExLPoseDetection(release, release / "ann.json", input_size=INPUT)

    def affines(epoch: int, rank: int = 0) -> list[np.ndarray]:
        ds.set_epoch(epoch, seed=5, rank=rank)
        return [ds[i]["meta"]["affine"] for i in range(len(ds))]

    first = affines(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, affines(1)))
    assert not np.array_equal(first[0], affines(2)[0]) and not np.array_equal(first[0], affines(1, rank=1)[0])
    with pytest.raises(UsageError):
        ds.set_epoch(-1)


def test_packed_samples_identical_to_files(release: Path, tmp_path: Path) -> None:
    index = build_index(release, release / "ann.json", "pair", skip_unlabelled=False)
    pack = write_pack(index.image_root, needed_paths(index, "pair"), tmp_path / "pack.h5")
    plain = ExLPoseDetection(release, release / "ann.json", condition="pair", input_size=INPUT)
    packed = ExLPoseDetection(release, release / "ann.json", condition="pair", input_size=INPUT, pack=pack)
    for ds in (plain, packed):
        ds.set_epoch(0, seed=1)
    for i in range(len(plain)):
        a, b = plain[i], packed[i]
        for key in ("ll", "wl", "heatmap", "size", "offset", "index", "boxes"):
            assert torch.equal(a[key], b[key]), key


# -- decoding --------------------------------------------------------------------------------------------------


def _ideal_outputs(targets: dict, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits of the target heatmap and sizes/offsets written at the centre cells: what a perfect model says."""
    h, w = shape
    heat = np.clip(targets["heatmap"], 1e-4, 1 - 1e-4)
    logits = np.log(heat / (1 - heat))
    size = np.zeros((2, h * w), np.float32)
    offset = np.zeros((2, h * w), np.float32)
    n = int(targets["count"])
    size[:, targets["index"][:n]] = targets["size"][:n].T
    offset[:, targets["index"][:n]] = targets["offset"][:n].T
    as_batch = lambda a, c: torch.from_numpy(np.ascontiguousarray(a.reshape(1, c, h, w), dtype=np.float32))  # noqa: E731
    return as_batch(logits, 1), as_batch(size, 2), as_batch(offset, 2)


@pytest.mark.parametrize("scale, shift, flip", [(1.0, (0.0, 0.0), False), (0.8, (0.05, -0.03), True)])
def test_round_trip_targets_decode_back_to_image_boxes(scale: float, shift: tuple[float, float], flip: bool) -> None:
    image_hw = (1199, 1918)
    boxes_xywh = np.array([[820.6, 588.5, 520.2, 218.74], [100.0, 200.0, 150.0, 400.0], [1500.3, 90.7, 200.1, 700.9]])
    input_hw = (512, 800)
    affine = letterbox_affine(image_hw, input_hw, scale=scale, shift=shift, flip=flip)
    targets = centre_targets(boxes_to_input(boxes_xywh, affine), input_hw, max_objects=5)
    assert targets["count"] == 3
    boxes, scores = decode_centres(*_ideal_outputs(targets, (128, 200)), stride=4, top_k=100)
    assert boxes.shape == (1, 100, 4) and scores.shape == (1, 100)
    rows = boxes_to_image(boxes[0], scores[0], affine, image_hw, min_score=0.5)
    assert len(rows) == 3
    got = np.array(rows)
    order = [int(np.argmin(np.abs(got[:, :4] - b).sum(axis=1))) for b in boxes_xywh]
    assert sorted(order) == [0, 1, 2]
    assert np.abs(got[order, :4] - boxes_xywh).max() < 0.5
    assert got[:, 4] == pytest.approx([1 - 1e-4] * 3, abs=1e-5)


def test_decode_peaks_top_k_and_boxes_to_image_clipping() -> None:
    logits = torch.full((1, 1, 4, 5), -9.0)
    logits[0, 0, 1, 1], logits[0, 0, 1, 2], logits[0, 0, 3, 4] = 2.0, 1.0, 0.5  # (1, 2) is beside a higher cell
    size = torch.ones(1, 2, 4, 5) * 2
    offset = torch.full((1, 2, 4, 5), 0.5)
    boxes, scores = decode_centres(logits, size, offset, stride=4, top_k=50)
    assert boxes.shape == (1, 20, 4)  # K = min(top_k, h * w)
    assert scores[0, :2].tolist() == pytest.approx([torch.sigmoid(torch.tensor(2.0)).item(), torch.sigmoid(torch.tensor(0.5)).item()])
    assert boxes[0, 0].tolist() == pytest.approx([2.0, 2.0, 10.0, 10.0])  # centre (1.5, 1.5) cells, 2 x 2 cells
    assert boxes[0, 1].tolist() == pytest.approx([14.0, 10.0, 22.0, 18.0])
    # (1, 2) is no peak; the rest are the flat background's own 3x3 maxima (or suppressed cells, score 0).
    background = torch.sigmoid(torch.tensor(-9.0)).item()
    assert scores[0, 2:].max().item() == pytest.approx(background) and scores[0, -1].item() == 0.0
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    rows = boxes_to_image(np.array([[-5.0, 2, 10, 12], [30, 30, 40, 40], [1, 1, 3, 3]]), np.array([0.2, 0.9, 0.7]), identity, (20, 25))
    assert rows == [[1.0, 1.0, 2.0, 2.0, 0.7], [0.0, 2.0, 10.0, 10.0, 0.2]]  # the outside box is left out
    assert boxes_to_image(np.zeros((0, 4)), np.zeros(0), identity, (20, 25)) == []


def test_decode_exports_to_onnx_with_dynamic_batch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    decoder = CentreDecoder(stride=4, top_k=10)
    names = ["heatmap", "size", "offset"]
    g = torch.Generator().manual_seed(0)
    make = lambda b: (torch.randn(b, 1, 16, 20, generator=g), torch.rand(b, 2, 16, 20, generator=g) * 5, torch.rand(b, 2, 16, 20, generator=g))  # noqa: E731
    path = tmp_path / "decode.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(decoder, make(2), str(path), opset_version=17, dynamo=False, input_names=names, output_names=["boxes", "scores"],
                          dynamic_axes={n: {0: "batch"} for n in [*names, "boxes", "scores"]})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in (1, 3):
        inputs = make(b)
        onnx_boxes, onnx_scores = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})
        boxes, scores = decoder(*inputs)
        assert onnx_boxes.shape == (b, 10, 4) and bool((scores > 0).all())  # 10 real peaks: no ties to order
        assert np.abs(onnx_boxes - boxes.numpy()).max() <= 1e-5 and np.abs(onnx_scores - scores.numpy()).max() <= 1e-5
