"""ONNX export of detector checkpoints (``exlpose export onnx DET.pth --out DET.onnx``).

The graph holds the whole detector, decoding included, so a model leaves Python as a complete person detector
under the toolkit's ONNX detector contract (:mod:`baselines.detect.api`):

- input ``input``: float32 ``(N, 3, H, W)``, ``(H, W)`` the configuration's ``input_size``: the image fitted
  inside as the toolkit prepares it (:func:`exlpose_data.datasets.centre_targets.prepare_image`: aspect kept,
  centred, the reference's pixel means around it; LL brightened to a per-channel mean of 0.4 over the whole
  image, WL normalised); the batch axis is dynamic.
- outputs ``boxes`` ``(N, K, 4)`` (x1, y1, x2, y2 in input pixels) and ``scores`` ``(N, K)`` (by falling score;
  ``K`` = ``max_detections``), then the raw heads ``heatmap`` (logits, ``(N, 1, H/4, W/4)``), ``size`` and
  ``offset`` (``(N, 2, H/4, W/4)``) for those who decode themselves.
- the LSBN branch is fixed at export (``lighting``, LL by default).
- ``metadata_props``: ``exlpose.kind`` (``"detector"``), ``exlpose.config`` (the DetectConfig as JSON),
  ``exlpose.lighting``, ``exlpose.input_size``.

The parity check (:func:`baselines.onnx_format.write_onnx`, at the example's batch and at 1 and 3) compares the raw
heads and the scores within 1e-4 of each output's scale, and each box with the box torch gives the peak of the same score: peaks of nearly equal score may come out of top-k
in another order in onnxruntime than in torch, which is no difference in the detections.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from exlpose_data.outputs import check_output

from ..onnx_format import lighting_key as _lighting_key, parity_batch as _parity_batch
from ..onnx_format import check_opset, portable_config, scaled_difference, write_onnx
from .config import STRIDE
from .decode import decode_centres

__all__ = ["export_detector_onnx", "DETECTOR_KIND", "OUTPUT_NAMES"]

DETECTOR_KIND = "detector"
OUTPUT_NAMES = ("boxes", "scores", "heatmap", "size", "offset")


class _DetectorGraph(nn.Module):
    """The detector with its LSBN branch fixed and its decoding appended."""

    def __init__(self, net: nn.Module, lighting: str, top_k: int) -> None:
        super().__init__()
        self.net = net
        self.lighting = lighting
        self.top_k = top_k

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(x, condition=self.lighting)
        boxes, scores = decode_centres(out.heatmap, out.size, out.offset, stride=STRIDE, top_k=self.top_k)
        return boxes, scores, out.heatmap, out.size, out.offset


def _difference(got: list[np.ndarray], expected: list[np.ndarray]) -> float:
    """The largest difference between onnxruntime's and torch's outputs, boxes matched by score (see the module)."""
    diff = 0.0
    for g, e in zip(got[1:], expected[1:]):  # scores (sorted, so robust to order) and the raw heads
        diff = max(diff, scaled_difference(g, e))
    boxes_g, boxes_e, scores_g, scores_e = got[0], expected[0], got[1], expected[1]
    if boxes_g.shape != boxes_e.shape:
        return float("inf")
    for b in range(boxes_g.shape[0]):
        for k in range(boxes_g.shape[1]):
            if scores_g[b, k] <= 1e-6:  # not a peak (max-pooling zeroed it): no detection, in any order
                continue
            close = np.flatnonzero(np.abs(scores_e[b] - scores_g[b, k]) <= 1e-4)
            best = min((float(np.abs(boxes_e[b, j] - boxes_g[b, k]).max()) for j in close), default=float("inf"))
            diff = max(diff, best / max(1.0, float(np.abs(boxes_e[b]).max())) if np.isfinite(best) else best)
    return diff


def export_detector_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, *, lighting: str = "ll", opset: int = 17,
                         overwrite: bool = False) -> dict[str, Any]:
    """Write the detector checkpoint to ``out`` as ONNX (the module docstring gives the contract) and check it.

    Returns the same fields as :func:`baselines.onnx_export.export_pose_onnx` (``kind`` ``"detector"``). Box
    differences are relative to the largest box coordinate (pixels of a 512x800 input are not 1e-4 apart in float32).
    """
    from .train import load_detector

    key = _lighting_key(lighting)
    check_opset(opset)
    target = check_output(out, inputs=[checkpoint], writes="file", produces="ONNX model", replaces=["ONNX model"], overwrite=overwrite)
    net, cfg = load_detector(checkpoint, "cpu")
    input_size = [int(v) for v in cfg.input_size]
    metadata = {"exlpose.kind": DETECTOR_KIND, "exlpose.config": json.dumps(portable_config(cfg.to_dict()), sort_keys=True), "exlpose.lighting": key,
                "exlpose.input_size": json.dumps(input_size)}
    written = write_onnx(_DetectorGraph(net, key, cfg.max_detections), _parity_batch(input_size), target, output_names=list(OUTPUT_NAMES),
                         metadata=metadata, opset=opset, compare=_difference)
    return {"kind": DETECTOR_KIND, "out": str(out), "checkpoint": str(checkpoint), "variant": cfg.variant, "lsbn": bool(cfg.spec.lsbn),
            "lighting": key, "origin": "trained", "opset": opset, "input_size": input_size, "output_size": written["output_shapes"][2][2:],
            "max_abs_diff": written["max_abs_diff"], "tolerance": written["tolerance"], "batches": written["batches"],
            "bytes": written["bytes"]}
