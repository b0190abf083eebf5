"""The rig configuration: which camera is which, image format, trigger topology, recording settings.

A YAML or JSON file validated by pydantic; unknown keys are refused so a typo never silently falls back to a
default. Example (YAML)::

    ll: {serial: "40123456"}
    wl: {serial: "40123457", reverse_x: true}   # the path mirrored by the beam splitter (or: mirror: wl)
    nd_factor: 100
    pixel_format: BayerRG12
    roi: {width: 1920, height: 1200, offset_x: 8, offset_y: 8}
    frame_rate_hz: 10
    trigger: {topology: master-slave, master: wl, master_line: Line2, slave_line: Line1}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from exlpose_data.errors import InputError
from exlpose_data.exposure import DEFAULT_ND_FACTOR
from exlpose_data.jsonio import load_config_file

from . import emulate

__all__ = ["CameraConfig", "RoiConfig", "TriggerConfig", "PixelSettings", "RigConfig", "load_config", "stored_config", "emulated_config"]

Topology = Literal["software", "master-slave", "external", "free-run"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CameraConfig(_Strict):
    """One camera of the rig."""

    serial: str = Field(min_length=1, description="serial number as enumeration reports it")
    user_set: str | None = Field(
        "Default", description="user set loaded at open (Default, UserSet1..3), so no setting left by another program survives; "
        "null keeps the camera's state")
    pfs: Path | None = Field(None, description=".pfs file loaded after the user set, before the rig's own settings")
    reverse_x: bool = Field(False, description="mirror on the camera (the beam splitter's mirrored path)")


class RoiConfig(_Strict):
    """Region of interest in sensor pixels."""

    width: int = Field(gt=0)
    height: int = Field(gt=0)
    offset_x: int = Field(0, ge=0)
    offset_y: int = Field(0, ge=0)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.width, self.height, self.offset_x, self.offset_y


class TriggerConfig(_Strict):
    """How the two exposures are started together.

    ``software``: both cameras software-triggered in lockstep (sequential, not simultaneous: fine for static
    scenes and for the emulator). ``master-slave``: the master free-runs at ``frame_rate_hz`` and drives
    ``master_line`` (Output, source ExposureActive, inverted when ``master_line_inverter``); the slave triggers on
    ``slave_line`` at ``activation``. (UserOutput1 is refused as a source: it changes only when the host sets
    ``UserOutputValue``, so the slave would never see an edge.)
    ``external``: both trigger on ``input_line`` from a generator. ``free-run``: no synchronisation at all
    (benchmarks only; pairs are matched by frame counter).
    """

    topology: Topology = "software"
    master: Literal["ll", "wl"] = "wl"
    master_line: str = "Line2"
    master_line_source: str = "ExposureActive"
    master_line_inverter: bool = Field(False, description="LineInverter on the master's output line (polarity; prove it with sync-check)")
    slave_line: str = "Line1"
    input_line: str = "Line1"
    activation: Literal["RisingEdge", "FallingEdge"] = "RisingEdge"

    @field_validator("master_line_source")
    @classmethod
    def _toggling_source(cls, value: str) -> str:
        if value != "ExposureActive":
            raise ValueError(
                f"{value!r} is not supported: only ExposureActive toggles with every master frame "
                "(a UserOutput line changes only when the host sets UserOutputValue, so the slave would never trigger)"
            )
        return value


class PixelSettings(_Strict):
    """Every camera feature that changes pixels, set explicitly on both cameras at open (``rig.camera_state``).

    Defaults keep the raw data raw: no automatic or preset white balance (unit ratios; the ISP balances later),
    linear response, no digital shift, no in-camera correction, noise reduction or sharpening.
    """

    balance_white_auto: Literal["Off"] = "Off"
    light_source_preset: str = "Off"
    balance_ratio_red: float = Field(1.0, gt=0)
    balance_ratio_green: float = Field(1.0, gt=0)
    balance_ratio_blue: float = Field(1.0, gt=0)
    gamma: float = Field(1.0, gt=0)
    digital_shift: int = Field(0, ge=0)
    black_level: float = Field(0.0, ge=0, description="DN; the settings file of a dart in the field holds 0 (check darks for clipped noise)")
    color_space: str = "Off"
    defect_pixel_correction: str = "Off"
    noise_reduction: float = Field(0.0, ge=0)
    sharpness_enhancement: float = Field(0.0, ge=0)
    test_pattern: str = "Off"
    exposure_mode: Literal["Timed"] = "Timed"
    trigger_delay_us: float = Field(0.0, ge=0)


class RigConfig(_Strict):
    """Everything the recorder needs to know about the rig."""

    ll: CameraConfig
    wl: CameraConfig
    nd_factor: float = Field(DEFAULT_ND_FACTOR, gt=1, description="light attenuation of the LL path (1% ND -> 100)")
    pixel_format: str = Field("BayerRG12", description="raw Bayer 12-bit by default: 8 bits lose low-light detail")
    roi: RoiConfig | None = None
    frame_rate_hz: float = Field(10.0, gt=0, description="pairs per second while recording")
    trigger: TriggerConfig = TriggerConfig()
    pixel: PixelSettings = PixelSettings()
    mirror: Literal["none", "ll", "wl"] = Field(
        "none", description="camera whose frames the beam splitter mirrors, flipped in software after demosaic (exlpose-align); "
        "the alternative to reverse_x on that camera")
    retrieve_timeout_ms: float | None = Field(None, gt=0, description="fixed retrieve timeout; default derives from exposure")
    flush_interval_s: float = Field(0.5, gt=0, le=60, description="HDF5 flush period (data at risk on a crash)")
    queue_pairs: int = Field(64, ge=2, description="pairs the writer queue holds before acquisition waits")
    buffers: int = Field(16, ge=2, description="pylon grab buffers per camera (the InstantCamera's MaxNumBuffer)")
    link_limit_bytes_per_s: int | None = Field(
        None, gt=0, description="DeviceLinkThroughputLimit set on both cameras (mode On); null keeps each camera's own limit, "
        "which the plan is checked against (a dart in the field: 160,000,000 B/s)")
    min_free_mb: float = Field(
        256.0, ge=0, description="free disk space never written into; recording stops this much plus the pairs still in "
        "flight (queue_pairs + frame_rate_hz x flush_interval_s + 1) earlier")
    feed_black_level_dn: float | None = Field(
        None, ge=0, description="emulation only: black level baked into the feed frames (feeds.json black_level_dn); "
        "the emulator has no BlackLevel feature, so without this the session would record 0")

    @model_validator(mode="after")
    def _distinct(self) -> "RigConfig":
        if self.ll.serial == self.wl.serial:
            raise ValueError(f"ll and wl use the same camera serial {self.ll.serial!r}")
        if self.roi is not None and self.pixel_format.startswith("Bayer") and (self.roi.offset_x % 2 or self.roi.offset_y % 2):
            raise ValueError("roi offsets must be even with a Bayer pixel format (an odd offset shifts the colour phase)")
        flipped = [role for role in ("ll", "wl") if self.camera(role).reverse_x]
        if self.mirror != "none" and flipped:
            # Both would flip the mirrored path twice (or flip both paths): exactly one of them undoes the splitter.
            raise ValueError(
                f"mirror: {self.mirror} (software flip after demosaic) and {flipped[0]}.reverse_x (flip on the camera) are "
                "alternatives for the beam splitter's mirrored path; set only one"
            )
        return self

    def camera(self, role: str) -> CameraConfig:
        return self.ll if role == "ll" else self.wl

    def same_rig(self, other: "RigConfig") -> bool:
        """Whether two configs describe the same cameras, format and trigger (recording settings may differ)."""
        keys = {"ll", "wl", "nd_factor", "pixel_format", "roi", "trigger", "mirror", "pixel"}
        return self.model_dump(include=keys) == other.model_dump(include=keys)

    def to_json(self) -> str:
        """Compact JSON, as stored in session files."""
        return self.model_dump_json()


def load_config(path: str | Path) -> RigConfig:
    """Read and validate a rig config (``.json``, else YAML) through the toolkit's strict loader.

    Raises:
        InputError: unreadable file or invalid content; the message names the file and field.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such rig config file")
    # The strict loader: a key given twice (the last would silently win), NaN/.inf or a huge integer is refused
    # with its line and column.
    data = load_config_file(p)
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected a mapping at the top level")
    try:
        cfg = RigConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{p}: {_first_error(exc)}") from None
    base = p.parent
    for cam in (cfg.ll, cfg.wl):
        if cam.pfs is not None and not cam.pfs.is_absolute():
            cam.pfs = base / cam.pfs
    return cfg


def stored_config(data: dict[str, object], path: str | Path) -> RigConfig:
    """The rig config stored in a session file.

    Raises:
        InputError: it no longer validates (e.g. a master line source this version refuses); names file and field.
    """
    try:
        return RigConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{path}: stored rig_config: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    """``field.path: message`` of the first validation error."""
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err["loc"]) or "(top level)"
    return f"{where}: {err['msg']}"


def emulated_config(**overrides: object) -> RigConfig:
    """The default emulated rig: CamEmu 0815-0000 is LL, 0815-0001 is WL, software lockstep."""
    data: dict[str, object] = {"ll": {"serial": emulate.SERIALS[0]}, "wl": {"serial": emulate.SERIALS[1]}}
    data.update(overrides)
    return RigConfig.model_validate(data)
