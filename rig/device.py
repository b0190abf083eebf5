"""The seam between the camera layer and a camera SDK: what ``rig.cameras.Camera`` needs from a device.

pypylon (real darts and pylon's emulator) is one implementation (``rig.pylon_device``); the stand-in dart of the
tests, a model of a real daA1920-160uc built from its feature list and settings file, is the other. Both are
reached through a :class:`DeviceFactory`; :func:`rig.factory.use_factory` swaps the factory for a block of code (tests run
the CLI against the stand-in that way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["DeviceSummary", "Frame", "Device", "DeviceFactory"]


@dataclass(frozen=True)
class DeviceSummary:
    """One attached camera as enumeration reports it."""

    serial: str
    model: str
    device_class: str


@dataclass
class Frame:
    """One grab result, copied out of the SDK's buffer so the buffer goes straight back.

    Attributes:
        block_id: the camera's frame counter (USB3 block ID); -1 when the result carried none.
        ok: the grab succeeded and the buffer is complete.
        error: the SDK's description when not ``ok``.
        image: the pixels when ``ok``: uint16 LSB-aligned samples, or for packed formats (``...12p``) the
            packed bytes as delivered (uint8, rows of ``width * 3 / 2`` bytes).
        timestamp_ns: camera timestamp, -1 when the camera gives none (the emulator reports 0).
        host_time_ns: host clock when the result was retrieved.
        chunks: per-frame chunk values by chunk name (``FrameID``, ``Timestamp``, ``ExposureTime``, ``Gain``,
            ``CounterValue``, ``LineStatusAll``); empty when the camera sends no chunks.
    """

    block_id: int
    ok: bool
    error: str
    image: np.ndarray | None
    timestamp_ns: int
    host_time_ns: int
    chunks: dict[str, float] = field(default_factory=dict)

    @property
    def exposure_us(self) -> float | None:
        """Exposure from chunk data, None without chunks."""
        return self.chunks.get("ExposureTime")

    @property
    def gain_db(self) -> float | None:
        """Gain from chunk data, None without chunks."""
        return self.chunks.get("Gain")


class Device(Protocol):
    """One opened camera: its node map, its InstantCamera parameters and its grab loop."""

    serial: str
    model: str

    def node(self, name: str) -> Any | None:
        """The node-map node ``name`` (GenApi-like: ``Value``, ``GetSymbolics``, ``GetMin``...), None if absent."""

    def is_available(self, node: Any) -> bool:
        """Whether a node can be used now."""

    @property
    def removed(self) -> bool:
        """The device was unplugged or powered off."""

    def start_grabbing(self, buffers: int) -> None:
        """Set the grab buffer count (the InstantCamera's ``MaxNumBuffer``, not a node-map feature) and start."""

    def stop_grabbing(self) -> None: ...

    def is_grabbing(self) -> bool: ...

    def wait_ready(self, timeout_ms: float) -> bool: ...

    def retrieve(self, timeout_ms: float, chunk_names: tuple[str, ...]) -> Frame | None:
        """The next grab result (chunk values of ``chunk_names`` filled in), None on timeout."""

    def save_pfs(self, path: Path) -> None: ...

    def load_pfs(self, path: Path) -> None: ...

    def close(self) -> None: ...


class DeviceFactory(Protocol):
    """Enumerates and opens devices of one kind."""

    def enumerate(self, serial: str | None = None) -> list[DeviceSummary]: ...

    def open(self, serial: str) -> Device:
        """Open the camera with that serial (it was enumerated)."""
