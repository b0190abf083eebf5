"""Session -> release layout: develop, flip, warp WL into the LL frame, crop, write bright/ and dark/.

Each pair's two images are encoded in memory, hashed and written atomically, so an interrupted run leaves no
half-written image, and a pair whose second image fails is removed whole. Each session's export is one step of the
release's provenance record (:mod:`exlpose_data.provenance`): a rerun with the same settings skips every pair
whose two images exist, one with other settings is refused unless ``overwrite``, and an interrupted run stays
marked incomplete. The pair list and the manifest are updated at the end (also after an interruption, for the pairs
finished so far).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2

from ..atomic import write_image_atomic
from ..errors import ExlposeError, InputError, NameGrammarError, UsageError
from ..layout import MANIFEST_FILE, PAIRS_FILE, load_manifest, read_pairs, update_manifest, write_pairs
from ..naming import ImageName, check_date, check_site, check_video, parse_name
from ..progress import ProgressCallback
from ..progress import report as report_progress
from ..provenance import RECORD_FILE, RecordedRun, read_record, recorded_run
from ..session_format import SessionReader
from ..threads import default_workers
from .geometry import INTERPOLATION_MARGIN_PX, INTERPOLATIONS, crop_margin_violation, warp_maps
from .model import AlignModel
from .prepare import MirrorSide, develop, needs_flip, session_mirror

__all__ = ["ApplyOptions", "ApplyReport", "PairJob", "select_frames", "plan_pairs", "run_apply", "apply_step", "default_workers",
           "check_crop_margin", "APPLY_COMMAND", "RELEASE_FILES"]

# What an export writes at the top of the release (for exlpose_data.outputs.check_output's ``files``).
RELEASE_FILES = ("bright", "dark", PAIRS_FILE, MANIFEST_FILE, RECORD_FILE)


@dataclass(frozen=True)
class ApplyOptions:
    """Settings of :func:`run_apply`.

    Attributes:
        frames: ``all``, ``middle`` or a count N (N frames spread evenly over each step).
        out_bits: 8 (PNG, default) or 16 (16-bit PNG).
        workers: processes; 1 runs in this process.
        interpolation: ``cubic`` (default), ``linear`` or ``lanczos`` for the WL warp.
        mirror: overrides the session rig config's ``mirror`` field.
    """

    frames: str = "middle"
    out_bits: int = 8
    workers: int = 1
    interpolation: str = "cubic"
    mirror: MirrorSide | None = None


@dataclass(frozen=True)
class PairJob:
    """One pair to export: where it is in the session and its release paths."""

    scene: str
    step: str
    index: int
    bright: str
    dark: str


@dataclass
class ApplyReport:
    """What a run did."""

    written: int = 0
    skipped: int = 0
    pairs: list[tuple[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    """Files the session's earlier export owned that this run no longer writes (removed, under --overwrite)."""


def select_frames(n: int, spec: str) -> list[int]:
    """Indices chosen by ``--frames``: ``all``, ``middle`` or N evenly spread (first and last included)."""
    if n <= 0:
        return []
    if spec == "all":
        return list(range(n))
    if spec == "middle":
        return [(n - 1) // 2]
    try:
        count = int(spec)
    except ValueError:
        raise UsageError(f"--frames {spec!r}: expected all, middle or a positive count") from None
    if count < 1:
        raise UsageError(f"--frames {spec!r}: expected all, middle or a positive count")
    if count >= n:
        return list(range(n))
    if count == 1:
        return [(n - 1) // 2]
    return sorted({int(round(i * (n - 1) / (count - 1))) for i in range(count)})


def _date(value: Any, source: str) -> str:
    # Sessions may store the date as a number (119 for 0119): restore the leading zero before checking it.
    text = str(value)
    try:
        return check_date(text.zfill(4) if text.isdigit() else text)
    except ValueError as exc:
        raise InputError(f"{source}: date_mmdd {exc}") from None


def _need(meta: dict, key: str, source: str) -> Any:
    if key not in meta:
        raise InputError(f"{source}: missing attribute {key!r}")
    return meta[key]


def plan_pairs(reader: SessionReader, frames: str) -> list[PairJob]:
    """Every pair the options select, with release names from the scene and step metadata."""
    jobs = []
    seen: dict[str, str] = {}
    for scene in reader.scenes():
        src = f"{reader.path}: scene {scene!r}"
        meta = reader.scene_meta(scene)
        date = _date(_need(meta, "date_mmdd", src), src)
        site = str(meta.get("site", "") or "")
        video = int(_need(meta, "video_id", src))
        for field, check, value in (("site", check_site, site), ("video_id", check_video, video)):
            try:
                check(value)
            except ValueError as exc:
                raise InputError(f"{src}: {field} {exc}") from None
        for step in reader.steps(scene):
            ssrc = f"{src} step {step}"
            smeta = reader.step_meta(scene, step)
            n = len(reader.frames_table(scene, step))
            for index in select_frames(n, frames):
                bright = ImageName(
                    date=date,
                    site=site,
                    video=video,
                    ratio=int(_need(smeta, "ratio", ssrc)),
                    frame=index,
                    gain_db=float(_need(smeta, "wl_gain_db", ssrc)),
                    exposure_us=int(_need(smeta, "nominal_exposure_us", ssrc)),
                    condition="WL",
                )
                dark = bright.twin(gain_db=float(_need(smeta, "ll_gain_db", ssrc)))
                try:
                    parse_name(bright.relpath)
                except NameGrammarError:
                    raise InputError(f"{ssrc}: metadata gives the release name {bright.basename!r}, which breaks the name grammar (site {site!r}, video {video})") from None
                if bright.relpath in seen:
                    raise InputError(f"{ssrc}: release name {bright.basename!r} is also produced by {seen[bright.relpath]}; scenes need distinct (date, site, video_id)")
                seen[bright.relpath] = ssrc
                jobs.append(PairJob(scene, step, index, bright.relpath, dark.relpath))
    return jobs


class _Worker:
    """Per-process state: the open session and the remap tables, built once."""

    def __init__(self, session: str, model_json: str, root: str, out_bits: int, interpolation: str, mirror: str) -> None:
        self.reader = SessionReader(session)
        self.model = AlignModel.model_validate_json(model_json)
        self.root = Path(root)
        self.out_bits = out_bits
        self.interpolation = INTERPOLATIONS[interpolation]
        self.mirror: MirrorSide = mirror  # type: ignore[assignment]
        self.maps = warp_maps(self.model.matrix, self.model.crop, self.model.calibration)

    def run(self, job: PairJob) -> tuple[str, str, dict[str, str]]:
        ll_raw, wl_raw = self.reader.pair(job.scene, job.step, job.index)
        ll_attrs, wl_attrs = self.reader.frame_attrs(job.scene, job.step)
        src = f"{self.reader.path}: scene {job.scene!r} step {job.step} pair {job.index}"
        w, h = self.model.frame_size
        for raw, cam in ((ll_raw, "ll"), (wl_raw, "wl")):
            if (raw.shape[1], raw.shape[0]) != (w, h):
                raise InputError(f"{src}: {cam} frame is {raw.shape[1]}x{raw.shape[0]}, ALIGN.json is for {w}x{h}")
        ll = develop(ll_raw, ll_attrs, out_bits=self.out_bits, flip=needs_flip("ll", self.mirror, ll_attrs), source=f"{src} ll")
        wl = develop(wl_raw, wl_attrs, out_bits=self.out_bits, flip=needs_flip("wl", self.mirror, wl_attrs), source=f"{src} wl")
        x0, y0, cw, ch = self.model.crop
        # The LL image is only cropped, never resampled; the WL image is resampled once.
        dark = ll[y0 : y0 + ch, x0 : x0 + cw]
        bright = cv2.remap(wl, *self.maps, self.interpolation, borderMode=cv2.BORDER_REPLICATE)
        hashes = {}
        try:
            for rel, img in ((job.dark, dark), (job.bright, bright)):
                hashes[rel] = write_image_atomic(self.root / rel, img, rgb=True)
        except BaseException:
            # Half a pair is no pair: without its twin the image written first would be an orphan (and an older
            # twin of it, under --overwrite, would pair with an image of another run). _finish drops both.
            for rel in (job.dark, job.bright):
                with contextlib.suppress(FileNotFoundError):
                    (self.root / rel).unlink()
            raise
        return job.bright, job.dark, hashes


_WORKER: _Worker | None = None


def _init_worker(*args: Any) -> None:
    global _WORKER
    cv2.setNumThreads(1)  # one process per core already
    _WORKER = _Worker(*args)


def _run_job(job: PairJob) -> tuple[str, str, dict[str, str]]:
    assert _WORKER is not None
    return _WORKER.run(job)


def _check_mirror(model: AlignModel, side: MirrorSide, session: Path) -> None:
    if model.mirror != side:
        raise UsageError(
            f"{session}: frames are flipped on the {side!r} side here but ALIGN.json was estimated with mirror {model.mirror!r}; "
            "estimate on this session's reference or pass the same --mirror"
        )


def check_crop_margin(model: AlignModel, interpolation: str, source: str = "ALIGN.json") -> None:
    """Refuse a crop in which ``interpolation`` would read replicated border pixels of the WL frame (an
    ALIGN.json cropped for a narrower kernel, e.g. by an older version, with ``lanczos``)."""
    maps = warp_maps(model.matrix, model.crop, model.calibration)
    short = crop_margin_violation(*maps, model.frame_size, interpolation)
    if short > 0:
        fits = [name for name in INTERPOLATIONS if crop_margin_violation(*maps, model.frame_size, name) == 0]
        raise UsageError(
            f"{source}: crop {list(model.crop)} comes {short:.2f} px closer to the WL frame's edge than --interpolation {interpolation} "
            f"reads ({INTERPOLATION_MARGIN_PX[interpolation]:g} px); re-run 'exlpose-align estimate'"
            + (f" or use --interpolation {' or '.join(fits)}" if fits else "")
        )


APPLY_COMMAND = "exlpose-align apply"


def apply_step(session: str | Path) -> str:
    """The provenance step of one session's export: each session's pairs are one step of the release."""
    return f"align apply {Path(session).name}"


def run_apply(
    session: str | Path,
    model: AlignModel,
    root: str | Path,
    opts: ApplyOptions = ApplyOptions(),
    *,
    model_path: str | Path | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> ApplyReport:
    """Export a session's pairs into the release layout under ``root``, under the release's provenance record.

    The release's manifest, pair list and provenance record are read (strictly) before anything is written. A re-run
    with the same settings and inputs skips the pairs already there; with others it is refused, naming each
    difference, unless ``overwrite``, which rewrites this session's pairs and removes those this run no longer
    writes. Every session exported into one release must share the bit depth and interpolation. An interrupted or
    failed run leaves the step marked incomplete (``exlpose verify`` reports it); a pair whose second image failed
    is removed whole.

    Args:
        session: the ``.h5`` capture session.
        model: the alignment (from this session's reference, or one made with the same mirroring).
        root: dataset root (created).
        opts: frame selection, bit depth, workers, interpolation.
        model_path: the ``ALIGN.json`` ``model`` was read from, digested as an input; without it the model's
            content is digested into the settings.
        overwrite: replace this session's pairs written with other settings or inputs.
        progress: called with ``(pairs done, pairs)``, pairs already on disk counting as done.

    Raises:
        UsageError: bad options, a mirror unlike the model's, settings unlike the release's (see above).
        InputError: the session's metadata, or the release's manifest, pair list or record, is broken.
    """
    if opts.out_bits not in (8, 16):
        raise UsageError(f"--bits {opts.out_bits}: expected 8 or 16")
    if opts.interpolation not in INTERPOLATIONS:
        raise UsageError(f"--interpolation {opts.interpolation!r}: expected one of {', '.join(INTERPOLATIONS)}")
    session, root = Path(session), Path(root)
    with SessionReader(session) as reader:
        side = opts.mirror if opts.mirror is not None else session_mirror(reader)
        jobs = plan_pairs(reader, opts.frames)
    _check_mirror(model, side, session)
    check_crop_margin(model, opts.interpolation)
    old_pairs = _read_release(root)
    step = apply_step(session)
    _check_names_free(root, step, jobs)
    settings: dict[str, Any] = {"frames": opts.frames, "bits": opts.out_bits, "interpolation": opts.interpolation, "mirror": side}
    inputs: dict[str, str | Path] = {"session": session}
    if model_path is not None:
        inputs["alignment"] = Path(model_path)
    else:
        settings["alignment_sha256"] = hashlib.sha256(model.model_dump_json().encode()).hexdigest()
    with recorded_run(root, step, command=APPLY_COMMAND, settings=settings, inputs=inputs, overwrite=overwrite,
                      shared=["bits", "interpolation"]) as run:
        return _export(session, model, root, opts, side, jobs, old_pairs, run, skip_existing=not overwrite, progress=progress)


def _read_release(root: Path) -> list[tuple[str, str]]:
    """Read what is already in ``root`` strictly (manifest, pair list, provenance record): a broken file is refused
    now, before any pair is written. Returns the pair list."""
    if not root.exists():
        return []
    load_manifest(root)
    read_record(root)  # read again (and updated) by recorded_run, which writes it first
    pairs_path = root / PAIRS_FILE
    return read_pairs(pairs_path) if pairs_path.exists() else []


def _check_names_free(root: Path, step: str, jobs: list[PairJob]) -> None:
    """Refuse pairs whose names another session's export owns: the two sessions would overwrite each other."""
    owners: dict[str, str] = {}
    for other, entry in read_record(root)["steps"].items():
        if other != step and entry.get("command") == APPLY_COMMAND:
            owners.update(dict.fromkeys((str(f) for f in entry["files"]), other))
    for job in jobs:
        for rel in (job.bright, job.dark):
            if rel in owners:
                raise UsageError(f"--out {root}: {rel} was written by {owners[rel]}; this session gives the same release name "
                                 "(same date, site, video_id): export it into another --out, or fix its scene metadata")


def _export(
    session: Path,
    model: AlignModel,
    root: Path,
    opts: ApplyOptions,
    side: MirrorSide,
    jobs: list[PairJob],
    old_pairs: list[tuple[str, str]],
    run: RecordedRun,
    *,
    skip_existing: bool,
    progress: ProgressCallback | None,
) -> ApplyReport:
    report = ApplyReport()
    todo = []
    for job in jobs:
        if skip_existing and (root / job.bright).is_file() and (root / job.dark).is_file():
            report.skipped += 1
            report.pairs.append((job.bright, job.dark))
            run.own(job.bright, job.dark)
        else:
            todo.append(job)
    report_progress(progress, report.skipped, len(jobs))
    hashes: dict[str, str] = {}
    args = (str(session), model.model_dump_json(), str(root), opts.out_bits, opts.interpolation, side)
    finished = False
    try:
        for bright, dark, h in _execute(todo, args, opts.workers):
            report.written += 1
            report.pairs.append((bright, dark))
            run.own(bright, dark)
            hashes.update(h)
            report_progress(progress, report.skipped + report.written, len(jobs))
        finished = True
    finally:
        # Pairs this run set out to write and did not finish (interrupted, failed) are gone from the disk.
        gone = {rel for job in todo for rel in (job.bright, job.dark) if not (root / rel).is_file()}
        if finished:
            report.removed = run.remove_stale()
            gone.update(report.removed)
        _finish(root, report, hashes, old_pairs, gone)
    return report


def _execute(jobs: list[PairJob], args: tuple, workers: int) -> Iterator[tuple[str, str, dict[str, str]]]:
    if not jobs:
        return
    if workers <= 1 or len(jobs) == 1:
        worker = _Worker(*args)
        try:
            for job in jobs:
                yield worker.run(job)
        finally:
            worker.reader.close()
        return
    # spawn, not fork: HDF5 handles and OpenCV's thread pool do not survive a fork safely.
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=get_context("spawn"), initializer=_init_worker, initargs=args) as pool:
        futures = [pool.submit(_run_job, job) for job in jobs]
        reported = set()
        try:
            for fut in as_completed(futures):
                result = fut.result()
                reported.add(fut)
                yield result
        except GeneratorExit:
            for fut in futures:
                fut.cancel()
            raise
        except BaseException as exc:
            for fut in futures:
                fut.cancel()
            # Pairs already being written still finish: report them so the manifest matches the disk.
            for fut in futures:
                if fut not in reported and not fut.cancelled() and fut.exception() is None:
                    yield fut.result()
            if isinstance(exc, BrokenProcessPool):
                raise ExlposeError("a worker process died (out of memory?); finished pairs are kept, rerun to continue") from None
            raise


def _finish(root: Path, report: ApplyReport, hashes: Mapping[str, str], old_pairs: list[tuple[str, str]], gone: set[str]) -> None:
    """Merge the pair list and bring the manifest up to date with every finished pair and every file gone."""
    if not report.pairs and not gone:
        return
    pairs = [p for p in old_pairs if p[0] not in gone and p[1] not in gone]
    write_pairs(root / PAIRS_FILE, [*pairs, *report.pairs])
    listed = load_manifest(root)
    rels = [PAIRS_FILE] + [rel for pair in report.pairs for rel in pair if rel in hashes or rel not in listed] + sorted(gone)
    update_manifest(root, rels, known_hashes=dict(hashes))
