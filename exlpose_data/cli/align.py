"""``exlpose-align``: homography from static reference pairs, measured validation, aligned export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from ..outputs import check_output
from .common import err_console, finite_number, handle_errors, new_app, progress_callback

app = new_app("Align the well-lit camera to the low-light camera: estimate, check, apply, calibrate.")

SessionArg = Annotated[Optional[Path], typer.Argument(help="capture session (.h5) holding /reference pairs", show_default=False)]
ReferenceOpt = Annotated[Optional[list[str]], typer.Option("--reference", help="reference pair name (repeatable; default: all of the session's)")]
WlOpt = Annotated[Optional[list[Path]], typer.Option("--wl", help="well-lit reference image (8/16-bit), instead of a session; repeat for several frames (averaged)")]
LlOpt = Annotated[Optional[list[Path]], typer.Option("--ll", help="low-light reference image (8/16-bit), instead of a session; repeat for several frames of the static reference (averaged)")]
MirrorOpt = Annotated[Optional[str], typer.Option("--mirror", help="flip in software: none, ll or wl (default: the session's rig_config 'mirror', else none)")]


def _mirror(value: str | None) -> str | None:
    from ..align.prepare import MIRROR_SIDES

    if value is not None and value not in MIRROR_SIDES:
        raise UsageError(f"--mirror {value!r}: expected one of {', '.join(MIRROR_SIDES)}")
    return value


def _load_pairs(session: Path | None, reference: list[str] | None, wl: list[Path] | None, ll: list[Path] | None, mirror: str | None, *, default_mirror: str = "none") -> tuple[list, str, list]:
    """(reference pairs, mirror side applied, input files) from a session or an image pair."""
    from ..align.reference import load_image_pair, load_session_references

    if session is not None and (wl or ll):
        raise UsageError("give either SESSION.h5 or --wl/--ll images, not both")
    if session is not None:
        return load_session_references(session, reference, _mirror(mirror))  # type: ignore[arg-type]
    if not wl or not ll:
        raise UsageError("give SESSION.h5, or both --wl and --ll reference images")
    if reference:
        raise UsageError("--reference selects pairs of a session; it does not apply to --wl/--ll images")
    side = _mirror(mirror) or default_mirror
    pairs, inputs = load_image_pair(wl, ll, side)  # type: ignore[arg-type]
    return pairs, side, inputs


@app.command()
@handle_errors
def estimate(
    session: SessionArg = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="ALIGN.json to write")] = Path("ALIGN.json"),
    reference: ReferenceOpt = None,
    wl: WlOpt = None,
    ll: LlOpt = None,
    mirror: MirrorOpt = None,
    calibration: Annotated[Optional[Path], typer.Option("--calibration", help="CALIB.json from 'exlpose-align calibrate'")] = None,
    max_features: Annotated[int, typer.Option(help="SIFT keypoints kept per image")] = 3000,
    min_inliers: Annotated[int, typer.Option(help="fewer feature inliers than this counts as a failed feature estimate")] = 20,
    no_ecc_only: Annotated[bool, typer.Option("--no-ecc-only", help="start ECC only from the feature estimate, never from the identity (fail when features fail)")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", "--force", help="replace an existing ALIGN.json at --out (any other file there is refused)")] = False,
) -> None:
    """Estimate the WL -> LL homography of reference pairs (SIFT + USAC_MAGSAC, then ECC coarse to fine)."""
    from ..align.calibrate import load_calibration
    from ..align.estimate import EstimateOptions
    from ..align.model import InputFile
    from ..align.reference import build_alignment
    from ..layout import sha256_file

    if max_features < 100 or min_inliers < 8:
        raise UsageError("--max-features must be >= 100 and --min-inliers >= 8")
    check_output(out, inputs=[session, *(wl or []), *(ll or []), calibration], writes="file", produces="alignment model",
                 replaces=["alignment model"], overwrite=overwrite)
    pairs, side, inputs = _load_pairs(session, reference, wl, ll, mirror)
    calib = load_calibration(calibration) if calibration is not None else None
    if calibration is not None:
        inputs.append(InputFile(role="calibration", path=str(calibration), sha256=sha256_file(calibration)))
    opts = EstimateOptions(max_features=max_features, min_inliers=min_inliers, allow_ecc_only=not no_ecc_only)
    model = build_alignment(pairs, side, inputs, opts, calib)
    model.save(out)
    m = model.metrics
    typer.echo(
        f"{out}: {model.initial_method} -> ECC levels {m.ecc_levels}, {m.n_inliers} inliers, "
        f"held-out median {_fmt(m.heldout_median_px)} px / p95 {_fmt(m.heldout_p95_px)} px (noise {_fmt(m.heldout_noise_px)} px), "
        f"initial/refined corners {m.corner_disagreement_px:.3f} px, crop {list(model.crop)}, "
        f"PSNR {_fmt(m.psnr_db)} dB, SSIM {_fmt(m.ssim)} (binned {m.quality_bin or 1}x)"
    )
    for note in model.notes:
        err_console.print(f"note: {note}", markup=False)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


@app.command()
@handle_errors
def check(
    align_json: Annotated[Path, typer.Argument(help="ALIGN.json to check", show_default=False)],
    session: SessionArg = None,
    reference: ReferenceOpt = None,
    wl: WlOpt = None,
    ll: LlOpt = None,
    mirror: MirrorOpt = None,
    plots: Annotated[Optional[Path], typer.Option("--plots", help="folder for residuals.png (and difference.png with a reference pair)")] = None,
    max_median_px: Annotated[float, typer.Option(help="limit on the held-out residual median (px), raised to 2x the measurement noise; <= 0 disables", parser=finite_number)] = 0.5,
    max_p95_px: Annotated[float, typer.Option(help="limit on the held-out residual 95th percentile (px), raised to 4x the measurement noise; <= 0 disables", parser=finite_number)] = 1.5,
    max_corner_px: Annotated[float, typer.Option(help="limit on the initial/refined corner disagreement (px); <= 0 disables (default: reported only)", parser=finite_number)] = 0.0,
    min_psnr_db: Annotated[Optional[float], typer.Option(help="lower limit on the masked PSNR of the aligned reference", parser=finite_number)] = None,
    min_ssim: Annotated[Optional[float], typer.Option(help="lower limit on the masked SSIM of the aligned reference", parser=finite_number)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as one JSON line")] = False,
) -> None:
    """Report held-out residuals, corner disagreement and masked PSNR/SSIM; exit 1 when a limit is exceeded.

    With a reference pair (SESSION.h5 or --wl/--ll), the held-out displacements are measured again on it under
    this homography, PSNR/SSIM are recomputed (binned) and a difference image is plotted; otherwise the stored
    measurements are used.
    """
    from ..align.check import PLOT_FILES, check_alignment
    from ..align.model import AlignModel
    from ..align.validate import Thresholds

    if plots is not None:
        # Plots go into a plain folder (refreshed each run); never into a release, a training run, or over an input.
        check_output(plots, inputs=[align_json, session, *(wl or []), *(ll or [])], writes="folder", produces="residual plots",
                     replaces=["folder"], resumes=True, files=PLOT_FILES, option="--plots")
    model = AlignModel.load(align_json)
    pair = None
    if session is not None or wl or ll:
        pairs, side, _ = _load_pairs(session, reference, wl, ll, mirror, default_mirror=model.mirror)
        if side != model.mirror:
            raise UsageError(f"the reference pair is flipped on the {side!r} side but {align_json} was estimated with mirror {model.mirror!r}; pass --mirror {model.mirror}")
        pair = pairs[0]
    limits = Thresholds(
        max_median_px=max_median_px if max_median_px > 0 else None,
        max_p95_px=max_p95_px if max_p95_px > 0 else None,
        max_corner_px=max_corner_px if max_corner_px > 0 else None,
        min_psnr_db=min_psnr_db,
        min_ssim=min_ssim,
    )
    report = check_alignment(model, limits, pair=pair, plots=plots, source=str(align_json))
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    else:
        typer.echo(
            f"{align_json}: {report.heldout_count} held-out displacements, residual median {_fmt(report.heldout_median_px)} px, "
            f"p95 {_fmt(report.heldout_p95_px)} px (measurement noise {_fmt(report.heldout_noise_px)} px); "
            f"initial/refined corners {report.corner_disagreement_px:.3f} px; "
            f"PSNR {_fmt(report.psnr_db)} dB, SSIM {_fmt(report.ssim)} (binned {report.quality_bin or 1}x)"
        )
    for f in report.failures:
        err_console.print(f"fail: {f}", markup=False)
    if not report.passed:
        raise typer.Exit(1)


@app.command()
@handle_errors
def apply(
    session: Annotated[Path, typer.Argument(help="capture session (.h5)", show_default=False)],
    align_json: Annotated[Path, typer.Argument(help="ALIGN.json from 'exlpose-align estimate'", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="dataset root (bright/, dark/, brightPath2darkPath.txt, manifest.json)")],
    frames: Annotated[str, typer.Option(help="frames of each step to export: all, middle or N (evenly spread)")] = "middle",
    bits: Annotated[int, typer.Option(help="PNG bit depth: 8 or 16")] = 8,
    workers: Annotated[int, typer.Option(help="processes (default: all cores)")] = 0,
    interpolation: Annotated[str, typer.Option(help="WL warp interpolation: cubic, linear or lanczos")] = "cubic",
    mirror: MirrorOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", "--force", help="rewrite this session's pairs in a release they were written into with other settings or another ALIGN.json, removing those this run no longer writes (other sessions' pairs are kept; a folder that is not a release is never replaced)")] = False,
) -> None:
    """Warp WL into the LL frame, crop both and write the release layout.

    A rerun with the same settings skips the finished pairs; with other settings (or another ALIGN.json or session
    content) it is refused unless --overwrite. All sessions in one release share --bits and --interpolation.
    """
    from ..align.apply import RELEASE_FILES, ApplyOptions, default_workers, run_apply
    from ..align.model import AlignModel

    check_output(out, inputs=[session, align_json], writes="folder", produces="release", replaces=["release"],
                 overwrite=overwrite, resumes=True, files=RELEASE_FILES)
    model = AlignModel.load(align_json)
    opts = ApplyOptions(frames=frames, out_bits=bits, workers=workers or default_workers(), interpolation=interpolation, mirror=_mirror(mirror))  # type: ignore[arg-type]
    with progress_callback("aligning pairs", disable=quiet) as progress:
        report = run_apply(session, model, out, opts, model_path=align_json, overwrite=overwrite, progress=progress)
    removed = f", {len(report.removed)} files of the earlier run removed" if report.removed else ""
    typer.echo(f"{out}: {report.written} pairs written, {report.skipped} already there{removed}, crop {list(model.crop)}")


@app.command()
@handle_errors
def calibrate(
    ll: Annotated[list[Path], typer.Option("--ll", help="checkerboard image of the LL camera (repeatable)")],
    wl: Annotated[list[Path], typer.Option("--wl", help="checkerboard image of the WL camera (repeatable)")],
    pattern: Annotated[str, typer.Option(help="inner corners COLSxROWS")] = "9x6",
    out: Annotated[Path, typer.Option("--out", "-o", help="CALIB.json to write")] = Path("CALIB.json"),
    mirror: Annotated[str, typer.Option(help="flip in software before detection: none, ll or wl (as for estimate)")] = "none",
    overwrite: Annotated[bool, typer.Option("--overwrite", "--force", help="replace an existing CALIB.json at --out (any other file there is refused)")] = False,
) -> None:
    """Calibrate each camera's lens from checkerboard views; pass the result to 'estimate --calibration'."""
    import numpy as np

    from ..align.calibrate import calibrate_camera, parse_pattern, save_calibration
    from ..align.reference import read_image
    from ..isp import linear_to_srgb
    from ..align.prepare import linear_gray

    side = _mirror(mirror)
    size = parse_pattern(pattern)
    check_output(out, inputs=[*ll, *wl], writes="file", produces="lens calibration", replaces=["lens calibration"], overwrite=overwrite)
    result = {}
    for cam, paths in (("ll", ll), ("wl", wl)):
        grays = []
        for p in paths:
            # Display-encoded grey: the corner detector wants contrast, whatever the exposure.
            g = linear_gray(read_image(p))
            g = g / max(float(np.percentile(g, 99.5)), 1e-9)
            g8 = np.rint(linear_to_srgb(g) * 255).astype(np.uint8)
            grays.append(np.ascontiguousarray(g8[:, ::-1]) if side == cam else g8)
        result[cam] = calibrate_camera(grays, size, names=[str(p) for p in paths])
    save_calibration(out, result)
    typer.echo(f"{out}: LL rms {result['ll'].rms_px:.3f} px ({result['ll'].n_views} views), WL rms {result['wl'].rms_px:.3f} px ({result['wl'].n_views} views)")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="exlpose-align")
