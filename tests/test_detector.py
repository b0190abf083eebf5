"""The low-light person detector (issue 25): every variant trains from scratch on a tiny release through
``exlpose-detect train``, evaluates with pycocotools' numbers, predicts boxes that ``exlpose-eval model --boxes``
reads, finds the people of ``exlpose-predict --detector``, and leaves Python through ONNX with torch's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from baselines.checkpoint import DETECTOR_FORMAT, load_checkpoint, save_checkpoint
from baselines.cli import eval_app, predict_app
from baselines.config import make_config
from baselines.detect.cli import app as detect_app
from baselines.detect.config import DetectConfig, make_detect_config
from baselines.detect.losses import focal_loss, gathered_l1
from baselines.detect.model import build_detector
from baselines.lsbn import LSBN2d
from baselines.models import build_cpn
from exlpose_data.errors import InputError

from .test_baselines_train import make_tiny_release, one_torch_thread  # noqa: F401 (autouse fixture)

TINY = ["--backbone", "resnet18", "--input-size", "64x96", "--batch-size", "2", "--workers", "0", "--from-scratch", "--no-progress",
        "--threads", "1"]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def detector(release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An lsbn-lupi detector trained two steps from scratch (evaluated once on LL-A)."""
    out = tmp_path_factory.mktemp("det") / "run"
    r = CliRunner().invoke(detect_app, ["train", "--variant", "lsbn-lupi", "--dataset", str(release), *TINY, "--epochs", "2",
                                        "--val-splits", "LL-A", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out / "checkpoint.pth"


@pytest.fixture(scope="module")
def pose(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = make_config({"variant": "lsbn", "backbone": "resnet18", "input_size": (64, 48), "heatmap_size": (16, 12)})
    torch.manual_seed(0)
    net = build_cpn("resnet18", lsbn=True, heatmap_size=(16, 12))
    return save_checkpoint(tmp_path_factory.mktemp("pose") / "checkpoint.pth", model=net.state_dict(), config=cfg.to_dict(), epoch=0)


def test_defaults_are_centernets_and_sizes_checked():
    cfg = DetectConfig()
    assert (cfg.variant, cfg.backbone, cfg.lr, cfg.batch_size, cfg.epochs, cfg.lr_milestones, cfg.lr_gamma) == (
        "lsbn-lupi", "resnet50", 1.25e-4, 32, 140, [90, 120], 0.1)
    assert (cfg.size_weight, cfg.offset_weight, cfg.lupi_kind, cfg.output_size) == (0.1, 1.0, "gram", (128, 200))
    with pytest.raises(InputError, match="input_size: .*multiples of 32"):
        make_detect_config({"input_size": (500, 800)})
    with pytest.raises(InputError, match="variant"):
        make_detect_config({"variant": "dann"})  # the pose-only comparisons are not detector variants


def test_losses_on_known_values():
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 1, 2] = 1.0
    target[0, 0, 1, 1] = 0.5
    logits = torch.full((1, 1, 4, 4), -3.0)
    logits[0, 0, 1, 2] = 2.0
    p = torch.sigmoid(logits)
    pos = -(1 - p[0, 0, 1, 2]) ** 2 * torch.log(p[0, 0, 1, 2])
    weights = (1 - target) ** 4
    weights[0, 0, 1, 2] = 0
    neg = -(weights * p**2 * torch.log(1 - p)).sum()
    assert focal_loss(logits, target).item() == pytest.approx((pos + neg).item(), rel=1e-5)
    size = torch.zeros(1, 2, 4, 4)
    size[0, :, 1, 2] = torch.tensor([3.0, 5.0])
    index = torch.tensor([[1 * 4 + 2, 0]])
    mask = torch.tensor([[1.0, 0.0]])
    wanted = torch.tensor([[[4.0, 3.0], [100.0, 100.0]]])  # the second object is padding: never counted
    assert gathered_l1(size, index, wanted, mask).item() == pytest.approx((1.0 + 2.0) / 2)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["baseline-low", "baseline-well", "baseline-all", "lsbn", "lsbn-lupi"])
def test_every_variant_trains_from_scratch(release, tmp_path, variant):
    out = tmp_path / "run"
    r = CliRunner().invoke(detect_app, ["train", "--variant", variant, "--dataset", str(release), *TINY, "--epochs", "1",
                                        "--val-splits", "", "--out", str(out)])
    assert r.exit_code == 0, r.output
    record = json.loads(r.stdout.strip().splitlines()[-1])
    conditions = {"baseline-low": ["ll"], "baseline-well": ["wl"]}.get(variant, ["ll", "wl"])
    assert sorted(k.split("/")[1].rsplit("_", 1)[1] for k in record if k.startswith("loss/heatmap")) == conditions
    assert ("loss/lupi" in record) == (variant == "lsbn-lupi")
    assert all(np.isfinite(v) for k, v in record.items() if k.startswith("loss/"))
    ckpt = load_checkpoint(out / "checkpoint.pth", format=DETECTOR_FORMAT)
    assert ckpt["epoch"] == 1 and ckpt["config"]["variant"] == variant
    assert any(".branches.ll." in k for k in ckpt["model"]) == variant.startswith("lsbn")
    net = build_detector("resnet18", lsbn=variant.startswith("lsbn"))
    net.load_state_dict(ckpt["model"])
    assert any(isinstance(m, LSBN2d) for m in net.modules()) == variant.startswith("lsbn")
    record_file = json.loads((out / ".exlpose-provenance.json").read_text())
    assert record_file["steps"]["train"]["command"] == "exlpose-detect train"


@pytest.mark.slow
def test_resume_and_run_folder_rules(release, detector, tmp_path):
    run = detector.parent
    history = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and "AP/LL-A" in history[-1] and "AP50/LL-A" in history[-1]
    runner = CliRunner()
    # the same folder again, without --resume or --overwrite: refused, nothing lost
    r = runner.invoke(detect_app, ["train", "--variant", "lsbn-lupi", "--dataset", str(release), *TINY, "--out", str(run)])
    assert r.exit_code == 2 and "already holds a detector run" in r.output
    # a pose checkpoint where a detector's is expected: one line
    pose_ckpt = save_checkpoint(tmp_path / "pose.pth", model={}, config={}, epoch=0)
    r = runner.invoke(detect_app, ["eval", str(pose_ckpt), "--dataset", str(release), "--splits", "LL-A"])
    assert r.exit_code == 2 and "is a pose checkpoint (exlpose-train), expected a person-detector checkpoint" in r.output
    r = runner.invoke(predict_app, [str(detector), str(next((release / "dark").glob("*.png")))])
    assert r.exit_code == 2 and "is a person-detector checkpoint" in r.output
    # a copy resumes for one more epoch and keeps its history
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("checkpoint.pth", "metrics.json", ".exlpose-provenance.json"):
        (copy / name).write_bytes((run / name).read_bytes())
    # a finished run has nothing left to train: said, nothing written
    r = runner.invoke(detect_app, ["train", "--resume", str(copy / "checkpoint.pth"), "--no-progress", "--threads", "1"])
    assert r.exit_code == 2 and "has trained 2 of 2 epochs already; pass --epochs N (more than 2)" in r.output
    assert not (copy / "tensorboard").exists()
    # without --out the resumed run continues where its checkpoint lies (the copy), not in the folder it was started in
    r = runner.invoke(detect_app, ["train", "--resume", str(copy / "checkpoint.pth"), "--epochs", "3", "--val-splits", "", "--no-progress",
                                   "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert [h["epoch"] for h in json.loads((copy / "metrics.json").read_text())] == [1, 2, 3]
    assert [h["epoch"] for h in json.loads((run / "metrics.json").read_text())] == [1, 2]
    r = runner.invoke(detect_app, ["train", "--resume", str(copy / "checkpoint.pth"), "--test-only", "--val-splits", "", "--no-progress"])
    assert r.exit_code == 2 and "--test-only: no test split to evaluate" in r.output
    r = runner.invoke(detect_app, ["train", "--resume", str(copy / "checkpoint.pth"), "--backbone", "resnet34", "--epochs", "4",
                                   "--no-progress", "--out", str(copy)])
    assert r.exit_code == 2 and "backbone" in r.output


@pytest.mark.slow
def test_eval_equals_pycocotools_and_boxes_feed_pose_eval(release, detector, pose, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from exlpose_data.evaluation.bbox_eval import prepare_box_ground_truth
    from exlpose_data.evaluation.keypoint_eval import _quiet_coco

    runner = CliRunner()
    saved = tmp_path / "eval"
    r = runner.invoke(detect_app, ["eval", str(detector), "--dataset", str(release), "--splits", "LL-A,WL", "--workers", "0",
                                   "--threads", "1", "--json", "--save-predictions", str(saved)])
    assert r.exit_code == 0, r.output
    table = json.loads(r.stdout)
    for split in ("LL-A", "WL"):
        boxes = json.loads((saved / f"boxes_{split}.json").read_text())
        assert boxes and table["splits"][split]["num_detections"] == len(boxes)
        gt = prepare_box_ground_truth(release / "annotations" / f"ExLPose_test_{split}.json")
        coco = _quiet_coco(gt)
        evaluator = COCOeval(coco, coco.loadRes(boxes), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        assert table["AP"][split] == pytest.approx(max(evaluator.stats[0], 0.0), abs=1e-12)
        assert table["AP50"][split] == pytest.approx(max(evaluator.stats[1], 0.0), abs=1e-12)
        assert isinstance(coco, COCO)

    # Table 6's chain: the detector's boxes for a split feed the pose evaluation unchanged
    dets = tmp_path / "boxes_LL-A.json"
    r = runner.invoke(detect_app, ["predict", str(detector), "--dataset", str(release), "--split", "LL-A", "--out", str(dets), "--threads", "1"])
    assert r.exit_code == 0, r.output
    written = json.loads(dets.read_text())
    doc = json.loads((release / "annotations" / "ExLPose_test_LL-A.json").read_text())
    assert {d["image_id"] for d in written} <= {img["id"] for img in doc["images"]} and all(d["category_id"] == 1 for d in written)
    # the same boxes as its own evaluation scored (batch 1 here, batches of 8 there: float32 rounding only)
    scored = json.loads((saved / "boxes_LL-A.json").read_text())
    assert [d["image_id"] for d in written] == [d["image_id"] for d in scored]
    assert np.abs(np.array([d["bbox"] + [d["score"]] for d in written]) - np.array([d["bbox"] + [d["score"]] for d in scored])).max() < 0.05
    r = runner.invoke(eval_app, ["model", str(pose), "--dataset", str(release), "--splits", "LL-A", "--boxes", str(dets), "--workers", "0",
                                 "--json", "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["boxes"] == "detections"
    # predict never replaces its inputs or other kinds of files
    r = runner.invoke(detect_app, ["predict", str(detector), "--dataset", str(release), "--split", "LL-A",
                                   "--out", str(release / "annotations" / "ExLPose_test_LL-A.json")])
    assert r.exit_code == 2 and "annotation" in r.output
    r = runner.invoke(detect_app, ["predict", str(detector), "--dataset", str(release), "--split", "LL-A", "--out", str(dets)])
    assert r.exit_code == 2 and "--overwrite" in r.output


@pytest.mark.slow
def test_image_to_skeletons_with_the_detector_and_its_onnx_export(release, detector, pose, tmp_path):
    import onnxruntime as ort

    from baselines.detect.api import detect_images
    from baselines.detect.train import load_detector

    dark = sorted((release / "dark").glob("*.png"))[:2]
    runner = CliRunner()
    out = tmp_path / "poses"
    r = runner.invoke(predict_app, [str(pose), *map(str, dark), "--detector", str(detector), "--min-box-score", "0", "--out", str(out),
                                    "--threads", "1"])
    assert r.exit_code == 0, r.output
    people = json.loads((out / "keypoints.json").read_text())
    found = detect_images(str(detector), dark, min_score=0.0)
    assert len(people) == sum(len(v) for v in found.values()) > 0
    first = people[0]
    box = found[first["image"]][0]
    assert first["bbox"] == pytest.approx(box[:4]) and first["score"] == pytest.approx(box[4] * np.mean(first["keypoints"][2::3]), rel=2e-3)
    assert (out / f"{dark[0].stem}_pose.png").is_file()

    # ONNX: the whole detector, decoding included, equals torch on the same input, at batch sizes 1 and 3
    model = tmp_path / "det.onnx"
    r = runner.invoke(_umbrella(), ["export", "onnx", str(detector), "--out", str(model)])
    assert r.exit_code == 0, r.output
    net, cfg = load_detector(detector)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()][:2] == ["boxes", "scores"]
    for batch in (1, 3):
        x = torch.randn(batch, 3, *cfg.input_size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = net(x, condition="ll")
        heat, size, offset = session.run(["heatmap", "size", "offset"], {"input": x.numpy()})
        assert np.abs(heat - ref.heatmap.numpy()).max() <= 1e-4 and np.abs(size - ref.size.numpy()).max() <= 1e-4
        assert np.abs(offset - ref.offset.numpy()).max() <= 1e-4
    # the exported model finds the same people through --detector onnx:
    via_onnx = detect_images(f"onnx:{model}", dark, min_score=0.0)
    for path, rows in found.items():
        strong = [row for row in rows if row[4] > 1e-3]
        got = [row for row in via_onnx[path] if row[4] > 1e-3]
        assert len(got) == len(strong)
        assert np.abs(np.asarray(got) - np.asarray(strong)).max() <= 1e-3
    # an LSBN model exported with its LL branch refuses WL images
    r = runner.invoke(predict_app, [str(pose), str(dark[0]), "--detector", f"onnx:{model}", "--condition", "WL", "--out", str(tmp_path / "wl")])
    assert r.exit_code == 2 and "--lighting wl" in r.output
    r = runner.invoke(predict_app, [str(pose), str(dark[0]), "--detector", str(detector), "--boxes", str(tmp_path / "b.json")])
    assert r.exit_code == 2 and "exclude each other" in r.output


def test_a_foreign_onnx_detector_under_the_contract(tmp_path):
    """Any person detector exported to ONNX: RGB on [0, 1] fitted into its fixed input, boxes in input pixels."""
    import cv2

    from baselines.detect.api import detect_images

    class Fixed(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # one box at the input's centre, 32 x 64 px, scored by the image's mean (so the input scale is checked)
            mean = x.mean(dim=(1, 2, 3))
            boxes = torch.tensor([[[48.0, 0.0, 80.0, 64.0]]]).expand(x.shape[0], 1, 4) + 0 * mean[:, None, None]
            return boxes, mean[:, None]

    model = tmp_path / "foreign.onnx"
    torch.onnx.export(Fixed(), (torch.zeros(1, 3, 64, 128),), str(model), input_names=["images"], output_names=["boxes", "scores"],
                      opset_version=17, dynamo=False)
    image = np.full((100, 400, 3), 51, np.uint8)  # 400 x 100 fits as 128 x 32, centred in 128 x 64 with black rows
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), image)
    (row,) = detect_images(f"onnx:{model}", [path], min_score=0.0)[str(path)]
    # input x 48..80 maps back through scale 0.32 about pixel centres, x = (u + 0.5) / 0.32 - 0.5, to 151.06..251.06;
    # y 0..64 (16 black rows on top) to -50..150, clipped to the image's 0..100
    assert row[:4] == pytest.approx([151.0625, 0.0, 100.0, 100.0], abs=1e-3)
    assert row[4] == pytest.approx(0.2 * 32 / 64, abs=1e-3)  # 51/255 over half of the input, black elsewhere


def _umbrella():
    from exlpose.cli import app

    return app


@pytest.mark.slow
def test_trained_scale_outputs_export(tmp_path):
    """A trained pose head peaks near 255 and a detector's size head predicts tens of cells: float32 rounding between
    onnxruntime and torch grows with them, so parity is judged relative to each output's scale (an absolute 1e-4
    refused such models)."""
    from baselines.detect.config import make_detect_config
    from baselines.detect.export import export_detector_onnx
    from baselines.models.cpn import init_output_scale
    from baselines.onnx_export import export_pose_onnx

    cfg = make_config({"variant": "lsbn", "backbone": "resnet18", "input_size": (64, 48), "heatmap_size": (16, 12)})
    torch.manual_seed(0)
    net = init_output_scale(build_cpn("resnet18", lsbn=True, heatmap_size=(16, 12)))
    ckpt = save_checkpoint(tmp_path / "pose.pth", model=net.state_dict(), config=cfg.to_dict(), epoch=0)
    result = export_pose_onnx(ckpt, tmp_path / "pose.onnx")
    assert result["max_abs_diff"] <= 1e-4 and result["batches"] == [2, 1, 3]

    det_cfg = make_detect_config({"backbone": "resnet18", "input_size": (64, 96), "from_scratch": True})
    torch.manual_seed(0)
    det = build_detector("resnet18", lsbn=True)
    with torch.no_grad():
        det.size[-1].bias.fill_(100.0)  # boxes of about 100 cells, as on large people
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert det.eval()(x, condition="ll").size.abs().max() > 50
    det_ckpt = save_checkpoint(tmp_path / "det.pth", format=DETECTOR_FORMAT, model=det.state_dict(), config=det_cfg.to_dict(), epoch=0)
    result = export_detector_onnx(det_ckpt, tmp_path / "det.onnx")
    assert result["max_abs_diff"] <= 1e-4 and result["kind"] == "detector"


class _Oracle(torch.nn.Module):
    """A detector network that outputs, image after image, the ideal heads of a split's own boxes (people of even
    index shrunk to 80 %, so the AP lies between 0 and 1): the decoding, the map back to image pixels, the results'
    ids and the scoring all run for real."""

    def __init__(self, dataset) -> None:
        super().__init__()
        self.outputs = []
        for i in range(len(dataset)):
            s = dataset[i]
            h, w = s["heatmap"].shape[1:]
            heat = s["heatmap"].clamp(1e-6, 1 - 1e-6)
            size = torch.zeros(1, 2, h, w)
            offset = torch.zeros(1, 2, h, w)
            for k in range(int(s["mask"].sum())):
                cell = int(s["index"][k])
                shrink = 0.8 if k % 2 == 0 else 1.0
                size[0, :, cell // w, cell % w] = s["size"][k] * shrink
                offset[0, :, cell // w, cell % w] = s["offset"][k]
            self.outputs.append((torch.log(heat / (1 - heat))[None], size, offset))
        self.calls = 0

    def forward(self, x: torch.Tensor, condition: str | None = None):
        from baselines.detect.model import DetectorOutput

        heat, size, offset = self.outputs[self.calls]
        self.calls += 1
        return DetectorOutput(heat, size, offset, [])


def test_box_ap_of_a_known_detector_equals_pycocotools(release):
    from pycocotools.cocoeval import COCOeval

    from baselines.detect.evaluate import evaluate_split
    from exlpose_data.datasets import ExLPoseDetection
    from exlpose_data.evaluation.bbox_eval import prepare_box_ground_truth
    from exlpose_data.evaluation.keypoint_eval import _quiet_coco

    cfg = make_detect_config({"input_size": (128, 160)})
    ann = release / "annotations" / "ExLPose_test_LL-A.json"
    oracle = _Oracle(ExLPoseDetection(release, ann, condition="LL", input_size=(128, 160), train=False))
    metrics, results = evaluate_split(oracle, cfg, release, ann, "LL", torch.device("cpu"), batch_size=1)
    doc = json.loads(ann.read_text())
    strong = [r for r in results if r["score"] > 0.5]
    assert len(strong) == len(doc["annotations"]) and {r["image_id"] for r in strong} == {img["id"] for img in doc["images"]}
    coco = _quiet_coco(prepare_box_ground_truth(ann))
    evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert 0.3 < metrics.AP < 0.9 and metrics.AP50 == pytest.approx(1.0)  # shrunk boxes: IoU 0.64, matched up to 0.6
    assert metrics.AP == pytest.approx(evaluator.stats[0], abs=1e-12) and metrics.AP75 == pytest.approx(evaluator.stats[2], abs=1e-12)


def test_predict_refuses_options_it_would_ignore(release, tmp_path):
    runner = CliRunner()
    image = str(next((release / "dark").glob("*.png")))
    cases = [
        (["--dataset", str(release), "--split", "LL-A", "--condition", "WL"], "--condition goes with IMAGES; split LL-A has its own (LL)"),
        ([image, "--dataset", str(release)], "--dataset and --annotations go with --split"),
        ([image, "--min-score", "1.5"], "--min-score 1.5: must lie in [0, 1]"),
        ([image, "--split", "LL-A", "--dataset", str(release)], "give either IMAGES or --dataset ROOT --split NAME"),
        (["--split", "LL-A"], "--split needs --dataset ROOT"),
        ([image, "--condition", "dusk"], "--condition 'DUSK': choose one of LL, WL"),
    ]
    for args, message in cases:
        r = runner.invoke(detect_app, ["predict", str(tmp_path / "det.pth"), *args, "--out", str(tmp_path / "b.json")])
        assert r.exit_code == 2 and message in r.output, (args, r.output)
    assert not (tmp_path / "b.json").exists()


def test_boxes_rounding_to_nothing_are_not_written():
    from baselines.detect.evaluate import coco_detections

    rows = [[12.37, 148.69, 0.0032, 18.24, 0.5], [265.78, 106.38, 8.59, 0.004, 0.4], [1.0, 2.0, 3.0, 4.0, 0.9]]
    assert coco_detections(3, rows) == [{"image_id": 3, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.9}]


@pytest.mark.slow
def test_a_failed_evaluation_keeps_the_trained_epoch(release, tmp_path, monkeypatch):
    import baselines.detect.train as detect_train

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(detect_train, "evaluate_splits", broken)
    cfg = make_detect_config({"variant": "baseline-all", "dataset": str(release), "backbone": "resnet18", "input_size": (64, 96),
                              "batch_size": 2, "workers": 0, "from_scratch": True, "epochs": 1, "val_splits": ["LL-A"],
                              "output_dir": str(tmp_path / "run")})
    with pytest.raises(RuntimeError, match="evaluation failed"):
        detect_train.run(cfg)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pth", format=DETECTOR_FORMAT)["epoch"] == 1


@pytest.mark.slow
def test_predict_folders_after_mistakes_and_named_results(release, detector, pose, tmp_path):
    runner = CliRunner()
    dark = sorted((release / "dark").glob("*.png"))[:2]
    out = tmp_path / "poses"
    # a wrong model where the detector goes: refused, and the new folder is not left behind holding a record
    r = runner.invoke(predict_app, [str(pose), *map(str, dark), "--detector", str(pose), "--out", str(out)])
    assert r.exit_code == 2 and "is a pose checkpoint" in r.output and not out.exists()
    r = runner.invoke(predict_app, [str(pose), str(tmp_path / "missing.png"), "--out", str(out)])
    assert r.exit_code == 2 and "missing.png: no such image file" in r.output and not out.exists()
    r = runner.invoke(predict_app, [str(pose), *map(str, dark), "--detector", str(detector), "--min-box-score", "0", "--out", str(out),
                                    "--threads", "1"])
    assert r.exit_code == 0, r.output
    # exlpose-detect predict IMAGES writes results naming their files, which exlpose-predict --boxes reads
    named = tmp_path / "named.json"
    r = runner.invoke(detect_app, ["predict", str(detector), *map(str, dark), "--out", str(named), "--min-score", "0.05", "--threads", "1"])
    assert r.exit_code == 0, r.output
    written = json.loads(named.read_text())
    assert written and {d["file_name"] for d in written} <= set(map(str, dark))
    r = runner.invoke(predict_app, [str(pose), *map(str, dark), "--boxes", str(named), "--out", str(tmp_path / "p2"), "--threads", "1"])
    assert r.exit_code == 0, r.output
    people = json.loads((tmp_path / "p2" / "keypoints.json").read_text())
    assert len(people) == len(written) and people[0]["bbox"] == written[0]["bbox"]


@pytest.mark.slow
def test_detector_under_torchrun_two_processes(release, tmp_path):
    """Two CPU processes (gloo): the shared machinery's DDP path with the detector's model, LUPI included."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "baselines.detect.cli", "train",
           "--variant", "lsbn-lupi", "--dataset", str(release), "--output-dir", str(tmp_path / "run"), *TINY, "--epochs", "1", "--val-splits", ""]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 prints
    record = json.loads(lines[0])
    assert record["epoch"] == 1 and record["loss/lupi"] >= 0 and np.isfinite(record["loss/total"])
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pth", format=DETECTOR_FORMAT)["epoch"] == 1


@pytest.mark.slow
def test_pretrained_imagenet_weights_or_from_scratch(release, tmp_path):
    from baselines.models.resnet import ResNet

    runner = CliRunner()
    base = ["train", "--variant", "lsbn", "--dataset", str(release), "--backbone", "resnet18", "--input-size", "64x96", "--batch-size", "2",
            "--workers", "0", "--no-progress", "--threads", "1", "--epochs", "1", "--val-splits", ""]
    r = runner.invoke(detect_app, [*base, "--out", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no ImageNet weights given" in r.output and "--from-scratch" in r.output
    assert not (tmp_path / "none").exists()
    torch.manual_seed(123)
    imagenet = ResNet(18, num_classes=1000).state_dict()  # torchvision's key names, classifier included
    torch.save(imagenet, tmp_path / "resnet18-imagenet.pth")
    r = runner.invoke(detect_app, [*base, "--pretrained", str(tmp_path / "resnet18-imagenet.pth"), "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    model = load_checkpoint(tmp_path / "run" / "checkpoint.pth", format=DETECTOR_FORMAT)["model"]
    # one Adam step at lr 1.25e-4 moves each weight by about the lr: the start was ImageNet's, in both LSBN branches
    assert (model["backbone.conv1.weight"] - imagenet["conv1.weight"]).abs().max() < 1e-3
    for branch in ("ll", "wl"):
        assert (model[f"backbone.layer1.0.bn1.branches.{branch}.weight"] - imagenet["layer1.0.bn1.weight"]).abs().max() < 1e-3
    torch.save(ResNet(34).state_dict(), tmp_path / "resnet34.pth")
    r = runner.invoke(detect_app, [*base, "--pretrained", str(tmp_path / "resnet34.pth"), "--out", str(tmp_path / "wrong")])
    assert r.exit_code == 2 and "resnet34.pth: does not fit a ResNet-18" in r.output


def test_centre_radius_exact_by_default_centernets_on_request(release):
    from exlpose_data.datasets import ExLPoseDetection
    from exlpose_data.datasets.centre_targets import gaussian_radius

    # a 20 x 40 box: a shift of r in x and y keeps IoU 0.7 up to r = 2.45 (solved by hand: (60 - sqrt(3600 - 4 * 141.18)) / 2);
    # CenterNet's code takes the third quadratic's (b + sqrt(b^2 - 4ac)) / 2 with a = 2.8: 7.36
    assert gaussian_radius(40, 20) == pytest.approx(2.4532, abs=1e-4)
    assert gaussian_radius(40, 20, rule="centernet") == pytest.approx(7.3559, abs=1e-4)
    assert DetectConfig().centre_radius == "exact" and "centre_radius" in __import__("baselines.detect.config", fromlist=["x"]).DETECT_IDENTITY
    ann = release / "annotations" / "ExLPose_train_LL.json"
    blobs = {rule: ExLPoseDetection(release, ann, condition="LL", input_size=(128, 160), train=False, radius_rule=rule)[0]["heatmap"]
             for rule in ("exact", "centernet")}
    assert (blobs["centernet"] > 0.01).sum() > 2 * (blobs["exact"] > 0.01).sum()
    assert torch.equal(blobs["exact"] == 1, blobs["centernet"] == 1)  # the same centres
    with pytest.raises(InputError, match="centre_radius"):
        make_detect_config({"centre_radius": "wide"})
