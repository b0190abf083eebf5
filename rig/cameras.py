"""The camera layer: open by serial, probe features, apply and save settings, grab frames.

Cameras are reached through the device seam (``rig.device``): pypylon for real darts and pylon's emulator, the
stand-in dart in tests. The dart (daA1920-160uc) and pylon's emulator name some features differently
(``ResultingFrameRate`` vs ``ResultingFrameRateAbs``, ``RGB8`` vs ``RGB8Packed``), so every optional feature is
probed, never assumed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from exlpose_data.atomic import atomic_path
from exlpose_data.errors import ExlposeError, UsageError
from exlpose_data.packed12 import is_packed, packed_row_bytes
from exlpose_data.session_format import normalise_bayer_pattern

from .camera_state import apply_pixel_state, load_user_set, read_pixel_state
from .device import DeviceFactory, DeviceSummary, Frame
from .factory import factory_for

__all__ = [
    "CameraError",
    "CameraRemovedError",
    "DeviceSummary",
    "Frame",
    "FrameFormat",
    "Limits",
    "Camera",
    "Rig",
    "list_devices",
    "pixel_format_info",
]


class CameraError(ExlposeError):
    """A camera failed at run time (not something a setting can fix)."""


class CameraRemovedError(CameraError):
    """A camera disappeared (unplugged, powered off) while in use."""


@dataclass(frozen=True)
class Limits:
    """Ranges the camera accepts, read at run time."""

    exposure_min_us: float
    exposure_max_us: float
    gain_min_db: float
    gain_max_db: float


@dataclass(frozen=True)
class FrameFormat:
    """How the frames of one camera are laid out (the session file's frame attributes)."""

    pixel_format: str
    bayer_pattern: str | None
    bit_depth: int
    channels: int
    width: int
    height: int
    black_level: float
    mirrored_x: bool
    packed: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one frame as stored: packed rows of bytes for packed formats."""
        if self.packed:
            return (self.height, packed_row_bytes(self.width))
        return (self.height, self.width) if self.channels == 1 else (self.height, self.width, self.channels)

    @property
    def dtype(self) -> type:
        """Stored sample type: the camera's bytes for packed formats, uint16 otherwise."""
        return np.uint8 if self.packed else np.uint16

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame as stored (uint16 per sample, 1.5 B per packed 12-bit sample)."""
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


# Chunks asked for per frame, in the camera's ChunkSelector names.
CHUNKS = ("FrameID", "Timestamp", "ExposureTime", "Gain", "CounterValue", "LineStatusAll")

_PACKED = re.compile(r"(\d+)p$")
_BAYER = re.compile(r"^Bayer(RG|GR|GB|BG)(\d+p?)$")
_MONO = re.compile(r"^Mono(\d+p?)$")
_COLOUR = re.compile(r"^(RGB|BGR)(\d+)(Packed)?$")


def pixel_format_info(name: str) -> tuple[str | None, int, int]:
    """(four-letter Bayer pattern or None, bit depth, channels) of a pylon pixel format name (BayerRG12 -> RGGB).

    Packed 12-bit formats (``BayerRG12p``) give the same as their unpacked twin (the session stores their bytes).

    Raises:
        UsageError: unknown formats, and packed ones other than 12-bit.
    """
    if _PACKED.search(name) and not is_packed(name):
        raise UsageError(f"pixel format {name}: only packed 12-bit formats (...12p) are supported")
    if m := _BAYER.match(name):
        return normalise_bayer_pattern(m.group(1)), int(m.group(2).rstrip("p")), 1
    if m := _MONO.match(name):
        return None, int(m.group(1).rstrip("p")), 1
    if m := _COLOUR.match(name):
        return None, int(m.group(2)), 3
    raise UsageError(f"pixel format {name}: not a raw Bayer, Mono, RGB or BGR format")


def list_devices(*, emulated: bool = False, factory: DeviceFactory | None = None) -> list[DeviceSummary]:
    """The cameras attached (or emulated), sorted by serial."""
    return sorted((factory or factory_for(emulated)).enumerate(), key=lambda d: d.serial)


def _describe(devices: Iterable[DeviceSummary]) -> str:
    items = [f"{d.serial} ({d.model})" for d in devices]
    return ", ".join(items) if items else "none"


class Camera:
    """One camera opened by serial number.

    Args:
        serial: the camera's serial number.
        role: ``ll`` or ``wl``, used in messages.
        emulated: open a pylon CamEmu device.
        factory: where devices come from (default: ``rig.factory.factory_for(emulated)``).

    Raises:
        UsageError: no camera with that serial is attached (the message lists those that are).
    """

    def __init__(self, serial: str, *, role: str = "", emulated: bool = False, factory: DeviceFactory | None = None) -> None:
        self.serial = serial
        self.role = role
        self.emulated = emulated
        factory = factory or factory_for(emulated)
        found = factory.enumerate(serial)
        if not found:
            raise UsageError(f"camera {serial}{self._role_text()}: not attached; attached: {_describe(list_devices(factory=factory))}")
        self.model = found[0].model
        try:
            self._dev = factory.open(serial)
        except Exception as exc:  # SDKs raise their own exception types
            raise CameraError(f"camera {serial}{self._role_text()}: cannot open ({_first_line(exc)}); is another program using it?") from None
        self._chunks: tuple[str, ...] = ()

    def _role_text(self) -> str:
        return f" ({self.role.upper()})" if self.role else ""

    @property
    def name(self) -> str:
        """``<serial> (LL)`` for messages."""
        return f"{self.serial}{self._role_text()}"

    # -- features -------------------------------------------------------------------------------------

    def _node(self, name: str) -> Any:
        return self._dev.node(name)

    def has(self, name: str) -> bool:
        """Whether the camera implements feature ``name`` and it is available now."""
        node = self._node(name)
        try:
            return node is not None and self._dev.is_available(node)
        except Exception:  # a node whose availability cannot be evaluated is treated as absent
            return False

    def first_of(self, *names: str) -> str | None:
        """The first of ``names`` the camera has (names differ between the dart and the emulator)."""
        return next((n for n in names if self.has(n)), None)

    def symbolics(self, name: str) -> tuple[str, ...]:
        """The entries an enumeration feature accepts, () when the feature is absent."""
        return tuple(self._node(name).GetSymbolics()) if self.has(name) else ()

    def get(self, name: str) -> Any:
        """Read a feature's value."""
        self._check_present()
        if not self.has(name):
            raise UsageError(f"camera {self.name}: has no feature {name}")
        return self._node(name).Value

    def set(self, name: str, value: Any) -> None:
        """Write a feature, with a one-line error naming camera, feature and value when it is refused."""
        self._check_present()
        if not self.has(name):
            raise UsageError(f"camera {self.name}: has no feature {name} (cannot set it to {value!r})")
        node = self._node(name)
        allowed = self.symbolics(name) if hasattr(node, "GetSymbolics") else ()
        if allowed and value not in allowed:
            raise UsageError(f"camera {self.name}: {name}={value!r} not supported; choose one of {', '.join(allowed)}")
        try:
            node.Value = value
        except Exception as exc:
            raise UsageError(f"camera {self.name}: cannot set {name}={value!r} ({_first_line(exc)})") from None

    def execute(self, name: str) -> None:
        """Run a command feature (``UserSetLoad``, ``TimestampLatch``...), with a one-line error naming camera and command."""
        self._check_present()
        if not self.has(name):
            raise UsageError(f"camera {self.name}: has no command {name}")
        try:
            self._node(name).Execute()
        except Exception as exc:
            raise UsageError(f"camera {self.name}: {name} refused ({_first_line(exc)})") from None

    def limits(self) -> Limits:
        """Exposure and gain ranges as the camera reports them now."""
        exp = self._node(self._exposure_feature())
        gain = self._node(self._gain_feature())
        return Limits(exp.GetMin(), exp.GetMax(), gain.GetMin(), gain.GetMax())

    def _exposure_feature(self) -> str:
        name = self.first_of("ExposureTime", "ExposureTimeAbs")
        if name is None:
            raise UsageError(f"camera {self.name}: has no ExposureTime feature")
        return name

    def _gain_feature(self) -> str:
        name = self.first_of("Gain", "GainAbs")
        if name is None:
            raise UsageError(f"camera {self.name}: has no Gain feature (in dB)")
        return name

    def set_exposure_gain(self, exposure_us: float, gain_db: float) -> tuple[float, float]:
        """Apply exposure and gain (auto modes off) and return the values the camera actually holds."""
        for auto in ("ExposureAuto", "GainAuto"):
            if self.has(auto) and self.get(auto) != "Off":
                self.set(auto, "Off")
        self.set(self._exposure_feature(), float(exposure_us))
        self.set(self._gain_feature(), float(gain_db))
        return self.read_exposure_gain()

    def read_exposure_gain(self) -> tuple[float, float]:
        """(exposure_us, gain_db) as read back from the camera."""
        return float(self.get(self._exposure_feature())), float(self.get(self._gain_feature()))

    def temperature_c(self) -> float | None:
        """Sensor temperature in degrees Celsius (``DeviceTemperatureSelector`` Sensor where the camera has a
        selector), None when the camera does not report one."""
        try:
            if not self.has("DeviceTemperature"):
                return None
            if "Sensor" in self.symbolics("DeviceTemperatureSelector"):
                self.set("DeviceTemperatureSelector", "Sensor")
            return float(self.get("DeviceTemperature"))
        except (UsageError, CameraError):
            return None

    def temperature_status(self) -> str | None:
        """``BslTemperatureStatus`` (Ok, Critical: close to the allowed maximum, Error: above it), None when absent."""
        return str(self.get("BslTemperatureStatus")) if self.has("BslTemperatureStatus") else None

    def effective_exposure_us(self) -> float | None:
        """The exposure the sensor actually uses (``BslEffectiveExposureTime``), None when the camera does not say."""
        return float(self.get("BslEffectiveExposureTime")) if self.has("BslEffectiveExposureTime") else None

    def save_pfs(self, path: str | Path) -> Path:
        """Save every persistent feature to a ``.pfs`` file (atomically)."""
        with atomic_path(path) as tmp:
            self._dev.save_pfs(Path(tmp))
        return Path(path)

    def load_pfs(self, path: str | Path) -> None:
        """Load a ``.pfs`` file into the camera, validating every value."""
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"{p}: no such .pfs file (camera {self.name})")
        try:
            self._dev.load_pfs(p)
        except Exception as exc:
            raise UsageError(f"{p}: cannot load into camera {self.name} ({_first_line(exc)})") from None

    def configure_format(self, pixel_format: str, roi: tuple[int, int, int, int] | None, reverse_x: bool) -> FrameFormat:
        """Set ReverseX, then the pixel format, then the ROI (width, height, offset_x, offset_y); return the layout.

        ReverseX comes first: on Basler USB cameras the delivered Bayer phase follows the flip (no flip RG,
        ReverseX GR) and ``PixelFormat`` then offers only that phase, so a Bayer format is chosen among the
        offered ones at the wanted bit depth, and the phase recorded is the one delivered.
        """
        if reverse_x:
            self.set("ReverseX", True)
        elif self.has("ReverseX"):
            self.set("ReverseX", False)
        self.set("PixelFormat", self._pixel_format_name(pixel_format))
        if roi is not None:
            width, height, ox, oy = roi
            # Offsets first to 0 so any width/height within the sensor is accepted, then the final offsets.
            self.set("OffsetX", 0)
            self.set("OffsetY", 0)
            self._set_int_checked("Width", width)
            self._set_int_checked("Height", height)
            self._set_int_checked("OffsetX", ox)
            self._set_int_checked("OffsetY", oy)
        actual = str(self.get("PixelFormat"))
        pattern, depth, channels = pixel_format_info(actual)
        black = float(self.get("BlackLevel")) if self.has("BlackLevel") else 0.0
        return FrameFormat(
            pixel_format=actual,
            bayer_pattern=pattern,
            bit_depth=depth,
            channels=channels,
            width=int(self.get("Width")),
            height=int(self.get("Height")),
            black_level=black,
            mirrored_x=bool(reverse_x),
            packed=is_packed(actual),
        )

    def _pixel_format_name(self, wanted: str) -> str:
        allowed = self.symbolics("PixelFormat")
        if wanted in allowed:
            return wanted
        if f"{wanted}Packed" in allowed:  # RGB8 on the dart is RGB8Packed on the emulator
            return f"{wanted}Packed"
        if m := _BAYER.match(wanted):
            # The flip decides the phase; keep the wanted bit depth (and packing).
            same_depth = [f for f in allowed if (b := _BAYER.match(f)) and b.group(2) == m.group(2)]
            if len(same_depth) == 1:
                return same_depth[0]
        raise UsageError(f"camera {self.name}: pixel format {wanted} not supported; choose one of {', '.join(allowed)}")

    def _set_int_checked(self, name: str, value: int) -> None:
        node = self._node(name)
        lo, hi, inc = node.GetMin(), node.GetMax(), node.GetInc()
        if not lo <= value <= hi or (value - lo) % inc:
            raise UsageError(f"camera {self.name}: {name}={value} out of range {lo}..{hi} (step {inc})")
        self.set(name, int(value))

    def configure_link(self, limit_bytes_per_s: int | None) -> float | None:
        """Set the USB link limit when given (``DeviceLinkThroughputLimitMode`` On); return the limit in force
        (B/s), None when the camera has none or it is off."""
        if not self.has("DeviceLinkThroughputLimitMode"):
            return None
        if limit_bytes_per_s is not None:
            self.set("DeviceLinkThroughputLimitMode", "On")
            self._set_int_checked("DeviceLinkThroughputLimit", int(limit_bytes_per_s))
        if str(self.get("DeviceLinkThroughputLimitMode")) != "On":
            return None
        return float(self.get("DeviceLinkThroughputLimit"))

    def resulting_frame_rate(self) -> float | None:
        """The frame rate the camera says it can deliver with its present settings, None when it does not say."""
        name = self.first_of("ResultingFrameRate", "BslResultingAcquisitionFrameRate", "ResultingFrameRateAbs")
        return float(self.get(name)) if name is not None else None

    def enable_chunks(self) -> tuple[str, ...]:
        """Ask for per-frame chunk data when the camera can send it; return the chunks enabled.

        FrameID, Timestamp, ExposureTime and Gain are recorded with every frame; CounterValue and LineStatusAll
        prove the trigger wiring (``sync-check``). The emulator has ``ChunkModeActive`` but throws on
        StartGrabbing when it is on, so chunks are used only when a ``ChunkSelector`` exists too.
        """
        self._chunks = ()
        if not (self.has("ChunkModeActive") and self.has("ChunkSelector")):
            return ()
        self.set("ChunkModeActive", True)
        offered = self.symbolics("ChunkSelector")
        chunks = tuple(c for c in CHUNKS if c in offered)
        for selector in chunks:
            self.set("ChunkSelector", selector)
            self.set("ChunkEnable", True)
        self._chunks = chunks
        return chunks

    # -- acquisition ----------------------------------------------------------------------------------

    def start(self, buffers: int = 16) -> None:
        """Start grabbing one by one (no result is ever silently replaced) with ``buffers`` grab buffers."""
        self._check_present()
        try:
            self._dev.start_grabbing(buffers)
        except Exception as exc:
            self._raise_runtime(exc, "start grabbing")

    def stop(self) -> None:
        """Stop grabbing; safe to call when not grabbing or after removal."""
        try:
            self._dev.stop_grabbing()
        except Exception:  # a removed camera cannot stop; nothing is left to release
            pass

    @property
    def is_grabbing(self) -> bool:
        return bool(self._dev.is_grabbing())

    def wait_ready(self, timeout_ms: float) -> bool:
        """Wait until the camera accepts a frame trigger."""
        self._check_present()
        try:
            return bool(self._dev.wait_ready(timeout_ms))
        except Exception as exc:
            self._raise_runtime(exc, "wait for trigger-ready")

    def trigger(self) -> None:
        """Issue a software frame trigger."""
        self._check_present()
        try:
            self._node("TriggerSoftware").Execute()
        except Exception as exc:
            self._raise_runtime(exc, "software trigger")

    def try_retrieve(self, timeout_ms: float) -> Frame | None:
        """The next grab result, or None when none arrives within ``timeout_ms``."""
        self._check_present()
        try:
            frame = self._dev.retrieve(timeout_ms, self._chunks)
        except Exception as exc:
            self._raise_runtime(exc, "retrieve a frame")
        if frame is not None and "Timestamp" in frame.chunks:
            frame.timestamp_ns = int(frame.chunks["Timestamp"])  # the chunk is stamped by the camera with the frame
        return frame

    def force_failed_buffers(self, count: int = 1) -> None:
        """Emulator only: make the next ``count`` grabs fail (for testing drop handling)."""
        self.set("ForceFailedBufferCount", int(count))
        self._node("ForceFailedBuffer").Execute()

    def emulate_removal(self) -> None:
        """Emulator only: make pylon report this camera removed, as an unplugged cable would."""
        self._node("FirePnPCallback").Execute()

    def close(self) -> None:
        """Stop, close and release the device."""
        self.stop()
        try:
            self._dev.close()
        except Exception:  # already gone (removed); nothing left to release
            pass

    def _check_present(self) -> None:
        if self._dev.removed:
            raise CameraRemovedError(f"camera {self.name}: removed (unplugged or powered off)")

    def _raise_runtime(self, exc: Exception, what: str) -> None:
        if self._dev.removed or "removed" in str(exc):
            raise CameraRemovedError(f"camera {self.name}: removed (unplugged or powered off) during {what}") from None
        raise CameraError(f"camera {self.name}: cannot {what} ({_first_line(exc)})") from None

    def __enter__(self) -> "Camera":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].split(" : ")[0] if text else type(exc).__name__


class Rig:
    """The two cameras of the rig, opened and formatted as the config says.

    Args:
        config: the rig config (``rig.config.RigConfig``).
        emulated: open pylon CamEmu devices.
        factory: where devices come from (default: ``rig.factory.factory_for(emulated)``).
    """

    def __init__(self, config: Any, *, emulated: bool = False, factory: DeviceFactory | None = None) -> None:
        self.config = config
        self.emulated = emulated
        self.ll = Camera(config.ll.serial, role="ll", emulated=emulated, factory=factory)
        try:
            self.wl = Camera(config.wl.serial, role="wl", emulated=emulated, factory=factory)
        except BaseException:
            self.ll.close()
            raise
        self.formats: dict[str, FrameFormat] = {}
        self.chunks: dict[str, tuple[str, ...]] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.link_limits: dict[str, float | None] = {}

    @property
    def cameras(self) -> dict[str, Camera]:
        return {"ll": self.ll, "wl": self.wl}

    def configure(self) -> dict[str, FrameFormat]:
        """Load each camera's user set and .pfs (when given), set every pixel-changing feature, then apply pixel
        format, ROI and mirroring. The pixel state read back is kept in :attr:`states` (recorded with each step)."""
        roi = self.config.roi.as_tuple() if self.config.roi is not None else None
        for role, cam in self.cameras.items():
            cam_cfg = self.config.camera(role)
            cam.stop()
            loaded = load_user_set(cam, cam_cfg.user_set)
            if cam_cfg.pfs is not None:
                cam.load_pfs(cam_cfg.pfs)
            apply_pixel_state(cam, self.config.pixel)
            fmt = cam.configure_format(self.config.pixel_format, roi, cam_cfg.reverse_x)
            self.link_limits[role] = cam.configure_link(self.config.link_limit_bytes_per_s)
            self.states[role] = {"UserSetLoad": loaded, "pfs": str(cam_cfg.pfs or ""), **read_pixel_state(cam)}
            if self.emulated and self.config.feed_black_level_dn is not None:
                fmt = replace(fmt, black_level=float(self.config.feed_black_level_dn))
            self.formats[role] = fmt
            self.chunks[role] = cam.enable_chunks()
        if self.formats["ll"].shape != self.formats["wl"].shape:
            raise UsageError(f"LL frames {self.formats['ll'].shape} and WL frames {self.formats['wl'].shape} differ; set the same roi for both")
        return self.formats

    def limits(self) -> dict[str, Limits]:
        return {role: cam.limits() for role, cam in self.cameras.items()}

    def stop(self) -> None:
        for cam in self.cameras.values():
            cam.stop()

    def close(self) -> None:
        for cam in self.cameras.values():
            cam.close()

    def __enter__(self) -> "Rig":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
