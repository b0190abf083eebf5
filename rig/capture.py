"""A capture session: rig, checks, writer and recorder put together for scenes, references and resumes.

Everything that can be refused is refused before the session file is touched: camera ranges, timeouts, frame
period, ``usbfs_memory_mb``, free disk space, feed folders.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exlpose_data.errors import InputError, UsageError
from exlpose_data.exposure import LadderStep
from exlpose_data.outputs import check_output, what_is
from exlpose_data.session_format import SessionReader, reference_path, step_path

from . import diskspace, emulate, usbfs
from .feeds import described_scene, require_same
from .metering import meter_ll_exposure
from .bandwidth import check_link
from .cameras import Rig
from .config import RigConfig, stored_config
from .recorder import CaptureStats, Recorder, StepOutcome, StepRequest
from .schedule import Plan, check_plan, make_plan, retrieve_timeout_ms
from .sync import make_sync
from .writer import SessionWriter, json_attr

__all__ = ["SceneSpec", "CaptureSession", "next_video_id", "resume_specs", "scene_attrs", "step_attrs", "describe_outcomes",
           "check_session_out", "DARKS_SCENE", "DARKS_KIND"]

log = logging.getLogger(__name__)

# Dark frames are scene "darks" with attribute kind=darks, alone in a session file of their own
# (exlpose_data.outputs.what_is calls such a file a "dark-frame session").
DARKS_SCENE = "darks"
DARKS_KIND = "darks"


@dataclass(frozen=True)
class SceneSpec:
    """One scene to record: where it goes, its release name parts and its plan."""

    scene: str
    date_mmdd: str
    site: str
    video_id: int
    plan: Plan
    frame_rate_hz: float
    feeds: Path | None = None
    kind: str = ""  # DARKS_KIND for lens-capped frames, "" for a data scene

    @property
    def frames(self) -> int:
        return self.plan.steps[0].frames


def scene_attrs(spec: SceneSpec) -> dict[str, Any]:
    """The scene group's attributes: what release names need, plus what ``resume`` needs."""
    plan = spec.plan
    return {
        "date_mmdd": spec.date_mmdd,
        "site": spec.site,
        "video_id": spec.video_id,
        "base_exposure_us": plan.base_exposure_us,
        "base_gain_db": plan.base_gain_db,
        "ll_gain_db": plan.ll_gain_db,
        "k_list": json_attr(list(plan.ks)),
        "nd_factor": plan.nd_factor,
        "frames_per_step": spec.frames,
        "frame_rate_hz": spec.frame_rate_hz,
        "feeds": str(spec.feeds) if spec.feeds is not None else "",
        **({"kind": spec.kind} if spec.kind else {}),
    }


def step_attrs(step: LadderStep) -> dict[str, Any]:
    """A step group's attributes (planned values; read-back values are in the frames table)."""
    return {
        "k": step.k,
        "ratio": step.ratio,
        "exposure_us": step.exposure_us,
        "nominal_exposure_us": step.nominal_exposure_us,
        "wl_gain_db": step.wl_gain_db,
        "ll_gain_db": step.ll_gain_db,
    }


def _listing(names: list[str], what: str) -> str:
    return f"{what}{'s' if len(names) > 1 else ''} {', '.join(repr(n) for n in names)}"


def check_session_out(out: str | Path, *, darks: bool = False, option: str = "--out") -> None:
    """Refuse a session file that recording into would mix data with dark frames, or a file that is no session.

    Sessions are appended to by design, so an existing session of the right kind is accepted: a data session
    (scenes, references) for ``darks=False``; for ``darks=True`` a dark-frame session holding nothing but its darks
    (or a session holding nothing yet). Darks added to a data session would be exported as release pairs by
    ``exlpose-align apply``, and scenes added to a dark-frame session would mix into the dark statistics.

    Raises:
        UsageError: one line naming the file and what it holds; an HDF5 file that another process holds open is
            reported as in use (by which process, when that can be found).
    """
    path = Path(out)
    kind = what_is(path)  # read without the HDF5 lock: a locked session may read as a plain "HDF5 file"
    scenes: list[str] = []
    references: list[str] = []
    dark_scene = False
    if kind in ("capture session", "capture session (in use)", "dark-frame session", "HDF5 file"):
        with SessionReader(path) as reader:  # reports a session another process holds open as in use
            scenes, references = reader.scenes(), reader.references()
            dark_scene = DARKS_SCENE in scenes and reader.scene_meta(DARKS_SCENE).get("kind") == DARKS_KIND
    if darks:
        check_output(path, writes="file", produces="dark-frame session", replaces=("dark-frame session", "capture session"),
                     resumes=True, option=option)
        data = [s for s in scenes if not (s == DARKS_SCENE and dark_scene)]
        if data or references:
            held = " and ".join(_listing(names, what) for names, what in ((data, "scene"), (references, "reference")) if names)
            raise UsageError(f"{option} {out}: a data session holding {held}; dark frames go into a session file of their own "
                             f"(choose another {option})")
        return
    if kind == "dark-frame session":
        raise UsageError(f"{option} {out}: holds dark frames (a dark-frame session); scenes and references go into a session "
                         f"file apart from the darks (choose another {option})")
    check_output(path, writes="file", produces="capture session", replaces=("capture session",), resumes=True, option=option)


def next_video_id(path: str | Path, date_mmdd: str, site: str) -> int:
    """One more than the highest video id of the session's scenes with that date and site (1 for none)."""
    if not Path(path).is_file():
        return 1
    with SessionReader(path) as reader:
        ids = [
            int(meta["video_id"])
            for meta in (reader.scene_meta(s) for s in reader.scenes())
            if str(meta.get("date_mmdd")) == date_mmdd and str(meta.get("site", "")) == site
        ]
    return max(ids, default=0) + 1


class CaptureSession:
    """Open the rig for recording into one session file.

    Args:
        config: the rig config.
        out: the session file (created, or appended to when it exists); None to only check the rig.
        emulated: use pylon CamEmu cameras.
        progress: live statistics callback (see ``rig.display``).
        on_flush: called after each writer flush with ``{group: rows flushed}``.
    """

    def __init__(
        self,
        config: RigConfig,
        out: str | Path | None,
        *,
        emulated: bool = False,
        progress: Callable[[CaptureStats], None] | None = None,
        on_flush: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        self.config = config
        self.out = Path(out) if out is not None else None
        self.emulated = emulated
        self._progress = progress
        self._on_flush = on_flush
        self.writer: SessionWriter | None = None
        self.recorder: Recorder | None = None
        self._records: str | None = None  # "darks" or "data" once something was checked into ``out``
        self.rig = Rig(config, emulated=emulated)
        try:
            self.rig.configure()
            self.sync = make_sync(config.trigger, config.frame_rate_hz, emulated=emulated)
            self.sync.configure(self.rig)
        except BaseException:
            self.rig.close()
            raise

    @property
    def pair_bytes(self) -> int:
        return self.rig.formats["ll"].frame_bytes + self.rig.formats["wl"].frame_bytes

    @property
    def stop_reserve_bytes(self) -> int:
        """Free space below which recording stops: ``min_free_mb`` plus every pair that may still be written."""
        c = self.config
        return diskspace.stop_reserve_bytes(int(c.min_free_mb * diskspace.MB), self.pair_bytes, c.queue_pairs, c.frame_rate_hz, c.flush_interval_s)

    def plan(self, **kwargs: Any) -> Plan:
        """``schedule.make_plan`` with this rig's pair size, ND factor and timeout override."""
        return make_plan(
            nd_factor=self.config.nd_factor, pair_bytes=self.pair_bytes, timeout_override_ms=self.config.retrieve_timeout_ms, **kwargs
        )

    def check(self, plan: Plan | None, expected_bytes: int) -> None:
        """Every refusal that must happen before the file is touched."""
        limits = self.rig.limits()
        if plan is not None:
            check_plan(plan, limits["ll"], limits["wl"], self.config.frame_rate_hz)
        for role, cam in self.rig.cameras.items():
            check_link(cam.name, self.rig.formats[role], self.config.frame_rate_hz, self.rig.link_limits.get(role))
        if not self.emulated:
            usbfs.check_usbfs(max(f.frame_bytes for f in self.rig.formats.values()), self.config.buffers)
        if self.out is None:
            return
        diskspace.check_room(self.out.parent if not self.out.exists() else self.out, expected_bytes, self.stop_reserve_bytes)

    def missing_bytes(self, spec: SceneSpec) -> int:
        """Bytes the pairs a scene still misses in the session file will take (all of them for a new scene)."""
        if self.out is None or not self.out.is_file():
            return spec.plan.expected_bytes
        with SessionReader(self.out) as reader:
            steps = set(reader.steps(spec.scene)) if spec.scene in reader.scenes() else set()
            have = {p.step.step_name: len(reader.frames_table(spec.scene, p.step.step_name)) if p.step.step_name in steps else 0 for p in spec.plan.steps}
        return sum(max(0, p.frames - have[p.step.step_name]) for p in spec.plan.steps) * self.pair_bytes

    def check_resume(self, specs: list[SceneSpec]) -> None:
        """The checks of a recording for everything a resume will record, before any of it is recorded.

        Raises:
            UsageError: a scene's plan is outside the cameras' ranges (they may not be the cameras it was recorded
                with), or the missing pairs plus the reserve do not fit on the disk.
        """
        for spec in specs:
            self.check(spec.plan, 0)
        self.check(None, sum(self.missing_bytes(spec) for spec in specs))

    def _writer(self) -> Recorder:
        if self.out is None:
            raise UsageError("no session file given to record into")
        if self.recorder is None:
            self._check_same_rig()
            self.writer = SessionWriter(
                self.out,
                root_attrs={"rig_config": self.config.to_json(), "emulated": self.emulated},
                flush_interval_s=self.config.flush_interval_s,
                queue_pairs=self.config.queue_pairs,
                min_free_bytes=self.stop_reserve_bytes,
                floor_bytes=int(self.config.min_free_mb * diskspace.MB),
                on_flush=self._on_flush,
            )
            self.recorder = Recorder(self.rig, self.sync, self.writer, progress=self._progress)
        return self.recorder

    def _claim(self, *, darks: bool) -> None:
        """Refuse mixing dark frames and data in ``out``: the file is checked until this session opens it for
        writing (h5py cannot read it meanwhile), then what this session has recorded into it is."""
        what = "darks" if darks else "data"
        if self.out is None:
            return
        if self.writer is None:
            check_session_out(self.out, darks=darks)
        elif self._records not in (None, what):
            raise UsageError(f"{self.out}: this session records {self._records} into it; dark frames and scenes or references "
                             "go into separate session files")
        self._records = what

    def _check_same_rig(self) -> None:
        if self.out is None or not self.out.is_file():
            return
        with SessionReader(self.out) as reader:
            stored = reader.rig_config
        if stored and not stored_config(stored, self.out).same_rig(self.config):
            raise UsageError(f"{self.out}: recorded with another rig config (cameras, format or trigger); record into a new --out")

    def record_scene(self, spec: SceneSpec, *, resume: bool = False) -> list[StepOutcome]:
        """Record every step of a scene's plan (steps already complete are skipped).

        Raises:
            UsageError: the scene exists already and ``resume`` is False, or a feed folder is missing.
        """
        self._claim(darks=spec.kind == DARKS_KIND)
        if not resume and self.out is not None and self.out.is_file():
            with SessionReader(self.out) as reader:
                if spec.scene in reader.scenes():
                    raise UsageError(f"{self.out}: scene {spec.scene!r} exists already; use `exlpose-capture resume` or another --scene")
        if spec.feeds is not None:
            self._check_feeds(spec, spec.feeds)
        requests = [self._step_request(spec, planned.step, planned.frames, planned.timeout_ms) for planned in spec.plan.steps]
        self._check_same_rig()
        self.check(spec.plan, self.missing_bytes(spec) if resume else spec.plan.expected_bytes)
        recorder = self._writer()
        recorder.writer.set_attrs(f"/scenes/{spec.scene}", scene_attrs(spec))
        return [recorder.record_step(req) for req in requests]

    @staticmethod
    def _check_feeds(spec: SceneSpec, feeds: Path) -> None:
        """Refuse settings or release name parts that contradict the feeds' ``feeds.json`` (when it describes the scene)."""
        truth = described_scene(feeds, spec.scene)
        if truth is None:
            return
        plan = spec.plan
        require_same(feeds, spec.scene, [
            ("--exposure-us", plan.base_exposure_us, "base_exposure_us", truth.base_exposure_us),
            ("--gain-db", plan.base_gain_db, "base_gain_db", truth.base_gain_db),
            ("--k/--preset", list(plan.ks), "steps[].k", [s.k for s in truth.steps]),
            ("--ll-gain-db", plan.ll_gain_db, "steps[0].ll_gain_db", truth.steps[0].ll_gain_db if truth.steps else plan.ll_gain_db),
            ("rig config nd_factor", plan.nd_factor, "nd_factor", truth.nd_factor),
            ("--date", spec.date_mmdd, "date", truth.date),
            ("--site", spec.site, "site", truth.site),
            ("--video-id", spec.video_id, "video", truth.video),
        ])

    def _step_request(self, spec: SceneSpec, step: LadderStep, frames: int, timeout_ms: float) -> StepRequest:
        feeds = None
        if spec.feeds is not None:
            feeds = {role: str(emulate.feed_dir(spec.feeds, spec.scene, step.step_name, role)) for role in ("ll", "wl")}
        return StepRequest(
            group=step_path(spec.scene, step.step_name),
            attrs=step_attrs(step),
            frames=frames,
            exposure_us=step.exposure_us,
            ll_gain_db=step.ll_gain_db,
            wl_gain_db=step.wl_gain_db,
            timeout_ms=timeout_ms,
            feeds=feeds,
        )

    def record_reference(
        self,
        name: str,
        *,
        exposure_us: float,
        ll_gain_db: float,
        wl_gain_db: float,
        frames: int,
        ll_exposure_us: float | None = None,
        ll_exposure_auto: bool = False,
        feeds: Path | None = None,
        feed_scene: str | None = None,
    ) -> StepOutcome:
        """Record a static reference pair set for alignment under ``/reference/<name>``.

        Args:
            exposure_us: WL exposure (and LL exposure unless ``ll_exposure_us`` is given: a static scene allows the
                LL camera a longer exposure, making up for its ND filter, so both frames are well exposed).
            ll_exposure_auto: meter the LL exposure so its frames match the WL's mean (``rig.metering``); the
                exposure found, its mode and the mean ratio reached are recorded with the reference.

        Raises:
            UsageError: both an LL exposure and auto, auto on the emulator (its pixels do not follow the exposure),
                or exposures or gains outside the cameras' ranges.
        """
        self._claim(darks=False)
        mode = "auto" if ll_exposure_auto else ("set" if ll_exposure_us is not None else "same")
        metered = None
        if ll_exposure_auto:
            if ll_exposure_us is not None:
                raise UsageError("give either --ll-exposure-us N or --ll-exposure auto, not both")
            if self.emulated:
                raise UsageError("--ll-exposure auto meters the cameras, but the emulator's pixels do not depend on the exposure; give --ll-exposure-us")
            metered = meter_ll_exposure(self.rig, self.sync, wl_exposure_us=exposure_us, wl_gain_db=wl_gain_db, ll_gain_db=ll_gain_db,
                                        nd_factor=self.config.nd_factor)
            ll_exposure_us = metered.ll_exposure_us
            if metered.at_limit:
                log.warning("LL reference reaches %.0f%% of the WL level at its longest exposure %g us; recorded as it is", 100 * metered.ll_to_wl_mean, ll_exposure_us)
        exposures = {"ll": exposure_us if ll_exposure_us is None else ll_exposure_us, "wl": exposure_us}
        gains = {"ll": ll_gain_db, "wl": wl_gain_db}
        timeout = retrieve_timeout_ms(max(exposures.values()), self.config.retrieve_timeout_ms)
        limits = self.rig.limits()
        problems = [
            f"{role.upper()} {what}"
            for role in ("ll", "wl")
            for what, ok in (
                (f"exposure {exposures[role]:g} us", limits[role].exposure_min_us <= exposures[role] <= limits[role].exposure_max_us),
                (f"gain {gains[role]:.2f} dB", limits[role].gain_min_db <= gains[role] <= limits[role].gain_max_db),
            )
            if not ok
        ]
        if problems:
            raise UsageError("reference refused, outside the cameras' ranges: " + "; ".join(problems))
        feed_dirs = None
        if feeds is not None:
            truth = described_scene(feeds, feed_scene or name)
            if truth is not None and truth.reference is not None:
                ref = truth.reference
                require_same(feeds, truth.scene, [
                    ("--exposure-us", exposures["wl"], "reference.wl_exposure_us", ref.wl_exposure_us),
                    ("--ll-exposure-us", exposures["ll"], "reference.ll_exposure_us", ref.ll_exposure_us),
                    ("--gain-db", wl_gain_db, "reference.wl_gain_db", ref.wl_gain_db),
                    ("--ll-gain-db", ll_gain_db, "reference.ll_gain_db", ref.ll_gain_db),
                ])
            feed_dirs = {role: str(emulate.feed_dir(feeds, feed_scene or name, "reference", role)) for role in ("ll", "wl")}
        if frames < 1:
            raise UsageError(f"--frames must be at least 1, got {frames}")
        self.check(None, frames * self.pair_bytes)
        req = StepRequest(
            group=reference_path(name),
            attrs={"ll_exposure_us": exposures["ll"], "wl_exposure_us": exposures["wl"], "ll_gain_db": ll_gain_db, "wl_gain_db": wl_gain_db,
                   "ll_exposure_mode": mode, **({"ll_to_wl_mean": metered.ll_to_wl_mean} if metered is not None else {})},
            frames=frames,
            exposure_us=exposure_us,
            ll_gain_db=ll_gain_db,
            wl_gain_db=wl_gain_db,
            timeout_ms=timeout,
            feeds=feed_dirs,
            ll_exposure_us=ll_exposure_us,
        )
        return self._writer().record_step(req)

    def close(self) -> None:
        """Close the writer (flushing everything queued) and the cameras; re-raise a writer failure."""
        try:
            if self.writer is not None:
                self.writer.close()
        finally:
            self.rig.close()

    def __enter__(self) -> "CaptureSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resume_specs(path: str | Path) -> tuple[RigConfig, bool, list[SceneSpec]]:
    """Rig config, emulation flag and scene specs of the scenes of a session that are not complete.

    Raises:
        InputError: not a session file, or one written without the attributes resume needs.
    """
    with SessionReader(path) as reader:
        if not reader.rig_config:
            raise InputError(f"{path}: no rig_config attribute; not a session written by exlpose-capture")
        config = stored_config(reader.rig_config, path)
        emulated = bool(reader.attrs.get("emulated", False))
        specs = []
        for scene in reader.scenes():
            meta = reader.scene_meta(scene)
            if "frames_per_step" not in meta:
                raise InputError(f"{path}: scene {scene!r} lacks frames_per_step; cannot tell what is missing")
            frames = int(meta["frames_per_step"])
            ks = list(meta["k_list"])
            have = {s: len(reader.frames_table(scene, s)) for s in reader.steps(scene)}
            plan = make_plan(
                base_exposure_us=float(meta["base_exposure_us"]),
                base_gain_db=float(meta["base_gain_db"]),
                ks=ks,
                nd_factor=float(meta["nd_factor"]),
                ll_gain_db=float(meta["ll_gain_db"]),
                frames=frames,
                timeout_override_ms=config.retrieve_timeout_ms,
            )
            if all(have.get(p.step.step_name, 0) >= frames for p in plan.steps):
                continue
            specs.append(
                SceneSpec(
                    scene=scene,
                    date_mmdd=str(meta["date_mmdd"]),
                    site=str(meta.get("site", "")),
                    video_id=int(meta["video_id"]),
                    plan=plan,
                    frame_rate_hz=float(meta.get("frame_rate_hz", config.frame_rate_hz)),
                    feeds=Path(meta["feeds"]) if meta.get("feeds") else None,
                    kind=str(meta.get("kind", "")),
                )
            )
    return config, emulated, specs


def describe_outcomes(outcomes: list[StepOutcome], *, moving: bool = False) -> str:
    """One line per step for the CLI; for a ``moving`` scene also the software trigger's gap against the exposure."""
    lines = []
    for o in outcomes:
        drops = ", ".join(f"{n} {reason}" for reason, n in sorted(o.dropped.items())) or "none"
        stalls = ", ".join(f"{n} {role}" for role, n in sorted(o.stalls.items()))
        lines.append(f"{o.group}: {o.total} pairs ({o.kept} new), dropped: {drops}" + (f", stalls: {stalls}" if stalls else ""))
        lines += [f"  warning: {w}" for w in o.warnings]
        if moving and o.trigger_gap_us is not None:
            lines.append(f"  software trigger: the two exposures started {o.trigger_gap_us:.0f} us apart (camera clocks) against a "
                         f"{o.exposure_us:g} us exposure ({100 * o.trigger_gap_us / o.exposure_us:.1f}%): fine for static scenes; "
                         "a moving scene needs the master-slave wire")
    return "\n".join(lines)
