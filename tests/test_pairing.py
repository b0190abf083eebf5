"""Table 3: unpaired LL/WL sampling (never the twin, never the scene) and the variants built on it."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from baselines.config import make_config
from baselines.engine import compute_losses
from baselines.losses import cpn_pose_loss
from baselines.models.cpn import CPNOutput
from baselines.pairing import UnpairedPairs, instance_scenes
from exlpose_data.datasets import ExLPoseTopDown
from exlpose_data.errors import UsageError
from exlpose_data.naming import parse_name

from .test_baselines_train import make_tiny_release, one_torch_thread  # noqa: F401 (autouse fixture)
from .test_comparisons import sim  # noqa: F401 (fixture)

OPTIONS = {"input_size": (64, 48), "heatmap_size": (16, 12)}


def _sides(root, train: bool = False):
    ann = root / "annotations" / "ExLPose_train_LL.json"
    return (ExLPoseTopDown(root, ann, condition="LL", train=train, **OPTIONS),
            ExLPoseTopDown(root, ann, condition="WL", train=train, **OPTIONS))


def test_partners_come_from_other_scenes_only_and_cover_them(sim):  # noqa: F811
    ll, wl = _sides(sim)
    pairs = UnpairedPairs(ll, wl, seed=3)
    ll_scenes, wl_scenes = instance_scenes(ll, "LL"), instance_scenes(wl, "WL")
    assert len(set(ll_scenes)) >= 2
    for epoch in range(3):
        pairs.set_epoch(epoch)
        for i in range(len(pairs)):
            assert wl_scenes[pairs.partner(i)] != ll_scenes[i]
    i = 0
    allowed = {j for j, s in enumerate(wl_scenes) if s != ll_scenes[i]}
    drawn = set()
    for epoch in range(3000):
        pairs.set_epoch(epoch)
        drawn.add(pairs.partner(i))
    assert drawn == allowed  # uniform over every crop of the other scenes (3000 draws from about a hundred)
    pairs.set_epoch(7)
    first = [pairs.partner(i) for i in range(len(pairs))]
    again = UnpairedPairs(ll, wl, seed=3)
    again.set_epoch(7)
    assert [again.partner(i) for i in range(len(pairs))] == first


def test_a_sample_holds_each_sides_own_crop_and_targets(sim):  # noqa: F811
    ll, wl = _sides(sim)
    pairs = UnpairedPairs(ll, wl, seed=0)
    sample = pairs[2]
    j = pairs.partner(2)
    own_ll, own_wl = ll[2], wl[j]
    assert torch.equal(sample["ll"], own_ll["ll"]) and torch.equal(sample["wl"], own_wl["wl"])
    assert torch.equal(sample["heatmaps"], own_ll["heatmaps"]) and torch.equal(sample["heatmaps_wl"], own_wl["heatmaps"])
    assert torch.equal(sample["visible_weight_wl"], own_wl["visible_weight"])
    assert parse_name(sample["meta"]["wl_file"]).scene_id != parse_name(sample["meta"]["ll_file"]).scene_id


def test_one_scene_is_refused(tmp_path):
    root = make_tiny_release(tmp_path / "rel")  # three frames of one scene
    ll, wl = _sides(root)
    with pytest.raises(UsageError, match="at least two scenes"):
        UnpairedPairs(ll, wl)


def test_uda_has_no_ll_pose_loss_and_each_side_uses_its_own_targets():
    torch.manual_seed(0)
    b, k, h, w = 2, 14, 4, 3
    out = {c: CPNOutput([torch.randn(b, k, h, w) for _ in range(4)], torch.randn(b, k, h, w), [torch.randn(b, 4, 2, 2)]) for c in ("ll", "wl")}
    batch = {"heatmaps": torch.rand(b, 4, k, h, w), "target_weight": torch.ones(b, k), "visible_weight": torch.ones(b, k),
             "heatmaps_wl": torch.rand(b, 4, k, h, w), "target_weight_wl": torch.ones(b, k), "visible_weight_wl": torch.zeros(b, k)}
    uda = compute_losses(out, batch, make_config({"variant": "lsbn-lupi-uda"}))
    unpaired = compute_losses(out, batch, make_config({"variant": "lsbn-lupi-unpaired"}))
    assert "pose_ll" not in uda and set(unpaired) == {"pose_ll", "pose_wl", "lupi", "total"}
    expected_wl = cpn_pose_loss(out["wl"].global_heatmaps, out["wl"].heatmaps, batch["heatmaps_wl"], batch["target_weight_wl"],
                                global_weight=batch["visible_weight_wl"]).total
    expected_ll = cpn_pose_loss(out["ll"].global_heatmaps, out["ll"].heatmaps, batch["heatmaps"], batch["target_weight"],
                                global_weight=batch["visible_weight"]).total
    assert torch.allclose(uda["pose_wl"], expected_wl) and torch.allclose(unpaired["pose_ll"], expected_ll)
    assert torch.allclose(uda["total"], expected_wl + uda["lupi"])


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["lsbn-lupi-unpaired", "lsbn-lupi-uda"])
def test_pairing_variants_train_and_evaluate(sim, tmp_path, variant):  # noqa: F811
    from baselines.cli import train_app

    r = CliRunner().invoke(train_app, ["--variant", variant, "--dataset", str(sim), "--output-dir", str(tmp_path / variant), "--epochs", "1",
                                       "--backbone", "resnet18", "--input-size", "64x48", "--heatmap-size", "16x12", "--batch-size", "2",
                                       "--steps-per-epoch", "2", "--workers", "0", "--no-progress", "--from-scratch", "--val-splits", "LL-A,WL"])
    assert r.exit_code == 0, r.output
    record = json.loads(r.stdout.strip().splitlines()[-1])
    assert record["loss/lupi"] > 0 and 0 <= record["AP/LL-A"] <= 1
    assert ("loss/pose_ll" in record) == (variant == "lsbn-lupi-unpaired")
