"""Noise physics of the simulator's sensor model and the exposure protocol's light budget."""

from __future__ import annotations

import math

import numpy as np
import pytest

from exlpose_data.exposure import build_ladder
from exlpose_data.simulate.camera import SensorParams, capture_raw, input_read_noise_e, system_gain, tukey_lambda_std
from exlpose_data.simulate.protocol import ProtocolParams, electrons_per_unit, sample_protocol

SHAPE = (256, 256)


@pytest.mark.parametrize("gain_db", [0.0, 6.0, 12.0, 20.0])
def test_photon_transfer_gives_system_gain_within_5_percent(gain_db):
    sensor = SensorParams()
    k_true = system_gain(gain_db, sensor)
    rng = np.random.default_rng(int(gain_db * 10))
    top_e = 0.8 * (sensor.white_level_dn - sensor.black_level_dn) / k_true
    means, variances = [], []
    for mu in np.linspace(0.05, 1.0, 8) * min(top_e, sensor.full_well_e * 0.8):
        raw = capture_raw(np.full(SHAPE, mu, np.float32), gain_db, sensor, rng).astype(np.float64)
        means.append(raw.mean() - sensor.black_level_dn)
        variances.append(raw.var())
    slope, _ = np.polyfit(means, variances, 1)
    assert slope == pytest.approx(k_true, rel=0.05)


def test_shot_noise_is_poisson_at_low_light():
    sensor = SensorParams(read_noise_e=0.0, adc_noise_dn=0.0, row_noise_e=0.0, k0_dn_per_e=1.0)
    raw = capture_raw(np.full(SHAPE, 3.0, np.float32), 0.0, sensor, np.random.default_rng(0)).astype(np.int64) - 240
    counts = np.bincount(raw.ravel(), minlength=8)[:8] / raw.size
    poisson = [math.exp(-3.0) * 3.0**n / math.factorial(n) for n in range(8)]
    np.testing.assert_allclose(counts, poisson, atol=0.005)


def test_full_well_and_adc_clip():
    sensor = SensorParams()
    raw = capture_raw(np.full((8, 8), 1e6, np.float32), 0.0, sensor, np.random.default_rng(0))
    assert raw.max() <= sensor.white_level_dn
    assert raw.mean() == pytest.approx(sensor.full_well_e * sensor.k0_dn_per_e + sensor.black_level_dn, abs=2)
    raw = capture_raw(np.full((8, 8), 1e6, np.float32), 24.0, sensor, np.random.default_rng(0))
    assert (raw == sensor.white_level_dn).all()


@pytest.mark.parametrize("kind", ["gaussian", "tukey"])
def test_full_well_clips_electrons_before_the_read_noise(kind):
    # K * full well stays below the ADC's top, so only the full well clips: a saturated pixel is the full-well
    # level plus zero-mean read noise (as many pixels above it as below), not a level with the upper noise cut off.
    sensor = SensorParams(k0_dn_per_e=0.3, read_noise_e=1.2, adc_noise_dn=1.0, read_noise_kind=kind, row_noise_e=0.0)
    raw = capture_raw(np.full(SHAPE, 3 * sensor.full_well_e, np.float32), 0.0, sensor, np.random.default_rng(4))
    full_dn = sensor.full_well_e * sensor.k0_dn_per_e + sensor.black_level_dn
    assert raw.max() < sensor.white_level_dn
    assert raw.astype(np.float64).mean() == pytest.approx(full_dn, abs=0.05)
    above, below = (raw > full_dn).mean(), (raw < full_dn).mean()
    assert above > 0.25 and above == pytest.approx(below, abs=0.02)  # (rounding puts the rest exactly on the level)
    assert raw.astype(np.float64).std() == pytest.approx(math.hypot(input_read_noise_e(0.0, sensor) * 0.3, 1 / math.sqrt(12)), rel=0.05)


def test_read_noise_is_the_calibrated_0_68_electrons_at_0_db_and_falls_with_gain():
    sensor = SensorParams()
    assert input_read_noise_e(0.0, sensor) == pytest.approx(0.68, abs=0.02)
    assert input_read_noise_e(24.0, sensor) < 0.45
    # Measured at 24 dB, where the noise spans several DN (at 0 dB it is a quarter DN, below the ADC's step).
    k = system_gain(24.0, sensor)
    raw = capture_raw(np.zeros(SHAPE, np.float32), 24.0, sensor.model_copy(update={"row_noise_e": 0.0}), np.random.default_rng(1))
    measured_e = raw.astype(np.float64).std() / k
    assert measured_e == pytest.approx(math.hypot(input_read_noise_e(24.0, sensor), 1 / math.sqrt(12) / k), rel=0.05)


def test_tukey_read_noise_has_the_requested_std_and_heavier_tails():
    base = SensorParams(k0_dn_per_e=10.0, read_noise_e=3.0, adc_noise_dn=0.0, row_noise_e=0.0, black_level_dn=2000)
    tukey = base.model_copy(update={"read_noise_kind": "tukey", "tukey_lambda": -0.15})
    dark = np.zeros((512, 512), np.float32)
    g = capture_raw(dark, 0.0, base, np.random.default_rng(2)).astype(np.float64) - 2000
    t = capture_raw(dark, 0.0, tukey, np.random.default_rng(2)).astype(np.float64) - 2000
    assert t.std() == pytest.approx(g.std(), rel=0.05)
    kurt = lambda x: ((x - x.mean()) ** 4).mean() / x.var() ** 2  # noqa: E731
    assert kurt(t) > kurt(g) + 0.5
    assert tukey_lambda_std(1e-12) == pytest.approx(math.pi / math.sqrt(3))


def test_row_noise_is_one_offset_per_row():
    sensor = SensorParams(read_noise_e=0.0, adc_noise_dn=0.0, row_noise_e=20.0, k0_dn_per_e=1.0)
    raw = capture_raw(np.zeros((64, 128), np.float32), 0.0, sensor, np.random.default_rng(3)).astype(np.float64)
    assert np.allclose(raw.std(axis=1), 0.0, atol=0.6)  # rounding only within a row
    assert raw.mean(axis=1).std() == pytest.approx(20.0, rel=0.3)


def test_ll_wl_ratio_follows_nd_exposure_and_gain():
    sensor = SensorParams(row_noise_e=0.0)  # zero-mean, but 256 row offsets would blur a mean of < 1 DN
    ladder = build_ladder(5000, 6.0, [1, 2, 4, 8, 12])
    from exlpose_data.simulate.protocol import SceneProtocol

    protocol = SceneProtocol(preset="outdoor", base_exposure_us=5000, base_gain_db=6.0, wl_level=0.2, ladder=ladder)
    flux, per_step = electrons_per_unit(protocol, mean_green=0.5, sensor=sensor, nd_factor=100.0)
    rng = np.random.default_rng(4)
    wl_dn_first = None
    for step, (ll_e, wl_e) in zip(ladder, per_step):
        assert ll_e / wl_e == pytest.approx(1 / 100)
        assert wl_e == pytest.approx(flux * 5000 / step.k)
        signal = np.full(SHAPE, 0.5, np.float32)
        ll = capture_raw(signal * np.float32(ll_e), step.ll_gain_db, sensor, rng).mean() - sensor.black_level_dn
        wl = capture_raw(signal * np.float32(wl_e), step.wl_gain_db, sensor, rng).mean() - sensor.black_level_dn
        expected = (1 / 100) * 10 ** ((step.ll_gain_db - step.wl_gain_db) / 20)  # ND x gain; exposure is shared
        assert ll / wl == pytest.approx(expected, rel=0.03)
        # The WL camera keeps its brightness down the ladder; the LL camera gets k times darker.
        wl_dn_first = wl_dn_first or wl
        assert wl == pytest.approx(wl_dn_first, rel=0.01)
        assert ll == pytest.approx(wl_dn_first / 100 / step.k, rel=0.05)
    # The operator's exposure puts the mean green signal at wl_level of the DN range.
    assert wl_dn_first == pytest.approx(0.2 * (4095 - 240), rel=0.01)


def test_protocol_sampling_uses_the_ladder_and_spreads_gains():
    params = ProtocolParams()
    rng = np.random.default_rng(5)
    gains = []
    for _ in range(200):
        p = sample_protocol(rng, params)
        assert [s.k for s in p.ladder] == ([1, 2, 4, 8, 12] if p.preset == "outdoor" else [1, 2, 3, 4, 6])
        assert all(s.ll_gain_db == p.ladder[0].wl_gain_db for s in p.ladder)
        gains += [s.wl_gain_db for s in p.ladder]
    gains = np.asarray(gains)
    shares = [(gains < 15).mean(), ((gains >= 15) & (gains < 24)).mean(), (gains >= 24).mean()]
    assert all(0.2 < s < 0.5 for s in shares), shares
