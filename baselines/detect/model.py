"""The person detector: a ResNet (the pose network's, LSBN included), a small feature pyramid down to stride 4,
and CenterNet's three heads (Zhou et al., "Objects as Points", 2019).

Backbone stages R1-R4 (strides 4-32) get 1x1 lateral convolutions to ``neck_channels``; from R4 down, each level
is upsampled x2 (nearest) and added to the next lateral, and a 3x3 convolution smooths the stride-4 sum (an FPN
top-down path, kept to its finest level, where CenterNet reads its peaks). Each head is conv3x3-ReLU-conv1x1:
``heatmap`` (1 channel, logits of "a person's box centre is here"), ``size`` (box width and height in output
cells) and ``offset`` (the centre's sub-cell position). Everything is plain convolutions, upsampling and
max-pooling, so it trains and runs on any torch build (no compiled detection ops) and exports to ONNX.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..lsbn import lighting
from ..models.cpn import build_backbone
from ..models.resnet import ResNet

__all__ = ["DetectorOutput", "CentreNet", "build_detector", "HEATMAP_PRIOR"]

HEATMAP_PRIOR = 0.1  # the heatmap head starts predicting this probability everywhere (CenterNet's bias -2.19)


class DetectorOutput(NamedTuple):
    """What a detector forward returns: ``heatmap`` logits ``(B, 1, h, w)``, ``size`` and ``offset`` ``(B, 2, h, w)``
    at stride 4, and the backbone's C1, R1-R4 (the LUPI layers)."""

    heatmap: torch.Tensor
    size: torch.Tensor
    offset: torch.Tensor
    features: list[torch.Tensor]


def _head(in_ch: int, hidden: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, out_ch, 1))


class CentreNet(nn.Module):
    """ResNet + stride-4 pyramid + heatmap / size / offset heads.

    Args:
        backbone: the ResNet (no classifier; its BatchNorms may be LSBN layers).
        neck_channels: pyramid width.
        head_channels: hidden width of each head.
    """

    def __init__(self, backbone: ResNet, neck_channels: int = 128, head_channels: int = 64) -> None:
        super().__init__()
        self.backbone = backbone
        self.laterals = nn.ModuleList([nn.Conv2d(c, neck_channels, 1) for c in backbone.stage_channels])
        self.smooth = nn.Sequential(nn.Conv2d(neck_channels, neck_channels, 3, padding=1, bias=False), nn.BatchNorm2d(neck_channels),
                                    nn.ReLU(inplace=True))
        self.heatmap = _head(neck_channels, head_channels, 1)
        self.size = _head(neck_channels, head_channels, 2)
        self.offset = _head(neck_channels, head_channels, 2)
        for m in [*self.laterals, *self.smooth, *self.heatmap, *self.size, *self.offset]:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # CenterNet's focal-loss start: every cell says "no centre" with probability 1 - prior
        nn.init.normal_(self.heatmap[-1].weight, std=1e-3)
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))

    def _forward(self, x: torch.Tensor) -> DetectorOutput:
        feats = self.backbone.forward_features(x)
        top = self.laterals[-1](feats.stages[-1])
        for lateral, stage in zip(reversed(self.laterals[:-1]), reversed(feats.stages[:-1])):
            top = F.interpolate(top, scale_factor=2.0, mode="nearest") + lateral(stage)
        neck = self.smooth(top)
        return DetectorOutput(self.heatmap(neck), self.size(neck), self.offset(neck), feats.lupi_layers())

    def forward(self, x: torch.Tensor, condition: str | None = None) -> DetectorOutput:
        """Run on a ``(B, 3, H, W)`` batch (sides multiples of 32); ``condition`` (``"ll"``/``"wl"``) selects LSBN branches."""
        if condition is None:
            return self._forward(x)
        with lighting(condition):
            return self._forward(x)


def build_detector(backbone: str = "resnet50", lsbn: bool = False, pretrained: str | os.PathLike | None = None, *,
                   neck_channels: int = 128, head_channels: int = 64) -> CentreNet:
    """A :class:`CentreNet` on ``backbone``; with ``lsbn`` the backbone's BatchNorms become LSBN layers (after loading
    ``pretrained``, a local torchvision ImageNet checkpoint, so both branches start from it), as :func:`build_cpn`."""
    return CentreNet(build_backbone(backbone, lsbn, pretrained), neck_channels, head_channels)
