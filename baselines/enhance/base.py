"""What an image enhancer is to the rest of the toolkit, and how one is named on a command line.

An enhancer maps an ``(H, W, 3)`` RGB float32 image on [0, 1] to an enhanced one of the same shape on [0, 1],
and describes itself by ``identity()`` (everything its output depends on, the cache key). ``"lime"`` names
:class:`~baselines.enhance.lime.Lime` with its defaults; ``"onnx:MODEL.onnx"`` an exported network
(:class:`~baselines.enhance.onnx.OnnxEnhancer`).

Enhanced images leave this module as 16-bit BGR arrays (``round(65535 x)``), the depth the datasets read
without rounding to 8 bits (:func:`exlpose_data.datasets.lowlight.value_scale`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

import numpy as np

from exlpose_data.datasets.lowlight import value_scale
from exlpose_data.errors import UsageError

__all__ = ["Enhancer", "ENHANCER_HELP", "parse_enhancer", "enhance_bgr", "identity_key"]

ENHANCER_HELP = "lime (LIME, Guo et al. 2017) or onnx:MODEL.onnx (any enhancer exported to ONNX)"


class Enhancer(Protocol):
    """RGB float32 ``(H, W, 3)`` on [0, 1] in, the enhanced image (same shape, [0, 1]) out."""

    name: str

    def __call__(self, rgb: np.ndarray) -> np.ndarray: ...

    def identity(self) -> dict[str, Any]:
        """Everything the output depends on (used as the cache key)."""
        ...


def parse_enhancer(spec: str, *, lime_downscale: float = 1.0) -> Enhancer:
    """The enhancer a command line names: ``lime`` or ``onnx:PATH``.

    Raises:
        UsageError: an unknown name, or a missing ONNX file.
    """
    text = spec.strip()
    if text == "lime":
        from .lime import Lime, LimeSettings

        return Lime(LimeSettings(downscale=lime_downscale))
    if text.startswith("onnx:"):
        from .onnx import OnnxEnhancer

        return OnnxEnhancer(text[len("onnx:"):])
    raise UsageError(f"enhancer {spec!r}: use {ENHANCER_HELP}")


def identity_key(enhancer: Enhancer) -> str:
    """A short stable key of an enhancer's identity (its name and a hash of its settings)."""
    blob = json.dumps(enhancer.identity(), sort_keys=True).encode()
    return f"{enhancer.name}-{hashlib.sha256(blob).hexdigest()[:12]}"


def enhance_bgr(enhancer: Enhancer, bgr: np.ndarray) -> np.ndarray:
    """Enhance a decoded ``(H, W, 3)`` BGR uint8/uint16 image; return it as BGR uint16.

    Raises:
        ValueError: the enhancer returned another shape or non-finite values.
    """
    rgb = bgr[:, :, ::-1].astype(np.float32) * np.float32(value_scale(bgr.dtype) / 255.0)
    out = np.asarray(enhancer(np.ascontiguousarray(rgb)), dtype=np.float32)
    if out.shape != rgb.shape:
        raise ValueError(f"enhancer {enhancer.name}: returned shape {out.shape} for an input of shape {rgb.shape}")
    if not np.isfinite(out).all():
        raise ValueError(f"enhancer {enhancer.name}: returned non-finite values")
    return np.ascontiguousarray((np.clip(out, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)[:, :, ::-1])
