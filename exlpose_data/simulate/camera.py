"""The sensor model: photo-electrons in, raw Bayer DN out (DOMAIN.md section 7).

``D = K (I + N_shot) + N_read + N_row + N_q`` with ``I`` the mean photo-electrons, ``N_shot`` Poisson, one
Gaussian row offset per row, and quantisation to the ADC's bits after adding the black level.
``K(G) = K0 * 10**(G/20)`` DN/e-. Electrons clip at the full well, DN at ``[0, 2**bits - 1]``.

The read noise has the two parts of the EMVA 1288 model: a pre-amplifier part in electrons (Gaussian or
Tukey-lambda, amplified by the gain) and an after-gain part in DN. Their sum referred to the input is
``sqrt(read_noise_e^2 + (adc_noise_dn / K)^2)``. The defaults (0.4 e- + 0.2 DN, 0.05 e- row noise; 0.68 e- at
0 dB) are calibrated, not datasheet values: developed at the true black level with the ISP's black clamp
(clip at black before demosaicing, as camera pipelines do), they reproduce the release's LL intensities (paper
Table 1). The 2.9 e- quoted for IMX392-class sensors gives a noise floor that alone is brighter than the
release's LL-E images (docs/simulate.md, "Calibration").
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SensorParams", "system_gain", "input_read_noise_e", "capture_raw", "tukey_lambda_std"]

# Above this mean the Poisson draw is replaced by a Gaussian of the same mean and variance (skewness 1/sqrt(16)
# = 0.25, invisible once read noise is added): numpy's Poisson costs 16-60 ns per sample, and drawing it only for
# the dim pixels is what keeps the noise model within the speed budget.
_GAUSS_SHOT_ABOVE_E = 16.0


class SensorParams(BaseModel):
    """One camera's sensor (IMX392-class defaults, approx.).

    Attributes:
        k0_dn_per_e: system gain at 0 dB in DN per electron (at ``bit_depth`` bits).
        full_well_e: full-well capacity in electrons.
        read_noise_e: pre-amplifier read noise standard deviation in electrons (scales with the gain in DN).
        adc_noise_dn: after-gain read noise standard deviation in DN (independent of the gain).
        read_noise_kind: ``"gaussian"`` or ``"tukey"`` (heavy-tailed Tukey-lambda, same standard deviation).
        tukey_lambda: shape of the Tukey-lambda read noise (negative = heavier tails than a Gaussian).
        row_noise_e: standard deviation of the per-row offset in electrons.
        bit_depth: ADC bits.
        black_level_dn: black level added before clipping, in DN.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    k0_dn_per_e: float = Field(0.36, gt=0)
    full_well_e: float = Field(10700.0, gt=0)
    read_noise_e: float = Field(0.4, ge=0)
    adc_noise_dn: float = Field(0.2, ge=0)
    read_noise_kind: str = Field("gaussian", pattern="^(gaussian|tukey)$")
    tukey_lambda: float = Field(-0.1, gt=-0.25, lt=1.0)
    row_noise_e: float = Field(0.05, ge=0)
    bit_depth: int = Field(12, ge=8, le=16)
    black_level_dn: float = Field(240.0, ge=0)

    @property
    def white_level_dn(self) -> int:
        return (1 << self.bit_depth) - 1


def system_gain(gain_db: float, params: SensorParams) -> float:
    """``K(G) = K0 * 10**(G/20)`` in DN per electron."""
    return params.k0_dn_per_e * 10.0 ** (gain_db / 20.0)


def input_read_noise_e(gain_db: float, params: SensorParams) -> float:
    """Total read noise referred to the input, in electrons, at ``gain_db``."""
    return math.hypot(params.read_noise_e, params.adc_noise_dn / system_gain(gain_db, params))


def tukey_lambda_std(lam: float) -> float:
    """Standard deviation of the standard Tukey-lambda distribution (``lam > -1/4``, ``lam != 0``)."""
    if abs(lam) < 1e-9:
        return math.pi / math.sqrt(3.0)  # the logistic limit
    var = 2.0 / lam**2 * (1.0 / (1.0 + 2.0 * lam) - math.gamma(lam + 1.0) ** 2 / math.gamma(2.0 * lam + 2.0))
    return math.sqrt(var)


def _poisson_where_small(mean_e: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Photo-electrons drawn from the Poisson law where the mean is small; elsewhere the mean itself.

    Returns the electrons (float32) and the mask of pixels left for a Gaussian shot-noise draw.
    """
    big = mean_e >= _GAUSS_SHOT_ABOVE_E
    if not big.any():
        return rng.poisson(mean_e).astype(np.float32), big
    electrons = mean_e.copy()
    small = ~big
    if small.any():
        electrons[small] = rng.poisson(mean_e[small])
    return electrons, big


def _tukey(shape: tuple[int, int], std: float, lam: float, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(shape, dtype=np.float32).clip(1e-7, 1 - 1e-7)
    q = np.log(u / (1 - u)) if abs(lam) < 1e-9 else (u**lam - (1 - u) ** lam) / np.float32(lam)
    return (q * np.float32(std / tukey_lambda_std(lam))).astype(np.float32, copy=False)


def capture_raw(mean_e: np.ndarray, gain_db: float, params: SensorParams, rng: np.random.Generator) -> np.ndarray:
    """Record one raw frame.

    Args:
        mean_e: (H, W) expected photo-electrons per pixel (the Bayer mosaic of the light reaching the sensor).
        gain_db: analogue gain.
        params: the sensor.
        rng: random generator (the frame's noise stream).

    Returns:
        (H, W) uint16 raw DN, LSB-aligned, black level included.
    """
    if mean_e.ndim != 2:
        raise ValueError(f"mean electrons must be 2-D (a Bayer mosaic), got shape {mean_e.shape}")
    k = system_gain(gain_db, params)
    electrons, big = _poisson_where_small(np.maximum(mean_e, 0, dtype=np.float32), rng)
    if big.any():
        electrons[big] += np.sqrt(electrons[big]) * rng.standard_normal(int(big.sum()), dtype=np.float32)
    # The well fills with photo-electrons only; read noise arises afterwards, in the readout, so a saturated pixel
    # still shows it (clipping after the read noise would bias saturated pixels low and remove their noise).
    np.minimum(electrons, np.float32(params.full_well_e), out=electrons)
    after_gain_e = np.float32(params.adc_noise_dn / k)
    if params.read_noise_kind == "gaussian":
        # Pre-amplifier and after-gain read noise are independent Gaussians: one draw of their combined sigma.
        electrons += rng.standard_normal(electrons.shape, dtype=np.float32) * np.float32(math.hypot(params.read_noise_e, after_gain_e))
    else:
        electrons += _tukey(electrons.shape, params.read_noise_e, params.tukey_lambda, rng)
        electrons += rng.standard_normal(electrons.shape, dtype=np.float32) * after_gain_e
    if params.row_noise_e > 0:
        electrons += rng.standard_normal((electrons.shape[0], 1), dtype=np.float32) * np.float32(params.row_noise_e)
    dn = electrons
    dn *= np.float32(k)
    dn += np.float32(params.black_level_dn)
    np.rint(dn, out=dn)
    np.clip(dn, 0, params.white_level_dn, out=dn)
    return dn.astype(np.uint16)
