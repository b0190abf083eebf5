"""Fig. 6 (style and feature gaps): the modified Hausdorff distance, the Gram forms, ``exlpose-eval gaps``."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from baselines.analysis import _distances, _feat_inner, _gram_inner, _represent, feature_gaps, hausdorff_from_distances, modified_hausdorff
from baselines.checkpoint import load_model, save_checkpoint
from baselines.config import make_config
from baselines.cli import eval_app
from baselines.losses import lupi_gram_per_sample
from baselines.models import build_cpn

from .test_baselines_train import one_torch_thread  # noqa: F401 (autouse fixture)

TINY = {"backbone": "resnet18", "input_size": (64, 48), "heatmap_size": (16, 12), "batch_size": 2, "workers": 0}


def make_sim_release(root: Path, scenes: int = 4, seed: int = 0) -> Path:
    """A tiny simulated release (160x100 images, LL-N/H/E/A and WL test files)."""
    from exlpose_data.simulate.config import SimulationConfig
    from exlpose_data.simulate.release import simulate_release

    simulate_release(SimulationConfig(width=160, height=100), root, scenes=scenes, seed=seed, workers=1)
    return root


def make_checkpoint(path: Path, variant: str, seed: int = 0, **settings) -> Path:
    """An untrained tiny checkpoint of ``variant`` (resnet18, 64x48 crops)."""
    cfg = make_config({"variant": variant, **TINY, **settings})
    torch.manual_seed(seed)
    net = build_cpn("resnet18", lsbn=cfg.spec.lsbn, heatmap_size=(16, 12))
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, model=net.state_dict(), config=cfg.to_dict(), epoch=0)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sim_release(tmp_path_factory.mktemp("sim") / "release")


def _brute_force(a: np.ndarray, b: np.ndarray) -> float:
    def directed(x: np.ndarray, y: np.ndarray) -> float:
        return sum(min(math.dist(p, q) for q in y) for p in x) / len(x)

    return max(directed(a, b), directed(b, a))


def test_modified_hausdorff_by_hand_and_against_brute_force():
    # a -> b: (2 + sqrt 5) / 2; b -> a: 2. The larger one wins.
    assert modified_hausdorff(np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([[0.0, 2.0]])) == pytest.approx((2 + math.sqrt(5)) / 2)
    assert modified_hausdorff(np.zeros((3, 4)), np.zeros((5, 4))) == 0.0
    rng = np.random.default_rng(3)
    for n, m, d in ((1, 1, 1), (4, 7, 3), (9, 2, 5)):
        a, b = rng.normal(size=(n, d)), rng.normal(size=(m, d)) + 0.5
        assert modified_hausdorff(a, b) == pytest.approx(_brute_force(a, b), rel=1e-12)
        assert modified_hausdorff(a, b) == pytest.approx(modified_hausdorff(b, a), rel=1e-12)
    with pytest.raises(ValueError, match="shapes"):
        modified_hausdorff(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="non-empty"):
        modified_hausdorff(np.zeros((0, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-empty"):
        hausdorff_from_distances(np.zeros((2, 0)))


@pytest.mark.parametrize("shape", [(3, 4, 2, 3), (2, 9, 2, 2)])  # C <= N (Gram kept) and C > N (features kept)
def test_gram_distances_are_eq3_terms_in_either_form(shape):
    torch.manual_seed(0)
    ll, wl = torch.randn(shape), torch.randn(shape) + 0.3
    gram_ll, feat_ll = _represent(ll)
    gram_wl, feat_wl = _represent(wl)
    assert gram_ll.dim() == (2 if shape[1] <= shape[2] * shape[3] else 3)
    d = _distances(_gram_inner, gram_ll, gram_wl)
    for i, j in itertools.product(range(shape[0]), range(shape[0])):
        # The squared distance of Eq. 3-normalised Grams is Eq. 3's term for that pair.
        eq3 = float(lupi_gram_per_sample([ll[i : i + 1]], [wl[j : j + 1]])[0])
        assert d[i, j] ** 2 == pytest.approx(eq3, rel=1e-5)
        c, n = shape[1], shape[2] * shape[3]
        assert _distances(_feat_inner, feat_ll, feat_wl)[i, j] ** 2 == pytest.approx(float((ll[i] - wl[j]).pow(2).sum()) / (c * n), rel=1e-5)


def test_feature_gaps_match_a_direct_computation(sim):
    net, cfg = load_model(make_checkpoint(sim.parent / "ckpt" / "checkpoint.pth", "lsbn"))
    ann = sim / "annotations" / "ExLPose_test_LL-A.json"
    res = feature_gaps(net, cfg, sim, ann, torch.device("cpu"), max_crops=5, batch_size=3)
    assert res.crops == 5

    from exlpose_data.datasets import ExLPoseTopDown

    from baselines.inputs import dataset_options

    ds = ExLPoseTopDown(sim, ann, condition="pair", train=False, **dataset_options(cfg))
    picks = np.linspace(0, len(ds) - 1, 5).round().astype(int)
    with torch.no_grad():
        r4 = {c: torch.cat([net(ds[int(i)][c][None], condition=c).features[4] for i in picks]) for c in ("ll", "wl")}
    c, n = r4["ll"].shape[1], r4["ll"].shape[2] * r4["ll"].shape[3]
    feats = {k: (v.flatten(1) / math.sqrt(c * n)).double().numpy() for k, v in r4.items()}
    assert res.feature["R4"] == pytest.approx(modified_hausdorff(feats["ll"], feats["wl"]), rel=1e-4)
    grams = {k: (torch.bmm(v.flatten(2), v.flatten(2).transpose(1, 2)) / (2 * c * n)).flatten(1).double().numpy() for k, v in r4.items()}
    assert res.style["R4"] == pytest.approx(modified_hausdorff(grams["ll"], grams["wl"]), rel=1e-4)
    assert all(v > 0 for v in (*res.style.values(), *res.feature.values()))


@pytest.mark.slow
def test_eval_gaps_writes_json_and_a_bar_chart(sim, tmp_path):
    a = make_checkpoint(tmp_path / "baseline-all" / "checkpoint.pth", "baseline-all", seed=1)
    b = make_checkpoint(tmp_path / "lsbn" / "checkpoint.pth", "lsbn", seed=2)
    runner = CliRunner()
    r = runner.invoke(eval_app, ["gaps", str(a), str(b), "--dataset", str(sim), "--split", "LL-A", "--out", str(tmp_path / "out"), "--max-crops", "4"])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "out" / "gaps.json").read_text())
    assert doc["split"] == "LL-A" and list(doc["checkpoints"]) == ["baseline-all", "lsbn"]
    entry = doc["checkpoints"]["lsbn"]
    assert entry["variant"] == "lsbn" and entry["crops"] == 4 and list(entry["style"]) == ["R1", "R2", "R3", "R4"]
    assert (tmp_path / "out" / "gaps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = runner.invoke(eval_app, ["gaps", str(a), "--dataset", str(sim), "--split", "WL", "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "use LL-N, LL-H, LL-E or LL-A" in r.output
    r = runner.invoke(eval_app, ["gaps", str(tmp_path / "none.pth"), "--dataset", str(sim), "--out", str(tmp_path / "o3")])
    assert r.exit_code == 2 and "none.pth: no such checkpoint" in r.output


@pytest.mark.slow
def test_eval_table_rows_ground_truth_and_detections(sim, tmp_path):
    a = make_checkpoint(tmp_path / "baseline-all" / "checkpoint.pth", "baseline-all", seed=1)
    b = make_checkpoint(tmp_path / "lime" / "checkpoint.pth", "lime-baseline-all", seed=2, enhance_cache=str(tmp_path / "cache"))
    doc = json.loads((sim / "annotations" / "ExLPose_test_LL-A.json").read_text())
    boxes = [{"image_id": ann["image_id"], "category_id": 1, "bbox": ann["bbox"], "score": 1.0} for ann in doc["annotations"]]
    (tmp_path / "dets.json").write_text(json.dumps(boxes))
    runner = CliRunner()
    splits = "LL-H,LL-E,LL-A,WL"  # the simulated test scene has no LL-N image
    r = runner.invoke(eval_app, ["table", str(a), str(b), "--dataset", str(sim), "--splits", splits, "--boxes", str(tmp_path / "dets.json"),
                                 "--out", str(tmp_path / "out"), "--workers", "0", "--batch-size", "8"])
    assert r.exit_code == 0, r.output
    table = json.loads((tmp_path / "out" / "table.json").read_text())
    rows = {row["method"]: row for row in table["rows"]}
    assert list(rows) == ["baseline-all (ground truth boxes)", "baseline-all (detections boxes)", "lime (ground truth boxes)", "lime (detections boxes)"]
    gt, det = rows["baseline-all (ground truth boxes)"], rows["baseline-all (detections boxes)"]
    # Detections equal to the ground-truth boxes (score 1) crop and score exactly as the ground truth does.
    assert gt["AP"] == det["AP"] and list(gt["AP"]) == splits.split(",")
    r = runner.invoke(eval_app, ["model", str(a), "--dataset", str(sim), "--splits", "LL-A,WL", "--json", "--workers", "0", "--batch-size", "8"])
    single = json.loads(r.stdout)
    assert gt["AP"]["LL-A"] == single["AP"]["LL-A"] and gt["AP"]["WL"] == single["AP"]["WL"]
    assert gt["params"] == single["params"] and gt["latency_enhancer_s"] == 0 and gt["latency_s"] == gt["latency_crop_s"] > 0
    lime = rows["lime (ground truth boxes)"]
    assert lime["enhancer"] == "lime" and lime["latency_enhancer_s"] > 0
    assert lime["latency_s"] == pytest.approx(lime["latency_enhancer_s"] + lime["latency_crop_s"], abs=2e-4)
    md = (tmp_path / "out" / "table.md").read_text()
    assert md.startswith("| Method | LL-H | LL-E | LL-A | WL | Param. (M) | Latency (s) |")
    assert f"| baseline-all (ground truth boxes) | {100 * gt['AP']['LL-H']:.1f} |" in md and len(md.splitlines()) == 6
