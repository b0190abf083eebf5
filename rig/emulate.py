"""pylon's camera emulator: enabling it, feeding it image files, standing in for a trigger generator.

``PYLON_CAMEMU=N`` must be set before pylon first enumerates devices. Emulated cameras play image files
(``TestImageSelector=Off``, ``ImageFilename``, ``ImageFileMode=On``), cycling a folder in name order. A 16-bit
grayscale PNG holding ``raw << (16 - bit_depth)`` grabs as exactly ``raw`` in a 12-bit format, so feeds store
raw values MSB-aligned.

Feed folders (written by the simulator) follow the core's feeds format, :mod:`exlpose_data.feeds_format`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from exlpose_data.atomic import write_image_atomic
from exlpose_data.errors import InputError
from exlpose_data.feeds_format import feed_folder, msb_align

__all__ = [
    "DEVICE_CLASS",
    "SERIALS",
    "enable",
    "feed_dir",
    "play_feed",
    "write_raw_png",
    "TriggerGenerator",
]

DEVICE_CLASS = "BaslerCamEmu"
SERIALS = ("0815-0000", "0815-0001")
IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


def enable(count: int = 2) -> None:
    """Ask pylon for ``count`` emulated cameras (never fewer than already requested)."""
    current = int(os.environ.get("PYLON_CAMEMU", "0") or 0)
    os.environ["PYLON_CAMEMU"] = str(max(current, count))


def feed_dir(feeds: str | Path, scene: str, step: str, role: str) -> Path:
    """The folder an emulated camera plays for one step (``step`` is ``1``, ``2``, ... or ``reference``).

    Raises:
        InputError: the folder is missing, empty, or holds a non-image file (which makes every grab fail).
    """
    folder = feed_folder(feeds, scene, step, role)
    if not folder.is_dir():
        have = sorted(p.name for p in Path(feeds).iterdir() if p.is_dir()) if Path(feeds).is_dir() else []
        raise InputError(f"{folder}: no feed folder for scene {scene!r} step {step} ({role}); scenes in {feeds}: {have or 'none'}")
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    bad = [p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if bad:
        raise InputError(f"{folder}: non-image files make the emulator fail every grab: {', '.join(bad[:5])}")
    if not files:
        raise InputError(f"{folder}: feed folder holds no images")
    return folder


def play_feed(cam: Any, folder: str | Path) -> None:
    """Make an emulated camera play the images of ``folder`` (cycled in name order) instead of its test image."""
    cam.set("TestImageSelector", "Off")
    cam.set("ImageFilename", str(folder))
    cam.set("ImageFileMode", "On")


def write_raw_png(path: str | Path, raw: np.ndarray, bit_depth: int = 12) -> Path:
    """Write raw samples as a 16-bit grayscale PNG the emulator plays back as exactly ``raw``."""
    data = np.asarray(raw)
    if data.ndim != 2 or data.min() < 0 or data.max() >= 1 << bit_depth:
        raise ValueError(f"{path}: raw frame must be 2-D with values in 0..{(1 << bit_depth) - 1}")
    write_image_atomic(path, msb_align(data, bit_depth))
    return Path(path)


class TriggerGenerator:
    """Stands in for the physical trigger generator (or the master-to-slave wire) on emulated cameras.

    The emulator's GPIO lines are not connected, but ``TriggerSoftware`` fires whatever ``TriggerSource``
    is set, so this thread triggers every camera at a fixed rate, each once per tick, as one edge on a shared
    line would.

    Args:
        cameras: objects with ``wait_ready(timeout_ms)`` and ``trigger()`` (``rig.cameras.Camera``).
        rate_hz: edges per second.
    """

    def __init__(self, cameras: list[Any], rate_hz: float) -> None:
        self._cameras = cameras
        self._period_s = 1.0 / rate_hz
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emulated-trigger", daemon=True)
        self.edges = 0
        # Per camera, the edge number of each trigger it accepted: its n-th frame comes from edge delivered[n].
        self._delivered: list[list[int]] = [[] for _ in cameras]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def edge_of(self, camera: int, frame_number: int) -> int | None:
        """The edge that produced camera ``camera``'s ``frame_number``-th frame (0-based), None if not yet known."""
        delivered = self._delivered[camera]
        return delivered[frame_number] if 0 <= frame_number < len(delivered) else None

    def _run(self) -> None:
        while not self._stop.wait(self._period_s):
            try:
                # A real edge reaches every camera; a camera not ready for it ignores it, as a real one would.
                ready = [cam.wait_ready(0) for cam in self._cameras]
                for cam, is_ready, delivered in zip(self._cameras, ready, self._delivered):
                    if is_ready:
                        delivered.append(self.edges)  # before the trigger: its frame can be retrieved at once
                        cam.trigger()
            except Exception:  # the recorder sees the camera's failure itself and stops
                return
            self.edges += 1
