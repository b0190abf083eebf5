"""All settings of a simulation in one pydantic model (loadable from YAML/JSON with ``--config``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import InputError, UsageError
from ..isp import IspParams
from ..jsonio import load_config_file
from ..naming import check_date, check_site
from .camera import SensorParams
from .geometry import GeometryParams, check_distortion
from .protocol import ProtocolParams

__all__ = ["SimulationConfig", "load_config", "parse_size"]


class SimulationConfig(BaseModel):
    """Settings of ``exlpose simulate``.

    Attributes:
        width / height: full sensor frame in pixels (even, for the Bayer mosaic).
        frames_per_scene: video frames per scene (each released at every exposure step).
        people: (min, max) people per scene.
        date / site: written in release names; scenes are numbered as videos 1..N.
        backgrounds: folder of background photographs (procedural backgrounds when None).
        sensor: sensor and noise model of both cameras.
        isp: settings of :class:`exlpose_data.isp.IspParams` (the raw -> RGB path). The black level and bit depth
            are the sensor's (what a capture records), so they cannot be set here.
        protocol: exposure protocol.
        geometry: beam-splitter geometry ranges.
    """

    model_config = ConfigDict(extra="forbid")

    width: int = Field(1920, ge=32, le=8192)
    height: int = Field(1200, ge=32, le=8192)
    frames_per_scene: int = Field(2, ge=1, le=100)
    people: tuple[int, int] = (1, 10)
    date: str = "0101"
    site: str = "sim"
    backgrounds: str | None = None
    sensor: SensorParams = SensorParams()
    isp: dict[str, Any] = Field(default_factory=dict)
    protocol: ProtocolParams = ProtocolParams()
    geometry: GeometryParams = GeometryParams()

    @field_validator("date")
    @classmethod
    def _date(cls, v: str) -> str:
        return check_date(v)

    @field_validator("site")
    @classmethod
    def _site(cls, v: str) -> str:
        return check_site(v)

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError("must be even (a Bayer mosaic tiles 2x2)")
        return v

    @field_validator("people")
    @classmethod
    def _people(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 0 <= v[0] <= v[1]:
            raise ValueError("needs 0 <= min <= max")
        return v

    @field_validator("isp")
    @classmethod
    def _isp(cls, v: dict[str, Any]) -> dict[str, Any]:
        fixed = sorted({"black_level", "bit_depth"} & set(v))
        if fixed:
            raise ValueError(f"{', '.join(fixed)} come from the sensor (sensor.black_level_dn, sensor.bit_depth), as in a capture")
        try:
            IspParams(**v)
        except TypeError as exc:  # an unknown setting name
            raise ValueError(str(exc)) from None
        return v

    @model_validator(mode="after")
    def _distortion_fits_the_frame(self) -> SimulationConfig:
        g = self.geometry
        check_distortion(self.size, g.k1, g.k2, g.focal_px)
        return self

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def isp_params(self) -> IspParams:
        """The ISP settings: exactly the black level and bit depth a capture records for the sensor, then ``isp``.

        ``exlpose-align apply`` develops captured frames with the recorded black level (feeds.json
        ``black_level_dn`` for emulated captures), so a raw frame develops the same on both paths.
        """
        return IspParams(black_level=self.sensor.black_level_dn, bit_depth=self.sensor.bit_depth, **self.isp)


def parse_size(text: str) -> tuple[int, int]:
    """``"1920x1200"`` -> (1920, 1200)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise UsageError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 1920x1200")
    return int(parts[0]), int(parts[1])


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Deep-merge ``overrides`` (None = not given) into ``base``."""
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict):
            node = base.setdefault(key, {})
            if not isinstance(node, dict):
                raise UsageError(f"config: {key} must be a mapping")
            _merge(node, value)
        else:
            base[key] = value


def load_config(path: str | Path | None, **overrides: Any) -> SimulationConfig:
    """Settings from a YAML/JSON file (or defaults) with command-line overrides applied on top.

    The file is read by the toolkit's one strict loader (:func:`exlpose_data.jsonio.load_config_file`): a key
    given twice, ``.nan``/``.inf`` or an integer beyond 2^53 is refused with its line and column or path.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        data = load_config_file(p)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InputError(f"{p}: a config file must hold a mapping of settings")
    _merge(data, overrides)
    try:
        return SimulationConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "config"
        source = str(path) if path else "options"
        raise UsageError(f"{source}: {where}: {err['msg'].removeprefix('Value error, ')}") from None
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{path or 'options'}: {exc}") from None
