"""The one raw -> RGB path: black level, demosaic, white balance, colour matrix, sRGB curve, quantisation.

Used by the simulator (to render what a camera would store) and by ``exlpose-align apply`` (to turn recorded
raw frames into release images), so simulated and captured data go through the same steps:

1. ``x = clip(raw - black_level, 0) / (white_level - black_level)``   (linear, 0..1 at saturation)
2. demosaic the Bayer mosaic (OpenCV bilinear or edge-aware)          -> camera RGB
3. multiply by the white-balance gains (R, G, B) and clip at saturation (highlights stay neutral)
4. apply the 3x3 colour matrix (camera RGB -> linear sRGB), clip to [0, 1]
5. sRGB transfer curve, round to 8 (or 16) bits

There is no auto-exposure: a low-light frame stays dark, as the release's LL images are.
The inverse of steps 3-5 (:func:`srgb_to_linear`, :meth:`IspParams.camera_from_srgb`) lets the simulator
"unprocess" sRGB textures into camera RGB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = [
    "BAYER_PATTERNS",
    "IspParams",
    "demosaic",
    "mosaic",
    "mirrored_pattern",
    "srgb_to_linear",
    "linear_to_srgb",
    "raw_to_rgb",
]

BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")

# OpenCV names Bayer codes after the second row's pattern; verified against a synthetic RGGB mosaic in tests.
_CV_BILINEAR = {"RGGB": cv2.COLOR_BayerBG2RGB, "BGGR": cv2.COLOR_BayerRG2RGB, "GRBG": cv2.COLOR_BayerGB2RGB, "GBRG": cv2.COLOR_BayerGR2RGB}
_CV_EA = {"RGGB": cv2.COLOR_BayerBG2RGB_EA, "BGGR": cv2.COLOR_BayerRG2RGB_EA, "GRBG": cv2.COLOR_BayerGB2RGB_EA, "GBRG": cv2.COLOR_BayerGR2RGB_EA}
_CHANNEL = {"R": 0, "G": 1, "B": 2}


def _default_ccm() -> np.ndarray:
    # A typical camera-RGB -> linear-sRGB matrix of a Sony CMOS sensor (approx.); rows sum to 1 so grey stays grey.
    return np.array([[1.62, -0.48, -0.14], [-0.26, 1.52, -0.26], [0.02, -0.56, 1.54]], dtype=np.float64)


@dataclass(frozen=True)
class IspParams:
    """Settings of the raw -> RGB path.

    Args:
        black_level: black level in DN of the raw data's bit depth (240 at 12 bit for IMX392-class sensors).
        bit_depth: bits per raw sample (12 for BayerRG12); the white level is ``2**bit_depth - 1``.
        pattern: Bayer pattern of the raw frame as stored (after any ReverseX on the camera).
        wb_gains: white-balance gains (R, G, B) applied to camera RGB.
        ccm: 3x3 camera RGB -> linear sRGB matrix.
        demosaic: ``"bilinear"`` or ``"ea"`` (OpenCV edge-aware).
    """

    black_level: float = 240.0
    bit_depth: int = 12
    pattern: str = "RGGB"
    wb_gains: tuple[float, float, float] = (1.9, 1.0, 1.55)
    ccm: tuple[tuple[float, float, float], ...] = field(default_factory=lambda: tuple(map(tuple, _default_ccm())))
    demosaic: str = "bilinear"

    def __post_init__(self) -> None:
        # Settings read from JSON/YAML arrive as lists: store tuples so equal settings compare (and hash) equal.
        object.__setattr__(self, "wb_gains", tuple(float(g) for g in self.wb_gains))
        object.__setattr__(self, "ccm", tuple(tuple(float(v) for v in row) for row in self.ccm))
        if len(self.wb_gains) != 3 or len(self.ccm) != 3 or any(len(row) != 3 for row in self.ccm):
            raise ValueError("wb_gains needs 3 values and ccm 3 rows of 3")
        if self.pattern not in BAYER_PATTERNS:
            raise ValueError(f"unknown Bayer pattern {self.pattern!r}; one of {BAYER_PATTERNS}")
        if self.demosaic not in ("bilinear", "ea"):
            raise ValueError(f"unknown demosaic {self.demosaic!r}; 'bilinear' or 'ea'")
        if not 0 <= self.black_level < self.white_level:
            raise ValueError(f"black level {self.black_level} outside [0, {self.white_level})")

    @property
    def white_level(self) -> int:
        return (1 << self.bit_depth) - 1

    def ccm_array(self) -> np.ndarray:
        return np.asarray(self.ccm, dtype=np.float64)

    def camera_from_srgb(self) -> np.ndarray:
        """3x3 matrix taking linear sRGB to white-balanced-removed camera RGB (the inverse of steps 3-4)."""
        forward = self.ccm_array() @ np.diag(self.wb_gains)
        return np.linalg.inv(forward)


def mirrored_pattern(pattern: str, *, x: bool = False, y: bool = False) -> str:
    """Bayer pattern after mirroring an even-sized mosaic horizontally (``x``) and/or vertically (``y``)."""
    grid = [[pattern[0], pattern[1]], [pattern[2], pattern[3]]]
    if x:
        grid = [row[::-1] for row in grid]
    if y:
        grid = grid[::-1]
    return "".join(grid[0] + grid[1])


def mosaic(rgb: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """Sample an (H, W, 3) image into an (H, W) Bayer mosaic of ``pattern``."""
    if pattern not in BAYER_PATTERNS:
        raise ValueError(f"unknown Bayer pattern {pattern!r}")
    out = np.empty(rgb.shape[:2], dtype=rgb.dtype)
    for idx, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[dy::2, dx::2] = rgb[dy::2, dx::2, _CHANNEL[pattern[idx]]]
    return out


def demosaic(bayer: np.ndarray, pattern: str = "RGGB", method: str = "bilinear") -> np.ndarray:
    """Demosaic a uint8/uint16 mosaic into (H, W, 3) RGB of the same dtype."""
    if bayer.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"demosaic needs uint8 or uint16 data, got {bayer.dtype}")
    table = _CV_EA if method == "ea" else _CV_BILINEAR
    return cv2.cvtColor(np.ascontiguousarray(bayer), table[pattern])


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB transfer curve inverse, for values in [0, 1]."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """sRGB transfer curve, for linear values in [0, 1]."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


def raw_to_rgb(raw: np.ndarray, params: IspParams | None = None, *, out_bits: int = 8, digital_gain: float = 1.0) -> np.ndarray:
    """Develop a raw Bayer frame (LSB-aligned integers) into sRGB.

    Args:
        raw: (H, W) mosaic, values in DN at ``params.bit_depth`` bits.
        params: ISP settings; defaults to :class:`IspParams`'s.
        out_bits: 8 (uint8) or 16 (uint16) output.
        digital_gain: linear multiplier before the colour steps (1.0 for release images; >1 for previews).

    Returns:
        (H, W, 3) uint8 or uint16 sRGB image.
    """
    p = params or IspParams()
    if raw.ndim != 2:
        raise ValueError(f"raw frame must be 2-D (H, W), got shape {raw.shape}")
    if out_bits not in (8, 16):
        raise ValueError("out_bits must be 8 or 16")
    if raw.dtype == np.uint16:
        lin16 = _linear_lut(float(p.black_level), p.white_level)[raw]
    else:
        lin16 = _to_linear16(raw, float(p.black_level), p.white_level)
    cam = demosaic(lin16, p.pattern, p.demosaic)
    # White balance, then clip at the sensor's saturation so blown highlights stay white instead of tinted.
    gains = np.asarray(p.wb_gains, np.float32)
    if digital_gain == 1.0:
        # One OpenCV pass converts and multiplies; the product of a uint16 and a float32 is rounded to float32 the
        # same way, so this is bit-identical to the numpy expression below at about a third of its time.
        balanced = cv2.multiply(cam, tuple(float(g) for g in gains) + (0.0,), dtype=cv2.CV_32F)
    else:
        balanced = cam.astype(np.float32) * gains * np.float32(digital_gain)
    np.minimum(balanced, np.float32(65535.0), out=balanced)
    srgb_lin = cv2.transform(balanced, p.ccm_array().astype(np.float32))
    np.clip(srgb_lin, 0, 65535, out=srgb_lin)
    return _srgb_lut(out_bits)[srgb_lin.astype(np.uint16)]


_LUTS: dict[int, np.ndarray] = {}
_LINEAR_LUTS: dict[tuple[float, int], np.ndarray] = {}


def _to_linear16(raw: np.ndarray, black_level: float, white_level: int) -> np.ndarray:
    """Step 1: black level off, scaled so saturation is 65535 (linear, uint16)."""
    scale = 65535.0 / (white_level - black_level)
    return np.clip((raw.astype(np.float32) - black_level) * scale, 0, 65535).astype(np.uint16)


def _linear_lut(black_level: float, white_level: int) -> np.ndarray:
    """Step 1 as a table over every uint16 raw value: the same arithmetic, a third of the time per frame."""
    key = (black_level, white_level)
    if key not in _LINEAR_LUTS:
        _LINEAR_LUTS[key] = _to_linear16(np.arange(65536, dtype=np.uint16), black_level, white_level)
    return _LINEAR_LUTS[key]


def _srgb_lut(out_bits: int) -> np.ndarray:
    """Linear 16-bit -> sRGB-encoded ``out_bits`` lookup table (the curve costs too much per pixel)."""
    if out_bits not in _LUTS:
        top = 255.0 if out_bits == 8 else 65535.0
        encoded = linear_to_srgb(np.arange(65536, dtype=np.float64) / 65535.0)
        _LUTS[out_bits] = np.rint(encoded * top).astype(np.uint8 if out_bits == 8 else np.uint16)
    return _LUTS[out_bits]
