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

__all__ = ["PARITY_TOLERANCE", "OPSETS", "CHECK_BATCHES", "scaled_difference", "portable_config", "check_opset", "lighting_key", "parity_batch", "metadata_bytes", "onnx_session", "read_metadata",
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


# Configuration fields that name files on the exporting machine: left out of a model that travels.
_LOCAL_PATHS = ("dataset", "annotations", "train_ann", "pack", "pretrained", "output_dir", "enhance_cache")


def portable_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration as stored in a model's metadata: the fields naming local files set to None (they mean
    nothing on another machine and would disclose the exporter's paths); ``output_dir`` is dropped for its default."""
    out = {k: (None if k in _LOCAL_PATHS else v) for k, v in config.items()}
    out.pop("output_dir", None)
    return out


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


def scaled_difference(got: np.ndarray, expected: np.ndarray) -> float:
    """The largest difference between two outputs relative to the output's own scale,
    ``max|got - expected| / max(1, max|expected|)`` (inf when the shapes differ).

    onnxruntime and torch differ by float32 rounding, about 1e-7 of the values' magnitude: a trained pose head
    peaks near 255 and a detector's size head predicts hundreds of cells, so an absolute bound would refuse
    every trained model while a unit-scale output is still held to 1e-4 absolute."""
    if got.shape != expected.shape:
        return float("inf")
    if got.size == 0:
        return 0.0
    return float(np.abs(got.astype(np.float64) - expected).max() / max(1.0, float(np.abs(expected).max())))


# The batch sizes every export is checked at besides the example's own: a graph that kept the traced batch
# size somewhere would pass at the example's size and fail at these.
CHECK_BATCHES = (1, 3)


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
    and every output's first axis are the dynamic ``batch``; append ``metadata``; then run ``example`` (and batches
    of :data:`CHECK_BATCHES` images cut from it) through onnxruntime and torch, and write the file only when every
    output agrees within :data:`PARITY_TOLERANCE` relative to its scale (:func:`scaled_difference`;
    ``compare(got, expected) -> difference`` replaces it where outputs need their own comparison).

    Returns:
        ``max_abs_diff`` (the largest difference found, relative to each output's scale), ``tolerance``,
        ``output_shapes`` (of the example's outputs), ``batches`` (the batch sizes checked), ``bytes`` (the
        file's size).

    Raises:
        InputError: onnxruntime's outputs differ from torch's by more than the tolerance (nothing is written).
    """
    module = module.eval()
    batches = [example, *(example.repeat(-(-n // example.shape[0]), 1, 1, 1)[:n] for n in CHECK_BATCHES if n != example.shape[0])]
    with torch.no_grad():
        wanted = [module(x) for x in batches]
    wanted = [[t.numpy() for t in (w if isinstance(w, (tuple, list)) else (w,))] for w in wanted]
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
        session = onnx_session(tmp)
        diff, first = 0.0, None
        for x, expected in zip(batches, wanted):
            got = session.run(list(output_names), {"input": x.numpy()})
            first = got if first is None else first
            if compare is not None:  # a model whose outputs need their own comparison (the detector's boxes: baselines.detect.export)
                here = float(compare(got, expected))
            else:
                here = max(scaled_difference(g, e) for g, e in zip(got, expected))
            if not here <= PARITY_TOLERANCE:
                raise InputError(f"{out}: onnxruntime's outputs differ from torch's by {here:.3g} (relative to the output's scale) > "
                                 f"{PARITY_TOLERANCE:g} on the same batch of {x.shape[0]} (opset {opset}); the model was not written")
            diff = max(diff, here)
        size = tmp.stat().st_size
    return {"max_abs_diff": diff, "tolerance": PARITY_TOLERANCE, "output_shapes": [list(g.shape) for g in first], "bytes": size,
            "batches": [int(x.shape[0]) for x in batches]}
