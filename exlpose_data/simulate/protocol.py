"""Per-scene exposure protocol (DOMAIN.md section 1) and the light each camera collects.

The operator picks a WL exposure time and gain that expose the scene well; the ladder (``exposure.build_ladder``)
then divides both cameras' exposure by ``k``, raises the WL gain by ``20*log10(k)`` and keeps the LL gain. Here
"well exposed" means: the scene's mean green camera signal reaches ``wl_level`` of the DN range at ``k = 1``.
That fixes the photon flux; each camera then collects ``flux x exposure_us x transmission`` electrons per unit
of scene radiance, the LL camera behind the ``1/nd_factor`` filter.

Default base settings follow the release's names (tests/data/ExLPose_test_LL-All.json): outdoor scenes at
1-10 ms and 0-12 dB, indoor scenes at 15-25 ms and 10-19 dB, which spreads the WL gains of the ladder across
the 15 and 24 dB split thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..exposure import DEFAULT_ND_FACTOR, PRESETS, LadderStep, build_ladder, resolve_ks
from .camera import SensorParams, system_gain

__all__ = ["ProtocolParams", "SceneProtocol", "sample_protocol", "electrons_per_unit"]


class ProtocolParams(BaseModel):
    """How per-scene exposure settings are drawn.

    Attributes:
        preset: ``"auto"`` (outdoor or indoor at random), ``"outdoor"`` or ``"indoor"``.
        ks: explicit exposure cuts instead of a preset's.
        indoor_share: probability of an indoor scene when ``preset`` is ``auto``.
        outdoor_exposures_us / outdoor_exposure_weights: base WL exposures of outdoor scenes and their odds.
        indoor_exposures_us / indoor_exposure_weights: the same for indoor scenes.
        outdoor_gain_db / indoor_gain_db: uniform range of the base WL gain.
        nd_factor: light attenuation of the LL path (100 = 1% ND filter).
        wl_level: median fraction of the DN range the scene's mean green signal reaches in WL (calibrated so the
            release's mean WL intensity is ~90.5 of 255).
        wl_level_spread: log-normal spread of that level between scenes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str = Field("auto", pattern="^(auto|outdoor|indoor)$")
    ks: tuple[float, ...] | None = None
    indoor_share: float = Field(0.2, ge=0, le=1)
    outdoor_exposures_us: tuple[float, ...] = (1000.0, 4000.0, 5000.0, 10000.0)
    outdoor_exposure_weights: tuple[float, ...] = (0.1, 0.3, 0.5, 0.1)
    outdoor_gain_db: tuple[float, float] = (0.0, 12.0)
    indoor_exposures_us: tuple[float, ...] = (15000.0, 25000.0)
    indoor_exposure_weights: tuple[float, ...] = (0.8, 0.2)
    indoor_gain_db: tuple[float, float] = (10.0, 19.0)
    nd_factor: float = Field(DEFAULT_ND_FACTOR, gt=1)
    wl_level: float = Field(0.135, gt=0, lt=1)
    wl_level_spread: float = Field(0.25, ge=0)


@dataclass(frozen=True)
class SceneProtocol:
    """The exposure settings of one scene."""

    preset: str
    base_exposure_us: float
    base_gain_db: float
    wl_level: float
    ladder: list[LadderStep]


def sample_protocol(rng: np.random.Generator, params: ProtocolParams) -> SceneProtocol:
    """Draw one scene's base exposure, base gain and ladder."""
    preset = params.preset
    if preset == "auto":
        preset = "indoor" if rng.random() < params.indoor_share else "outdoor"
    if preset == "indoor":
        exposures, weights, gains = params.indoor_exposures_us, params.indoor_exposure_weights, params.indoor_gain_db
    else:
        exposures, weights, gains = params.outdoor_exposures_us, params.outdoor_exposure_weights, params.outdoor_gain_db
    p = np.asarray(weights, dtype=np.float64)
    if len(p) != len(exposures) or p.sum() <= 0:
        raise ValueError(f"{preset} exposures and weights differ in length or weigh nothing")
    base_exposure = float(exposures[int(rng.choice(len(exposures), p=p / p.sum()))])
    base_gain = float(np.round(rng.uniform(*gains), 1))  # operators dial gains in tenths of a dB
    ks = resolve_ks(ks=list(params.ks)) if params.ks else PRESETS[preset]
    level = float(params.wl_level * np.exp(rng.normal(0.0, params.wl_level_spread)))
    ladder = build_ladder(base_exposure, base_gain, ks, nd_factor=params.nd_factor)
    return SceneProtocol(preset=preset, base_exposure_us=base_exposure, base_gain_db=base_gain, wl_level=min(level, 0.9), ladder=ladder)


def electrons_per_unit(protocol: SceneProtocol, mean_green: float, sensor: SensorParams, nd_factor: float) -> tuple[float, list[tuple[float, float]]]:
    """Photon flux and the electrons per unit camera signal of each step.

    Args:
        protocol: the scene's settings.
        mean_green: mean green camera signal of the scene (in scene units).
        sensor: the sensor (gain and DN range).
        nd_factor: LL attenuation.

    Returns:
        flux (electrons per unit signal per microsecond reaching the WL sensor) and, per ladder step,
        ``(ll_electrons_per_unit, wl_electrons_per_unit)``.
    """
    dn_range = sensor.white_level_dn - sensor.black_level_dn
    target_e = protocol.wl_level * dn_range / system_gain(protocol.base_gain_db, sensor)
    flux = target_e / max(mean_green, 1e-9) / protocol.base_exposure_us
    return flux, [(flux * s.exposure_us / nd_factor, flux * s.exposure_us) for s in protocol.ladder]
