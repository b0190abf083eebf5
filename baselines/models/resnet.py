"""ResNet-18/34/50/101 with torchvision's state_dict key names, so ImageNet weights load from a local file.

Written here because torchvision does not import beside this project's torch build; the module layout
(``conv1, bn1, layer1..4`` of ``BasicBlock``/``Bottleneck`` with ``downsample.0/1``, optional ``fc``) matches
torchvision's ``resnet*`` exactly. ``forward_features`` returns what CPN and LUPI need: the conv1 output before
``bn1`` (C1) and the four stage outputs (R1-R4).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from exlpose_data.errors import InputError, UsageError

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "ResNetFeatures", "resnet", "RESNET_DEPTHS", "load_pretrained"]

NormLayer = Callable[[int], nn.Module]


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, norm_layer: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided, as torchvision's "ResNet v1.5") - 1x1 with a residual connection (ResNet-50+)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, norm_layer: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_ch, planes)
        self.bn1 = norm_layer(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


@dataclass
class ResNetFeatures:
    """Backbone outputs: ``c1`` (conv1 before bn1, stride 2) and ``stages`` R1-R4 (strides 4, 8, 16, 32)."""

    c1: torch.Tensor
    stages: list[torch.Tensor]

    def lupi_layers(self) -> list[torch.Tensor]:
        """C1, R1, R2, R3, R4: the layers the LUPI loss compares."""
        return [self.c1, *self.stages]


RESNET_DEPTHS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """A ResNet whose state_dict keys equal torchvision's.

    Args:
        depth: 18, 34, 50 or 101.
        num_classes: size of the ``fc`` classifier; None leaves it out (a backbone).
        norm_layer: normalisation layer factory (BatchNorm2d by default).
    """

    def __init__(self, depth: int = 50, num_classes: int | None = None, norm_layer: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise UsageError(f"unknown ResNet depth {depth}; choose one of {', '.join(map(str, RESNET_DEPTHS))}")
        block, layers = RESNET_DEPTHS[depth]
        self.depth = depth
        self._norm_layer = norm_layer
        self.in_ch = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.stage_channels: tuple[int, ...] = tuple(c * block.expansion for c in (64, 128, 256, 512))
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        out_ch = planes * block.expansion
        if stride != 1 or self.in_ch != out_ch:
            downsample = nn.Sequential(_conv1x1(self.in_ch, out_ch, stride), self._norm_layer(out_ch))
        layers = [block(self.in_ch, planes, stride, downsample, self._norm_layer)]
        self.in_ch = out_ch
        layers += [block(out_ch, planes, norm_layer=self._norm_layer) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> ResNetFeatures:
        """C1 (conv1 output before bn1) and the outputs of the four stages."""
        c1 = self.conv1(x)
        out = self.maxpool(self.relu(self.bn1(c1)))
        stages = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            out = layer(out)
            stages.append(out)
        return ResNetFeatures(c1, stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (needs ``num_classes``)."""
        if not hasattr(self, "fc"):
            raise RuntimeError("this ResNet was built without a classifier (num_classes=None); use forward_features")
        r4 = self.forward_features(x).stages[-1]
        return self.fc(torch.flatten(self.avgpool(r4), 1))


def resnet(depth: int = 50, **kwargs: object) -> ResNet:
    """``ResNet(depth, **kwargs)``."""
    return ResNet(depth, **kwargs)  # type: ignore[arg-type]


def load_pretrained(model: ResNet, path: str | os.PathLike) -> ResNet:
    """Load a torchvision ImageNet checkpoint (``resnet50-*.pth`` or a dict with ``state_dict``/``model``).

    The classifier keys are skipped when the model has no ``fc``; any other missing or unexpected key is an
    error naming the file, so a checkpoint of the wrong depth is not half-loaded.
    """
    p = Path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{p}: no such pretrained weights file") from None
    except Exception as exc:  # pickle/zip errors from a file that is not a torch checkpoint
        raise InputError(f"{p}: not a loadable torch checkpoint ({exc})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise InputError(f"{p}: expected a state_dict, got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if not hasattr(model, "fc"):
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shape:
            parts.append(f"{len(shape)} of another shape (e.g. {shape[0]})")
        raise InputError(f"{p}: does not fit a ResNet-{model.depth}: keys {', '.join(parts)}")
    model.load_state_dict(state)
    return model
