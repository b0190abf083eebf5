"""Trigger topologies: how the two exposures of a pair are started together.

USB3 darts have no PTP or action commands; real synchronisation is a hardware trigger (DOMAIN.md section 1).

- ``software``: both cameras on ``TriggerSource=Software``, triggered one after the other for each pair
  (lockstep: the next pair is triggered only when both frames of this one are in or given up).
- ``master-slave``: the master free-runs at the frame rate and drives an output line with ExposureActive
  (LineInverter as configured); the slave triggers on its input line at the configured edge.
- ``external``: both cameras trigger on an input line driven by a generator.
- ``free-run``: no trigger at all (benchmarks; frames are matched by counter only).

On the emulator the GPIO lines are not connected; for ``external`` an :class:`rig.emulate.TriggerGenerator`
stands in for the generator, a master-slave slave receives nothing (its timeouts say so).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from exlpose_data.errors import UsageError

from .cameras import Camera, Rig
from .config import TriggerConfig
from .emulate import TriggerGenerator

__all__ = ["Sync", "make_sync", "OPERATOR_GRACE_S", "STARTUP_GRACE_S"]

log = logging.getLogger(__name__)

# How long after arming the first frame may take. With a physical generator the operator starts it when told,
# which takes human time; otherwise edges start at once and only camera start-up delays the first frame.
OPERATOR_GRACE_S = 60.0
STARTUP_GRACE_S = 2.0


def _trigger_on(cam: Camera, source: str, activation: str = "RisingEdge") -> None:
    cam.set("TriggerSelector", "FrameStart")
    cam.set("TriggerMode", "On")
    cam.set("TriggerSource", source)
    if source != "Software" and cam.has("TriggerActivation"):
        cam.set("TriggerActivation", activation)
    if cam.has("AcquisitionFrameRateEnable"):
        cam.set("AcquisitionFrameRateEnable", False)


def _free_run(cam: Camera, rate_hz: float | None) -> None:
    if cam.has("TriggerSelector"):
        cam.set("TriggerSelector", "FrameStart")
        cam.set("TriggerMode", "Off")
    rate_feature = cam.first_of("AcquisitionFrameRate", "AcquisitionFrameRateAbs")
    if cam.has("AcquisitionFrameRateEnable"):
        cam.set("AcquisitionFrameRateEnable", rate_hz is not None)
    if rate_hz is not None:
        if rate_feature is None:
            raise UsageError(f"camera {cam.name}: has no AcquisitionFrameRate feature to free-run at {rate_hz:g} fps")
        cam.set(rate_feature, float(rate_hz))


def _line(cam: Camera, line: str, mode: str, source: str | None = None) -> None:
    lines = cam.symbolics("LineSelector")
    if line not in lines:
        raise UsageError(f"camera {cam.name}: has no I/O line {line}; lines: {', '.join(lines) or 'none'}")
    cam.set("LineSelector", line)
    cam.set("LineMode", mode)
    if source is not None:
        cam.set("LineSource", source)


@dataclass
class Sync:
    """One trigger topology applied to a rig.

    Attributes:
        topology: the config's topology name.
        lockstep: the recorder triggers each pair itself (software); otherwise frames arrive on their own.
    """

    config: TriggerConfig
    frame_rate_hz: float | None
    emulated: bool = False
    _generator: TriggerGenerator | None = None

    @property
    def topology(self) -> str:
        return self.config.topology

    @property
    def lockstep(self) -> bool:
        return self.config.topology == "software"

    def roles(self) -> tuple[str, str]:
        """(master, slave) roles for master-slave; the slave is armed first."""
        master = self.config.master
        return master, ("ll" if master == "wl" else "wl")

    def configure(self, rig: Rig) -> None:
        """Set the trigger features of both cameras (grabbing must be stopped)."""
        cfg = self.config
        rig.stop()
        if cfg.topology == "software":
            for cam in rig.cameras.values():
                _trigger_on(cam, "Software")
        elif cfg.topology == "external":
            for cam in rig.cameras.values():
                _line(cam, cfg.input_line, "Input")
                _trigger_on(cam, cfg.input_line, cfg.activation)
        elif cfg.topology == "master-slave":
            master, slave = self.roles()
            _line(rig.cameras[slave], cfg.slave_line, "Input")
            _trigger_on(rig.cameras[slave], cfg.slave_line, cfg.activation)
            _line(rig.cameras[master], cfg.master_line, "Output", cfg.master_line_source)
            if rig.cameras[master].has("LineInverter"):
                rig.cameras[master].set("LineInverter", cfg.master_line_inverter)
            _free_run(rig.cameras[master], self.frame_rate_hz)
        else:
            for cam in rig.cameras.values():
                _free_run(cam, self.frame_rate_hz)

    def start(self, rig: Rig, buffers: int) -> None:
        """Start grabbing so that no camera can see an edge the other misses: receivers are armed first."""
        if self.config.topology == "master-slave":
            master, slave = self.roles()
            rig.cameras[slave].start(buffers)
            rig.cameras[master].start(buffers)
            return
        for cam in rig.cameras.values():
            cam.start(buffers)
        if self.config.topology == "external":
            if self.emulated:
                self._generator = TriggerGenerator([rig.ll, rig.wl], self.frame_rate_hz or 10.0)
                self._generator.start()
            else:
                self._refuse_running_generator(rig)
                log.info("both cameras armed on %s: start the trigger generator now", self.config.input_line)

    def _refuse_running_generator(self, rig: Rig) -> None:
        """A generator already running when the cameras are armed can give one camera an edge the other missed.

        Frame counters would then be off by one for the whole step, with timestamps offset by a constant that
        no check can see; so edges must start only after both cameras are armed.
        """
        wait_ms = 2000.0 / (self.frame_rate_hz or 10.0) + 50.0
        for cam in rig.cameras.values():
            if cam.try_retrieve(wait_ms) is not None:
                rig.stop()
                raise UsageError(
                    f"camera {cam.name} got a frame before recording started: the trigger generator on {self.config.input_line} "
                    "is already running; stop it, start recording, and start the generator when asked"
                )

    def stop(self, rig: Rig) -> None:
        """Stop the emulated generator (if any), then grabbing."""
        if self._generator is not None:
            self._generator.stop()
            self._generator = None
        rig.stop()

    def first_frame_grace_s(self, stall_s: float) -> float:
        """How long to wait for a camera's first frame after arming before giving up on it."""
        if self.config.topology == "external" and not self.emulated:
            return max(OPERATOR_GRACE_S, stall_s)
        return stall_s + STARTUP_GRACE_S

    def edge_of(self, role: str, frame_number: int) -> int | None:
        """Which edge made ``role``'s ``frame_number``-th frame since the start: known only to the emulated generator."""
        if self._generator is None:
            return None
        return self._generator.edge_of(0 if role == "ll" else 1, frame_number)

    def no_frame_hint(self, role: str) -> str:
        """What to check when a camera delivers nothing."""
        cfg = self.config
        if cfg.topology == "master-slave" and role == self.roles()[1]:
            hint = f"check the wire from the master's {cfg.master_line} to the slave's {cfg.slave_line}"
            return hint + (" (the emulator's I/O lines are not connected)" if self.emulated else "")
        if cfg.topology == "external":
            return f"check the generator's signal on {cfg.input_line}"
        return "check the camera's cable and power"


def make_sync(config: TriggerConfig, frame_rate_hz: float | None, *, emulated: bool = False) -> Sync:
    """The topology object for a rig config's trigger section."""
    return Sync(config=config, frame_rate_hz=frame_rate_hz, emulated=emulated)
