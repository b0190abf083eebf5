"""Writing and opening the toolkit's ONNX models: export with a parity check, ``metadata_props``, onnxruntime
sessions. Shared by the pose export (:mod:`baselines.onnx_export`) and the detector's; it imports neither.

The exporter is torch's TorchScript-based one (``dynamo=False``): the torch.export-based default needs the
``onnxscript`` package, which the ``[train]`` extra does not install (torch 2.13 raises ``ModuleNotFoundError``
without it); the networks here are plain convolutions, BatchNorm and bilinear resizing, which the TorchScript
exporter handles with a dynamic batch axis (``dynamic_axes``). The metadata is appended to the serialised
ModelProto as protobuf fields (``metadata_props``, field 14), so neither writing nor reading needs the ``onnx``
package; onnxruntime reads the metadata back.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from exlpose_data.atomic import atomic_path
from exlpose_data.errors import InputError, UsageError
from exlpose_data.lighting import Lighting

__all__ = ["PARITY_TOLERANCE", "OPSETS", "check_opset", "lighting_key", "parity_batch", "metadata_bytes", "onnx_session", "read_metadata",
           "write_onnx"]

PARITY_TOLERANCE = 1e-4
# Bilinear resizing with align_corners needs opset 11; 20 is the newest the TorchScript exporter writes.
OPSETS = range(11, 21)


def check_opset(opset: int) -> None:
    """Raise :class:`UsageError` naming ``--opset`` unless the exporter writes ``opset`` and the networks need no newer."""
    if opset not in OPSETS:
        raise UsageError(f"--opset {opset}: choose {OPSETS.start} to {OPSETS.stop - 1}")


def lighting_key(lighting: str) -> str:
    """``"ll"`` or ``"wl"`` for any spelling of a lighting condition, else :class:`UsageError` naming ``--lighting``."""
    try:
        return Lighting.parse(lighting).key
    except ValueError:
        raise UsageError(f"--lighting must be ll or wl, got {lighting!r}") from None


def parity_batch(input_size: Sequence[int]) -> torch.Tensor:
    """The input an export is checked on: a fixed random float32 batch of two ``(2, 3, H, W)``."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, *input_size, generator=generator)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def metadata_bytes(props: Mapping[str, str]) -> bytes:
    """``props`` as ModelProto ``metadata_props`` entries (field 14, StringStringEntryProto key=1, value=2), to be
    appended to a serialised model: a protobuf parser merges repeated fields wherever they stand."""
    return b"".join(_length_delimited(14, _length_delimited(1, k.encode()) + _length_delimited(2, v.encode())) for k, v in props.items())


def onnx_session(path: str | os.PathLike, device: str = "cpu") -> Any:
    """An onnxruntime session of ``path`` on ``device`` (``cpu``, or ``cuda[:N]`` where onnxruntime has CUDA).

    Raises:
        UsageError: onnxruntime is missing, or cannot run on ``device``.
        InputError: the file is absent or not an ONNX model onnxruntime can load.
    """
    try:
        import onnxruntime as ort
    except ModuleNotFoundError:
        raise UsageError("ONNX models need onnxruntime: pip install 'exlpose-data[train]'") from None
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such ONNX model")
    providers: list[Any] = ["CPUExecutionProvider"]
    if device != "cpu":
        if not device.startswith("cuda") or "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UsageError(f"--device {device}: onnxruntime here runs ONNX models on {', '.join(ort.get_available_providers())} only; use --device cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.log_severity_level = 3  # notes about unused initialisers are not the user's business
    try:
        return ort.InferenceSession(str(p), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
        raise InputError(f"{p}: not an ONNX model onnxruntime can load ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def read_metadata(session: Any) -> dict[str, str]:
    """The ``metadata_props`` of a loaded model."""
    return dict(session.get_modelmeta().custom_metadata_map)


def write_onnx(
    module: nn.Module,
    example: torch.Tensor,
    out: str | os.PathLike,
    *,
    output_names: Sequence[str],
    metadata: Mapping[str, str],
    opset: int,
    compare: Any = None,
) -> dict[str, Any]:
    """Export ``module`` (in eval mode, on the CPU) to ``out`` atomically, with one input ``input`` whose first axis
    and every output's first axis are the dynamic ``batch``; append ``metadata``; then run ``example`` through
    onnxruntime and torch and write the file only when every output agrees within :data:`PARITY_TOLERANCE`
    (``compare(got, expected) -> difference`` replaces the plain largest difference where outputs need it).

    Returns:
        ``max_abs_diff`` (over all outputs), ``tolerance``, ``output_shapes`` (of the example's outputs),
        ``bytes`` (the file's size).

    Raises:
        InputError: onnxruntime's outputs differ from torch's by more than the tolerance (nothing is written).
    """
    module = module.eval()
    with torch.no_grad():
        expected = module(example)
    expected = [t.numpy() for t in (expected if isinstance(expected, (tuple, list)) else (expected,))]
    axes = {name: {0: "batch"} for name in ("input", *output_names)}
    with atomic_path(out) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            # the TorchScript exporter announces its deprecation; it is the one that works without onnxscript
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(module, (example,), str(tmp), input_names=["input"], output_names=list(output_names),
                              opset_version=opset, dynamic_axes=axes, dynamo=False)
        with open(tmp, "ab") as fh:
            fh.write(metadata_bytes(metadata))
        got = onnx_session(tmp).run(list(output_names), {"input": example.numpy()})
        if compare is not None:  # a model whose outputs need their own comparison (the detector's boxes: baselines.detect.export)
            diff = float(compare(got, expected))
        else:
            diff = max(float(np.abs(g - e).max()) if g.shape == e.shape else float("inf") for g, e in zip(got, expected))
        if not diff <= PARITY_TOLERANCE:
            raise InputError(f"{out}: onnxruntime's outputs differ from torch's by {diff:.3g} > {PARITY_TOLERANCE:g} "
                             f"on the same input (opset {opset}); the model was not written")
        size = tmp.stat().st_size
    return {"max_abs_diff": diff, "tolerance": PARITY_TOLERANCE, "output_shapes": [list(g.shape) for g in got], "bytes": size}
