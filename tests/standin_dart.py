"""A stand-in Basler daA1920-160uc ("dart") for tests: a node map and a grab loop, no pylon.

This is the one model in the rig tests, because physical cameras cannot exist here. It models the real camera
from the shared data in ``tests/data/basler-dart/`` (copied from ``../shared/data/basler-dart/``):

- the node map holds exactly the nodes ``daA1920-160uc_features.txt`` lists, with their interface types, and
  each enumeration offers exactly the entries listed there (minus the Bayer phases the flip rules out, below);
- the power-on state is the ``Default`` user set, after which the state a camera "in the field" carries is
  loaded from ``daA1920-160uc_settings.pfs`` (BalanceWhiteAuto Continuous, BslLightSourcePreset Daylight6500K,
  DeviceLinkThroughputLimitMode On at 160,000,000 B/s, BlackLevel 0, Gamma 1, OffsetX/Y 8, ...). The factory
  Default set's own values are not in the shared data, so the model's Default set holds the settings file's
  values too;
- settings persist across close/open (they live in the :class:`DartBus`, as in the camera) until a user set is
  loaded (``UserSetLoad``) or the camera is power-cycled (then its ``UserSetDefault`` set is loaded);
- ReverseX/ReverseY flip the delivered image and so its Bayer phase (no flip RG, X GR, Y GB, both BG, as Basler
  documents for USB cameras): ``PixelFormat`` offers only the phase that matches, and its value follows a flip;
- the frame rate is capped by the sensor readout, the exposure and the link limit (``DeviceLinkThroughputLimit``
  when ``DeviceLinkThroughputLimitMode`` is On) and reported in ``ResultingFrameRate``; frames beyond
  ``MaxNumBuffer`` undelivered buffers are lost (the block ID still counts them);
- chunks (FrameID, Timestamp, ExposureTime, Gain, CounterValue, LineStatusAll) when ``ChunkModeActive``, camera
  timestamps in ns from a per-camera clock, ``BslEffectiveExposureTime`` quantised to whole sensor rows,
  ``DeviceTemperature`` per ``DeviceTemperatureSelector`` and ``BslTemperatureStatus`` (Ok, Critical, Error);
- GPIO: a :meth:`DartBus.wire` connects a master's output line to a slave's input line. The master drives it
  with its ``LineSource`` (ExposureActive: high while exposing; UserOutput1-4: the ``UserOutputValue`` the host
  sets, so it never toggles by itself), ``LineInverter`` inverts it; the slave triggers on the edges its
  ``TriggerActivation`` selects and can count them (``CounterEventSource`` LineN).

Pixels: a scene callable gives linear radiance per colour (DN per us at 0 dB) for the ROI in sensor coordinates;
the sensor's colour filter is RGGB at sensor (0, 0); raw = radiance x effective exposure x gain x balance ratio of
the pixel's colour, + BlackLevel, << DigitalShift, Gamma, clipped to 12 bits (8-bit formats keep the top 8).
BalanceWhiteAuto Continuous re-balances the ratios to the grey world of every frame. BslColorSpace,
BslLightSourcePreset, noise reduction and sharpness are kept as state only (no pixel model).

Assumed (not in the shared data, stated so a reader can tell): ExposureTime 19..10,000,000 us, Gain 0..48 dB
(DOMAIN.md: documented range), sensor row time 1e6 / (164 x 1200) us (164 fps at 1200 rows, DOMAIN.md), link
maximum 360 MB/s with the limit off, Width/OffsetX increments 4, Height/OffsetY increments 2, BlackLevel 0..255,
temperatures 45 C (Sensor) and 52 C (FpgaCore). No USB protocol overhead is modelled.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exlpose_data.packed12 import pack_12p
from rig.device import DeviceSummary, Frame

__all__ = ["DATA", "SERIALS", "DartBus", "rig_config", "StandInDart", "StandInDevice", "StandInError", "uniform_scene"]

DATA = Path(__file__).parent / "data" / "basler-dart"
FEATURES = DATA / "daA1920-160uc_features.txt"
SETTINGS = DATA / "daA1920-160uc_settings.pfs"
MODEL = "daA1920-160uc"
DEVICE_CLASS = "BaslerUsb"

# Serials of the two stand-in darts: the real camera's (features file) for LL, the next for WL.
SERIALS = ("40535833", "40535834")

SENSOR_W, SENSOR_H = 1936, 1216
ROW_TIME_US = 1e6 / (164 * 1200)
LINK_MAX_BPS = 360_000_000
EXPOSURE_RANGE_US = (19.0, 10_000_000.0)
GAIN_RANGE_DB = (0.0, 48.0)

# Features whose value depends on a selector (GenICam selectors), as the settings file saves them.
SELECTED_BY = {
    **dict.fromkeys(("TriggerMode", "TriggerSource", "TriggerActivation", "TriggerDelay"), "TriggerSelector"),
    **dict.fromkeys(
        ("LineMode", "LineSource", "LineInverter", "LineStatus", "LineFormat", "BslLineConnection", "BslInputFilterTime", "BslInputHoldOffTime"),
        "LineSelector",
    ),
    "BalanceRatio": "BalanceRatioSelector",
    "ChunkEnable": "ChunkSelector",
    "UserOutputValue": "UserOutputSelector",
    "DeviceTemperature": "DeviceTemperatureSelector",
    **dict.fromkeys(
        ("CounterEventSource", "CounterEventActivation", "CounterResetSource", "CounterResetActivation", "CounterTriggerSource",
         "CounterTriggerActivation", "CounterValue", "CounterDuration", "CounterStatus"),
        "CounterSelector",
    ),
    **dict.fromkeys(("TimerTriggerSource", "TimerTriggerActivation", "TimerDelay", "TimerDuration", "TimerTriggerArmDelay", "TimerStatus"), "TimerSelector"),
    "EventNotification": "EventSelector",
    "UserDefinedValue": "UserDefinedValueSelector",
    **dict.fromkeys(
        ("AutoFunctionROIWidth", "AutoFunctionROIHeight", "AutoFunctionROIOffsetX", "AutoFunctionROIOffsetY", "AutoFunctionROIUseBrightness",
         "AutoFunctionROIUseWhiteBalance", "AutoFunctionROIHighlight"),
        "AutoFunctionROISelector",
    ),
    "BslLightSourcePresetFeatureEnable": "BslLightSourcePresetFeatureSelector",
    "Gain": "GainSelector",
    "BlackLevel": "BlackLevelSelector",
}
# Changing these while grabbing is refused, as on the camera (they change the payload or the stream).
LOCKED_WHILE_GRABBING = {"Width", "Height", "PixelFormat", "ReverseX", "ReverseY", "ChunkModeActive", "ChunkEnable", "UserSetLoad",
                         "DeviceLinkThroughputLimitMode", "DeviceLinkThroughputLimit"}
# Computed, read-only values.
READ_ONLY = {"SensorWidth", "SensorHeight", "WidthMax", "HeightMax", "ResultingFrameRate", "BslResultingAcquisitionFrameRate",
             "BslResultingTransferFrameRate", "BslEffectiveExposureTime", "PayloadSize", "DeviceTemperature", "BslTemperatureStatus",
             "SensorReadoutTime", "DeviceModelName", "DeviceVendorName", "DeviceSerialNumber", "LineStatusAll", "LineStatus",
             "CounterValue", "TimestampLatchValue", "BslDeviceLinkCurrentThroughput"}
RANGES: dict[str, tuple[float, float, float]] = {
    "ExposureTime": (*EXPOSURE_RANGE_US, 1.0),
    "Gain": (*GAIN_RANGE_DB, 0.0),
    "BlackLevel": (0.0, 255.0, 0.0),
    "Gamma": (0.0, 4.0, 0.0),
    "DigitalShift": (0, 4, 1),
    "BalanceRatio": (0.0, 15.98, 0.0),
    "AcquisitionFrameRate": (0.1, 1000.0, 0.0),
    "DeviceLinkThroughputLimit": (1_000_000, LINK_MAX_BPS, 1),
    "TriggerDelay": (0.0, 1_000_000.0, 0.0),
    "OffsetX": (0, SENSOR_W, 4),
    "OffsetY": (0, SENSOR_H, 2),
    "UserOutputValueAll": (0, 15, 1),
}


class StandInError(RuntimeError):
    """What the camera refuses (pylon raises its own exception types with such messages)."""


def read_feature_list(path: Path = FEATURES) -> tuple[dict[str, int], dict[str, tuple[str, ...]]]:
    """Node name -> interface type, and enumeration -> entries, from a pypylon feature listing."""
    types: dict[str, int] = {}
    entries: dict[str, list[str]] = {}
    pattern = re.compile(r"^- (\S+) \((\d+)\)")
    for line in path.read_text().splitlines():
        if m := pattern.match(line):
            types[m.group(1)] = int(m.group(2))
    enums = sorted((n for n, t in types.items() if t == 9), key=len, reverse=True)
    for name, kind in types.items():
        if kind == 10 and name.startswith("EnumEntry_"):
            rest = name[len("EnumEntry_"):]
            owner = next(e for e in enums if rest.startswith(e + "_"))
            entries.setdefault(owner, []).append(rest[len(owner) + 1:])
    return {n: t for n, t in types.items() if t != 10}, {k: tuple(v) for k, v in entries.items()}


def read_pfs(path: Path) -> list[tuple[str, str]]:
    """(feature, value) lines of a GenApi persistence file, in order (comments dropped)."""
    lines = []
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("\t")
            lines.append((name.strip(), value.strip()))
    return lines


def uniform_scene(rgb: tuple[float, float, float] = (0.2, 0.3, 0.25)) -> Callable[[float, int, int, int, int], np.ndarray]:
    """A flat scene of linear radiance ``rgb`` (DN per us at 0 dB)."""

    def scene(t_s: float, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        return np.broadcast_to(np.asarray(rgb, np.float64), (h, w, 3))

    return scene


# -- the node map ---------------------------------------------------------------------------------------------


class _Node:
    def __init__(self, dart: "StandInDart", name: str, kind: int) -> None:
        self._dart, self.name, self.kind = dart, name, kind

    @property
    def Value(self) -> Any:  # noqa: N802 (GenApi's name)
        return self._dart.get(self.name)

    @Value.setter
    def Value(self, value: Any) -> None:  # noqa: N802
        self._dart.set(self.name, value)


class _EnumNode(_Node):
    def GetSymbolics(self) -> tuple[str, ...]:  # noqa: N802
        return self._dart.symbolics(self.name)


class _NumberNode(_Node):
    def GetMin(self) -> float:  # noqa: N802
        return self._dart.range(self.name)[0]

    def GetMax(self) -> float:  # noqa: N802
        return self._dart.range(self.name)[1]

    def GetInc(self) -> float:  # noqa: N802
        return self._dart.range(self.name)[2]


class _CommandNode(_Node):
    def Execute(self) -> None:  # noqa: N802
        self._dart.execute(self.name)


_NODE_CLASSES = {2: _NumberNode, 5: _NumberNode, 9: _EnumNode, 4: _CommandNode}


class StandInDart:
    """One camera: node map state that persists for as long as the camera is powered (lives in the bus)."""

    TYPES, ENTRIES = read_feature_list()

    def __init__(self, bus: "DartBus", serial: str, field_settings: Path | None = None, clock_offset_ns: int = 0) -> None:
        self.bus = bus
        self.serial = serial
        self.clock_offset_ns = clock_offset_ns
        self.values: dict[tuple[str, str | None], Any] = {}
        self.temperatures_c = {"Sensor": 45.0, "FpgaCore": 52.0}
        self.temperature_status = "Ok"
        self.grabbing = False
        self.removed = False
        self.max_num_buffer: int | None = None
        # Edges of its trigger line this camera does not see (a disturbed wire), numbered from 0 since grabbing
        # started: the fault that hardware-trigger pairing must detect.
        self.lost_edges: set[int] = set()
        self.lock = threading.RLock()
        self.scene: Callable[[float, int, int, int, int], np.ndarray] = uniform_scene()
        self._factory_state()
        self.load_pfs(SETTINGS)
        # Until saved over, every user set holds the factory settings.
        self.user_sets = {name: dict(self.values) for name in self.ENTRIES["UserSetSelector"]}
        if field_settings is not None:
            self.load_pfs(field_settings)
        self._reset_stream()

    # -- state ----------------------------------------------------------------------------------------------

    def _factory_state(self) -> None:
        self.values.clear()
        for name, kind in self.TYPES.items():
            if kind in (2, 3, 5, 6, 9) and name not in SELECTED_BY:
                self.values[(name, None)] = {2: 0, 3: False, 5: 0.0, 6: "", 9: (self.ENTRIES.get(name) or ("",))[0]}[kind]
        for name, selector in SELECTED_BY.items():
            kind = self.TYPES[name]
            for sel in self.ENTRIES[selector]:
                self.values[(name, sel)] = {2: 0, 3: False, 5: 0.0, 9: (self.ENTRIES.get(name) or ("",))[0]}[kind]
        base = {
            "Width": 1920, "Height": 1200, "PixelFormat": "BayerRG8", "ExposureTime": 15000.0, "AcquisitionFrameRate": 60.0,
            "DeviceModelName": MODEL, "DeviceVendorName": "Basler", "DeviceSerialNumber": self.serial, "UserSetSelector": "Default",
            "UserSetDefault": "Default", "DeviceTemperatureSelector": "Sensor", "Gamma": 1.0,
        }
        for name, value in base.items():
            self.values[(name, None)] = value
        for sel in self.ENTRIES["BalanceRatioSelector"]:
            self.values[("BalanceRatio", sel)] = 1.0
        for sel in self.ENTRIES["TriggerSelector"]:
            self.values[("TriggerSource", sel)] = "Software"

    def _key(self, name: str) -> tuple[str, str | None]:
        selector = SELECTED_BY.get(name)
        return (name, None if selector is None else self.values[(selector, None)])

    def get(self, name: str) -> Any:
        with self.lock:
            self._check_node(name)
            computed = self._computed(name)
            if computed is not None:
                return computed
            return self.values[self._key(name)]

    def set(self, name: str, value: Any) -> None:
        with self.lock:
            self._check_node(name)
            if name in READ_ONLY:
                raise StandInError(f"Node is not writable. : AccessException thrown in node '{name}'")
            if self.grabbing and name in LOCKED_WHILE_GRABBING:
                raise StandInError(f"Node is not writable (locked while grabbing). : AccessException thrown in node '{name}'")
            kind = self.TYPES[name]
            if kind == 9:
                value = str(value)
                if value not in self.symbolics(name):
                    raise StandInError(f"Value '{value}' is not an available entry of {name} : OutOfRangeException")
            elif kind in (2, 5):
                value = int(value) if kind == 2 else float(value)
                lo, hi, inc = self.range(name)
                if not lo <= value <= hi or (kind == 2 and inc and (value - lo) % inc):
                    raise StandInError(f"Value = {value} must be within {lo}..{hi} (increment {inc}) : OutOfRangeException thrown in node '{name}'")
            elif kind == 3:
                value = bool(int(value)) if isinstance(value, str) else bool(value)
            elif kind != 6:
                raise StandInError(f"{name} has no value : LogicalErrorException")
            self._apply(name, value)

    def _apply(self, name: str, value: Any) -> None:
        if name in ("ReverseX", "ReverseY"):
            self.values[(name, None)] = value
            fmt = self.values[("PixelFormat", None)]
            if m := re.match(r"^Bayer(RG|GR|GB|BG)(\d+p?)$", fmt):
                # The delivered phase follows the flip; the bit depth stays.
                self.values[("PixelFormat", None)] = f"Bayer{self.bayer_phase()}{m.group(2)}"
            return
        if name == "UserOutputValue" and value and not self.values[self._key(name)]:
            self.bus.output_rises(self, int(self.values[("UserOutputSelector", None)][-1]))
        if name in ("Width", "OffsetX") or name in ("Height", "OffsetY"):
            self._check_roi(name, value)
        self.values[self._key(name)] = value

    def _check_roi(self, name: str, value: int) -> None:
        size, offset, sensor = ("Width", "OffsetX", SENSOR_W) if name in ("Width", "OffsetX") else ("Height", "OffsetY", SENSOR_H)
        w = value if name == size else self.values[(size, None)]
        o = value if name == offset else self.values[(offset, None)]
        if w + o > sensor:
            raise StandInError(f"Value = {value} must be within the sensor ({size} + {offset} <= {sensor}) : OutOfRangeException thrown in node '{name}'")

    def _check_node(self, name: str) -> None:
        if self.removed:
            raise StandInError("Device has been removed from the PC")
        if name not in self.TYPES:
            raise StandInError(f"Node not existing : {name}")

    def bayer_phase(self) -> str:
        """The Bayer phase of the delivered image: the sensor's RG, moved by ReverseX / ReverseY."""
        x, y = bool(self.values[("ReverseX", None)]), bool(self.values[("ReverseY", None)])
        return {(False, False): "RG", (True, False): "GR", (False, True): "GB", (True, True): "BG"}[(x, y)]

    def symbolics(self, name: str) -> tuple[str, ...]:
        entries = self.ENTRIES.get(name, ())
        if name == "PixelFormat":
            phase = self.bayer_phase()
            entries = tuple(e for e in entries if not e.startswith("Bayer") or e.startswith(f"Bayer{phase}"))
        return entries

    def range(self, name: str) -> tuple[float, float, float]:
        if name == "Width":
            return (16, SENSOR_W - self.values[("OffsetX", None)], 4)
        if name == "Height":
            return (16, SENSOR_H - self.values[("OffsetY", None)], 2)
        if name in RANGES:
            return RANGES[name]
        # Ranges the shared data does not give: wide enough for every value the settings file holds.
        return (0, 2**32 - 1, 1) if self.TYPES[name] == 2 else (-1e9, 1e9, 0.0)

    def available(self, name: str) -> bool:
        if name == "LineFormat":
            return False  # which electrical format each line has is not in the shared data
        return self.TYPES.get(name) in (2, 3, 4, 5, 6, 9)

    # -- computed values ----------------------------------------------------------------------------------

    def bytes_per_pixel(self) -> float:
        fmt = self.values[("PixelFormat", None)]
        if fmt.endswith("12p"):
            return 1.5
        if fmt.endswith("12"):
            return 2.0
        if fmt in ("RGB8", "BGR8"):
            return 3.0
        if fmt == "YCbCr422_8":
            return 2.0
        return 1.0

    def payload_bytes(self) -> int:
        w, h = self.values[("Width", None)], self.values[("Height", None)]
        return int(w * h * self.bytes_per_pixel())

    def link_bps(self) -> float:
        on = self.values[("DeviceLinkThroughputLimitMode", None)] == "On"
        return float(self.values[("DeviceLinkThroughputLimit", None)]) if on else float(LINK_MAX_BPS)

    def effective_exposure_us(self) -> float:
        # The sensor exposes whole rows (assumed quantisation; the camera reports the result, the model follows it).
        return max(1, round(self.values[("ExposureTime", None)] / ROW_TIME_US)) * ROW_TIME_US

    def readout_us(self) -> float:
        return self.values[("Height", None)] * ROW_TIME_US

    def resulting_rates(self) -> dict[str, float]:
        """Acquisition (sensor, exposure, AcquisitionFrameRate), transfer (link) and resulting frame rates."""
        period_us = max(self.readout_us(), self.effective_exposure_us())
        acq = 1e6 / period_us
        if self.values[("AcquisitionFrameRateEnable", None)]:
            acq = min(acq, float(self.values[("AcquisitionFrameRate", None)]))
        transfer = self.link_bps() / self.payload_bytes()
        return {"acquisition": acq, "transfer": transfer, "resulting": min(acq, transfer)}

    def _computed(self, name: str) -> Any:
        if name == "ResultingFrameRate":
            return self.resulting_rates()["resulting"]
        if name == "BslResultingAcquisitionFrameRate":
            return self.resulting_rates()["acquisition"]
        if name == "BslResultingTransferFrameRate":
            return self.resulting_rates()["transfer"]
        if name == "BslEffectiveExposureTime":
            return self.effective_exposure_us()
        if name == "SensorReadoutTime":
            return self.readout_us()
        if name == "PayloadSize":
            return self.payload_bytes()
        if name in ("SensorWidth", "WidthMax"):
            return SENSOR_W if name == "SensorWidth" else SENSOR_W - self.values[("OffsetX", None)]
        if name in ("SensorHeight", "HeightMax"):
            return SENSOR_H if name == "SensorHeight" else SENSOR_H - self.values[("OffsetY", None)]
        if name == "DeviceTemperature":
            return self.temperatures_c[self.values[("DeviceTemperatureSelector", None)]]
        if name == "BslTemperatureStatus":
            return self.temperature_status
        if name == "TimestampLatchValue":
            return self.values.get(("TimestampLatchValue", None), 0)
        if name == "CounterValue":
            return self.bus.counter_value(self, self.values[("CounterSelector", None)])
        return None

    def clock_ns(self, host_s: float) -> int:
        """The camera's timestamp clock at host monotonic time ``host_s``."""
        return int(round((host_s - self.bus.epoch_s) * 1e9)) + self.clock_offset_ns

    # -- commands ------------------------------------------------------------------------------------------

    def execute(self, name: str) -> None:
        with self.lock:
            self._check_node(name)
            if self.grabbing and name in LOCKED_WHILE_GRABBING:
                raise StandInError(f"Node is not writable (locked while grabbing). : AccessException thrown in node '{name}'")
            if name == "UserSetLoad":
                self._load_user_set(self.values[("UserSetSelector", None)])
            elif name == "UserSetSave":
                chosen = self.values[("UserSetSelector", None)]
                if chosen == "Default":
                    raise StandInError("the Default user set is read-only : AccessException thrown in node 'UserSetSave'")
                self.user_sets[chosen] = dict(self.values)
            elif name == "TriggerSoftware":
                self.bus.software_trigger(self)
            elif name == "TimestampLatch":
                self.values[("TimestampLatchValue", None)] = self.clock_ns(time.monotonic())
            elif name == "CounterReset":
                self.bus.reset_counter(self, self.values[("CounterSelector", None)])
            elif name in ("AcquisitionStart", "AcquisitionStop", "AcquisitionAbort"):
                pass  # the InstantCamera issues these at StartGrabbing/StopGrabbing; the device object handles the stream
            else:
                raise StandInError(f"command {name} is not modelled by the stand-in")

    def _load_user_set(self, name: str) -> None:
        # The user set selector and the startup set live outside the user sets, in the camera's own memory.
        keep = {key: self.values[key] for key in (("UserSetSelector", None), ("UserSetDefault", None))}
        self.values = {**self.user_sets[name], **keep}

    def power_cycle(self) -> None:
        """Power off and on: the ``UserSetDefault`` set is loaded, as at every power-up."""
        with self.lock:
            self._load_user_set(self.values[("UserSetDefault", None)])
            self.grabbing = False

    # -- persistence ---------------------------------------------------------------------------------------

    def load_pfs(self, path: Path) -> None:
        """Apply a GenApi persistence file line by line (selectors first select, then features are set)."""
        for i, (name, value) in enumerate(read_pfs(path), 1):
            if name not in self.TYPES:
                raise StandInError(f"{path}:{i}: node {name} does not exist on a {MODEL}")
            if name in READ_ONLY:
                continue
            self.set(name, value)

    def save_pfs(self, path: Path) -> None:
        """Write every persisted feature in the order the camera's own settings file uses."""
        lines = ["# {05D8C294-F295-4dfb-9D01-096BD04049F4}", "# GenApi persistence file (version 3.1.0)",
                 f"# Device = Basler::du1_imx392c -- stand-in {MODEL} {self.serial}"]
        selectors = set(SELECTED_BY.values())
        current = {s: self.values[(s, None)] for s in selectors}
        for name, template_value in read_pfs(SETTINGS):
            if name in selectors:
                # The template switches selectors before each selected value; so does the copy, so a load
                # sets every selected value where it belongs.
                current[name] = template_value
                lines.append(f"{name}\t{template_value}")
                continue
            selector = SELECTED_BY.get(name)
            value = self.values[(name, current[selector] if selector else None)]
            lines.append(f"{name}\t{int(value) if isinstance(value, bool) else value}")
        lines += [f"{s}\t{self.values[(s, None)]}" for s in sorted(selectors) if s in {n for n, _ in read_pfs(SETTINGS)}]
        Path(path).write_text("\n".join(lines) + "\n")

    # -- the stream ----------------------------------------------------------------------------------------

    def _reset_stream(self) -> None:
        self.lost = 0

    def min_period_s(self) -> float:
        return 1.0 / self.resulting_rates()["resulting"]

    def trigger_source(self) -> str | None:
        """The frame-start trigger source, None when free-running."""
        if self.values[("TriggerMode", "FrameStart")] != "On":
            return None
        return self.values[("TriggerSource", "FrameStart")]


@dataclass
class _Wire:
    master: StandInDart
    master_line: int
    slave: StandInDart
    slave_line: int


class DartBus:
    """The USB bus and the GPIO wiring of stand-in darts; cameras live here between opens (their state persists).

    Also the device factory of the camera layer (``rig.device.DeviceFactory``): pass it to ``rig.factory.use_factory``.
    """

    def __init__(self, serials: tuple[str, ...] = SERIALS, *, field_settings: Path | None = None) -> None:
        self.epoch_s = time.monotonic()
        self.darts = {s: StandInDart(self, s, field_settings, clock_offset_ns=7_000_000_000 * (i + 1)) for i, s in enumerate(serials)}
        self.wires: list[_Wire] = []
        self.opened: dict[str, StandInDevice] = {}
        self._edges: dict[tuple[str, int], list[float]] = {}
        self._counter_reset_s: dict[tuple[str, str], float] = {}

    # -- the factory -----------------------------------------------------------------------------------------

    def enumerate(self, serial: str | None = None) -> list[DeviceSummary]:
        return [DeviceSummary(s, MODEL, DEVICE_CLASS) for s, d in self.darts.items() if not d.removed and serial in (None, s)]

    def open(self, serial: str) -> "StandInDevice":
        if serial in self.opened:
            raise StandInError(f"The device is controlled by another application. Err: An attempt was made to access an address location which is currently/momentary not accessible. : {serial}")
        dev = StandInDevice(self, self.darts[serial])
        self.opened[serial] = dev
        return dev

    # -- wiring ----------------------------------------------------------------------------------------------

    def wire(self, master: str, master_line: str, slave: str, slave_line: str) -> None:
        """Connect ``master``'s GPIO ``master_line`` to ``slave``'s ``slave_line`` (e.g. ``Line2`` -> ``Line1``)."""
        self.wires.append(_Wire(self.darts[master], int(master_line[-1]), self.darts[slave], int(slave_line[-1])))

    def output_rises(self, dart: StandInDart, user_output: int) -> None:
        """The host set UserOutputN high: lines driven by it rise now."""
        now = time.monotonic()
        for line in range(1, 5):
            if dart.values[("LineMode", f"Line{line}")] == "Output" and dart.values[("LineSource", f"Line{line}")] == f"UserOutput{user_output}":
                self._edges.setdefault((dart.serial, line), []).append(now)

    def _line_rises(self, dart: StandInDart, line: int, until_s: float) -> list[float]:
        """Rising edges of ``dart``'s output ``line`` up to ``until_s`` (host monotonic)."""
        sel = f"Line{line}"
        if dart.values[("LineMode", sel)] != "Output":
            return []
        source = dart.values[("LineSource", sel)]
        inverted = bool(dart.values[("LineInverter", sel)])
        if source == "ExposureActive":
            dev = self.opened.get(dart.serial)
            starts = dev.exposure_starts(until_s) if dev is not None else []
            exposure_s = dart.effective_exposure_us() / 1e6
            # Inverted, the line rises when an exposure ends.
            return [s + exposure_s for s in starts if s + exposure_s <= until_s] if inverted else starts
        if source.startswith("UserOutput"):
            return [t for t in self._edges.get((dart.serial, line), []) if t <= until_s] if not inverted else []
        return []

    def input_edges(self, dart: StandInDart, line: int, until_s: float) -> list[float]:
        """Edges reaching ``dart``'s input ``line`` that its trigger activation reacts to."""
        sel = f"Line{line}"
        if dart.values[("LineMode", sel)] != "Input":
            return []
        edges: list[float] = []
        for w in self.wires:
            if w.slave is dart and w.slave_line == line:
                edges += self._line_rises(w.master, w.master_line, until_s)
        return sorted(edges)

    def software_trigger(self, dart: StandInDart) -> None:
        dev = self.opened.get(dart.serial)
        if dev is not None:
            dev.software_trigger()

    def counter_value(self, dart: StandInDart, counter: str) -> int:
        source = dart.values[("CounterEventSource", counter)]
        since = self._counter_reset_s.get((dart.serial, counter), -math.inf)
        now = time.monotonic()
        if source.startswith("Line"):
            return sum(1 for t in self.input_edges(dart, int(source[-1]), now) if t >= since)
        if source == "ExposureStart":
            dev = self.opened.get(dart.serial)
            return sum(1 for t in (dev.exposure_starts(now) if dev else []) if t >= since)
        return 0

    def reset_counter(self, dart: StandInDart, counter: str) -> None:
        self._counter_reset_s[(dart.serial, counter)] = time.monotonic()


class StandInDevice:
    """An opened stand-in dart: the device seam of ``rig.device`` (node map, MaxNumBuffer, grab loop)."""

    def __init__(self, bus: DartBus, dart: StandInDart) -> None:
        self.bus, self.dart = bus, dart
        self.serial, self.model = dart.serial, MODEL
        self._software: list[float] = []
        self._seen = 0
        self._queue: deque[int] = deque()
        self._armed = 0.0
        self._period_s = 0.0
        self._source: str | None = None
        self.closed = False

    # -- node map --------------------------------------------------------------------------------------------

    def node(self, name: str) -> Any | None:
        kind = self.dart.TYPES.get(name)
        if kind is None:
            return None
        return _NODE_CLASSES.get(kind, _Node)(self.dart, name, kind)

    def is_available(self, node: Any) -> bool:
        return self.dart.available(node.name)

    @property
    def removed(self) -> bool:
        return self.dart.removed

    def save_pfs(self, path: Path) -> None:
        self.dart.save_pfs(path)

    def load_pfs(self, path: Path) -> None:
        self.dart.load_pfs(path)

    # -- stream ----------------------------------------------------------------------------------------------

    def start_grabbing(self, buffers: int) -> None:
        with self.dart.lock:
            if self.dart.removed:
                raise StandInError("Device has been removed from the PC")
            self.dart.max_num_buffer = int(buffers)
            self.dart._reset_stream()
            self.dart.grabbing = True
            self._armed = time.monotonic()
            self._software = []
            self._seen = 0
            self._queue: deque[int] = deque()
            self._period_s = self.dart.min_period_s()
            self._source = self.dart.trigger_source()
            self._chunk_mode = bool(self.dart.values[("ChunkModeActive", None)])

    def stop_grabbing(self) -> None:
        with self.dart.lock:
            self.dart.grabbing = False

    def is_grabbing(self) -> bool:
        return self.dart.grabbing

    def software_trigger(self) -> None:
        now = time.monotonic()
        if self.dart.grabbing and self._source == "Software" and self._ready_at(now):
            self._software.append(now)

    def _ready_at(self, t: float) -> bool:
        starts = self.exposure_starts(t)
        return not starts or t - starts[-1] >= self._period_s - 1e-9

    def wait_ready(self, timeout_ms: float) -> bool:
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            now = time.monotonic()
            if self.dart.grabbing and self._ready_at(now):
                return True
            if now >= deadline:
                return False
            time.sleep(min(0.001, max(0.0, deadline - now)))

    def exposure_starts(self, until_s: float) -> list[float]:
        """Exposure start times (host monotonic) of this grab up to ``until_s``."""
        if not self.dart.grabbing:
            return []
        if self._source is None:
            # The tolerance keeps an edge asked for at its own (recomputed) time from rounding away.
            n = int((until_s - self._armed) / self._period_s + 1e-9) + 1 if until_s >= self._armed else 0
            return [self._armed + i * self._period_s for i in range(n)]
        if self._source == "Software":
            candidates = self._software
        elif self._source.startswith("Line"):
            candidates = self.bus.input_edges(self.dart, int(self._source[-1]), until_s)
            candidates = [t for i, t in enumerate(t for t in candidates if t >= self._armed) if i not in self.dart.lost_edges]
        else:
            candidates = []
        delay_s = float(self.dart.values[("TriggerDelay", "FrameStart")]) / 1e6
        starts: list[float] = []
        for t in candidates:
            t = t + delay_s
            # An edge while the camera is still busy with the previous frame is missed (FrameTriggerMissed).
            if t <= until_s and (not starts or t - starts[-1] >= self._period_s - 1e-9):
                starts.append(t)
        return starts

    def _delivery_s(self, start_s: float) -> float:
        transfer_s = self.dart.payload_bytes() / self.dart.link_bps()
        return start_s + self.dart.effective_exposure_us() / 1e6 + max(transfer_s, self.dart.readout_us() / 1e6)

    def retrieve(self, timeout_ms: float, chunk_names: tuple[str, ...]) -> Frame | None:
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            if self.dart.removed:
                raise StandInError("Device has been removed from the PC")
            if not self.dart.grabbing:
                return None
            now = time.monotonic()
            starts = self.exposure_starts(now)
            buffers = self.dart.max_num_buffer or 10
            while self._seen < len(starts) and self._delivery_s(starts[self._seen]) <= now:
                if len(self._queue) < buffers:
                    self._queue.append(self._seen)
                else:
                    # No free buffer (the host did not fetch in time): the frame is lost, its ID skipped.
                    self.dart.lost += 1
                self._seen += 1
            if self._queue:
                index = self._queue.popleft()
                return self._frame(index, starts[index], chunk_names)
            if now >= deadline:
                return None
            time.sleep(min(0.0005, max(0.0, deadline - now)))

    def _frame(self, index: int, start_s: float, chunk_names: tuple[str, ...]) -> Frame:
        d = self.dart
        # Stamped with the frame's arrival (end of its transfer), not with the moment the model has made its
        # pixels: a real camera's pixels cost the host nothing, the model's do.
        host_ns = time.time_ns() - int(round((time.monotonic() - self._delivery_s(start_s)) * 1e9))
        with d.lock:
            image = self._pixels(start_s)
            ts = d.clock_ns(start_s)
            chunks: dict[str, float] = {}
            if self._chunk_mode:
                available = {
                    "FrameID": float(index),
                    "Timestamp": float(ts),
                    "ExposureTime": float(d.values[("ExposureTime", None)]),
                    "Gain": float(d.values[("Gain", "All")]),
                    "CounterValue": float(self._counter_at(start_s)),
                    "LineStatusAll": float(self._line_status_at(start_s)),
                }
                for name in chunk_names:
                    if not d.values[("ChunkEnable", name)]:
                        raise StandInError(f"Node not existing : Chunk{name} (ChunkEnable is off for {name})")
                    chunks[name] = available[name]
        return Frame(index, True, "", image, ts, host_ns, chunks)

    def _counter_at(self, t: float) -> int:
        source = self.dart.values[("CounterEventSource", "Counter1")]
        # Counted up to just after the frame's own start: its edge is counted whatever the float rounding.
        until = t + 1e-6
        if source.startswith("Line"):
            return sum(1 for e in self.bus.input_edges(self.dart, int(source[-1]), until) if e >= self._armed)
        if source == "ExposureStart":
            return len(self.exposure_starts(until))
        return 0

    def _line_status_at(self, t: float) -> int:
        bits = 0
        for line in range(1, 5):
            if any(abs(e - t) < 1e-4 for e in self.bus.input_edges(self.dart, line, t + 1e-4)):
                bits |= 1 << (line - 1)
        return bits

    def _pixels(self, start_s: float) -> np.ndarray:
        d, v = self.dart, self.dart.values
        w, h, ox, oy = v[("Width", None)], v[("Height", None)], v[("OffsetX", None)], v[("OffsetY", None)]
        radiance = np.asarray(d.scene(start_s, ox, oy, w, h), np.float64)
        fmt = v[("PixelFormat", None)]
        gain = 10 ** (float(v[("Gain", "All")]) / 20)
        signal = radiance * d.effective_exposure_us() * gain
        if fmt.startswith("Bayer"):
            ys, xs = np.mgrid[oy:oy + h, ox:ox + w]
            # The sensor's colour filter: RGGB at sensor (0, 0); 0 = red, 1 = green, 2 = blue.
            channel = np.where(ys % 2 == 0, np.where(xs % 2 == 0, 0, 1), np.where(xs % 2 == 0, 1, 2))
            mosaic = np.take_along_axis(signal, channel[..., None], axis=2)[..., 0]
            ratios = self._balance(mosaic, channel)
            raw = mosaic * ratios[channel]
        elif fmt.startswith("Mono"):
            raw = signal.mean(axis=2)
        else:
            raw = signal
        raw = raw + float(v[("BlackLevel", "All")])
        raw = raw * (1 << int(v[("DigitalShift", None)]))
        gamma = float(v[("Gamma", None)])
        if gamma != 1.0:
            raw = 4095.0 * np.clip(raw / 4095.0, 0, 1) ** gamma
        raw12 = np.clip(np.round(raw), 0, 4095).astype(np.uint16)
        if v[("ReverseX", None)]:
            raw12 = raw12[:, ::-1]
        if v[("ReverseY", None)]:
            raw12 = raw12[::-1]
        raw12 = np.ascontiguousarray(raw12)
        if fmt.endswith("12p"):
            return pack_12p(raw12)
        if fmt.endswith("12"):
            return raw12
        if fmt in ("BGR8",):
            return (raw12[..., ::-1] >> 4).astype(np.uint16)
        return (raw12 >> 4).astype(np.uint16)

    def _balance(self, mosaic: np.ndarray, channel: np.ndarray) -> np.ndarray:
        v = self.dart.values
        if v[("BalanceWhiteAuto", None)] == "Continuous":
            means = np.array([mosaic[channel == c].mean() if np.any(channel == c) else 0.0 for c in range(3)])
            if np.all(means > 0):
                ratios = means.max() / means
                for sel, r in zip(("Red", "Green", "Blue"), ratios):
                    v[("BalanceRatio", sel)] = float(r)
        return np.array([float(v[("BalanceRatio", sel)]) for sel in ("Red", "Green", "Blue")])

    def close(self) -> None:
        self.stop_grabbing()
        self.bus.opened.pop(self.serial, None)
        self.closed = True


def rig_config(**overrides: object) -> Any:
    """A rig config for the two stand-in darts: a 64x48 ROI at offset 8 (the field camera's), 50 fps, software trigger."""
    from rig.config import RigConfig

    data: dict[str, object] = {"ll": {"serial": SERIALS[0]}, "wl": {"serial": SERIALS[1]}, "roi": {"width": 64, "height": 48, "offset_x": 8, "offset_y": 8},
                               "frame_rate_hz": 50.0}
    data.update(overrides)
    return RigConfig.model_validate(data)
