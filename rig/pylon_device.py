"""pypylon behind the device seam (``rig.device``): real darts and pylon's camera emulator."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from pypylon import genicam, pylon

from exlpose_data.packed12 import is_packed, packed_row_bytes

from . import emulate
from .device import DeviceSummary, Frame

__all__ = ["PylonDevice", "PylonFactory", "OpenFailed"]


class OpenFailed(RuntimeError):
    """pylon could not open the device (another program holds it)."""


def _enumerate(emulated: bool, serial: str | None = None) -> list[Any]:
    info = pylon.DeviceInfo()
    if emulated:
        emulate.enable()
        # Filtering by class skips the slow probe of real transport layers (~1 ms instead of 0.25 s).
        info.SetDeviceClass(emulate.DEVICE_CLASS)
    if serial is not None:
        info.SetSerialNumber(serial)
    filters = [info] if emulated or serial is not None else []
    return list(pylon.TlFactory.GetInstance().EnumerateDevices(filters))


class PylonFactory:
    """Enumerates and opens pylon devices (only the emulator's when ``emulated``)."""

    def __init__(self, emulated: bool = False) -> None:
        self.emulated = emulated

    def enumerate(self, serial: str | None = None) -> list[DeviceSummary]:
        return [DeviceSummary(d.GetSerialNumber(), d.GetModelName(), d.GetDeviceClass()) for d in _enumerate(self.emulated, serial)]

    def open(self, serial: str) -> "PylonDevice":
        return PylonDevice(_enumerate(self.emulated, serial)[0])


class _RemovalWatch(pylon.ConfigurationEventHandler):  # type: ignore[misc]
    """Sets an event when pylon reports the device removed."""

    def __init__(self, flag: threading.Event) -> None:
        super().__init__()
        self._flag = flag

    def OnCameraDeviceRemoved(self, camera: Any) -> None:  # noqa: N802 (pylon's name)
        self._flag.set()


class PylonDevice:
    """One pylon InstantCamera, opened."""

    def __init__(self, info: Any) -> None:
        self.serial = info.GetSerialNumber()
        self.model = info.GetModelName()
        self._cam = pylon.InstantCamera(pylon.TlFactory.GetInstance().CreateDevice(info))
        self._removed = threading.Event()
        self._cam.RegisterConfiguration(_RemovalWatch(self._removed), pylon.RegistrationMode_Append, pylon.Cleanup_Delete)
        try:
            self._cam.Open()
        except Exception as exc:  # pylon raises its own exception types
            raise OpenFailed(str(exc)) from None
        self._packed = False

    @property
    def removed(self) -> bool:
        return self._removed.is_set()

    def node(self, name: str) -> Any | None:
        node = self._cam.GetNodeMap().GetNode(name)
        if node is None or type(node).__name__ == "PlaceholderParameter":
            return None
        return node

    def is_available(self, node: Any) -> bool:
        return bool(genicam.IsAvailable(node))

    def start_grabbing(self, buffers: int) -> None:
        # MaxNumBuffer belongs to the InstantCamera, not to the device's node map.
        self._cam.MaxNumBuffer.Value = int(buffers)
        self._packed = _is_packed(self.node("PixelFormat"))  # PixelFormat is locked while grabbing
        self._cam.StartGrabbing(pylon.GrabStrategy_OneByOne)

    def stop_grabbing(self) -> None:
        if self._cam.IsGrabbing():
            self._cam.StopGrabbing()

    def is_grabbing(self) -> bool:
        return bool(self._cam.IsGrabbing())

    def wait_ready(self, timeout_ms: float) -> bool:
        return bool(self._cam.WaitForFrameTriggerReady(int(max(1, timeout_ms)), pylon.TimeoutHandling_Return))

    def retrieve(self, timeout_ms: float, chunk_names: tuple[str, ...]) -> Frame | None:
        res = self._cam.RetrieveResult(int(max(0, timeout_ms)), pylon.TimeoutHandling_Return)
        host = time.time_ns()
        if not res.IsValid():
            return None
        try:
            ok = bool(res.GrabSucceeded())
            image = None
            chunks: dict[str, float] = {}
            if ok:
                if self._packed:
                    # GetArray() would unpack; the session stores the packed bytes as the camera sent them. The
                    # buffer may carry chunk data after the image: take the image's bytes only.
                    height, row = int(res.Height), packed_row_bytes(int(res.Width))
                    image = np.frombuffer(res.GetBuffer(), np.uint8, count=height * row).reshape(height, row).copy()
                else:
                    # One copy out of pylon's buffer (it returns to pylon at Release()); 8-bit formats widen to uint16.
                    with res.GetArrayZeroCopy() as view:
                        image = view.astype(np.uint16, copy=True)
                if chunk_names:
                    nodes = res.GetChunkDataNodeMap()
                    chunks = {n: float(nodes.GetNode(f"Chunk{n}").Value) for n in chunk_names}
            ts = int(res.TimeStamp)
            return Frame(int(res.BlockID), ok, "" if ok else str(res.ErrorDescription), image, ts if ts > 0 else -1, host, chunks)
        finally:
            res.Release()

    def save_pfs(self, path: Path) -> None:
        pylon.FeaturePersistence.Save(str(path), self._cam.GetNodeMap())

    def load_pfs(self, path: Path) -> None:
        pylon.FeaturePersistence.Load(str(path), self._cam.GetNodeMap(), True)

    def close(self) -> None:
        self.stop_grabbing()
        self._cam.Close()
        self._cam.DestroyDevice()


def _is_packed(node: Any) -> bool:
    return node is not None and is_packed(str(node.Value))
