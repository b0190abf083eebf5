"""Hardware-trigger pairing with camera timestamps, which pylon's emulator cannot produce (it reports 0).

Mocked (what cannot exist here): two hardware-triggered cameras whose frames carry real timestamps; one of them
misses a trigger edge. Real: the recorder, the session writer and the HDF5 file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
