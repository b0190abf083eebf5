import pytest

from exlpose_data.exposure import PRESETS, build_ladder, nominal_exposure_us, ratio_label, resolve_ks, round_gain


def test_release_ladder_for_5000us_at_4_5db():
    ladder = build_ladder(5000, 4.5, PRESETS["outdoor"])
    assert [s.nominal_exposure_us for s in ladder] == [5000, 2500, 1250, 625, 417]
    assert [s.wl_gain_db for s in ladder] == [4.50, 10.52, 16.54, 22.56, 26.08]
    assert [s.ratio for s in ladder] == [100, 200, 400, 800, 1200]
    assert {s.ll_gain_db for s in ladder} == {4.5}
    assert ladder[-1].exposure_us == pytest.approx(5000 / 12)


def test_nominal_exposure_rounds_half_up():
    assert nominal_exposure_us(5000, 16) == 313  # Python's round() would give 312
    assert nominal_exposure_us(4000, 12) == 333
    assert nominal_exposure_us(2500, 8) == 313


def test_indoor_preset_and_custom_lists():
    assert resolve_ks("indoor") == (1, 2, 3, 4, 6)
    assert resolve_ks(ks=[1, 16]) == (1, 16)
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_ks("night")
    with pytest.raises(ValueError, match=">= 1"):
        resolve_ks(ks=[0.5])
    with pytest.raises(ValueError, match="repeat"):
        resolve_ks(ks=[2, 2])


def test_gain_rounding_and_ratio():
    assert round_gain(10.525) == 10.53
    assert ratio_label(12) == 1200
    with pytest.raises(ValueError):
        ratio_label(1.234)
