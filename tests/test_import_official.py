"""``exlpose-train import-official``: the authors' state_dict (key names and shapes of their pytorch-cpn network)
becomes our checkpoint, and the converted model computes what theirs computes.

The reference network is rebuilt here from its structure (module names as in sohyun-l/ExLPose's
networks/resnetlsbn.py, globalNet.py and pytorch-cpn's refineNet.py: ``resnet_lsbn`` with ``bns.0/1``,
``global_net.laterals/upsamples/predict``, ``refine_net.cascade/final_predict``), with its own forward, so the
test compares against that computation and not against our model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from baselines.checkpoint import load_checkpoint, load_model
from baselines.cli import train_app
from baselines.official import convert_official_state_dict
from exlpose_data.errors import InputError

from .test_baselines_train import one_torch_thread  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.slow  # builds and runs full-size reference models

INPUT, HEATMAP = (128, 96), (32, 24)


class RefNorm(nn.Module):
    """The reference's LSBN2d (``bns[condition]``), or a plain BatchNorm2d's parameters under ``bns.0``."""

    def __init__(self, c: int, lsbn: bool) -> None:
        super().__init__()
        self.lsbn = lsbn
        if lsbn:
            self.bns = nn.ModuleList([nn.BatchNorm2d(c), nn.BatchNorm2d(c)])
        else:
            self.bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor, d: int) -> torch.Tensor:
        return self.bns[d](x) if self.lsbn else self.bn(x)


class RefBackboneBlock(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int, lsbn: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = RefNorm(planes, lsbn)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = RefNorm(planes, lsbn)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = RefNorm(planes * 4, lsbn)
        self.downsample = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride=stride, bias=False), RefNorm(planes * 4, lsbn))

    def forward(self, x: torch.Tensor, d: int) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x), d))
        out = torch.relu(self.bn2(self.conv2(out), d))
        out = self.bn3(self.conv3(out), d)
        res = x if self.downsample is None else self.downsample[1](self.downsample[0](x), d)
        return torch.relu(out + res)


class RefResNet50(nn.Module):
    def __init__(self, lsbn: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = RefNorm(64, lsbn)
        cin = 64
        for i, (planes, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))):
            layer = []
            for b in range(blocks):
                layer.append(RefBackboneBlock(cin, planes, stride if b == 0 else 1, lsbn))
                cin = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))

    def forward(self, x: torch.Tensor, d: int) -> list[torch.Tensor]:
        x = self.conv1(x)
        x = nn.functional.max_pool2d(torch.relu(self.bn1(x, d)), 3, 2, 1)
        outs = []
        for i in range(4):
            for block in getattr(self, f"layer{i + 1}"):
                x = block(x, d)
            outs.append(x)
        return outs


class RefRefineBlock(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, 128, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(128)
        self.conv2 = nn.Conv2d(128, 128, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(128)
        self.conv3 = nn.Conv2d(128, 256, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(256)
        self.downsample = nn.Sequential(nn.Conv2d(cin, 256, 1, bias=False), nn.BatchNorm2d(256))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        return torch.relu(self.bn3(self.conv3(out)) + self.downsample(x))


def _up(size=None, scale=None) -> nn.Upsample:
    return nn.Upsample(size=size, scale_factor=scale, mode="bilinear", align_corners=True)


class RefGlobalNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.laterals = nn.ModuleList([nn.Sequential(nn.Conv2d(c, 256, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU()) for c in (2048, 1024, 512, 256)])
        self.upsamples = nn.ModuleList([nn.Sequential(_up(scale=2), nn.Conv2d(256, 256, 1, bias=False), nn.BatchNorm2d(256)) for _ in range(3)])
        self.predict = nn.ModuleList([
            nn.Sequential(nn.Conv2d(256, 256, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU(), nn.Conv2d(256, 14, 3, padding=1, bias=False),
                          _up(size=HEATMAP), nn.BatchNorm2d(14)) for _ in range(4)])

    def forward(self, xs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        fms, outs, up = [], [], None
        for i in range(4):
            feature = self.laterals[i](xs[i]) + (up if up is not None else 0)
            fms.append(feature)
            if i < 3:
                up = self.upsamples[i](feature)
            outs.append(self.predict[i](feature))
        return fms, outs


class RefRefineNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cascade = nn.ModuleList([nn.Sequential(*[RefRefineBlock(256) for _ in range(3 - i)], _up(size=HEATMAP)) for i in range(4)])
        self.final_predict = nn.Sequential(RefRefineBlock(1024), nn.Conv2d(256, 14, 3, padding=1, bias=False), nn.BatchNorm2d(14))

    def forward(self, fms: list[torch.Tensor]) -> torch.Tensor:
        return self.final_predict(torch.cat([c(f) for c, f in zip(self.cascade, fms)], dim=1))


class RefCPN(nn.Module):
    def __init__(self, lsbn: bool = True) -> None:
        super().__init__()
        backbone = RefResNet50(lsbn)
        if lsbn:
            self.resnet_lsbn = backbone
        else:
            self.resnet = backbone
        self.global_net = RefGlobalNet()
        self.refine_net = RefRefineNet()

    def forward(self, x: torch.Tensor, d: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        backbone = self.resnet_lsbn if hasattr(self, "resnet_lsbn") else self.resnet
        x1, x2, x3, x4 = backbone(x, d)
        fms, outs = self.global_net([x4, x3, x2, x1])
        return outs, self.refine_net(fms)


def _randomised(lsbn: bool) -> RefCPN:
    torch.manual_seed(0)
    net = RefCPN(lsbn)
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # statistics and affine far from the defaults, each branch its own
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.1
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5
    return net.eval()


def _plain_keys(state: dict) -> dict:
    """The plain CPN50 names its BatchNorms ``bn1``, not ``bn1.bn``."""
    return {k.replace(".bn.", "."): v for k, v in state.items()}


@pytest.mark.parametrize("lsbn", [True, False])
def test_imported_model_computes_what_the_reference_computes(tmp_path: Path, lsbn: bool) -> None:
    ref = _randomised(lsbn)
    state = {f"module.{k}": v for k, v in ref.state_dict().items()}  # saved from nn.DataParallel
    if not lsbn:
        state = _plain_keys(state)
    torch.save({"epoch": 32, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "ref.pth.tar")
    r = CliRunner().invoke(train_app, ["import-official", str(tmp_path / "ref.pth.tar"), "--out", str(tmp_path / "ours.pth"),
                                       "--input-size", "128x96"])
    assert r.exit_code == 0, r.output
    ckpt = load_checkpoint(tmp_path / "ours.pth")
    assert ckpt["config"]["heatmap_convention"] == "reference" and ckpt["epoch"] == 32
    assert ckpt["config"]["variant"] == ("lsbn-lupi" if lsbn else "baseline-all")
    net, cfg = load_model(tmp_path / "ours.pth")
    assert cfg.input_size == INPUT and cfg.heatmap_size == HEATMAP
    x = torch.randn(2, 3, *INPUT, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for d, cond in enumerate(("ll", "wl")):
            ref_global, ref_refine = ref(x, d)
            out = net(x, condition=cond)
            assert torch.allclose(out.heatmaps, ref_refine, atol=1e-4, rtol=1e-4), cond
            for ours, theirs in zip(out.global_heatmaps, ref_global):
                assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), cond
    if lsbn:  # the branches differ, so the index -> branch mapping is what the equality above checked
        assert not torch.allclose(ref(x, 0)[1], ref(x, 1)[1])


def test_leftover_or_missing_keys_are_refused_with_their_names(tmp_path: Path) -> None:
    state = {f"module.{k}": v for k, v in _randomised(True).state_dict().items()}
    extra = {**state, "module.refine_net.extra_head.weight": torch.zeros(3)}
    with pytest.raises(InputError, match=r"1 reference key\(s\) without a counterpart: refine_net\.extra_head\.weight"):
        convert_official_state_dict(extra, INPUT)
    missing = dict(state)
    del missing["module.global_net.predict.2.5.running_var"]
    with pytest.raises(InputError, match=r"1 of our key\(s\) not provided: global_net\.predict_norms\.2\.running_var"):
        convert_official_state_dict(missing, INPUT)
    reshaped = {**state, "module.refine_net.final_predict.1.weight": torch.zeros(17, 256, 3, 3)}
    with pytest.raises(InputError, match=r"final_predict\.1\.weight \(shape \(17, 256, 3, 3\), ours \(14, 256, 3, 3\)\)"):
        convert_official_state_dict(reshaped, INPUT)
    torch.save({"state_dict": extra}, tmp_path / "bad.pth")
    r = CliRunner().invoke(train_app, ["import-official", str(tmp_path / "bad.pth"), "--out", str(tmp_path / "o.pth")])
    assert r.exit_code == 2 and "bad.pth: 1 reference key(s) without a counterpart" in r.output
    assert not (tmp_path / "o.pth").exists()
    (tmp_path / "o.pth").write_bytes(b"keep")
    torch.save({"state_dict": state}, tmp_path / "good.pth")
    r = CliRunner().invoke(train_app, ["import-official", str(tmp_path / "good.pth"), "--out", str(tmp_path / "o.pth"), "--input-size", "128x96"])
    assert r.exit_code == 2 and "already holds a checkpoint; pass --overwrite" in r.output and (tmp_path / "o.pth").read_bytes() == b"keep"
