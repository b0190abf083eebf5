"""Cascaded Pyramid Network (Chen et al., CVPR 2018) on a ResNet, as the ExLPose reference uses it.

GlobalNet: a feature pyramid over R4..R1 (1x1 laterals to 256 channels, top-down bilinear upsampling), one
heatmap prediction per level, each upsampled to the heatmap size and then batch-normalised. RefineNet: per level 3, 2, 1, 0 bottlenecks
then upsampling, concatenated and refined by one more bottleneck into the final heatmaps. With LSBN only the
backbone's BatchNorms become lighting-specific; the heads' stay single and shared, as in the reference.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from exlpose_data.keypoints import NUM_KEYPOINTS

from ..lsbn import convert_lsbn, lighting
from .resnet import ResNet, load_pretrained

__all__ = ["CPNOutput", "GlobalNet", "RefineNet", "CPN", "build_cpn", "build_backbone", "BACKBONES", "init_output_scale", "target_statistics"]

BACKBONES: dict[str, int] = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101}


class CPNOutput(NamedTuple):
    """What a CPN forward returns.

    Attributes:
        global_heatmaps: GlobalNet predictions, coarse (R4) to fine (R1), each ``(B, K, h, w)``.
        heatmaps: RefineNet prediction ``(B, K, h, w)``, the network's output.
        features: backbone features C1, R1, R2, R3, R4 (the LUPI layers).
    """

    global_heatmaps: list[torch.Tensor]
    heatmaps: torch.Tensor
    features: list[torch.Tensor]


def _conv_bn(in_ch: int, out_ch: int, kernel: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(out_ch)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class GlobalNet(nn.Module):
    """Feature pyramid with one heatmap prediction per level.

    Args:
        in_channels: backbone stage channels, coarse to fine (``(2048, 1024, 512, 256)`` for ResNet-50).
        heatmap_size: ``(h, w)`` of the predictions.
        num_keypoints: joints.
        channels: pyramid width.
    """

    def __init__(self, in_channels: tuple[int, ...], heatmap_size: tuple[int, int], num_keypoints: int = NUM_KEYPOINTS, channels: int = 256) -> None:
        super().__init__()
        self.heatmap_size = tuple(heatmap_size)
        self.laterals = nn.ModuleList([_conv_bn(c, channels) for c in in_channels])
        self.upsamples = nn.ModuleList([_conv_bn(channels, channels, relu=False) for _ in in_channels[:-1]])
        self.predicts = nn.ModuleList(
            [nn.Sequential(_conv_bn(channels, channels), nn.Conv2d(channels, num_keypoints, 3, padding=1, bias=False)) for _ in in_channels]
        )
        # CPN normalises each prediction after upsampling it, so its batch statistics are the heatmap's own.
        self.predict_norms = nn.ModuleList([nn.BatchNorm2d(num_keypoints) for _ in in_channels])
        # The reference initialises GlobalNet's convolutions N(0, sqrt(2 / (k * k * out_channels))) (He, fan-out)
        # and its BatchNorms to weight 1, bias 0; RefineNet keeps PyTorch's defaults there too.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, stages: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Pyramid features and heatmaps, both coarse to fine; ``stages`` given coarse to fine."""
        pyramid, heatmaps = [], []
        up = None
        for i, x in enumerate(stages):
            feat = self.laterals[i](x)
            if up is not None:
                feat = feat + up
            pyramid.append(feat)
            if i < len(self.upsamples):
                # To the next stage's size: 2x for inputs divisible by 32 (CPN's case), and any other size works.
                size = stages[i + 1].shape[-2:]
                up = self.upsamples[i](F.interpolate(feat, size=size, mode="bilinear", align_corners=True))
            heat = F.interpolate(self.predicts[i](feat), size=self.heatmap_size, mode="bilinear", align_corners=True)
            heatmaps.append(self.predict_norms[i](heat))
        return pyramid, heatmaps


class _RefineBottleneck(nn.Module):
    """CPN's RefineNet bottleneck: 1x1 -> 3x3 -> 1x1 to ``2 * planes`` channels plus a projected residual.

    CPN projects the residual with a 1x1 conv + BN even when the channel counts already agree; kept, because
    it is part of the published model's 27.37 M parameters.
    """

    def __init__(self, in_ch: int, planes: int = 128) -> None:
        super().__init__()
        out_ch = planes * 2
        self.body = nn.Sequential(_conv_bn(in_ch, planes), _conv_bn(planes, planes, 3), _conv_bn(planes, out_ch, relu=False))
        self.downsample = _conv_bn(in_ch, out_ch, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.downsample(x))


class RefineNet(nn.Module):
    """Cascade of bottlenecks over the pyramid, concatenated into the final heatmaps."""

    def __init__(self, heatmap_size: tuple[int, int], levels: int = 4, num_keypoints: int = NUM_KEYPOINTS, channels: int = 256) -> None:
        super().__init__()
        self.heatmap_size = tuple(heatmap_size)
        self.cascades = nn.ModuleList(
            [nn.Sequential(*[_RefineBottleneck(channels) for _ in range(levels - i - 1)]) for i in range(levels)]
        )
        self.final = nn.Sequential(
            _RefineBottleneck(levels * channels),
            nn.Conv2d(channels, num_keypoints, 3, padding=1, bias=False),
            nn.BatchNorm2d(num_keypoints),
        )

    def forward(self, pyramid: list[torch.Tensor]) -> torch.Tensor:
        refined = [
            F.interpolate(cascade(feat), size=self.heatmap_size, mode="bilinear", align_corners=True)
            for cascade, feat in zip(self.cascades, pyramid)
        ]
        return self.final(torch.cat(refined, dim=1))


class CPN(nn.Module):
    """ResNet + GlobalNet + RefineNet.

    Args:
        backbone: the ResNet (no classifier).
        heatmap_size: ``(h, w)`` of the heatmaps (input size / 4).
        num_keypoints: joints.
    """

    def __init__(self, backbone: ResNet, heatmap_size: tuple[int, int] = (64, 48), num_keypoints: int = NUM_KEYPOINTS) -> None:
        super().__init__()
        self.backbone = backbone
        self.heatmap_size = tuple(heatmap_size)
        self.num_keypoints = num_keypoints
        self.global_net = GlobalNet(tuple(reversed(backbone.stage_channels)), self.heatmap_size, num_keypoints)
        self.refine_net = RefineNet(self.heatmap_size, len(backbone.stage_channels), num_keypoints)

    def _forward(self, x: torch.Tensor) -> CPNOutput:
        feats = self.backbone.forward_features(x)
        pyramid, global_heatmaps = self.global_net(list(reversed(feats.stages)))
        return CPNOutput(global_heatmaps, self.refine_net(pyramid), feats.lupi_layers())

    def forward(self, x: torch.Tensor, condition: str | None = None) -> CPNOutput:
        """Run on a ``(B, 3, H, W)`` batch; ``condition`` (``"ll"``/``"wl"``) selects LSBN branches."""
        if condition is None:
            return self._forward(x)
        with lighting(condition):
            return self._forward(x)


def build_cpn(
    backbone: str = "resnet50",
    lsbn: bool = False,
    pretrained: str | os.PathLike | None = None,
    *,
    heatmap_size: tuple[int, int] = (64, 48),
    num_keypoints: int = NUM_KEYPOINTS,
) -> CPN:
    """A CPN on ``backbone``; with ``lsbn`` the backbone's BatchNorms become :class:`~baselines.lsbn.LSBN2d`.

    Args:
        backbone: ``resnet18``, ``resnet34``, ``resnet50`` or ``resnet101``.
        lsbn: convert the backbone's BatchNorms (after loading ``pretrained``, so both branches start from it).
        pretrained: a local torchvision ImageNet checkpoint of the backbone; nothing is downloaded.
        heatmap_size: ``(h, w)``; the input is 4x larger.
        num_keypoints: joints.
    """
    return CPN(build_backbone(backbone, lsbn, pretrained), heatmap_size, num_keypoints)


def build_backbone(backbone: str = "resnet50", lsbn: bool = False, pretrained: str | os.PathLike | None = None) -> ResNet:
    """The ResNet named ``backbone`` with ``pretrained`` (local ImageNet weights) loaded, then with ``lsbn`` its
    BatchNorms converted to LSBN layers (so both branches start from the weights): the pose network's and the
    person detector's backbone."""
    from exlpose_data.errors import UsageError

    if backbone not in BACKBONES:
        raise UsageError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    net = ResNet(BACKBONES[backbone])
    if pretrained is not None:
        load_pretrained(net, pretrained)
    if lsbn:
        convert_lsbn(net)
    return net


def target_statistics(heatmap_size: tuple[int, int], kernels: tuple[int, ...] = (15, 11, 9, 7), peak: float = 255.0) -> list[tuple[float, float]]:
    """Mean and standard deviation over the pixels of one CPN target map per level (a joint in the middle of
    the heatmap), coarse to fine: the scale the heads' output BatchNorms have to reach."""
    import numpy as np

    from exlpose_data.datasets.targets import cpn_heatmaps

    h, w = heatmap_size
    maps, _ = cpn_heatmaps(np.array([[w / 2.0, h / 2.0]]), np.array([True]), heatmap_size, kernels=kernels, peak=peak)
    return [(float(m.mean()), float(m.std())) for m in maps[:, 0].astype(np.float64)]


def init_output_scale(net: CPN, kernels: tuple[int, ...] = (15, 11, 9, 7), peak: float = 255.0) -> CPN:
    """Start every heatmap head's final BatchNorm at the targets' scale (weight = std, bias = mean of a target
    map; GlobalNet level i gets kernel i's, RefineNet the finest), instead of weight 1 and bias 0.

    With weight 1 the outputs have unit variance while the peak-255 targets have a standard deviation of
    ~10-40 (a 32x24 or 64x48 map, one blurred peak), and Adam moves the weight by about the learning rate per
    step, so for the first thousands of steps the loss measures that unreachable scale and stays flat whatever
    the network learns about where joints are. A deviation from the reference (``head_init: target-scale``).
    """
    stats = target_statistics(net.heatmap_size, kernels, peak)
    with torch.no_grad():
        for bn, (mean, std) in zip(net.global_net.predict_norms, stats):
            bn.weight.fill_(std)
            bn.bias.fill_(mean)
        final = net.refine_net.final[-1]
        final.weight.fill_(stats[-1][1])
        final.bias.fill_(stats[-1][0])
    return net
