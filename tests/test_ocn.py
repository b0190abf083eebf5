"""ExLPose-OCN: a generated tree shaped like the release's (PID_<camera>/*.JPG at 6000x4000, labels beside),
read by ExLPoseOCN and evaluated by ``exlpose-eval model --splits A7M3,RICOH3`` through the LL branch."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from baselines.checkpoint import load_model
from baselines.engine import predict_heatmaps, run_inference
from baselines.cli import eval_app
from baselines.inputs import dataset_options
from baselines.lsbn import LSBN2d
from exlpose_data.datasets import ExLPoseOCN
from exlpose_data.errors import InputError

from .conftest import OFFICIAL_A7M3
from .test_baselines_train import one_torch_thread  # noqa: F401 (autouse fixture)
from .test_comparisons import make_checkpoint

# Dark grey per channel (BGR) on the 0-255 scale; the LL input scales each channel's mean to 0.4.
GREY_BGR = (6, 9, 12)


@pytest.fixture(scope="module")
def ocn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ExLPose-OCN/PID_A7M3/`` with the first two labelled A7M3 images as real-size JPEGs, ``PID_RICOH3/`` with
    one (a stand-in: the A7M3 labels renamed, no RICOH3 labels are at hand), ``Annotations/`` beside."""
    base = tmp_path_factory.mktemp("ocn")
    root = base / "ExLPose-OCN"
    official = json.loads(OFFICIAL_A7M3.read_text())
    ann_dir = base / "Annotations"
    ann_dir.mkdir()
    for camera, count in (("A7M3", 2), ("RICOH3", 1)):
        images = [dict(img) for img in official["images"][:count]]
        ids = {img["id"] for img in images}
        for img in images:
            img["file_name"] = img["file_name"].replace("PID_A7M3", f"PID_{camera}")
            path = root / img["file_name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            frame = np.empty((img["height"], img["width"], 3), np.uint8)
            frame[:] = GREY_BGR
            assert cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        doc = {**official, "images": images, "annotations": [a for a in official["annotations"] if a["image_id"] in ids]}
        (ann_dir / f"ExLPose-OC_test_{camera}.json").write_text(json.dumps(doc))
    return root


def test_ocn_dataset_reads_real_size_jpegs_as_ll(ocn):
    ds = ExLPoseOCN(ocn, "A7M3", input_size=(64, 48), heatmap_size=(16, 12), pad=None)
    doc = json.loads((ocn.parent / "Annotations" / "ExLPose-OC_test_A7M3.json").read_text())
    assert len(ds) == len(doc["annotations"]) and ds.camera == "A7M3"
    sample = ds[0]
    assert set(sample) >= {"ll", "heatmaps"} and "wl" not in sample
    assert sample["meta"]["file_name"].startswith("PID_A7M3/") and ds.index.images[0].width == 6000
    # A uniform image: every channel's whole-image mean becomes 0.4, so the crop (inside the image) is 0.4.
    inside = sample["ll"][:, 20:44, 16:32]
    assert torch.allclose(inside, torch.full_like(inside, 0.4), atol=1e-5)
    with pytest.raises(InputError, match="no ExLPose-OC_test_NIKON.json; cameras with labels here: A7M3, RICOH3"):
        ExLPoseOCN(ocn, "NIKON")


@pytest.mark.slow
def test_eval_model_on_both_cameras_uses_the_ll_branch(ocn, tmp_path):
    ckpt = make_checkpoint(tmp_path / "lsbn" / "checkpoint.pth", "lsbn", seed=4)
    runner = CliRunner()
    r = runner.invoke(eval_app, ["model", str(ckpt), "--dataset", str(ocn), "--splits", "A7M3,RICOH3", "--json", "--workers", "0",
                                 "--save-predictions", str(tmp_path / "pred")])
    assert r.exit_code == 0, r.output
    table = json.loads(r.stdout)
    assert set(table["AP"]) == {"A7M3", "RICOH3"} and all(0 <= v <= 1 for v in table["AP"].values())
    saved = json.loads((tmp_path / "pred" / "predictions_A7M3.json").read_text())
    net, cfg = load_model(ckpt)
    ds = ExLPoseOCN(ocn, "A7M3", **dataset_options(cfg))
    loader = DataLoader(ds, batch_size=4)
    ll, _ = run_inference(net, loader, "ll", torch.device("cpu"), flip_test=cfg.flip_test, convention=cfg.heatmap_convention)
    assert np.allclose([p["keypoints"] for p in saved], [p["keypoints"] for p in ll], atol=1e-3)
    with torch.no_grad():  # the WL branch gives other heatmaps on the same crops: the LL branch was the one used
        for m in net.modules():
            if isinstance(m, LSBN2d):
                m.branches["wl"].running_mean.add_(1.0)
        crops = next(iter(loader))["ll"]
        assert not torch.allclose(predict_heatmaps(net, crops, "wl"), predict_heatmaps(net, crops, "ll"), atol=1e-3)
    r = runner.invoke(eval_app, ["model", str(ckpt), "--dataset", str(ocn), "--splits", "A7M3,NIKON"])
    assert r.exit_code == 2 and "no ExLPose-OC_test_NIKON.json" in r.output
