"""The simulator's speed-ups of the shared ISP (a lookup table for step 1, one OpenCV pass for white balance) give
bit-identical images to the plain numpy arithmetic they replace."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from exlpose_data.isp import IspParams, demosaic, linear_to_srgb, raw_to_rgb


def _reference(raw: np.ndarray, p: IspParams, out_bits: int, digital_gain: float) -> np.ndarray:
    scale = 65535.0 / (p.white_level - p.black_level)
    lin16 = np.clip((raw.astype(np.float32) - p.black_level) * scale, 0, 65535).astype(np.uint16)
    cam = demosaic(lin16, p.pattern, p.demosaic).astype(np.float32)
    balanced = np.minimum(cam * np.asarray(p.wb_gains, np.float32) * np.float32(digital_gain), np.float32(65535.0))
    srgb_lin = cv2.transform(balanced, p.ccm_array().astype(np.float32))
    top = 255.0 if out_bits == 8 else 65535.0
    lut = np.rint(linear_to_srgb(np.arange(65536, dtype=np.float64) / 65535.0) * top).astype(np.uint8 if out_bits == 8 else np.uint16)
    return lut[np.clip(srgb_lin, 0, 65535).astype(np.uint16)]


@pytest.mark.parametrize("params", [IspParams(), IspParams(black_level=64.0, pattern="GBRG", demosaic="ea", wb_gains=(2.1, 1.0, 1.3))])
@pytest.mark.parametrize("digital_gain", [1.0, 3.0])
@pytest.mark.parametrize("out_bits", [8, 16])
def test_fast_isp_is_bit_identical(params, digital_gain, out_bits):
    rng = np.random.default_rng(0)
    for top in (60, 600, 4400):  # dark, mid and saturating frames
        raw = (rng.random((120, 160)) * top + 200).astype(np.uint16)
        np.testing.assert_array_equal(raw_to_rgb(raw, params, out_bits=out_bits, digital_gain=digital_gain),
                                      _reference(raw, params, out_bits, digital_gain))
        np.testing.assert_array_equal(raw_to_rgb(raw.astype(np.int32), params, out_bits=out_bits, digital_gain=digital_gain),
                                      _reference(raw, params, out_bits, digital_gain))
