"""LSBN, the torchvision-compatible ResNet, CPN and the losses (small models and inputs: fast)."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from torch import nn

from baselines.losses import REFERENCE_LUPI_SCALE, cpn_pose_loss, gram_distance_sq, gram_matrix, lupi_feat_loss, lupi_gram_loss, lupi_loss, ohkm
from baselines.lsbn import LSBN2d, convert_lsbn, current_lighting, lighting
from baselines.models import build_cpn, load_pretrained, resnet
from exlpose_data.errors import InputError

from .test_baselines_train import one_torch_thread  # noqa: F401 (autouse fixture)


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.1
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5


def _small_cpn(lsbn: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return build_cpn("resnet18", lsbn=lsbn, heatmap_size=(16, 12))


@pytest.mark.parametrize("train", [False, True])
def test_lsbn_equals_bn_with_identical_branches(train):
    bn_model = _small_cpn()
    _randomise_bn(bn_model)
    lsbn_model = copy.deepcopy(bn_model)
    convert_lsbn(lsbn_model.backbone)
    bn_model.train(train)
    lsbn_model.train(train)
    x = torch.randn(2, 3, 64, 48)
    ref = bn_model(x)
    for condition in ("ll", "wl"):
        out = lsbn_model(x, condition=condition)
        assert torch.equal(out.heatmaps, ref.heatmaps)
        assert all(torch.equal(a, b) for a, b in zip(out.features, ref.features))


def test_branches_diverge_only_on_their_condition():
    model = _small_cpn(lsbn=True)
    model.train()
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = model(torch.randn(2, 3, 64, 48), condition="ll")
    out.heatmaps.square().mean().backward()
    opt.step()
    after = model.state_dict()
    ll_keys = [k for k in after if ".branches.ll." in k and not k.endswith("num_batches_tracked")]
    wl_keys = [k for k in after if ".branches.wl." in k]
    assert ll_keys and len(wl_keys) == len(ll_keys) + len(ll_keys) // 4  # weight, bias, mean, var (+ counter)
    assert all(torch.equal(before[k], after[k]) for k in wl_keys)
    changed = [k for k in ll_keys if not torch.equal(before[k], after[k])]
    assert len(changed) == len(ll_keys)  # every LL weight, bias and running statistic moved


def test_lighting_context_and_errors():
    seq = convert_lsbn(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)))
    assert isinstance(seq[1], LSBN2d)
    seq[1].branches["wl"].bias.data.fill_(5.0)
    seq.eval()
    x = torch.randn(1, 3, 2, 2)
    with pytest.raises(RuntimeError, match="needs a lighting condition"):
        seq(x)
    with lighting("LL"):
        assert current_lighting() == "ll"
        y_ll = seq(x)
        with lighting("wl"):
            y_wl = seq(x)
        assert current_lighting() == "ll"
    assert current_lighting() is None
    assert torch.allclose(y_wl - y_ll, torch.full_like(y_ll, 5.0))
    with pytest.raises(ValueError, match="unknown lighting condition 'night'"):
        with lighting("night"):
            pass
    assert isinstance(convert_lsbn(nn.BatchNorm2d(3)), LSBN2d)
    assert convert_lsbn(seq) is seq and isinstance(seq[1], LSBN2d)  # converting twice changes nothing


def _in_thread(fn):
    """``fn()`` run in a new thread (as nn.DataParallel runs its replicas): its result or its exception."""
    box: dict = {}

    def target() -> None:
        try:
            box["out"] = fn()
        except Exception as exc:  # handed back to the test
            box["err"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    return box.get("out", box.get("err"))


def test_lighting_block_does_not_reach_other_threads_but_condition_does():
    model = _small_cpn(lsbn=True).eval()
    _randomise_bn(model)
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        expected = model(x, condition="ll").heatmaps
        with lighting("ll"):
            err = _in_thread(lambda: model(x))
        assert isinstance(err, RuntimeError)
        assert "another thread than the lighting() block, as nn.DataParallel's replicas do: pass condition=" in str(err)
        out = _in_thread(lambda: model(x, condition="ll"))
    assert torch.equal(out.heatmaps, expected)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_paper():
    base = build_cpn("resnet50")
    lsbn = build_cpn("resnet50", lsbn=True)
    bn_layers = [m for m in base.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bn_layers) == 53 and sum(m.num_features for m in bn_layers) == 26_560
    assert sum(isinstance(m, LSBN2d) for m in lsbn.backbone.modules()) == 53
    assert sum(isinstance(m, nn.BatchNorm2d) for m in lsbn.backbone.modules()) == 2 * 53  # only the branches
    assert sum(isinstance(m, nn.BatchNorm2d) for m in lsbn.global_net.modules()) > 0  # heads stay shared
    assert _count(base) == 27_372_236  # paper: 27.37 M
    assert _count(lsbn) - _count(base) == 53_120  # two extra affine vectors per backbone BN channel
    stats = sum(b.numel() for k, b in lsbn.backbone.named_buffers() if not k.endswith("num_batches_tracked"))
    assert stats == 4 * 26_560
    assert round((_count(lsbn) + stats) / 1e6, 2) == 27.53  # the paper's 27.53 M counts both branches' statistics


def test_resnet_matches_torchvision_layout():
    # torchvision's published totals (with the 1000-class fc): resnet18 11,689,512, resnet50 25,557,032.
    assert _count(resnet(18, num_classes=1000)) == 11_689_512
    assert _count(resnet(50, num_classes=1000)) == 25_557_032
    keys = resnet(50, num_classes=1000).state_dict()
    for key, shape in {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_var": (64,),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.0.downsample.1.num_batches_tracked": (),
        "layer3.5.bn3.bias": (1024,),
        "layer4.2.conv2.weight": (512, 512, 3, 3),
        "fc.weight": (1000, 2048),
    }.items():
        assert tuple(keys[key].shape) == shape
    assert len(keys) == 320  # torchvision resnet50: 161 parameters + 159 buffers


def test_load_pretrained_from_local_file(tmp_path):
    src = resnet(18, num_classes=1000)
    _randomise_bn(src, seed=3)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(src.state_dict(), path)
    model = build_cpn("resnet18", lsbn=True, pretrained=path, heatmap_size=(16, 12))
    for branch in ("ll", "wl"):  # both branches start from the pretrained statistics
        assert torch.equal(model.backbone.layer2[0].bn1.branches[branch].running_mean, src.layer2[0].bn1.running_mean)
    assert torch.equal(model.backbone.conv1.weight, src.conv1.weight)
    with pytest.raises(InputError, match=r"resnet18-imagenet.pth: does not fit a ResNet-50"):
        load_pretrained(resnet(50), path)
    with pytest.raises(InputError, match="no such pretrained weights file"):
        load_pretrained(resnet(18), tmp_path / "absent.pth")


def test_cpn_shapes():
    model = _small_cpn(lsbn=True).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 48), condition="wl")
    assert [tuple(h.shape) for h in out.global_heatmaps] == [(2, 14, 16, 12)] * 4
    assert tuple(out.heatmaps.shape) == (2, 14, 16, 12)
    assert [tuple(f.shape) for f in out.features] == [(2, 64, 32, 24), (2, 64, 16, 12), (2, 128, 8, 6), (2, 256, 4, 3), (2, 512, 2, 2)]


def test_gram_loss_against_hand_computation():
    # One layer, C = 2, N = 2. F_s = [[1, 2], [3, 4]] -> G_s = [[5, 11], [11, 25]]; F_t = [[1, 0], [0, 1]] -> I.
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    t = torch.eye(2).view(1, 2, 1, 2)
    assert torch.equal(gram_matrix(s)[0], torch.tensor([[5.0, 11.0], [11.0, 25.0]]))
    expected = (4**2 + 11**2 + 11**2 + 24**2) / (4 * 2**2 * 2**2)  # 834 / 64
    assert lupi_gram_loss([s], [t]).item() == pytest.approx(expected)
    # A batch of two (the second sample identical to its teacher) halves it; a second layer adds its own term.
    s2 = torch.cat([s, t])
    t2 = torch.cat([t, t])
    assert lupi_gram_loss([s2], [t2]).item() == pytest.approx(expected / 2)
    u = torch.full((2, 1, 2, 2), 2.0)  # C = 1, N = 4: G = 16 vs teacher 0 -> 256 / (4 * 1 * 16)
    assert lupi_gram_loss([s2, u], [t2, torch.zeros_like(u)]).item() == pytest.approx(expected / 2 + 4.0)
    assert lupi_loss("gram-reference", [s2], [t2]).item() == pytest.approx(REFERENCE_LUPI_SCALE * expected)
    assert lupi_feat_loss([s], [t]).item() == pytest.approx((0 + 4 + 9 + 9) / 4)
    with pytest.raises(ValueError, match="layer 0"):
        lupi_gram_loss([s], [u[:1]])


def _direct_gram_distance(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (gram_matrix(s) - gram_matrix(t)).pow(2).sum(dim=(1, 2))


@pytest.mark.parametrize("shape", [(2, 64, 4, 3), (2, 5, 4, 3)])  # C > N: the N x N form; C <= N: the C x C one
def test_gram_distance_equals_the_direct_form(shape):
    torch.manual_seed(0)
    s = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    t = torch.randn(*shape, dtype=torch.float64)
    direct = _direct_gram_distance(s, t)
    (grad_direct,) = torch.autograd.grad(direct.sum(), s)
    ours = gram_distance_sq(s, t)
    (grad_ours,) = torch.autograd.grad(ours.sum(), s)
    assert torch.allclose(ours, direct, rtol=1e-10)
    assert torch.allclose(grad_ours, grad_direct, rtol=1e-9)
    assert torch.autograd.gradcheck(lambda x: gram_distance_sq(x, t), (s,))


@pytest.mark.parametrize("shape", [(2, 2048, 8, 6), (2, 64, 16, 12)])  # R4 at 256x192 (C > N), and C < N
def test_gram_distance_is_accurate_in_float32_near_the_teacher(shape):
    # A student within 1e-3 of its teacher: the distance is ~1e-6 of each Gram's norm. Expanding the Grams and
    # subtracting gave [-1024, 2048] for the R4 shape against an exact ~[534, 556].
    g = torch.Generator().manual_seed(0)
    t = torch.randn(*shape, generator=g)
    s = t + 1e-3 * torch.randn(*shape, generator=g)
    exact = _direct_gram_distance(s.double(), t.double())
    assert exact.min() > 0
    assert torch.allclose(gram_distance_sq(s, t).double(), exact, rtol=1e-4)
    # The gradient, too, in float32 against float64.
    s32 = s.clone().requires_grad_(True)
    s64 = s.double().requires_grad_(True)
    (g32,) = torch.autograd.grad(gram_distance_sq(s32, t).sum(), s32)
    (g64,) = torch.autograd.grad(_direct_gram_distance(s64, t.double()).sum(), s64)
    assert (g32.double() - g64).norm() < 1e-4 * g64.norm()


@pytest.mark.parametrize("kind", ["gram", "gram-reference", "feat"])
def test_lupi_gradients_reach_only_the_student(kind):
    s = [torch.randn(2, 3, 4, 4, requires_grad=True), torch.randn(2, 20, 2, 2, requires_grad=True)]  # C < N and C > N
    t = [torch.randn(2, 3, 4, 4, requires_grad=True), torch.randn(2, 20, 2, 2, requires_grad=True)]
    lupi_loss(kind, s, t).backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in s)
    assert all(x.grad is None for x in t)


def test_pose_loss_ohkm_and_masking():
    per_joint = torch.arange(14.0).repeat(2, 1)
    assert ohkm(per_joint, 8).item() == pytest.approx(sum(range(6, 14)) / 8)
    b, k, h, w = 2, 14, 4, 3
    targets = torch.rand(b, 4, k, h, w) * 255
    weight = torch.ones(b, k)
    weight[0, 3] = 0
    targets[0, :, 3] = 0  # unlabelled joint: zero targets, as the dataset makes them
    globals_ = [targets[:, i].clone() for i in range(4)]
    refine = targets[:, -1].clone()
    loss = cpn_pose_loss(globals_, refine, targets, weight)
    assert loss.total.item() == 0.0
    refine[0, 3] += 100.0  # an error on the unlabelled joint is not counted by RefineNet
    assert cpn_pose_loss(globals_, refine, targets, weight).refine_loss.item() == 0.0
    refine[1, 5] += 2.0  # one labelled joint off by 2 everywhere: (4) / 8 for sample 1, 0 for sample 0
    assert cpn_pose_loss(globals_, refine, targets, weight).refine_loss.item() == pytest.approx(4.0 / 8 / 2)
    globals_[0][1, 2] += 1.0  # GlobalNet level 0: MSE over all elements, halved
    assert cpn_pose_loss(globals_, refine, targets, weight).global_loss.item() == pytest.approx(h * w / (b * k * h * w) / 2)
