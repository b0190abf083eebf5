"""``exlpose-capture``: plan, record and inspect synchronized LL/WL captures on the dual Basler rig.

Every command runs the same code on pylon's camera emulator with ``--emulate``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.logging import RichHandler
from rich.table import Table

from exlpose_data.cli.common import err_console, fail, finite_number, handle_errors, new_app, out_console, whole_number
from exlpose_data.errors import InputError, UsageError
from exlpose_data.feeds_format import FEEDS_FILE
from exlpose_data.jsonio import load_json
from exlpose_data.naming import check_date, check_site, check_video
from exlpose_data.session_format import summarise

from pydantic import ValidationError

from .config import RigConfig, emulated_config, load_config

__all__ = ["app", "main"]

app = new_app("Plan, record and inspect synchronized low-light / well-lit captures on the dual Basler rig.")
config_app = new_app("Rig config files.")
app.add_typer(config_app, name="config")

# Frame size assumed by `plan` when no config gives one: the dart's default 1920x1200.
DEFAULT_FRAME = (1920, 1200)



ConfigOpt = Annotated[Path | None, typer.Option("--config", help="rig config (YAML or JSON)")]
EmulateOpt = Annotated[bool, typer.Option("--emulate", help="use pylon's emulated cameras (0815-0000 = LL, 0815-0001 = WL)")]
PresetOpt = Annotated[str | None, typer.Option("--preset", help="exposure ladder preset: outdoor (1,2,4,8,12) or indoor (1,2,3,4,6)")]
KOpt = Annotated[str | None, typer.Option("--k", help="custom exposure divisors, comma-separated (e.g. 1,2,4,16)")]
ExposureOpt = Annotated[float, typer.Option("--exposure-us", parser=finite_number, help="well-exposing WL exposure at k = 1, in us")]
GainOpt = Annotated[float, typer.Option("--gain-db", parser=finite_number, help="WL gain at k = 1, in dB")]
LLGainOpt = Annotated[float | None, typer.Option("--ll-gain-db", parser=finite_number, help="fixed LL gain (default: the base WL gain)")]
FramesOpt = Annotated[int, typer.Option("--frames", parser=whole_number, help="pairs per step")]
FpsOpt = Annotated[float | None, typer.Option("--fps", parser=finite_number, help="pairs per second (default: the config's frame_rate_hz)")]
RoiOpt = Annotated[str | None, typer.Option("--roi", help="WIDTHxHEIGHT, overriding the config (e.g. 640x400)")]
OutOpt = Annotated[Path, typer.Option("--out", help="session file (.h5); created, or appended to (a data session: never a dark-frame session "
                                     "or a file of another kind)")]
FeedsOpt = Annotated[Path | None, typer.Option("--feeds", help="with --emulate: simulator feed folder DIR/<scene>/<k>/{ll,wl}/")]


def _setup_logging() -> None:
    logger = logging.getLogger("rig")
    if not logger.handlers:
        logger.addHandler(RichHandler(console=err_console, show_time=False, show_path=False, markup=False))
        logger.setLevel(logging.INFO)


def _ks(k: str | None) -> list[float] | None:
    if k is None:
        return None
    try:
        ks = [float(x) for x in k.split(",") if x.strip()]
    except ValueError:
        ks = [math.nan]
    if not all(math.isfinite(x) for x in ks):
        raise UsageError(f"--k {k}: expected comma-separated finite numbers like 1,2,4,8,12")
    return ks


def _roi(text: str) -> dict[str, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--roi {text!r}: expected WIDTHxHEIGHT like 640x400") from None
    return {"width": w, "height": h}


def _feed_size(feeds: Path) -> tuple[int, int]:
    """Width and height of the first feed image: the emulator shrinks frames to files smaller than the ROI."""
    import cv2

    first = next((p for p in sorted(feeds.rglob("*.png"))), None)
    if first is None:
        raise InputError(f"{feeds}: no PNG feed images found")
    img = cv2.imread(str(first), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{first}: unreadable feed image")
    return int(img.shape[1]), int(img.shape[0])


def _rig_config(config: Path | None, emulate: bool, *, roi: str | None = None, fps: float | None = None, feeds: Path | None = None) -> RigConfig:
    if config is None and not emulate:
        raise UsageError("give --config RIG.yaml, or --emulate for pylon's emulated cameras")
    if feeds is not None and not emulate:
        raise UsageError("--feeds plays simulator frames on emulated cameras; add --emulate")
    if feeds is not None and not feeds.is_dir():
        raise InputError(f"{feeds}: no such feed folder")
    cfg = load_config(config) if config is not None else emulated_config()
    changes: dict[str, Any] = {}
    if roi is not None:
        changes["roi"] = _roi(roi)
    elif feeds is not None:
        w, h = _feed_size(feeds)
        changes["roi"] = {"width": w, "height": h}
    elif config is None:
        changes["roi"] = {"width": DEFAULT_FRAME[0], "height": DEFAULT_FRAME[1]}
    if feeds is not None and (feeds / FEEDS_FILE).is_file():
        described = load_json(feeds / FEEDS_FILE)
        if isinstance(described, dict) and isinstance(described.get("black_level_dn"), (int, float)):
            changes["feed_black_level_dn"] = float(described["black_level_dn"])
    if fps is not None:
        changes["frame_rate_hz"] = fps
    if changes:
        try:
            cfg = RigConfig.model_validate({**cfg.model_dump(), **changes})
        except ValidationError as exc:
            err = exc.errors()[0]
            raise UsageError(f"--{'roi' if err['loc'][0] == 'roi' else 'fps'}: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None
    if feeds is not None and roi is not None:
        w, h = _feed_size(feeds)
        if cfg.roi is not None and (cfg.roi.width > w or cfg.roi.height > h):
            raise UsageError(f"--roi {roi} is larger than the feed images ({w}x{h}); the emulator would shrink the frames")
    return cfg


def _check_out(out: Path, *, darks: bool = False) -> None:
    """Refuse --out before any camera is opened (``rig.capture.check_session_out``; imported late, as the recorder is)."""
    from .capture import check_session_out

    check_session_out(out, darks=darks)


def _session(cfg: RigConfig, out: Path, emulate: bool, display: Any) -> Any:
    from .capture import CaptureSession

    return CaptureSession(cfg, out, emulated=emulate, progress=display)


def _finish(session: Any, body: Any) -> Any:
    """Run ``body`` and close the session whatever happens, so the file stays valid and keeps its pairs."""
    from .cameras import CameraRemovedError
    from .recorder import CaptureStopped

    stopped: BaseException | None = None
    result = None
    try:
        result = body()
    except (CameraRemovedError, CaptureStopped, KeyboardInterrupt) as exc:
        stopped = exc
    finally:
        session.close()
    if stopped is not None:
        kept = session.recorder.stats.kept if session.recorder is not None else 0
        discarded = session.writer.stats.pairs_discarded if session.writer is not None else 0
        why = "interrupted" if isinstance(stopped, KeyboardInterrupt) else str(stopped)
        lost = f" ({discarded} queued pairs discarded to keep min_free_mb free)" if discarded else ""
        raise fail(f"{why}; session {session.out} closed cleanly with {kept - discarded} new pairs{lost} (continue with `exlpose-capture resume {session.out}`)", 1)
    return result


@app.command()
@handle_errors
def devices(emulate: EmulateOpt = False) -> None:
    """List attached cameras (serial, model, device class)."""
    from .cameras import list_devices

    found = list_devices(emulated=emulate)
    if not found:
        err_console.print("no cameras found" + ("" if emulate else " (try --emulate)"))
        raise typer.Exit(1)
    for d in found:
        typer.echo(f"{d.serial}\t{d.model}\t{d.device_class}")


@app.command()
@handle_errors
def plan(
    exposure_us: ExposureOpt,
    gain_db: GainOpt,
    preset: PresetOpt = None,
    k: KOpt = None,
    ll_gain_db: LLGainOpt = None,
    frames: FramesOpt = 10,
    config: ConfigOpt = None,
    emulate: EmulateOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the ladder as JSON")] = False,
) -> None:
    """Print a scene's exposure ladder: k, R, exposure, gains, timeouts and expected size.

    With --config or --emulate the cameras are opened and the plan is checked against their ranges; without,
    steps outside the dart's documented gain range (0-48 dB) or the release's exposures (83-25000 us) are warned about.
    """
    from .capture import CaptureSession
    from .schedule import make_plan, nominal_warnings

    if config is not None or emulate:
        cfg = _rig_config(config, emulate)
        with CaptureSession(cfg, None, emulated=emulate) as session:
            the_plan = session.plan(base_exposure_us=exposure_us, base_gain_db=gain_db, preset=preset, ks=_ks(k), ll_gain_db=ll_gain_db, frames=frames)
            session.check(the_plan, 0)
            from .bandwidth import link_budget

            for role, cam in session.rig.cameras.items():
                budget = link_budget(session.rig.formats[role], cfg.frame_rate_hz, session.rig.link_limits.get(role))
                err_console.print(f"link {role.upper()} {cam.serial}: {budget.describe(session.rig.formats[role], cfg.frame_rate_hz)}", markup=False, soft_wrap=True)
    else:
        pair_bytes = 2 * DEFAULT_FRAME[0] * DEFAULT_FRAME[1] * 2
        the_plan = make_plan(base_exposure_us=exposure_us, base_gain_db=gain_db, preset=preset, ks=_ks(k), ll_gain_db=ll_gain_db, frames=frames, pair_bytes=pair_bytes)
        for line in nominal_warnings(the_plan):
            err_console.print(f"warning: {line} (no camera attached to ask; dart gain 0..48 dB, release exposures 83..25000 us)", markup=False, soft_wrap=True)
    rows = [
        {
            "k": p.step.step_name,
            "R": p.step.ratio,
            "exposure_us": p.step.nominal_exposure_us,
            "exact_exposure_us": round(p.step.exposure_us, 3),
            "wl_gain_db": f"{p.step.wl_gain_db:.2f}",
            "ll_gain_db": f"{p.step.ll_gain_db:.2f}",
            "timeout_ms": round(p.timeout_ms),
            "expected_mb": round(p.expected_bytes / (1 << 20), 1),
        }
        for p in the_plan.steps
    ]
    if as_json:
        out_console.print(json.dumps(rows), markup=False, soft_wrap=True)
        return
    header = f"{'k':>4} {'R':>6} {'exposure_us':>11} {'exact_us':>10} {'WL_gain_dB':>10} {'LL_gain_dB':>10} {'timeout_ms':>10} {'MB':>8}"
    out_console.print(f"{frames} pairs per step\n{header}", markup=False)
    for r in rows:
        out_console.print(
            f"{r['k']:>4} {r['R']:>6} {r['exposure_us']:>11} {r['exact_exposure_us']:>10.3f} {r['wl_gain_db']:>10} {r['ll_gain_db']:>10} "
            f"{r['timeout_ms']:>10} {r['expected_mb']:>8}",
            markup=False,
        )
    out_console.print(f"total: {the_plan.expected_bytes / (1 << 20):.1f} MB", markup=False)


@config_app.command("check")
@handle_errors
def config_check(
    config_file: Annotated[Path, typer.Argument(help="rig config (YAML or JSON)")],
    emulate: EmulateOpt = False,
    save_pfs: Annotated[Path | None, typer.Option("--save-pfs", help="folder to save each camera's applied settings as <role>_<serial>.pfs")] = None,
) -> None:
    """Validate a rig config and check it against the attached cameras (optionally saving their settings as .pfs)."""
    from .capture import CaptureSession

    cfg = load_config(config_file)
    with CaptureSession(cfg, None, emulated=emulate) as session:
        for role, cam in session.rig.cameras.items():
            fmt = session.rig.formats[role]
            lim = cam.limits()
            temp = cam.temperature_c()
            out_console.print(
                f"{role.upper()} {cam.serial} ({cam.model}): {fmt.pixel_format} {fmt.width}x{fmt.height}"
                f"{' mirrored' if fmt.mirrored_x else ''}, exposure {lim.exposure_min_us:g}..{lim.exposure_max_us:g} us, "
                f"gain {lim.gain_min_db:.2f}..{lim.gain_max_db:.2f} dB" + (f", {temp:.1f} C" if temp is not None else ""),
                markup=False,
            )
        out_console.print(f"trigger {cfg.trigger.topology}: configured on both cameras", markup=False)
        from .camera_state import compare_settings

        mirrored = cfg.ll.reverse_x or cfg.wl.reverse_x
        differences = compare_settings(session.rig.ll, session.rig.wl, mirrored=mirrored, topology=cfg.trigger.topology)
        unexpected = [d for d in differences if not d.expected]
        out_console.print(f"settings differing between the cameras: {len(differences)} ({len(unexpected)} not explained by the protocol)", markup=False)
        for d in differences:
            out_console.print(("  " if d.expected else "  DIFFERENT ") + d.describe(), markup=False)
        if save_pfs is not None:
            from exlpose_data.outputs import check_output

            names = {role: f"{role}_{cam.serial}.pfs" for role, cam in session.rig.cameras.items()}
            # never over the config or the .pfs files it loads (a config may name a file this command saved before)
            check_output(save_pfs, inputs=[config_file, cfg.ll.pfs, cfg.wl.pfs], writes="folder", produces="camera settings",
                         replaces=("folder",), resumes=True, files=list(names.values()), option="--save-pfs")
            for role, cam in session.rig.cameras.items():
                saved = cam.save_pfs(save_pfs / names[role])
                out_console.print(f"saved {saved}", markup=False)
    out_console.print(f"{config_file}: ok", markup=False)


@app.command("sync-check")
@handle_errors
def sync_check(
    config: Annotated[Path, typer.Option("--config", help="rig config with trigger topology master-slave")],
    frames: Annotated[int, typer.Option("--frames", parser=whole_number, help="frames to grab from each camera")] = 20,
    exposure_us: Annotated[float, typer.Option("--exposure-us", parser=finite_number, help="exposure of both cameras during the check")] = 2000.0,
) -> None:
    """Prove the master -> slave trigger wire before a scene: edge counts, frame counters, exposure offset."""
    from .capture import CaptureSession
    from .synccheck import run_sync_check

    if frames < 2:
        raise UsageError(f"--frames must be at least 2, got {frames}")
    cfg = load_config(config)
    with CaptureSession(cfg, None) as session:
        report = run_sync_check(session.rig, session.sync, frames, exposure_us)
    for line in report.lines():
        out_console.print(line, markup=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@handle_errors
def reference(
    name: Annotated[str, typer.Option("--name", help="reference name (one per setup of the rig)")],
    exposure_us: ExposureOpt,
    gain_db: GainOpt,
    out: OutOpt,
    ll_gain_db: LLGainOpt = None,
    ll_exposure_us: Annotated[
        float | None,
        typer.Option("--ll-exposure-us", parser=finite_number,
                     help="LL exposure (default: the feeds' reference LL exposure, else --exposure-us); longer makes up for the ND filter"),
    ] = None,
    ll_exposure: Annotated[
        str | None,
        typer.Option("--ll-exposure", help="auto: meter the LL exposure so the LL frames are as bright as the WL's (a bright reference aligns best)"),
    ] = None,
    frames: FramesOpt = 5,
    config: ConfigOpt = None,
    emulate: EmulateOpt = False,
    feeds: FeedsOpt = None,
    feed_scene: Annotated[str | None, typer.Option("--feed-scene", help="feed scene holding reference/ (default: --name)")] = None,
    roi: RoiOpt = None,
) -> None:
    """Record static reference pairs for alignment (LL may get a longer exposure to make up for its ND filter)."""
    from .display import LiveDisplay

    _setup_logging()
    if ll_exposure not in (None, "auto"):
        raise UsageError(f"--ll-exposure {ll_exposure!r}: only 'auto'; give a number with --ll-exposure-us")
    _check_out(out)
    cfg = _rig_config(config, emulate, roi=roi, feeds=feeds)
    if feeds is not None and ll_exposure is None:
        from .feeds import described_scene

        truth = described_scene(feeds, feed_scene or name)
        if truth is not None and truth.reference is not None:
            # Omitted LL settings follow the feeds, as they were simulated (the values are checked anyway).
            ll_exposure_us = truth.reference.ll_exposure_us if ll_exposure_us is None else ll_exposure_us
            ll_gain_db = truth.reference.ll_gain_db if ll_gain_db is None else ll_gain_db
    with LiveDisplay(err_console) as display:
        session = _session(cfg, out, emulate, display)
        outcome = _finish(
            session,
            lambda: session.record_reference(
                name,
                exposure_us=exposure_us,
                ll_exposure_us=ll_exposure_us,
                ll_exposure_auto=ll_exposure == "auto",
                ll_gain_db=gain_db if ll_gain_db is None else ll_gain_db,
                wl_gain_db=gain_db,
                frames=frames,
                feeds=feeds,
                feed_scene=feed_scene,
            ),
        )
    from .capture import describe_outcomes

    out_console.print(describe_outcomes([outcome]), markup=False)


@app.command()
@handle_errors
def record(
    scene: Annotated[str, typer.Option("--scene", help="scene name (group in the session file)")],
    exposure_us: ExposureOpt,
    gain_db: GainOpt,
    out: OutOpt,
    preset: PresetOpt = None,
    k: KOpt = None,
    ll_gain_db: LLGainOpt = None,
    frames: FramesOpt = 10,
    config: ConfigOpt = None,
    emulate: EmulateOpt = False,
    feeds: FeedsOpt = None,
    site: Annotated[str | None, typer.Option("--site", help="site part of release names, may be empty (default: the feeds' site, else empty)")] = None,
    video_id: Annotated[int | None, typer.Option("--video-id", parser=whole_number, help="video id (default: the feeds' video, else the next free one for date and site)")] = None,
    date: Annotated[str | None, typer.Option("--date", help="MMDD (default: the feeds' date, else today)")] = None,
    fps: FpsOpt = None,
    roi: RoiOpt = None,
) -> None:
    """Record a scene: N pairs at each step of the exposure ladder."""
    from .capture import SceneSpec, describe_outcomes, next_video_id
    from .display import LiveDisplay

    _setup_logging()
    ks = _ks(k)
    if feeds is not None:
        from .feeds import described_scene

        truth = described_scene(feeds, scene) if feeds.is_dir() else None
        if truth is not None:
            # Omitted options follow the scene the feeds describe; given ones are checked against it before recording.
            date = truth.date if date is None else date
            site = truth.site if site is None else site
            video_id = truth.video if video_id is None else video_id
            ks = [s.k for s in truth.steps] if preset is None and ks is None else ks
    site = "" if site is None else site
    date_mmdd = date if date is not None else _dt.date.today().strftime("%m%d")
    for option, check, value in (("--date", check_date, date_mmdd), ("--site", check_site, site)):
        try:
            check(value)
        except ValueError as exc:
            raise UsageError(f"{option} {exc}") from None
    if not scene or "/" in scene:
        raise UsageError(f"--scene {scene!r}: a non-empty name without '/'")
    _check_out(out)
    cfg = _rig_config(config, emulate, roi=roi, fps=fps, feeds=feeds)
    vid = video_id if video_id is not None else next_video_id(out, date_mmdd, site)
    try:
        check_video(vid)
    except ValueError as exc:
        raise UsageError(f"--video-id {exc}") from None
    with LiveDisplay(err_console) as display:
        session = _session(cfg, out, emulate, display)

        def body() -> Any:
            the_plan = session.plan(base_exposure_us=exposure_us, base_gain_db=gain_db, preset=preset, ks=ks, ll_gain_db=ll_gain_db, frames=frames)
            spec = SceneSpec(scene, date_mmdd, site, vid, the_plan, cfg.frame_rate_hz, feeds.resolve() if feeds is not None else None)
            return session.record_scene(spec)

        outcomes = _finish(session, body)
    out_console.print(describe_outcomes(outcomes, moving=cfg.trigger.topology == "software"), markup=False, soft_wrap=True)


@app.command()
@handle_errors
def resume(session_file: Annotated[Path, typer.Argument(help="session file to continue")]) -> None:
    """Continue an interrupted session: record the pairs its scenes still miss."""
    from .capture import CaptureSession, describe_outcomes, resume_specs
    from .display import LiveDisplay

    _setup_logging()
    cfg, emulated, specs = resume_specs(session_file)
    if not specs:
        out_console.print(f"{session_file}: every scene is complete; nothing to resume", markup=False)
        return
    outcomes: list[Any] = []
    with LiveDisplay(err_console) as display:
        session = CaptureSession(cfg, session_file, emulated=emulated, progress=display)

        def body() -> None:
            session.check_resume(specs)
            for spec in specs:
                outcomes.extend(session.record_scene(spec, resume=True))

        _finish(session, body)
    out_console.print(describe_outcomes(outcomes), markup=False)


@app.command()
@handle_errors
def inspect(
    session_file: Annotated[Path, typer.Argument(help="session file")],
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Summarise a session file: references, scenes, steps, pairs, read-back exposure and gain, drops."""
    summary = summarise(session_file)
    if as_json:
        out_console.print(json.dumps(summary), markup=False, soft_wrap=True)
        return
    out_console.print(f"{session_file}: created {summary['created']}, software {summary['software_version']}", markup=False)
    for name, ref in summary["references"].items():
        out_console.print(f"reference {name}: {ref['pairs']} pairs {ref['shape']}", markup=False)
    table = Table("scene", "k", "pairs", "exposure_us", "LL gain", "WL gain", "dropped")
    for scene, meta in summary["scenes"].items():
        for step, s in meta["steps"].items():
            drops = sum(s["dropped"].values())
            detail = ", ".join(f"{n} {reason}" for reason, n in s["dropped"].items())
            table.add_row(scene, step, str(s["pairs"]), f"{s['exposure_us']:g}", f"{s['ll_gain_db']:.2f}", f"{s['wl_gain_db']:.2f}", f"{drops} ({detail})" if drops else "0")
    out_console.print(table)


@app.command()
@handle_errors
def preview(
    exposure_us: ExposureOpt,
    gain_db: GainOpt,
    ll_gain_db: LLGainOpt = None,
    ll_exposure_us: Annotated[float | None, typer.Option("--ll-exposure-us", parser=finite_number, help="LL exposure (default: --exposure-us)")] = None,
    config: ConfigOpt = None,
    emulate: EmulateOpt = False,
    feeds: FeedsOpt = None,
    feed_scene: Annotated[str | None, typer.Option("--feed-scene", help="with --feeds: the scene to play")] = None,
    feed_step: Annotated[str, typer.Option("--feed-step", help="with --feeds: the step folder to play (1, 2, ... or reference)")] = "reference",
    align: Annotated[Path | None, typer.Option("--align", help="ALIGN.json: add WL warped onto LL and their difference")] = None,
    host: Annotated[str, typer.Option("--host", help="address to listen on (default: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", parser=whole_number, help="port of the page (0: any free one)")] = 8765,
    snapshot: Annotated[Path | None, typer.Option("--snapshot", help="write one composed frame to this PNG and exit")] = None,
    snapshot_dir: Annotated[Path, typer.Option("--snapshot-dir", help="folder the page's snapshot button writes into")] = Path("."),
    roi: RoiOpt = None,
) -> None:
    """Show both cameras side by side on a local web page (focus, beam splitter), or write one frame with --snapshot."""
    import time

    from exlpose_data.align.model import AlignModel

    from .capture import CaptureSession
    from .emulate import feed_dir, play_feed
    from .preview import PreviewServer, PreviewSource, write_png
    from .schedule import retrieve_timeout_ms

    if snapshot is not None and snapshot.suffix.lower() != ".png":
        raise UsageError(f"--snapshot {snapshot}: give a .png file name")
    if feeds is not None and feed_scene is None:
        raise UsageError("--feeds needs --feed-scene (the scene whose frames to play)")
    cfg = _rig_config(config, emulate, roi=roi, feeds=feeds)
    model = AlignModel.load(align) if align is not None else None
    with CaptureSession(cfg, None, emulated=emulate) as session:
        rig = session.rig
        if feeds is not None:
            for role, cam in rig.cameras.items():
                play_feed(cam, feed_dir(feeds, feed_scene, feed_step, role))  # type: ignore[arg-type]
        ll_exposure = exposure_us if ll_exposure_us is None else ll_exposure_us
        rig.ll.set_exposure_gain(ll_exposure, gain_db if ll_gain_db is None else ll_gain_db)
        rig.wl.set_exposure_gain(exposure_us, gain_db)
        source = PreviewSource(rig, session.sync, retrieve_timeout_ms(max(ll_exposure, exposure_us), cfg.retrieve_timeout_ms), model)
        if snapshot is not None:
            session.sync.start(rig, cfg.buffers)
            try:
                comp = source.grab()
            finally:
                session.sync.stop(rig)
            write_png(snapshot, comp)
            st = comp.stats
            out_console.print(f"{snapshot}: {' | '.join(comp.panes)}; focus LL {st['ll'].focus:.1f} WL {st['wl'].focus:.1f}; "
                              f"clipped LL {st['ll'].clipped} WL {st['wl'].clipped}", markup=False, soft_wrap=True)
            return
        try:
            server = PreviewServer(source, snapshot_dir, host, port)
        except OSError as exc:
            raise UsageError(f"--host {host} --port {port}: cannot listen ({exc.strerror or exc})") from None
        source.start()
        server.start()
        out_console.print(f"preview on http://{host}:{server.port}/ (Ctrl-C stops)", markup=False)
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
            source.stop()


@app.command()
@handle_errors
def darks(
    exposure_us: ExposureOpt,
    gain_db: GainOpt,
    out: Annotated[Path, typer.Option("--out", help="dark-frame session file (.h5) to create; a session holding scenes or "
                                                     "references, or any other file, is refused")],
    preset: PresetOpt = None,
    k: KOpt = None,
    ll_gain_db: LLGainOpt = None,
    frames: FramesOpt = 10,
    config: ConfigOpt = None,
    emulate: EmulateOpt = False,
    roi: RoiOpt = None,
) -> None:
    """Record lens-capped dark frames at every (exposure, gain) of a plan and report black level, hot pixels, row noise.

    Darks are stored as scene ``darks`` (attribute kind=darks) of a session file of their own (an interrupted one is
    completed with ``resume``); a session holding scenes or references, or a file of another kind, is refused.
    """
    from .capture import DARKS_KIND, DARKS_SCENE, SceneSpec
    from .darkstats import dark_report
    from .display import LiveDisplay

    _setup_logging()
    _check_out(out, darks=True)
    cfg = _rig_config(config, emulate, roi=roi)
    with LiveDisplay(err_console) as display:
        session = _session(cfg, out, emulate, display)

        def body() -> None:
            the_plan = session.plan(base_exposure_us=exposure_us, base_gain_db=gain_db, preset=preset, ks=_ks(k), ll_gain_db=ll_gain_db, frames=frames)
            session.record_scene(SceneSpec(DARKS_SCENE, _dt.date.today().strftime("%m%d"), "", 0, the_plan, cfg.frame_rate_hz, kind=DARKS_KIND))

        _finish(session, body)
    table = Table("k", "camera", "exposure_us", "gain dB", "mean DN", "temporal noise DN", "row noise DN", "hot pixels")
    for r in dark_report(out):
        table.add_row(r["k"], r["camera"], f"{r['exposure_us']:g}", f"{r['gain_db']:.2f}", f"{r['mean_dn']:.2f}", f"{r['temporal_noise_dn']:.2f}", f"{r['row_noise_dn']:.2f}", str(r["hot_pixels"]))
    out_console.print(table)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="exlpose-capture")
