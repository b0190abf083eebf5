"""Packed 12-bit pixel formats (GenICam ``...12p``, e.g. BayerRG12p): unpacking on read, packing as a camera does.

Two pixels take three bytes, least significant bits first (the USB3 Vision "p" packing): byte 0 holds bits 0-7 of
pixel 0, byte 1 bits 8-11 of pixel 0 in its low nibble and bits 0-3 of pixel 1 in its high nibble, byte 2 bits
4-11 of pixel 1. Sessions store these bytes as the camera sent them (1.5 B/px instead of 2) and readers unpack.
"""

from __future__ import annotations

import numpy as np

__all__ = ["is_packed", "packed_row_bytes", "unpack_12p", "pack_12p"]


def is_packed(pixel_format: str) -> bool:
    """Whether a pylon/GenICam pixel format name is a packed one (``BayerRG12p``, ``Mono12p``)."""
    return pixel_format.endswith("12p")


def packed_row_bytes(width: int) -> int:
    """Bytes of one packed row of ``width`` pixels (``width`` must be even)."""
    if width % 2:
        raise ValueError(f"packed 12-bit rows need an even width, got {width}")
    return width * 3 // 2


def unpack_12p(packed: np.ndarray) -> np.ndarray:
    """(..., H, W*3/2) uint8 packed rows -> (..., H, W) uint16 samples, LSB-aligned (bit-identical to ``...12``)."""
    data = np.asarray(packed, np.uint8)
    if data.shape[-1] % 3:
        raise ValueError(f"packed 12-bit rows must hold a multiple of 3 bytes, got {data.shape[-1]}")
    b0, b1, b2 = data[..., 0::3], data[..., 1::3], data[..., 2::3]
    out = np.empty((*data.shape[:-1], b0.shape[-1] * 2), np.uint16)
    even, odd = out[..., 0::2], out[..., 1::2]
    # Shifts straight into the uint16 output, no widened temporaries (about twice as fast as widening first).
    np.left_shift(b1 & 0x0F, 8, out=even, dtype=np.uint16)
    even |= b0
    np.left_shift(b2, 4, out=odd, dtype=np.uint16)
    odd |= b1 >> 4
    return out


def pack_12p(raw: np.ndarray) -> np.ndarray:
    """(..., H, W) samples in 0..4095 -> (..., H, W*3/2) uint8, packed as the camera sends them (stand-ins, benchmarks)."""
    data = np.asarray(raw)
    out = np.empty((*data.shape[:-1], packed_row_bytes(data.shape[-1])), np.uint8)
    p0, p1 = data[..., 0::2].astype(np.uint16), data[..., 1::2].astype(np.uint16)
    out[..., 0::3] = p0 & 0xFF
    out[..., 1::3] = (p0 >> 8) | ((p1 & 0x0F) << 4)
    out[..., 2::3] = p1 >> 4
    return out
