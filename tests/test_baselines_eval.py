"""Decoding, the flip test, ``exlpose-eval`` (predictions and model) and ``exlpose predict``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from baselines.checkpoint import save_checkpoint
from baselines.cli import eval_app, predict_app
from baselines.config import make_config
from baselines.decode import decode_heatmaps, flip_back, predictions_from_heatmaps
from baselines.models import build_cpn
from exlpose_data.datasets.targets import cpn_heatmaps
from exlpose_data.datasets.transforms import apply_affine, crop_affine, crop_to_heatmap
from exlpose_data.evaluation import evaluate_keypoints
from exlpose_data.keypoints import crowdpose14

from .test_baselines_train import make_tiny_release, one_torch_thread  # noqa: F401 (autouse fixture)

K = crowdpose14().num_keypoints
INPUT, HEATMAP = (256, 192), (64, 48)


def _targets(crop_xy: np.ndarray) -> torch.Tensor:
    hm_xy = crop_to_heatmap(crop_xy, INPUT, HEATMAP)
    maps, _ = cpn_heatmaps(hm_xy, np.ones(K, bool), HEATMAP)
    return torch.from_numpy(maps[-1:])  # finest level, batch of one


def _gaussians(hm_xy: np.ndarray, sigma: float = 2.0) -> torch.Tensor:
    """Unquantised Gaussians centred exactly on ``hm_xy`` (sub-pixel), one map per joint, batch of one."""
    ys, xs = np.mgrid[0 : HEATMAP[0], 0 : HEATMAP[1]]
    maps = [np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)) for x, y in hm_xy]
    return torch.from_numpy(np.stack(maps)[None])


def _centroids(maps: torch.Tensor) -> np.ndarray:
    m = maps[0].double().numpy()
    ys, xs = np.mgrid[0 : HEATMAP[0], 0 : HEATMAP[1]]
    return np.stack([(m * xs).sum((1, 2)) / m.sum((1, 2)), (m * ys).sum((1, 2)) / m.sum((1, 2))], axis=1)


def test_flip_back_inverts_a_mirrored_crop_with_crowdpose_pairs():
    rng = np.random.default_rng(1)
    xy = np.column_stack([rng.uniform(40, 150, K), rng.uniform(40, 220, K)])
    mirrored = xy[crowdpose14().flip_index()].copy()  # a mirrored person: left and right joints trade places
    mirrored[:, 0] = INPUT[1] - 1 - mirrored[:, 0]
    back = flip_back(_gaussians(crop_to_heatmap(mirrored, INPUT, HEATMAP)), INPUT)
    truth = crop_to_heatmap(xy, INPUT, HEATMAP)
    # Linear interpolation moves the centroid by exactly the grid offset (0.75 px here): no bias is left.
    assert np.abs(_centroids(back) - truth).max() < 1e-4  # (Gaussian tails cut at the border aside)
    assert np.abs(_centroids(_gaussians(crop_to_heatmap(mirrored, INPUT, HEATMAP)).flip(-1)) - truth[crowdpose14().flip_index()]).max() > 0.5
    # On the datasets' quantised targets the decoded joints agree to within the quantisation.
    coords_back, _ = decode_heatmaps(flip_back(_targets(mirrored), INPUT))
    coords, _ = decode_heatmaps(_targets(xy))
    assert np.abs(coords_back - coords).max() <= 1.0


def test_decode_follows_the_reference():
    xy = np.tile([[100.0, 124.0]], (K, 1))  # on heatmap pixels (25, 31) and (5, 8)
    xy[3] = [20.0, 32.0]
    heatmaps = _targets(xy) * 0.8  # a peak of 204 scores 204 / 255 + 0.5 = 1.3
    coords, scores = decode_heatmaps(heatmaps)
    expected = crop_to_heatmap(xy, INPUT, HEATMAP)
    # A symmetric peak's second-highest pixel is a neighbour: the reference moves a quarter pixel towards it.
    assert np.allclose(np.abs(coords[0] - expected).sum(axis=1), 0.25)
    assert np.allclose(scores, 0.8 + 0.5)


def test_predictions_map_back_to_the_image():
    image_xy = np.column_stack([np.linspace(300, 380, K), np.linspace(200, 420, K)])
    affine = crop_affine(np.array([340.0, 310.0]), np.array([180.0, 240.0]), INPUT)
    heatmaps = _targets(apply_affine(image_xy, affine))
    meta = {"image_id": torch.tensor([7]), "affine": torch.from_numpy(affine[None]), "score": torch.tensor([0.5], dtype=torch.float64)}
    (result,) = predictions_from_heatmaps(heatmaps, meta, INPUT)
    kp = np.asarray(result["keypoints"]).reshape(K, 3)
    stride_px = 240.0 / HEATMAP[0]  # one heatmap pixel in image pixels
    assert np.abs(kp[:, :2] - image_xy).max() <= stride_px
    assert result["image_id"] == 7 and result["score"] == pytest.approx(0.5 * 1.5)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = make_config({"variant": "lsbn", "backbone": "resnet18", "input_size": (64, 48), "heatmap_size": (16, 12)})
    torch.manual_seed(0)
    net = build_cpn("resnet18", lsbn=True, heatmap_size=(16, 12))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint.pth", model=net.state_dict(), config=cfg.to_dict(), epoch=0)


def test_eval_predictions_json(release, tmp_path):
    gt = release / "annotations" / "ExLPose_test_LL-A.json"
    doc = json.loads(gt.read_text())
    preds = [{"image_id": a["image_id"], "keypoints": a["keypoints"], "score": 1.0} for a in doc["annotations"]]
    preds[0]["keypoints"] = [v + 9.0 if i % 3 != 2 else v for i, v in enumerate(preds[0]["keypoints"])]
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(preds))
    runner = CliRunner()
    for protocol in ("crowdpose", "fixed"):
        r = runner.invoke(eval_app, ["predictions", str(path), "--gt", str(gt), "--protocol", protocol, "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout) == evaluate_keypoints(gt, preds, protocol=protocol).summary()
    r = runner.invoke(eval_app, ["predictions", str(path), "--gt", str(gt)])
    assert r.exit_code == 0 and "AP" in r.stdout
    r = runner.invoke(eval_app, ["predictions", str(path), "--gt", str(gt), "--protocol", "coco"])
    assert r.exit_code == 2 and "--protocol 'coco': choose one of crowdpose, fixed" in r.output
    r = runner.invoke(eval_app, ["predictions", str(tmp_path / "none.json"), "--gt", str(gt)])
    assert r.exit_code == 2 and "none.json: no such file" in r.output


@pytest.mark.slow
def test_eval_model_table_with_gt_boxes_and_detections(release, checkpoint, tmp_path):
    runner = CliRunner()
    args = ["model", str(checkpoint), "--dataset", str(release), "--splits", "LL-A,WL", "--workers", "0", "--batch-size", "4", "--json"]
    r = runner.invoke(eval_app, [*args, "--save-predictions", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    table = json.loads(r.stdout)
    assert set(table["AP"]) == {"LL-A", "WL"} and all(0.0 <= v <= 1.0 for v in table["AP"].values())
    assert table["params"] == sum(p.numel() for p in build_cpn("resnet18", lsbn=True).parameters())
    assert table["latency_ms"] > 0 and table["variant"] == "lsbn"
    assert len(json.loads((tmp_path / "p" / "predictions_WL.json").read_text())) == 6
    # Detections that are the ground-truth boxes (score 1) give the same crops, so the same AP.
    doc = json.loads((release / "annotations" / "ExLPose_test_LL-A.json").read_text())
    dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0} for a in doc["annotations"]]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    r = runner.invoke(eval_app, [*args, "--boxes", str(tmp_path / "dets.json")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["AP"] == table["AP"]
    r = runner.invoke(eval_app, ["model", str(checkpoint), "--dataset", str(release), "--splits", "LL-X"])
    assert r.exit_code == 2 and "no annotation file for 'test_LL-X'" in r.output


def test_split_names(release, tmp_path):
    from baselines.splits import resolve_split
    from exlpose_data.errors import InputError, UsageError

    assert resolve_split(release, None, "LL-A") == (release / "annotations" / "ExLPose_test_LL-A.json", "LL")
    assert resolve_split(release, None, "WL") == (release / "annotations" / "ExLPose_test_WL.json", "WL")
    with pytest.raises(InputError, match="no ExLPose-OC_test_A7M3.json; cameras with labels here: none"):
        resolve_split(release, None, "A7M3")
    oc = tmp_path / "ann"
    oc.mkdir()
    (oc / "ExLPose-OC_test_A7M3.json").write_text((release / "annotations" / "ExLPose_test_LL-A.json").read_text())
    assert resolve_split(release, oc, "A7M3") == (oc / "ExLPose-OC_test_A7M3.json", "LL")
    with pytest.raises(UsageError, match="empty split name"):
        resolve_split(release, None, " ")


@pytest.mark.slow
def test_predict_writes_keypoints_and_overlays(release, checkpoint, tmp_path):
    dark = sorted((release / "dark").glob("*.png"))[:2]
    boxes = {dark[0].name: [[20, 15, 40, 90], [95, 10, 45, 100, 0.5]], dark[1].name: []}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "out"
    r = CliRunner().invoke(predict_app, [str(checkpoint), *map(str, dark), "--boxes", str(tmp_path / "boxes.json"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    records = json.loads((out / "keypoints.json").read_text())
    assert [r["bbox"] for r in records] == [[20.0, 15.0, 40.0, 90.0], [95.0, 10.0, 45.0, 100.0]]
    assert all(len(r["keypoints"]) == 42 for r in records)
    assert records[1]["score"] == pytest.approx(0.5 * np.mean(records[1]["keypoints"][2::3]), rel=1e-3)  # scores kept to 3 decimals
    assert (out / f"{dark[0].stem}_pose.png").is_file() and (out / f"{dark[1].stem}_pose.png").is_file()
    settings = json.loads((out / "settings.json").read_text())
    assert settings["flip_test"] == "ours" and settings["heatmap_convention"] == "ours" and settings["condition"] == "LL"
    (tmp_path / "bad.json").write_text(json.dumps({dark[0].name: [[1, 2, 0, 4]]}))
    r = CliRunner().invoke(predict_app, [str(checkpoint), str(dark[0]), "--boxes", str(tmp_path / "bad.json")])
    assert r.exit_code == 2 and "box 0 must be [x, y, w, h]" in r.output
