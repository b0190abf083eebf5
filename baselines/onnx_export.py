"""ONNX export of pose checkpoints (``exlpose export onnx``) and the loader that runs such a model in place of the CPN.

The pose model's contract:

- input ``input``: float32 ``(N, 3, H, W)``, ``(H, W)`` = the configuration's ``input_size``: the crop exactly as
  the toolkit prepares it (``exlpose-predict`` / the test-time dataset: the person box cut and warped, RGB, the
  low-light scaling or the well-lit normalisation of the configuration applied); the batch axis is dynamic.
- output ``heatmaps``: float32 ``(N, 14, h, w)``, the RefineNet heatmaps (CrowdPose joint order), ``(h, w)`` = the
  configuration's ``heatmap_size``.
- the LSBN branch is fixed at export (``lighting``, LL by default); a model without LSBN records it all the same.
- ``metadata_props``: ``exlpose.kind`` (``"pose"``), ``exlpose.config`` (the TrainConfig as JSON),
  ``exlpose.origin`` (``"trained"`` / ``"official"``), ``exlpose.lighting`` (``"ll"`` / ``"wl"``),
  ``exlpose.input_size`` (``[H, W]`` as JSON).

Every export is checked before it is moved into place: onnxruntime and torch run the same random batch of two and
their outputs may differ by at most :data:`baselines.onnx_format.PARITY_TOLERANCE` (1e-4).

How the file is written and checked (the exporter, the metadata): :mod:`baselines.onnx_format`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from exlpose_data.errors import InputError, UsageError
from exlpose_data.lighting import Lighting
from exlpose_data.outputs import check_output

from .onnx_format import check_opset, portable_config, onnx_session, read_metadata, write_onnx
from .onnx_format import lighting_key as _lighting_key
from .onnx_format import parity_batch as _parity_batch

__all__ = ["POSE_KIND", "export_onnx", "export_pose_onnx", "load_pose_onnx", "OnnxPose", "OnnxPoseOutput", "checkpoint_format"]

POSE_KIND = "pose"
_NOT_OURS = "not an exlpose pose model exported by `exlpose export onnx`"


class _PoseHeatmaps(nn.Module):
    """The CPN with its LSBN branch fixed, returning only the RefineNet heatmaps (what the ONNX graph holds)."""

    def __init__(self, net: nn.Module, lighting: str) -> None:
        super().__init__()
        self.net = net
        self.lighting = lighting

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, condition=self.lighting).heatmaps


def checkpoint_format(path: str | os.PathLike) -> str | None:
    """The ``format`` tag of a checkpoint file (None when it has none).

    Raises:
        InputError: the file is absent or does not load with ``torch.load(weights_only=True)``.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such checkpoint file")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors of files that are not checkpoints
        raise InputError(f"{p}: not a loadable checkpoint ({type(exc).__name__})") from None
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    return fmt if isinstance(fmt, str) else None


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, *, lighting: str = "ll", opset: int = 17,
                overwrite: bool = False) -> dict[str, Any]:
    """Export a pose (``exlpose-cpn``) or detector (``exlpose-detector``) checkpoint to ONNX; see
    :func:`export_pose_onnx` for what is returned.

    Raises:
        InputError: ``checkpoint`` is neither.
    """
    from .checkpoint import CHECKPOINT_FORMAT, DETECTOR_FORMAT

    fmt = checkpoint_format(checkpoint)
    if fmt == CHECKPOINT_FORMAT:
        return export_pose_onnx(checkpoint, out, lighting=lighting, opset=opset, overwrite=overwrite)
    if fmt == DETECTOR_FORMAT:
        from .detect.export import export_detector_onnx

        return export_detector_onnx(checkpoint, out, lighting=lighting, opset=opset, overwrite=overwrite)
    raise InputError(f"{checkpoint}: not a pose ({CHECKPOINT_FORMAT}) or detector ({DETECTOR_FORMAT}) checkpoint "
                     f"(format tag {fmt!r}); `exlpose export onnx` exports those")


def export_pose_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, *, lighting: str = "ll", opset: int = 17,
                     overwrite: bool = False) -> dict[str, Any]:
    """Write the pose checkpoint's CPN to ``out`` as ONNX (the module docstring gives the contract) and check it.

    Args:
        checkpoint: a checkpoint written by ``exlpose-train`` (or ``import-official``).
        out: the ``.onnx`` file; an earlier export there is replaced only with ``overwrite``, anything else never.
        lighting: the LSBN branch baked in (``ll``/``wl``; any spelling :meth:`Lighting.parse` reads).
        opset: the ONNX opset (11 to 20).
        overwrite: replace an earlier ONNX model at ``out``.

    Returns:
        ``kind`` ("pose"), ``out``, ``checkpoint``, ``variant``, ``lsbn``, ``lighting``, ``origin``, ``opset``,
        ``input_size``, ``output_size``, ``max_abs_diff`` (onnxruntime vs torch on the parity batch of two),
        ``tolerance``, ``bytes`` (the file's size).

    Raises:
        UsageError: a bad ``lighting`` or ``opset``, or an ``out`` that must not be written.
        InputError: the checkpoint does not load, or the exported model differs from torch by more than the
            tolerance (nothing is written then).
    """
    from .checkpoint import load_model_and_origin

    key = _lighting_key(lighting)
    check_opset(opset)
    target = check_output(out, inputs=[checkpoint], writes="file", produces="ONNX model", replaces=["ONNX model"], overwrite=overwrite)
    net, cfg, origin = load_model_and_origin(checkpoint, "cpu")
    input_size = [int(v) for v in cfg.input_size]
    metadata = {"exlpose.kind": POSE_KIND, "exlpose.config": json.dumps(portable_config(cfg.to_dict()), sort_keys=True), "exlpose.origin": origin,
                "exlpose.lighting": key, "exlpose.input_size": json.dumps(input_size)}
    written = write_onnx(_PoseHeatmaps(net, key), _parity_batch(input_size), target, output_names=["heatmaps"], metadata=metadata, opset=opset)
    return {"kind": POSE_KIND, "out": str(out), "checkpoint": str(checkpoint), "variant": cfg.variant, "lsbn": bool(cfg.spec.lsbn),
            "lighting": key, "origin": origin, "opset": opset, "input_size": input_size, "output_size": written["output_shapes"][0][2:],
            "max_abs_diff": written["max_abs_diff"], "tolerance": written["tolerance"], "batches": written["batches"],
            "bytes": written["bytes"]}


@dataclass(frozen=True)
class OnnxPoseOutput:
    """What :class:`OnnxPose` returns: the RefineNet heatmaps, as the CPN's output names them."""

    heatmaps: torch.Tensor


class OnnxPose:
    """An exported pose model, callable like the CPN (``runner(x, condition=...).heatmaps``) so
    :func:`baselines.engine.predict_heatmaps` runs it unchanged, flip test included."""

    def __init__(self, session: Any, path: Path, lighting: str, lsbn: bool) -> None:
        self.session = session
        self.path = path
        self.lighting = lighting
        self.lsbn = lsbn

    def check_condition(self, condition: str) -> None:
        """Refuse inputs of the other lighting than the LSBN branch exported (a model without LSBN takes both).

        Raises:
            UsageError: one line naming the file and the ``--lighting`` to export with.
        """
        key = Lighting.parse(condition).key
        if self.lsbn and key != self.lighting:
            exported, asked = Lighting.parse(self.lighting).value, Lighting.parse(key).value
            raise UsageError(f"{self.path}: exported with the {exported} LSBN branch; it does not run {asked} images "
                             f"(export the checkpoint again with `exlpose export onnx --lighting {key}`)")

    def __call__(self, x: torch.Tensor, condition: str | None = None) -> OnnxPoseOutput:
        if condition is not None:
            self.check_condition(condition)
        batch = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        heatmaps = self.session.run(["heatmaps"], {"input": batch})[0]
        return OnnxPoseOutput(torch.from_numpy(heatmaps).to(x.device))

    def eval(self) -> "OnnxPose":
        """Nothing to switch (the graph is an inference graph); returns itself like ``nn.Module.eval``."""
        return self


def load_pose_onnx(path: str | os.PathLike, device: str = "cpu") -> tuple[OnnxPose, Any, str, str]:
    """``(runner, TrainConfig, origin, lighting)`` of a model written by :func:`export_pose_onnx`.

    Raises:
        InputError: the file is no ONNX model, or its metadata is missing or broken (named).
        UsageError: onnxruntime cannot run on ``device``.
    """
    from .checkpoint import ORIGINS
    from .config import make_config
    from .lsbn import CONDITIONS

    p = Path(path)
    session = onnx_session(p, device)
    meta = read_metadata(session)
    kind = meta.get("exlpose.kind")
    if kind != POSE_KIND:
        found = f"its exlpose.kind is {kind!r}" if kind is not None else "no exlpose metadata"
        raise InputError(f"{p}: {_NOT_OURS} ({found})")
    try:
        config = json.loads(meta["exlpose.config"])
        origin, lighting = meta["exlpose.origin"], meta["exlpose.lighting"]
    except (KeyError, ValueError) as exc:
        raise InputError(f"{p}: {_NOT_OURS} (metadata {exc} missing or broken)") from None
    if not isinstance(config, dict) or origin not in ORIGINS or lighting not in CONDITIONS:
        raise InputError(f"{p}: {_NOT_OURS} (metadata exlpose.config, exlpose.origin or exlpose.lighting broken)")
    cfg = make_config(config, source=f"{p} (exlpose.config)")
    return OnnxPose(session, p, lighting, bool(cfg.spec.lsbn)), cfg, origin, lighting
