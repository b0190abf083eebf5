"""Recording: pairing frames of the two cameras, dropping incomplete pairs, counting why, keeping statistics.

Pairing never trusts arrival order. Each frame carries the camera's block ID (its frame counter, reset when
grabbing starts). For a pair both frames must carry the counter value that belongs to the same trigger:

- lockstep (software trigger): grabbing starts (and, after a timeout or a counter jump, restarts) with nothing
  in flight, so the first frame afterwards belongs to the first trigger afterwards; from there the j-th
  trigger must bring block ID ``base + j``. A lower ID is a late frame of an abandoned trigger (discarded), a
  higher one means a frame vanished (pair dropped, grabbing restarted). Each trigger waits for both cameras
  to be trigger-ready, so no camera silently ignores one.
- hardware triggers and free run: both cameras are armed before the first edge, so frame ``i`` of each
  camera (block ID minus the first one) belongs to edge ``i``; when both cameras report timestamps their
  offset must stay constant to within half a frame period. A whole number of periods off means a camera
  missed edges: that pair is dropped and the camera's later frames move to the edges they belong to.
  Waiting is not a drop there: frames come when edges come, so silence longer than the stall timeout
  (``schedule.stall_timeout_s``) is counted and logged as a stall; the pairs it cost show up as missing
  frames once the camera's counter moves on. The first frame gets a grace period after arming
  (``Sync.first_frame_grace_s``); a camera silent for ``MAX_STALLS`` stall timeouts in a row stops recording.

A missing, failed or incomplete frame on either side drops the pair; the reason is counted and logged.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exlpose_data.errors import ExlposeError

from .bandwidth import link_budget
from .cameras import Camera, Frame, Rig
from .emulate import play_feed
from .schedule import stall_timeout_s
from .stream import CameraStream
from .synccheck import clock_offset_ns
from .sync import Sync
from .writer import SessionWriter, json_attr

__all__ = ["CaptureStats", "CaptureStopped", "DiskSpaceLow", "StepRequest", "StepOutcome", "Recorder"]

log = logging.getLogger(__name__)

ROLES = ("ll", "wl")

# Stall timeouts in a row after which a silent camera stops recording.
MAX_STALLS = 3
# Relative difference between the exposure set and the one the sensor uses above which a step is flagged.
EXPOSURE_TOLERANCE = 0.01
# Seconds between temperature-status reads while recording (each is a USB register read).
HEALTH_INTERVAL_S = 1.0


class CaptureStopped(ExlposeError):
    """Recording stopped before the plan was complete (pairs written so far are kept)."""


class DiskSpaceLow(CaptureStopped):
    """Free disk space fell below the reserve; recording stopped and the file was closed cleanly."""


@dataclass
class CaptureStats:
    """Counters the live display shows."""

    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    stalls: Counter[str] = field(default_factory=Counter)
    stale_frames: int = 0
    started: float = field(default_factory=time.monotonic)
    step: str = ""
    queue_depth: int = 0
    free_bytes: int = -1
    _recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def mark(self) -> None:
        """Remember (now, pairs kept) for the recent rate."""
        self._recent.append((time.monotonic(), self.kept))

    def pairs_per_s(self, window_s: float = 2.0) -> float:
        """Pairs kept per second over the last ``window_s`` (since the start when shorter)."""
        if len(self._recent) < 2:
            elapsed = time.monotonic() - self.started
            return self.kept / elapsed if elapsed > 0 else 0.0
        t_last, n_last = self._recent[-1]
        t0, n0 = next(((t, n) for t, n in self._recent if t_last - t <= window_s), self._recent[0])
        return (n_last - n0) / (t_last - t0) if t_last > t0 else 0.0


@dataclass(frozen=True)
class StepRequest:
    """One step (or reference) to record.

    Attributes:
        group: HDF5 group of the step.
        attrs: attributes of the step group.
        frames: pairs wanted in the group (pairs already there count, for resume).
        exposure_us: exposure of both cameras (of WL when ``ll_exposure_us`` is set).
        ll_gain_db / wl_gain_db: gains.
        timeout_ms: retrieve timeout derived from the exposure.
        feeds: per-role folders the emulated cameras play, or None.
        ll_exposure_us: a different LL exposure (reference pairs compensate the ND filter), or None.
    """

    group: str
    attrs: dict[str, Any]
    frames: int
    exposure_us: float
    ll_gain_db: float
    wl_gain_db: float
    timeout_ms: float
    feeds: dict[str, str] | None = None
    ll_exposure_us: float | None = None


@dataclass(frozen=True)
class StepOutcome:
    """What one step produced."""

    group: str
    kept: int
    total: int
    dropped: dict[str, int]
    applied: dict[str, tuple[float, float]]
    stalls: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    trigger_gap_us: float | None = None  # software trigger: mean start gap of the two exposures (camera clocks)
    exposure_us: float = 0.0


class Recorder:
    """Record steps on a rig through a session writer.

    Args:
        rig: opened and configured cameras.
        sync: the trigger topology (already configured on the rig).
        writer: the session writer.
        progress: called with the statistics at most every ``progress_interval_s``.
        max_consecutive_drops: stop with a clear error after this many dropped pairs in a row.
    """

    def __init__(
        self,
        rig: Rig,
        sync: Sync,
        writer: SessionWriter,
        *,
        progress: Callable[[CaptureStats], None] | None = None,
        progress_interval_s: float = 0.25,
        max_consecutive_drops: int = 10,
    ) -> None:
        self.rig = rig
        self.sync = sync
        self.writer = writer
        self.stats = CaptureStats()
        self._progress = progress
        self._progress_interval_s = progress_interval_s
        self._last_progress = 0.0
        self._max_consecutive = max_consecutive_drops
        self._consecutive = 0
        self._rate_hz: float | None = sync.frame_rate_hz
        self._warnings: list[str] = []
        self._gaps_ns: list[float] = []
        self._last_health = 0.0
        self._latency_ns: dict[str, float] = {role: 0.0 for role in ROLES}

    # -- one step --------------------------------------------------------------------------------------

    def record_step(self, req: StepRequest) -> StepOutcome:
        """Record pairs into ``req.group`` until it holds ``req.frames`` pairs.

        Raises:
            CaptureStopped: too many drops in a row (the message says which camera and what to check).
            DiskSpaceLow: free space fell below the reserve.
            CameraRemovedError: a camera vanished.
        """
        self.rig.stop()
        self._warnings = []
        self._gaps_ns = []
        self._last_health = 0.0
        self.stats.step = req.group
        applied = self._apply(req)
        temperatures = {f"{role}_temperature_c": t for role, cam in self.rig.cameras.items() if (t := cam.temperature_c()) is not None}
        states = {f"{role}_camera_state": json_attr(state) for role, state in self.rig.states.items()}
        rates = self._measure_rate()
        self._latency_ns = {role: self._delivery_latency_ns(role, applied[role][0]) for role in ROLES}
        effective = self._effective_exposures(req, applied)
        effective.update({f"{role}_chunks": json_attr(list(chunks)) for role, chunks in self.rig.chunks.items()})
        self._check_health(force=True)
        attrs = {**req.attrs, **temperatures, **states, **rates, **effective}
        have, next_index = self.writer.open_step(req.group, attrs, self.rig.formats["ll"], self.rig.formats["wl"])
        dropped_before = Counter(self.stats.dropped)
        stalls_before = Counter(self.stats.stalls)
        kept_before = self.stats.kept
        if have < req.frames:
            self._consecutive = 0
            self.sync.start(self.rig, self.rig.config.buffers)
            try:
                if self.sync.lockstep:
                    self._lockstep(req, req.frames - have, next_index, applied)
                else:
                    self._streams(req, req.frames - have, next_index, applied)
            finally:
                self.sync.stop(self.rig)
        dropped = {k: v - dropped_before.get(k, 0) for k, v in self.stats.dropped.items() if v - dropped_before.get(k, 0)}
        stalls = dict(self.stats.stalls - stalls_before)
        kept = self.stats.kept - kept_before
        end_attrs = {"dropped_pairs": json_attr(dropped), "stalls": json_attr(stalls), "warnings": json_attr(self._warnings)}
        gap_us = abs(sum(self._gaps_ns) / len(self._gaps_ns)) / 1000.0 if self._gaps_ns else None
        if gap_us is not None:
            end_attrs["trigger_gap_us"] = gap_us
        self.writer.set_attrs(req.group, end_attrs)
        self._report(force=True)
        return StepOutcome(req.group, kept, have + kept, dropped, applied, stalls, tuple(self._warnings), gap_us, max(e for e, _ in applied.values()))

    def _warn(self, text: str) -> None:
        log.warning("%s: %s", self.stats.step, text)
        self._warnings.append(text)

    def _effective_exposures(self, req: StepRequest, applied: dict[str, tuple[float, float]]) -> dict[str, float]:
        """Read ``BslEffectiveExposureTime`` beside the setpoint; flag a step where they differ by more than 1%."""
        attrs = {}
        for role, cam in self.rig.cameras.items():
            effective = cam.effective_exposure_us()
            if effective is None:
                continue
            attrs[f"{role}_effective_exposure_us"] = effective
            wanted = applied[role][0]
            if wanted > 0 and abs(effective - wanted) / wanted > EXPOSURE_TOLERANCE:
                self._warn(f"camera {cam.name}: effective exposure {effective:.2f} us differs from the {wanted:g} us set by "
                           f"{100 * (effective - wanted) / wanted:+.1f}% (BslEffectiveExposureTime)")
        return attrs

    def _check_health(self, force: bool = False) -> None:
        """Read each camera's temperature status (at most every ``HEALTH_INTERVAL_S``): warn once per step on
        Critical (close to the allowed maximum), stop on Error (above it; the session stays valid).

        Raises:
            CaptureStopped: a camera reports BslTemperatureStatus Error.
        """
        now = time.monotonic()
        if not force and now - self._last_health < HEALTH_INTERVAL_S:
            return
        self._last_health = now
        for cam in self.rig.cameras.values():
            status = cam.temperature_status()
            if status in (None, "Ok"):
                continue
            temp = cam.temperature_c()
            where = f"camera {cam.name}: BslTemperatureStatus {status}" + (f" (sensor {temp:.1f} C)" if temp is not None else "")
            if status == "Error":
                raise CaptureStopped(f"{self.stats.step}: {where}, above the allowed maximum; recording stopped to protect the camera; cool it, then resume")
            text = f"{where}, close to the allowed maximum; provide cooling"
            if text not in self._warnings:
                self._warn(text)

    def _delivery_latency_ns(self, role: str, exposure_us: float) -> float:
        """From a camera's trigger edge to its frame on the host: the exposure plus the transfer at its link limit.

        Cameras with different exposures (a reference's long LL exposure) or link limits deliver the frames of one
        edge far apart; the host-arrival check of the first pair allows for that difference.
        """
        limit = self.rig.cameras[role].configure_link(None)
        transfer_s = link_budget(self.rig.formats[role], 1.0, limit).frame_bytes / limit if limit else 0.0
        return (exposure_us * 1e3) + transfer_s * 1e9

    def _measure_rate(self) -> dict[str, float]:
        """Read each camera's ResultingFrameRate at this step's settings; pairing and pacing use the lower of it and
        the planned rate, since a camera delivers no faster than it says (exposure, readout, link limit)."""
        resulting = {role: r for role, cam in self.rig.cameras.items() if (r := cam.resulting_frame_rate()) is not None}
        planned = self.sync.frame_rate_hz
        candidates = [r for r in (planned, *resulting.values()) if r]
        self._rate_hz = min(candidates) if candidates else None
        if planned and self._rate_hz is not None and self._rate_hz < planned * 0.999:
            slowest = min(resulting, key=resulting.get)  # type: ignore[arg-type]
            self._warn(f"camera {self.rig.cameras[slowest].name} delivers at most {self._rate_hz:.2f} fps at these settings "
                       f"(ResultingFrameRate), below the planned {planned:g} fps; pacing and pairing use {self._rate_hz:.2f} fps")
        attrs = {f"{role}_resulting_frame_rate_hz": r for role, r in resulting.items()}
        if self._rate_hz is not None:
            attrs["frame_rate_hz_used"] = self._rate_hz
        return attrs

    def _apply(self, req: StepRequest) -> dict[str, tuple[float, float]]:
        applied = {}
        for role, cam in self.rig.cameras.items():
            if req.feeds is not None:
                play_feed(cam, req.feeds[role])
            gain = req.ll_gain_db if role == "ll" else req.wl_gain_db
            exposure = req.ll_exposure_us if role == "ll" and req.ll_exposure_us is not None else req.exposure_us
            applied[role] = cam.set_exposure_gain(exposure, gain)
        return applied

    # -- lockstep (software trigger) -------------------------------------------------------------------

    def _lockstep(self, req: StepRequest, wanted: int, next_index: int, applied: dict[str, tuple[float, float]]) -> None:
        base: dict[str, int | None] = {r: None for r in ROLES}
        issued = {r: 0 for r in ROLES}
        period = 1.0 / self._rate_hz if self._rate_hz else 0.0
        kept = 0
        seq = 0
        t0 = time.monotonic()
        clock_offset = self._clock_offset()
        while kept < wanted:
            self._check_space()
            if period:
                delay = t0 + seq * period - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            index = next_index + seq
            seq += 1
            not_ready = [r for r in ROLES if not self.rig.cameras[r].wait_ready(req.timeout_ms)]
            if not_ready:
                self._drop(index, f"{not_ready[0]} not ready for trigger", not_ready[0])
                self._rest(base, issued)
                continue
            host_ns = time.time_ns()
            for role in ROLES:
                self.rig.cameras[role].trigger()
                issued[role] += 1
            frames: dict[str, Frame | None] = {}
            reasons: list[tuple[str, str]] = []
            resync = False
            for role in ROLES:
                frame, problem = self._frame_for_trigger(role, req.timeout_ms, base, issued)
                frames[role] = frame
                if problem:
                    reasons.append((role, problem))
                    resync = resync or problem != "failed"
            if reasons:
                role, problem = reasons[0]
                detail = frames[role].error if problem == "failed" and frames[role] is not None else ""
                self._drop(index, f"{role} {problem}" + (f" ({detail})" if detail else ""), role)
                if resync:
                    self._rest(base, issued)
                continue
            if self._keep(req.group, index, host_ns, frames["ll"], frames["wl"], applied):  # type: ignore[arg-type]
                kept += 1
                if clock_offset is not None and frames["ll"].timestamp_ns >= 0 and frames["wl"].timestamp_ns >= 0:  # type: ignore[union-attr]
                    self._gaps_ns.append(frames["wl"].timestamp_ns - frames["ll"].timestamp_ns - clock_offset)  # type: ignore[union-attr]

    def _clock_offset(self) -> float | None:
        """WL clock minus LL clock (ns), when both cameras can latch their timestamps; None otherwise."""
        ll, wl = self.rig.cameras["ll"], self.rig.cameras["wl"]
        if not (ll.has("TimestampLatch") and wl.has("TimestampLatch")):
            return None
        return clock_offset_ns(ll, wl)[0]

    def _frame_for_trigger(self, role: str, timeout_ms: float, base: dict[str, int | None], issued: dict[str, int]) -> tuple[Frame | None, str]:
        """The frame of the latest trigger of ``role``'s camera, or None and why not."""
        cam = self.rig.cameras[role]
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            frame = cam.try_retrieve(max(0.0, deadline - time.monotonic()) * 1000.0)
            if frame is None:
                return None, "timeout"
            if base[role] is None:
                # At rest before this trigger: the first frame afterwards is its frame.
                base[role] = frame.block_id - (issued[role] - 1)
            expected = base[role] + issued[role] - 1  # type: ignore[operator]
            if frame.block_id < expected:
                self.stats.stale_frames += 1
                continue
            if frame.block_id > expected:
                return None, f"frame counter jumped ({frame.block_id}, expected {expected})"
            return (frame, "") if frame.ok else (frame, "failed")

    def _rest(self, base: dict[str, int | None], issued: dict[str, int]) -> None:
        """Stop and restart grabbing: pylon cancels every buffer in flight, so no late frame can arrive afterwards
        and the first frame after the restart belongs to the first trigger after it."""
        self.sync.stop(self.rig)
        self.sync.start(self.rig, self.rig.config.buffers)
        for role in ROLES:
            base[role] = None
            issued[role] = 0

    # -- free-running streams (hardware trigger, free run) ---------------------------------------------

    def _streams(self, req: StepRequest, wanted: int, next_index: int, applied: dict[str, tuple[float, float]]) -> None:
        streams = {r: CameraStream(r) for r in ROLES}
        stall_s = stall_timeout_s(req.timeout_ms, self._rate_hz)
        grace_s = self.sync.first_frame_grace_s(stall_s)
        armed = time.monotonic()
        period_ns = 1e9 / self._rate_hz if self._rate_hz else None
        ts_offset: int | None = None
        # Free-running cameras share no edges, so arrival times say nothing about which frames belong together.
        first_unchecked = self.sync.topology != "free-run"
        done = -1  # highest frame index decided (kept or dropped)
        kept = 0
        while kept < wanted:
            self._check_space()
            for role, stream in streams.items():
                frame = self.rig.cameras[role].try_retrieve(2.0)
                now = time.monotonic()
                if frame is None:
                    self._watch_silence(stream, now, armed, stall_s, grace_s)
                elif not stream.accept(frame, now, done):
                    self.stats.stale_frames += 1
            # Decide every index both cameras have passed, in order.
            while kept < wanted and done + 1 <= min(s.newest for s in streams.values()):
                idx = done = done + 1
                ll, wl = streams["ll"].take(idx), streams["wl"].take(idx)
                index = next_index + idx
                missing = [r for r, f in (("ll", ll), ("wl", wl)) if f is None]
                failed = [r for r, f in (("ll", ll), ("wl", wl)) if f is not None and not f.ok]
                if missing:
                    self._drop(index, f"{missing[0]} frame missing", missing[0])
                    continue
                if failed:
                    self._drop(index, f"{failed[0]} failed ({(ll if failed[0] == 'll' else wl).error})", failed[0])  # type: ignore[union-attr]
                    continue
                assert ll is not None and wl is not None
                if period_ns is not None:
                    skew, evidence = self._edge_skew(ll, wl, streams, period_ns, first_unchecked)
                    if skew is not None:
                        behind = self._realign(skew, period_ns, idx, ll, wl, streams)
                        first_unchecked = first_unchecked and behind is None
                        self._drop(index, f"{behind} missed a trigger edge ({evidence})" if behind else f"cannot tell which edge: {evidence}", behind or "wl")
                        continue
                    first_unchecked = False
                if ll.timestamp_ns >= 0 and wl.timestamp_ns >= 0 and period_ns is not None:
                    delta = ll.timestamp_ns - wl.timestamp_ns
                    if ts_offset is None:
                        ts_offset = delta
                    elif abs(delta - ts_offset) > period_ns / 2:
                        behind = self._realign(delta - ts_offset, period_ns, idx, ll, wl, streams)
                        reason = f"{behind} missed a trigger edge" if behind else "timestamps disagree by a fraction of a period"
                        self._drop(index, reason, behind or "wl")
                        continue
                host = min(ll.host_time_ns, wl.host_time_ns)
                kept += self._keep(req.group, index, host, ll, wl, applied)

    def _watch_silence(self, stream: CameraStream, now: float, armed: float, stall_s: float, grace_s: float) -> None:
        """Count a stall (a warning, not a drop) per ``stall_s`` of silence; stop when a camera stays silent.

        Raises:
            CaptureStopped: no first frame within ``grace_s`` of arming, or ``MAX_STALLS`` stall timeouts in a row.
        """
        cam: Camera = self.rig.cameras[stream.role]
        silence = stream.silence(now, armed, stall_s, grace_s, MAX_STALLS)
        if silence.no_first_frame:
            raise CaptureStopped(f"{self.stats.step}: camera {cam.name} delivered no frame within {grace_s:g} s of arming; {self.sync.no_frame_hint(stream.role)}")
        if silence.new_stall:
            self.stats.stalls[stream.role] += 1
            log.warning("%s: no frame from camera %s for %.2f s (stall timeout)", self.stats.step, cam.name, silence.silent_s)
            self._report()
        if silence.give_up:
            raise CaptureStopped(f"{self.stats.step}: no frame from camera {cam.name} for {silence.silent_s:.1f} s; {self.sync.no_frame_hint(stream.role)}")

    def _edge_skew(self, ll: Frame, wl: Frame, streams: dict[str, CameraStream], period_ns: float, first_unchecked: bool) -> tuple[float | None, str]:
        """How far (ns) LL's frame runs ahead of WL's paired one, when evidence says they are not of the same edge.

        Timestamps only show changes of the offset between the cameras: a camera that missed the very first edge
        is a whole period off from the start, constantly. Two things can see that. On the emulator the stand-in
        generator knows which edge it gave each camera's n-th frame (exact, checked on every pair). On real
        cameras the host arrival times of the first complete pair must be within half a period of each other.
        """
        edges = [self.sync.edge_of(role, streams[role].frames_since_arming(f)) for role, f in (("ll", ll), ("wl", wl))]
        if edges[0] is not None and edges[1] is not None:
            if edges[0] == edges[1]:
                return None, ""
            return (edges[0] - edges[1]) * period_ns, f"emulated generator: LL frame of edge {edges[0]}, WL frame of edge {edges[1]}"
        if first_unchecked:
            expected = self._latency_ns["ll"] - self._latency_ns["wl"]
            skew = ll.host_time_ns - wl.host_time_ns - expected
            if abs(skew) > period_ns / 2:
                return float(skew), (f"first frames arrived {(skew + expected) / 1e6:+.1f} ms apart (LL - WL), {expected / 1e6:+.1f} ms expected "
                                     f"from exposure and transfer, period {period_ns / 1e6:g} ms")
        return None, ""

    @staticmethod
    def _realign(skew_ns: float, period_ns: float, idx: int, ll: Frame, wl: Frame, streams: dict[str, CameraStream]) -> str | None:
        """Re-key the frames of a camera that missed trigger edges; return its role, or None when unsure.

        A camera that missed ``m`` edges delivers, as its frame ``idx``, the frame of edge ``idx + m``: its
        timestamp runs ``m`` periods ahead of the other camera's. Its frames from here on move ``m`` indexes
        later, and the other camera's frame ``idx`` is left without a partner (the caller drops that pair).
        """
        shift = round(skew_ns / period_ns)
        if shift == 0 or abs(skew_ns - shift * period_ns) > period_ns / 4:
            return None
        behind, frame = ("wl", wl) if shift < 0 else ("ll", ll)
        streams[behind].shift(abs(shift), idx, frame)
        return behind

    # -- shared ----------------------------------------------------------------------------------------

    def _keep(self, group: str, index: int, host_ns: int, ll: Frame, wl: Frame, applied: dict[str, tuple[float, float]]) -> bool:
        """Queue a complete pair for writing; a frame of the wrong size drops the pair instead."""
        for role, frame in (("ll", ll), ("wl", wl)):
            want = self.rig.formats[role].shape
            if frame.image is None or frame.image.shape != want:
                self._drop(index, f"{role} frame size {None if frame.image is None else frame.image.shape} is not {want}", role)
                return False

        def value(frame: Frame, role: str, which: int) -> float:
            chunk = frame.exposure_us if which == 0 else frame.gain_db
            return float(chunk) if chunk is not None else applied[role][which]

        row = (
            index,
            host_ns,
            ll.block_id,
            wl.block_id,
            ll.timestamp_ns,
            wl.timestamp_ns,
            value(ll, "ll", 0),
            value(wl, "wl", 0),
            value(ll, "ll", 1),
            value(wl, "wl", 1),
        )
        self.writer.write_pair(group, ll.image, wl.image, row)  # type: ignore[arg-type]
        self.stats.kept += 1
        self._consecutive = 0
        self._report()
        return True

    def _drop(self, index: int, reason: str, role: str) -> None:
        self.stats.dropped[reason] += 1
        self._consecutive += 1
        log.warning("%s: pair %d dropped: %s", self.stats.step, index, reason)
        self._report()
        if self._consecutive >= self._max_consecutive:
            cam: Camera = self.rig.cameras[role]
            raise CaptureStopped(
                f"{self.stats.step}: {self._consecutive} pairs in a row dropped (last: {reason}) on camera {cam.name}; "
                f"{self.sync.no_frame_hint(role)}"
            )

    def _check_space(self) -> None:
        self._check_health()
        if self.writer.low_space.is_set():
            raise DiskSpaceLow(
                f"{self.writer.path}: free disk space fell below the {self.writer.min_free_bytes / (1 << 20):.0f} MB reserve "
                f"(min_free_mb plus the pairs still queued); recording stopped after {self.stats.kept} pairs, file closed cleanly"
            )

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._progress is not None and (force or now - self._last_progress >= self._progress_interval_s):
            self._last_progress = now
            self.stats.queue_depth = self.writer.queue_depth
            self.stats.free_bytes = self.writer.stats.free_bytes
            self.stats.mark()
            self._progress(self.stats)
