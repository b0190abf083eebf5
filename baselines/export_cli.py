"""``exlpose export onnx``: a pose or detector checkpoint as an ONNX model (:mod:`baselines.onnx_export`).

The core's ``exlpose export`` group may not import the baselines, so the umbrella CLI (:mod:`exlpose.cli`) adds
this app's commands to it when the baselines are installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exlpose_data.cli.common import handle_errors, new_app, out_console

__all__ = ["app"]

app = new_app("Export trained models for other runtimes: onnx (pose and detector checkpoints).")


@app.callback()
def _group() -> None:
    """Keep ``onnx`` a sub-command, so the umbrella can add it to ``exlpose export``."""


@app.command("onnx")
@handle_errors
def onnx(
    checkpoint: Annotated[Path, typer.Argument(help="pose checkpoint (exlpose-train) or detector checkpoint (exlpose-detect train)")],
    out: Annotated[Path, typer.Option("--out", help="the .onnx file to write (an earlier export there is replaced only with --overwrite)")],
    lighting: Annotated[str, typer.Option(help="LSBN branch baked in: ll (low-light) or wl (well-lit); recorded for other variants")] = "ll",
    opset: Annotated[int, typer.Option(help="ONNX opset (11 to 20)")] = 17,
    overwrite: Annotated[bool, typer.Option("--overwrite", "--force", help="replace an earlier ONNX export at --out (never anything else)")] = False,
) -> None:
    """Export CHECKPOINT to ONNX with a dynamic batch axis, and check that onnxruntime's outputs equal torch's
    (within 1e-4 of each output's scale, at batch sizes 2, 1 and 3) on the same input before the file is written. docs/baselines.md gives the model's inputs,
    outputs and metadata."""
    from .onnx_export import export_onnx

    result = export_onnx(checkpoint, out, lighting=lighting, opset=opset, overwrite=overwrite)
    out_console.print(f"{result['kind']} model {checkpoint.name} ({result['variant']}, {result['lighting'].upper()} branch, opset {result['opset']}) "
                      f"-> {result['out']}: onnxruntime vs torch max abs diff {result['max_abs_diff']:.2e} of the output's scale "
                      f"(tolerance {result['tolerance']:g}; batches {', '.join(map(str, result['batches']))})", markup=False, soft_wrap=True)
