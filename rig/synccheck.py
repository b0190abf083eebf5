"""``sync-check``: prove the master -> slave trigger wire before a scene, and measure the exposure offset.

With the rig in ``master-slave`` topology the master free-runs and drives its output line with ExposureActive;
the slave triggers on its input line. The check grabs N frames from both and proves, from the cameras' own data:

- the slave counts the edges on its input line (Counter1, ``CounterEventSource`` = the slave line, read per frame
  as chunk CounterValue): one edge per slave frame, none lost;
- both frame counters advance together (no gaps on either side, as many slave frames as master frames);
- the offset between the two exposures: slave timestamp minus master timestamp, corrected by the offset between
  the two camera clocks, measured by latching both clocks (``TimestampLatch``) back to back from the host; the
  latch round trip bounds its precision and is reported. An offset near the exposure time means the slave fires
  at the end of the master's exposure: the polarity is wrong (``master_line_inverter``, ``activation``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from exlpose_data.errors import UsageError

from .cameras import Camera, Rig
from .device import Frame
from .sync import Sync

__all__ = ["SyncReport", "clock_offset_ns", "run_sync_check"]

# Latch rounds for the clock offset; the round with the shortest host round trip is used.
LATCH_ROUNDS = 7


@dataclass
class SyncReport:
    """What the check measured; ``problems`` empty means the wiring is proven."""

    pairs: int = 0
    master_frames: int = 0
    slave_frames: int = 0
    slave_edges: int | None = None
    offset_us: list[float] = field(default_factory=list)
    offset_precision_us: float | None = None
    exposure_us: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """The report, one line per fact."""
        out = [f"pairs: {self.pairs} (master frames {self.master_frames}, slave frames {self.slave_frames})"]
        if self.slave_edges is not None:
            out.append(f"slave counted {self.slave_edges} edges on its input line for {self.slave_frames} frames")
        if self.offset_us:
            spread = statistics.pstdev(self.offset_us)
            precision = f" (clock offset known to +/-{self.offset_precision_us:.1f} us)" if self.offset_precision_us is not None else ""
            out.append(f"exposure offset slave - master: {statistics.mean(self.offset_us):+.1f} us mean, {spread:.1f} us spread{precision}; "
                       f"exposure {self.exposure_us:g} us")
        out += [f"PROBLEM: {p}" for p in self.problems]
        out.append("sync-check passed" if self.ok else "sync-check FAILED")
        return out


def clock_offset_ns(a: Camera, b: Camera, rounds: int = LATCH_ROUNDS) -> tuple[float, float]:
    """(clock b - clock a in ns, +/- precision in ns) from back-to-back ``TimestampLatch`` of both cameras."""
    best: tuple[float, float] | None = None
    for _ in range(rounds):
        h0 = time.perf_counter_ns()
        a.execute("TimestampLatch")
        b.execute("TimestampLatch")
        h2 = time.perf_counter_ns()
        ta, tb = int(a.get("TimestampLatchValue")), int(b.get("TimestampLatchValue"))
        # Both latches happened within [h0, h2], a first: b's came (h2 - h0) / 2 +/- (h2 - h0) / 2 after a's.
        estimate = (tb - ta) - (h2 - h0) / 2.0
        half_width = (h2 - h0) / 2.0
        if best is None or half_width < best[1]:
            best = (estimate, half_width)
    assert best is not None
    return best


def _count_slave_edges(slave: Camera, line: str) -> bool:
    """Counter1 of the slave counts rising edges on ``line``, reported per frame as chunk CounterValue."""
    needed = ("CounterSelector", "CounterEventSource", "ChunkModeActive", "ChunkSelector")
    if not all(slave.has(n) for n in needed) or line not in slave.symbolics("CounterEventSource"):
        return False
    slave.set("CounterSelector", "Counter1")
    slave.set("CounterEventSource", line)
    if slave.has("CounterEventActivation"):
        slave.set("CounterEventActivation", "RisingEdge")
    if slave.has("CounterReset"):
        slave.execute("CounterReset")
    if slave.has("ChunkCounterSelector"):
        slave.set("ChunkCounterSelector", "Counter1")
    return "CounterValue" in slave.enable_chunks()


def _grab(cam: Camera, n: int, timeout_ms: float) -> list[Frame]:
    frames = []
    deadline = time.monotonic() + n * timeout_ms / 1000.0
    while len(frames) < n and time.monotonic() < deadline:
        frame = cam.try_retrieve(timeout_ms)
        if frame is None:
            break
        frames.append(frame)
    return frames


def run_sync_check(rig: Rig, sync: Sync, frames: int, exposure_us: float) -> SyncReport:
    """Grab ``frames`` from both cameras of a master-slave rig and check the wiring (see the module docstring).

    Raises:
        UsageError: the rig's topology is not master-slave.
    """
    if sync.topology != "master-slave":
        raise UsageError(f"sync-check proves a master-slave wire; the rig config's trigger topology is {sync.topology}")
    master_role, slave_role = sync.roles()
    master, slave = rig.cameras[master_role], rig.cameras[slave_role]
    cfg = sync.config
    report = SyncReport(exposure_us=exposure_us)
    rig.stop()
    for cam in (master, slave):
        cam.set_exposure_gain(exposure_us, cam.limits().gain_min_db)
    counting = _count_slave_edges(slave, cfg.slave_line)
    offset, precision = (clock_offset_ns(master, slave) if master.has("TimestampLatch") and slave.has("TimestampLatch") else (None, None))
    period_ms = 1000.0 / (sync.frame_rate_hz or 10.0)
    timeout_ms = 2 * exposure_us / 1000.0 + 3 * period_ms + 250.0
    sync.start(rig, rig.config.buffers)
    try:
        got_master = _grab(master, frames, timeout_ms)
        got_slave = _grab(slave, len(got_master), timeout_ms)
    finally:
        sync.stop(rig)
    report.master_frames, report.slave_frames = len(got_master), len(got_slave)
    report.pairs = min(len(got_master), len(got_slave))
    wire = f"the wire from the {master_role.upper()} camera's {cfg.master_line} (output) to the {slave_role.upper()} camera's {cfg.slave_line} (input)"
    if not got_master:
        report.problems.append(f"the master ({master.name}) delivered no frame: check its cable and power")
        return report
    if not got_slave:
        report.problems.append(
            f"the slave ({slave.name}) received no trigger edge: check {wire}, the pull-up on the output, the common ground, "
            "and that both lines are GPIO lines"
        )
        return report
    if counting:
        report.slave_edges = int(got_slave[-1].chunks["CounterValue"])
        if report.slave_edges != len(got_slave):
            report.problems.append(f"the slave counted {report.slave_edges} edges for {len(got_slave)} frames: it missed triggers "
                                   "(frame rate above what the slave can follow, or a noisy line)")
    for role, got in ((master_role, got_master), (slave_role, got_slave)):
        ids = [f.block_id for f in got]
        if ids != list(range(ids[0], ids[0] + len(ids))):
            report.problems.append(f"{role.upper()} frame counter skipped: {ids}")
    if len(got_slave) < len(got_master):
        report.problems.append(f"the slave delivered {len(got_slave)} frames for the master's {len(got_master)}: edges lost on {wire}")
    if offset is not None and all(f.timestamp_ns >= 0 for f in got_master + got_slave):
        report.offset_us = [(s.timestamp_ns - m.timestamp_ns - offset) / 1000.0 for m, s in zip(got_master, got_slave)]
        report.offset_precision_us = precision / 1000.0 if precision is not None else None
        mean = statistics.mean(report.offset_us)
        tolerance = max(0.1 * exposure_us, 2 * (report.offset_precision_us or 0.0))
        if abs(mean - exposure_us) < tolerance and exposure_us > tolerance:
            report.problems.append(f"the slave starts {mean:.0f} us after the master, about one exposure: it fires at the end of the master's "
                                   "exposure; check the polarity (master_line_inverter, activation)")
        elif abs(mean) > tolerance:
            report.problems.append(f"the exposures start {mean:+.0f} us apart (tolerance {tolerance:.0f} us)")
    return report
