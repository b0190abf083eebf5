import numpy as np
import pytest

from exlpose_data.isp import BAYER_PATTERNS, IspParams, demosaic, linear_to_srgb, mirrored_pattern, mosaic, raw_to_rgb, srgb_to_linear


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_demosaic_recovers_a_flat_colour_for_every_pattern(pattern):
    rgb = np.zeros((16, 16, 3), np.uint16)
    rgb[...] = (3000, 1500, 700)
    out = demosaic(mosaic(rgb, pattern), pattern)
    assert tuple(out[8, 8]) == (3000, 1500, 700)


def test_mosaic_takes_rggb_sites():
    rgb = np.arange(4 * 4 * 3, dtype=np.uint16).reshape(4, 4, 3)
    m = mosaic(rgb, "RGGB")
    assert m[0, 0] == rgb[0, 0, 0] and m[0, 1] == rgb[0, 1, 1] and m[1, 0] == rgb[1, 0, 1] and m[1, 1] == rgb[1, 1, 2]


def test_mirrored_pattern():
    assert mirrored_pattern("RGGB", x=True) == "GRBG"
    assert mirrored_pattern("RGGB", y=True) == "GBRG"
    assert mirrored_pattern("RGGB", x=True, y=True) == "BGGR"
    rgb = np.random.default_rng(0).integers(0, 4096, (8, 8, 3)).astype(np.uint16)
    assert np.array_equal(mosaic(rgb, "RGGB")[:, ::-1], mosaic(rgb[:, ::-1], "GRBG"))


def test_srgb_curve_round_trip():
    x = np.linspace(0, 1, 101, dtype=np.float32)
    np.testing.assert_allclose(srgb_to_linear(linear_to_srgb(x)), x, atol=1e-5)
    assert linear_to_srgb(np.float32(0.18)) == pytest.approx(0.4614, abs=1e-3)


def test_black_is_black_and_white_saturates():
    p = IspParams()
    black = np.full((8, 8), p.black_level, np.uint16)
    assert raw_to_rgb(black, p).max() == 0
    white = np.full((8, 8), p.white_level, np.uint16)
    assert raw_to_rgb(white, p).min() == 255


def test_grey_stays_grey_after_white_balance_and_ccm():
    p = IspParams()
    level = 0.2
    cam = np.array([level / g for g in p.wb_gains])  # a grey surface as the camera sees it
    raw_rgb = np.broadcast_to(p.black_level + cam * (p.white_level - p.black_level), (8, 8, 3)).round().astype(np.uint16)
    out = raw_to_rgb(mosaic(raw_rgb, p.pattern), p)[4, 4].astype(int)
    expected = round(float(linear_to_srgb(np.float32(level))) * 255)
    assert max(abs(c - expected) for c in out) <= 1


def test_16_bit_output_and_input_checks():
    raw = np.full((4, 4), 2000, np.uint16)
    out = raw_to_rgb(raw, out_bits=16)
    assert out.dtype == np.uint16
    with pytest.raises(ValueError, match="2-D"):
        raw_to_rgb(np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(ValueError, match="pattern"):
        IspParams(pattern="RGBG")


def test_settings_from_json_lists_equal_the_same_settings_as_tuples():
    p = IspParams(wb_gains=[2.0, 1, 1.5], ccm=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert p == IspParams(wb_gains=(2.0, 1.0, 1.5), ccm=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)))
    assert hash(p) == hash(IspParams(wb_gains=(2.0, 1.0, 1.5), ccm=((1, 0, 0), (0, 1, 0), (0, 0, 1))))
    with pytest.raises(ValueError, match="wb_gains needs 3"):
        IspParams(wb_gains=(1.0, 1.0))
