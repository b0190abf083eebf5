"""``exlpose enhance``: enhance low-light images with LIME or an ONNX enhancer, one output PNG per input.

The output folder records the enhancer's settings, the bit depth and the images (:mod:`baselines.results`): a
re-run with the same ones skips the images already enhanced; one with another method, gamma, depth or image list is
refused unless ``--overwrite``, which replaces the whole folder, so no image of the old settings stays beside the
new ones. ``--workers N`` enhances N images at a time in worker processes (default: every core this process may
use)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from exlpose_data.atomic import write_image_atomic
from exlpose_data.cli.common import err_console, finite_number, handle_errors, new_app, progress_bar
from exlpose_data.datasets.sources import decode_image
from exlpose_data.errors import InputError, UsageError

from .base import Enhancer, enhance_bgr
from .transform import default_workers, run_parallel

__all__ = ["app", "enhance_files"]

app = new_app("Enhance low-light images (LIME, or any enhancer exported to ONNX) before pose estimation.")

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
Inputs = Annotated[list[Path], typer.Argument(help="images, or folders whose images (png/jpg/bmp/tif) are all enhanced")]
Out = Annotated[Path, typer.Option("--out", help="output folder: <input stem>.png per image")]
Bits = Annotated[int, typer.Option(help="output depth: 8 (viewable) or 16 (what the training cache keeps)")]
Overwrite = Annotated[bool, typer.Option("--overwrite", "--force", help="replace an --out folder enhanced with other settings or images (the new folder is built beside it and swapped in; --force: the same)")]
Workers = Annotated[int | None, typer.Option("--workers", min=1, help="images enhanced at a time, each in its own process with one thread (default: the cores this process may use)")]
COMMAND = "exlpose enhance"


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


def _enhance_file(job: tuple[Enhancer, int], paths: tuple[Path, Path]) -> float:
    """Enhance ``paths[0]`` into ``paths[1]`` (PNG of ``bits``) with ``job = (enhancer, bits)``; the seconds the
    enhancement took."""
    enhancer, bits = job
    source, target = paths
    img = decode_image(source)
    start = time.perf_counter()
    enhanced = enhance_bgr(enhancer, img)
    seconds = time.perf_counter() - start
    pixels = enhanced if bits == 16 else ((enhanced.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    write_image_atomic(target, pixels)
    return seconds


def enhance_files(enhancer: Enhancer, inputs: list[Path], out: Path, *, bits: int = 8, overwrite: bool = False,
                  inputs_digest: dict[str, Path] | None = None, workers: int | None = None) -> list[float]:
    """Enhance each image of ``inputs`` into ``out/<stem>.png``, ``workers`` at a time in worker processes (None:
    :func:`~baselines.enhance.transform.default_workers`; 1: in this process); return the seconds each enhancement
    took.

    ``out`` is new or empty, or a folder this command enhanced with the same settings and images (the images
    already there are skipped), or replaced with ``overwrite``; never an input folder or inside one.
    ``inputs_digest`` (role -> file: an ONNX model) is recorded with the folder's settings.

    Raises:
        UsageError: no inputs, two inputs with one stem, bad ``bits``, an ``out`` that holds or is an input, or one
            enhanced with other settings (without ``overwrite``).
        InputError: an unreadable image.
    """
    from ..results import result_folder

    if bits not in (8, 16):
        raise UsageError(f"--bits {bits}: use 8 or 16")
    files = _expand(inputs)
    if not files:
        raise UsageError("no input images")
    names = [f"{f.stem}.png" for f in files]
    seen: dict[str, Path] = {}
    for f, name in zip(files, names):
        if name in seen:
            raise UsageError(f"{f} and {seen[name]} would both be written to {out / name}; enhance them into different --out folders")
        seen[name] = f
    settings = {"enhancer": enhancer.identity(), "bits": bits, "images": [str(f.resolve()) for f in files]}
    seconds = []
    with result_folder(out, command=COMMAND, produces="enhanced-image folder", settings=settings, inputs=inputs_digest or {},
                       read=[*inputs, *files], files=names, overwrite=overwrite) as (folder, recorded), progress_bar(transient=True) as progress:
        task = progress.add_task(f"enhancing ({enhancer.name})", total=len(files))
        jobs = []
        for f, name in zip(files, names):
            target = folder / name
            if recorded.resumed and name in recorded.previous_files and target.is_file():
                recorded.own(name)
                progress.update(task, advance=1)
            else:
                jobs.append((f, target))
        for (_, target), took in run_parallel(_enhance_file, (enhancer, bits), jobs, default_workers() if workers is None else workers):
            seconds.append(took)
            recorded.own(target.name)
            progress.update(task, advance=1)
    return seconds


def _report(seconds: list[float], out: Path) -> None:
    if not seconds:
        err_console.print(f"{out}: every image was already enhanced with these settings; nothing to do", markup=False)
        return
    err_console.print(f"wrote {len(seconds)} image(s) to {out}; {np.mean(seconds):.3f} s per image (median {np.median(seconds):.3f} s)", markup=False)


@app.command("lime")
@handle_errors
def lime(
    inputs: Inputs,
    out: Out,
    alpha: Annotated[float, typer.Option(help="weight of the structure-aware smoothness term", parser=finite_number)] = 0.15,
    sigma: Annotated[float, typer.Option(help="Gaussian window of weight strategy 3 (pixels)", parser=finite_number)] = 2.0,
    gamma: Annotated[float, typer.Option(help="gamma applied to the illumination map", parser=finite_number)] = 0.8,
    strategy: Annotated[int, typer.Option(help="weight strategy of the paper: 1, 2 or 3")] = 3,
    downscale: Annotated[float, typer.Option(help="solve the illumination at this scale (ours; 1 = full resolution)", parser=finite_number)] = 1.0,
    solver: Annotated[str, typer.Option(help="the refinement's solver: amg (multigrid, fast) or direct (exact factorisation, many times slower at full resolution; same image within 16-bit rounding)")] = "amg",
    bits: Bits = 8,
    overwrite: Overwrite = False,
    workers: Workers = None,
) -> None:
    """LIME (Guo et al., TIP 2017): illumination = max over channels, refined, gamma-corrected; output = input / illumination."""
    from .lime import Lime, LimeSettings

    try:
        settings = LimeSettings(alpha=alpha, sigma=sigma, gamma=gamma, strategy=strategy, downscale=downscale, solver=solver)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _report(enhance_files(Lime(settings), inputs, out, bits=bits, overwrite=overwrite, workers=workers), out)


@app.command("onnx")
@handle_errors
def onnx(
    model: Annotated[Path, typer.Argument(help="enhancer exported to ONNX: (1, 3, H, W) RGB on [0, 1] in and out")],
    inputs: Inputs,
    out: Out,
    bits: Bits = 8,
    overwrite: Overwrite = False,
    workers: Workers = None,
) -> None:
    """Run an enhancement network exported to ONNX (e.g. LLFlow) on each image."""
    from .onnx import OnnxEnhancer

    _report(enhance_files(OnnxEnhancer(model), inputs, out, bits=bits, overwrite=overwrite, inputs_digest={"model": model}, workers=workers), out)
