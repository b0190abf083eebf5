"""Image sizes from file headers, without decoding pixels.

Reading a PNG's IHDR chunk or a JPEG's frame header takes a few bytes, so every image of a dataset can be
checked against its annotation record when the dataset is opened (decoding a 1920x1200 PNG costs ~20 ms,
a 6000x4000 JPEG far more). The JPEG size is the stored one: EXIF orientation is not applied, as in the
toolkit's decoding.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

__all__ = ["image_size", "pixel_size"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC are other segments.
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers without a length field: TEM and the restart markers.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def _png_size(head: bytes) -> tuple[int, int] | None:
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", head[16:24])
    return (int(w), int(h)) if w > 0 and h > 0 else None


def _jpeg_size(fh: BinaryIO) -> tuple[int, int] | None:
    fh.seek(2)  # past SOI
    while True:
        byte = fh.read(1)
        if byte != b"\xff":
            return None
        marker = fh.read(1)
        while marker == b"\xff":  # fill bytes
            marker = fh.read(1)
        if not marker:
            return None
        m = marker[0]
        if m in _JPEG_STANDALONE:
            continue
        if m in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        raw = fh.read(2)
        if len(raw) < 2:
            return None
        (length,) = struct.unpack(">H", raw)
        if length < 2:
            return None
        if m in _JPEG_SOF:
            body = fh.read(5)
            if len(body) < 5:
                return None
            h, w = struct.unpack(">HH", body[1:5])
            # A height of 0 means it is given later (DNL marker): unknown here.
            return (int(w), int(h)) if w > 0 and h > 0 else None
        fh.seek(length - 2, os.SEEK_CUR)


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` of a PNG or JPEG file from its header, or None when the file is not a readable
    PNG/JPEG (other formats, truncated headers, unreadable files)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
            if head.startswith(_PNG_SIGNATURE):
                return _png_size(head)
            if head.startswith(b"\xff\xd8"):
                return _jpeg_size(fh)
    except OSError:
        return None
    return None


def pixel_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` of an image file: from its header for PNG and JPEG, else by decoding it with OpenCV;
    None when it cannot be read either way."""
    size = image_size(path)
    if size is not None:
        return size
    import cv2  # only for formats without a header reader here

    try:
        img = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    return None if img is None else (int(img.shape[1]), int(img.shape[0]))
