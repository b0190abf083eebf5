"""Hardware-trigger pairing with camera timestamps, which pylon's emulator cannot produce (it reports 0).

Mocked (what cannot exist here): two hardware-triggered cameras whose frames carry real timestamps; one of them
misses a trigger edge. Real: the recorder, the session writer and the HDF5 file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest

from exlpose_data.session_format import SessionReader
from rig.cameras import Frame, FrameFormat
from rig.config import emulated_config
from rig.recorder import CaptureStopped, Recorder, StepRequest
from rig.sync import make_sync
from rig.writer import SessionWriter

PERIOD_NS = 100_000_000  # 10 fps
SHAPE = (4, 6)


@dataclass
class StandInCamera:
    """Delivers prepared frames in order, then nothing (as a camera whose trigger stopped)."""

    name: str
    frames: list[Frame]
    served: int = 0

    def try_retrieve(self, timeout_ms: float) -> Frame | None:
        if self.served < len(self.frames):
            self.served += 1
            return self.frames[self.served - 1]
        return None

    def set_exposure_gain(self, exposure_us: float, gain_db: float) -> tuple[float, float]:
        return exposure_us, gain_db

    def temperature_c(self) -> float | None:
        return 41.5

    def resulting_frame_rate(self) -> float | None:
        return None

    def configure_link(self, limit_bytes_per_s: int | None) -> float | None:
        return None

    def effective_exposure_us(self) -> float | None:
        return None

    def temperature_status(self) -> str | None:
        return None

    def start(self, buffers: int) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass
class StandInRig:
    ll: StandInCamera
    wl: StandInCamera
    config: object = field(default_factory=lambda: emulated_config(frame_rate_hz=10.0, trigger={"topology": "external"}))
    formats: dict[str, FrameFormat] = field(default_factory=lambda: {r: FrameFormat("Mono12", None, 12, 1, SHAPE[1], SHAPE[0], 0.0, False) for r in ("ll", "wl")})
    states: dict[str, dict] = field(default_factory=dict)
    chunks: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def cameras(self) -> dict[str, StandInCamera]:
        return {"ll": self.ll, "wl": self.wl}

    def stop(self) -> None:
        pass


def frame(block_id: int, edge: int, clock_offset_ns: int, value: int) -> Frame:
    return Frame(block_id, True, "", np.full(SHAPE, value, np.uint16), clock_offset_ns + edge * PERIOD_NS, 0)


def test_missed_edge_detected_by_timestamps_and_realigned(tmp_path: Path) -> None:
    edges = range(10)
    # Each camera counts its own frames; their clocks differ by an arbitrary offset.
    ll = [frame(i, e, 5_000_000_000, 100 + e) for i, e in enumerate(edges)]
    wl_edges = [e for e in edges if e != 4]  # WL misses edge 4: its frame counter runs one behind from there
    wl = [frame(i, e, 9_123_456_789, 2000 + e) for i, e in enumerate(wl_edges)]
    rig = StandInRig(StandInCamera("LL", ll), StandInCamera("WL", wl))
    sync = make_sync(rig.config.trigger, 10.0, emulated=False)
    sync.start = lambda rig, buffers: None  # the stand-in cameras need no arming
    sync.stop = lambda rig: None
    writer = SessionWriter(tmp_path / "hw.h5", root_attrs={"rig_config": rig.config.to_json()})
    recorder = Recorder(rig, sync, writer, max_consecutive_drops=6)
    req = StepRequest("/scenes/s/steps/1", {"k": 1}, frames=9, exposure_us=1000.0, ll_gain_db=0.0, wl_gain_db=0.0, timeout_ms=30.0)
    try:
        outcome = recorder.record_step(req)
    finally:
        writer.close()
    assert outcome.dropped == {"wl missed a trigger edge": 1}
    with SessionReader(tmp_path / "hw.h5") as r:
        table = r.frames_table("s", "1")
        assert list(table["index"]) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
        assert list(table["wl_block_id"]) == [0, 1, 2, 3, 4, 5, 6, 7, 8]
        for i, row in enumerate(table):
            lf, wf = r.pair("s", "1", i)
            assert int(wf[0, 0]) - int(lf[0, 0]) == 1900  # the same edge on both cameras
            assert row["wl_timestamp_ns"] - row["ll_timestamp_ns"] == 9_123_456_789 - 5_000_000_000
        assert r.step_meta("s", "1")["ll_temperature_c"] == 41.5


def test_timestamps_off_by_a_fraction_of_a_period_drop_until_the_stop(tmp_path: Path) -> None:
    # A skew that is no whole number of periods cannot be explained by missed edges: drop, never guess.
    ll = [frame(i, i, 0, 100 + i) for i in range(8)]
    wl = [frame(i, i, 0, 2000 + i) for i in range(3)] + [Frame(i, True, "", np.full(SHAPE, 2000 + i, np.uint16), i * PERIOD_NS + PERIOD_NS // 2 + 1, 0) for i in range(3, 8)]
    rig = StandInRig(StandInCamera("LL", ll), StandInCamera("WL", wl))
    sync = make_sync(rig.config.trigger, 10.0, emulated=False)
    sync.start = lambda rig, buffers: None
    sync.stop = lambda rig: None
    writer = SessionWriter(tmp_path / "hw.h5", root_attrs={"rig_config": rig.config.to_json()})
    recorder = Recorder(rig, sync, writer, max_consecutive_drops=5)
    try:
        with pytest.raises(CaptureStopped, match=r"5 pairs in a row dropped \(last: timestamps disagree by a fraction of a period\)"):
            recorder.record_step(StepRequest("/scenes/s/steps/1", {}, frames=8, exposure_us=1000.0, ll_gain_db=0.0, wl_gain_db=0.0, timeout_ms=30.0))
    finally:
        writer.close()
    with SessionReader(tmp_path / "hw.h5") as r:
        assert list(r.frames_table("s", "1")["index"]) == [0, 1, 2]


@dataclass
class TimedCamera(StandInCamera):
    """Delivers each prepared frame at its due time (seconds after arming), as a hardware-triggered camera."""

    due_s: list[float] = field(default_factory=list)
    armed: float = 0.0

    def start(self, buffers: int) -> None:
        import time

        self.armed = time.monotonic()

    def try_retrieve(self, timeout_ms: float) -> Frame | None:
        import time

        if self.served >= len(self.frames):
            time.sleep(timeout_ms / 1000.0)
            return None
        wait = self.armed + self.due_s[self.served] - time.monotonic()
        if wait > timeout_ms / 1000.0:
            time.sleep(timeout_ms / 1000.0)
            return None
        time.sleep(max(0.0, wait))
        got = super().try_retrieve(timeout_ms)
        return None if got is None else replace(got, host_time_ns=time.time_ns())


def record_timed(tmp_path: Path, ll: TimedCamera, wl: TimedCamera, frames: int) -> tuple[object, Path]:
    rig = StandInRig(ll, wl)
    sync = make_sync(rig.config.trigger, 10.0, emulated=False)
    sync.start = lambda rig, buffers: (rig.ll.start(buffers), rig.wl.start(buffers))
    sync.stop = lambda rig: None
    out = tmp_path / "timed.h5"
    writer = SessionWriter(out, root_attrs={"rig_config": rig.config.to_json()})
    recorder = Recorder(rig, sync, writer)
    req = StepRequest("/scenes/s/steps/1", {"k": 1}, frames=frames, exposure_us=1000.0, ll_gain_db=0.0, wl_gain_db=0.0, timeout_ms=30.0)
    try:
        return recorder.record_step(req), out
    finally:
        writer.close()


def timed(name: str, edges: list[int], start_s: float, value: int) -> TimedCamera:
    """Frames of ``edges`` (block ID = edge: lost in transfer, not missed) at 10 fps from ``start_s``."""
    return TimedCamera(name, [frame(e, e, 0, value + e) for e in edges], due_s=[start_s + 0.1 * e for e in edges])


def test_stall_is_a_warning_and_lost_frames_keep_their_pair_index(tmp_path: Path) -> None:
    # WL loses the frames of edges 3..6 (0.5 s of silence > the 0.3 s stall timeout of 3 periods): one stall is
    # counted, the four pairs are dropped as missing frames at their own indexes, the rest pairs exactly.
    ll = timed("LL", list(range(10)), 0.05, 100)
    wl = timed("WL", [0, 1, 2, 7, 8, 9], 0.05, 2000)
    outcome, out = record_timed(tmp_path, ll, wl, frames=6)
    assert outcome.stalls == {"wl": 1}
    assert outcome.dropped == {"wl frame missing": 4}
    with SessionReader(out) as r:
        table = r.frames_table("s", "1")
        assert list(table["index"]) == [0, 1, 2, 7, 8, 9]
        for i in range(len(table)):
            lf, wf = r.pair("s", "1", i)
            assert int(wf[0, 0]) - int(lf[0, 0]) == 1900


def test_first_edge_late_after_arming_is_waited_for(tmp_path: Path) -> None:
    # The operator starts the generator 0.6 s (two stall timeouts) after "start the trigger generator now": nothing is dropped.
    outcome, _ = record_timed(tmp_path, timed("LL", list(range(4)), 0.6, 100), timed("WL", list(range(4)), 0.6, 2000), frames=4)
    assert (outcome.total, outcome.dropped, outcome.stalls) == (4, {}, {})


def test_camera_silent_for_three_stall_timeouts_stops(tmp_path: Path) -> None:
    ll = timed("LL", list(range(30)), 0.0, 100)
    wl = timed("WL", [0, 1, 2], 0.0, 2000)
    with pytest.raises(CaptureStopped, match=r"/scenes/s/steps/1: no frame from camera WL for 0\.9\d* s; check the generator's signal on Line1"):
        record_timed(tmp_path, ll, wl, frames=30)
    with SessionReader(tmp_path / "timed.h5") as r:
        assert list(r.frames_table("s", "1")["index"]) == [0, 1, 2]


def test_camera_missing_the_first_edge_is_caught_by_host_arrival_times(tmp_path: Path) -> None:
    # No timestamps (-1): WL was not yet armed at edge 0, so its frame 0 is of edge 1 and arrives one period after
    # LL's frame 0. Counting frames alone would pair every LL edge e with WL edge e + 1.
    ll = TimedCamera("LL", [Frame(e, True, "", np.full(SHAPE, 100 + e, np.uint16), -1, 0) for e in range(10)], due_s=[0.05 + 0.1 * e for e in range(10)])
    wl = TimedCamera("WL", [Frame(e - 1, True, "", np.full(SHAPE, 2000 + e, np.uint16), -1, 0) for e in range(1, 10)], due_s=[0.05 + 0.1 * e for e in range(1, 10)])
    outcome, out = record_timed(tmp_path, ll, wl, frames=8)
    assert len(outcome.dropped) == 1 and sum(outcome.dropped.values()) == 1
    assert re.fullmatch(r"wl missed a trigger edge \(first frames arrived -(9\d|10\d)\.\d ms apart \(LL - WL\), \+0\.0 ms expected from exposure and transfer, period 100 ms\)", next(iter(outcome.dropped)))
    with SessionReader(out) as r:
        table = r.frames_table("s", "1")
        assert list(table["index"]) == list(range(1, 9))
        assert list(table["ll_block_id"] - table["wl_block_id"]) == [1] * 8
        for i in range(len(table)):
            lf, wf = r.pair("s", "1", i)
            assert int(wf[0, 0]) - int(lf[0, 0]) == 1900  # the same edge on both cameras
