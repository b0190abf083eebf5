"""Pose networks of the reference method: a torchvision-compatible ResNet and CPN on top of it."""

from .cpn import BACKBONES, CPN, CPNOutput, GlobalNet, RefineNet, build_cpn
from .resnet import ResNet, ResNetFeatures, load_pretrained, resnet

__all__ = ["BACKBONES", "CPN", "CPNOutput", "GlobalNet", "RefineNet", "build_cpn", "ResNet", "ResNetFeatures", "load_pretrained", "resnet"]
