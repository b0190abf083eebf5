"""``exlpose enhance``: enhance low-light images with LIME or an ONNX enhancer, one output PNG per input."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from exlpose_data.atomic import write_image_atomic
from exlpose_data.cli.common import err_console, handle_errors, new_app, progress_bar
from exlpose_data.datasets.sources import decode_image
from exlpose_data.errors import InputError, UsageError

from .base import Enhancer, enhance_bgr

__all__ = ["app", "enhance_files"]

app = new_app("Enhance low-light images (LIME, or any enhancer exported to ONNX) before pose estimation.")

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
Inputs = Annotated[list[Path], typer.Argument(help="images, or folders whose images (png/jpg/bmp/tif) are all enhanced")]
Out = Annotated[Path, typer.Option("--out", help="output folder: <input stem>.png per image")]
Bits = Annotated[int, typer.Option(help="output depth: 8 (viewable) or 16 (what the training cache keeps)")]
Force = Annotated[bool, typer.Option("--force", help="replace existing outputs")]


def _expand(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES and not f.name.startswith("."))
            if not found:
                raise UsageError(f"{p}: folder holds no image ({', '.join(_IMAGE_SUFFIXES)})")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise UsageError(f"{p}: no such image or folder")
    return files


def enhance_files(enhancer: Enhancer, inputs: list[Path], out: Path, *, bits: int = 8, force: bool = False) -> list[float]:
    """Enhance each image of ``inputs`` into ``out/<stem>.png``; return the seconds each enhancement took.

    Raises:
        UsageError: no inputs, two inputs with one stem, an output that exists (without ``force``), bad ``bits``.
        InputError: an unreadable image.
    """
    if bits not in (8, 16):
        raise UsageError(f"--bits {bits}: use 8 or 16")
    files = _expand(inputs)
    if not files:
        raise UsageError("no input images")
    targets = [out / f"{f.stem}.png" for f in files]
    seen: dict[Path, Path] = {}
    for f, t in zip(files, targets):
        if t in seen:
            raise UsageError(f"{f} and {seen[t]} would both be written to {t}; enhance them into different --out folders")
        seen[t] = f
        if t.exists() and not force:
            raise UsageError(f"{t}: exists; pass --force to replace it")
    seconds = []
    with progress_bar(transient=True) as progress:
        task = progress.add_task(f"enhancing ({enhancer.name})", total=len(files))
        for f, t in zip(files, targets):
            img = decode_image(f)
            start = time.perf_counter()
            enhanced = enhance_bgr(enhancer, img)
            seconds.append(time.perf_counter() - start)
            pixels = enhanced if bits == 16 else ((enhanced.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
            write_image_atomic(t, pixels)
            progress.update(task, advance=1)
    return seconds


def _report(seconds: list[float], out: Path) -> None:
    err_console.print(f"wrote {len(seconds)} image(s) to {out}; {np.mean(seconds):.3f} s per image (median {np.median(seconds):.3f} s)", markup=False)


@app.command("lime")
@handle_errors
def lime(
    inputs: Inputs,
    out: Out,
    alpha: Annotated[float, typer.Option(help="weight of the structure-aware smoothness term")] = 0.15,
    sigma: Annotated[float, typer.Option(help="Gaussian window of weight strategy 3 (pixels)")] = 2.0,
    gamma: Annotated[float, typer.Option(help="gamma applied to the illumination map")] = 0.8,
    strategy: Annotated[int, typer.Option(help="weight strategy of the paper: 1, 2 or 3")] = 3,
    downscale: Annotated[float, typer.Option(help="solve the illumination at this scale (ours; 1 = full resolution)")] = 1.0,
    bits: Bits = 8,
    force: Force = False,
) -> None:
    """LIME (Guo et al., TIP 2017): illumination = max over channels, refined, gamma-corrected; output = input / illumination."""
    from .lime import Lime, LimeSettings

    try:
        settings = LimeSettings(alpha=alpha, sigma=sigma, gamma=gamma, strategy=strategy, downscale=downscale)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _report(enhance_files(Lime(settings), inputs, out, bits=bits, force=force), out)


@app.command("onnx")
@handle_errors
def onnx(
    model: Annotated[Path, typer.Argument(help="enhancer exported to ONNX: (1, 3, H, W) RGB on [0, 1] in and out")],
    inputs: Inputs,
    out: Out,
    bits: Bits = 8,
    force: Force = False,
) -> None:
    """Run an enhancement network exported to ONNX (e.g. LLFlow) on each image."""
    from .onnx import OnnxEnhancer

    _report(enhance_files(OnnxEnhancer(model), inputs, out, bits=bits, force=force), out)
