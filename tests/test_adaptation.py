"""DANN and AdvEnt: gradient reversal, Ganin's schedule, entropy maps, the discriminator's update, and both
variants training a few steps on simulator data."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from baselines.adaptation import AdvEnt, Dann, entropy_maps, ganin_lambda, grad_reverse
from baselines.checkpoint import load_checkpoint
from baselines.models.cpn import CPNOutput

from .test_baselines_train import one_torch_thread  # noqa: F401 (autouse fixture)
from .test_comparisons import sim  # noqa: F401 (fixture)


def test_gradient_reversal_and_ganin_schedule():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = grad_reverse(x, 0.3)
    assert torch.equal(y, x.detach())
    (y * torch.tensor([2.0, 5.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.6, -1.5]))
    assert ganin_lambda(0.0) == 0.0
    assert ganin_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert ganin_lambda(1.0) == pytest.approx(0.9999092, abs=1e-7) and ganin_lambda(3.0) == ganin_lambda(1.0)


def test_entropy_maps_by_hand():
    uniform = torch.zeros(2, 3, 4, 5)
    assert torch.allclose(entropy_maps(uniform), torch.ones(2, 3, 4, 5))
    two = torch.tensor([0.0, math.log(3.0)]).reshape(1, 1, 1, 2)  # softmax -> (1/4, 3/4)
    p = torch.tensor([0.25, 0.75])
    assert torch.allclose(entropy_maps(two).flatten(), -(p * p.log()) * 2 / math.log(2), atol=1e-6)
    peaked = torch.zeros(1, 1, 8, 6)
    peaked[0, 0, 3, 2] = 255.0  # a confident heatmap (peak 255, as the targets) has no entropy left
    assert entropy_maps(peaked).max() < 1e-6


def _outputs(features: torch.Tensor, heatmaps: torch.Tensor) -> dict[str, CPNOutput]:
    return {cond: CPNOutput([heatmaps[i]], heatmaps[i], [features[i]]) for i, cond in enumerate(("wl", "ll"))}


def test_dann_reverses_the_domain_gradient_into_the_features():
    torch.manual_seed(0)
    dann = Dann(in_channels=4, total_steps=10)
    dann.eval()
    dann.step += 5  # halfway: lambda = ganin_lambda(0.5)
    feats = torch.randn(2, 3, 4, 2, 2, requires_grad=True)
    heat = torch.randn(2, 3, 14, 4, 4)
    torch.manual_seed(1)
    dann.losses(_outputs(feats, heat))["domain"].backward()
    reversed_grad = feats.grad.clone()
    feats.grad = None
    # The same loss without the reversal layer (dropout drawn identically): the gradient flips sign and scales.
    torch.manual_seed(1)
    dann.classifier.train()
    plain = 0.5 * sum(torch.nn.functional.binary_cross_entropy_with_logits(dann.classifier(feats[i]), torch.full((3,), float(i)))
                      for i in range(2))
    plain.backward()
    assert torch.allclose(reversed_grad, -ganin_lambda(0.5) * feats.grad, atol=1e-7)
    assert dann.trained_with_pose_network() is dann.classifier


def test_advent_trains_only_its_discriminator_in_its_own_step():
    torch.manual_seed(0)
    advent = AdvEnt(num_keypoints=14, total_steps=4, weight=1e-3)
    heat = torch.randn(2, 2, 14, 16, 12, requires_grad=True)
    feats = torch.randn(2, 2, 4, 2, 2)
    outputs = _outputs(feats, heat)
    loss = advent.losses(outputs)["adversarial"]
    loss.backward()
    assert all(p.grad is None for p in advent.discriminator.parameters())  # the pose term leaves D alone
    assert heat.grad[1].abs().sum() > 0 and heat.grad[0].abs().sum() == 0  # and reaches only the LL heatmaps
    before = [p.detach().clone() for p in advent.discriminator.parameters()]
    logs = advent.after_step(outputs)
    assert logs["discriminator"] > 0 and int(advent.step) == 1
    assert all(not torch.equal(a, b) for a, b in zip(before, advent.discriminator.parameters()))
    state = advent.state_dict()
    clone = AdvEnt(num_keypoints=14, total_steps=4)
    clone.load_state_dict(state)
    assert int(clone.step) == 1 and clone.optimizer.state_dict()["state"].keys() == advent.optimizer.state_dict()["state"].keys()


SMALL = ["--backbone", "resnet18", "--input-size", "64x48", "--heatmap-size", "16x12", "--batch-size", "2", "--steps-per-epoch", "2",
         "--workers", "0", "--no-progress", "--from-scratch", "--val-splits", "LL-A,WL"]


@pytest.mark.slow
@pytest.mark.parametrize("variant, term", [("dann", "loss/domain"), ("advent", "loss/adversarial")])
def test_adaptation_variants_train_evaluate_and_resume(sim, tmp_path, variant, term):  # noqa: F811
    from baselines.cli import train_app

    out = tmp_path / variant
    runner = CliRunner()
    r = runner.invoke(train_app, ["--variant", variant, "--dataset", str(sim), "--output-dir", str(out), "--epochs", "1", *SMALL])
    assert r.exit_code == 0, r.output
    record = json.loads(r.stdout.strip().splitlines()[-1])
    assert record[term] > 0 and 0 <= record["AP/LL-A"] <= 1 and 0 <= record["AP/WL"] <= 1
    ckpt = load_checkpoint(out / "checkpoint.pth")
    assert int(ckpt["adaptation"]["step"]) == 2
    r = runner.invoke(train_app, ["--resume", str(out / "checkpoint.pth"), "--epochs", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert int(load_checkpoint(out / "checkpoint.pth")["adaptation"]["step"]) == 4
    if variant == "advent":
        assert "loss/discriminator" in record
