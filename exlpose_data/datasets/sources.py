"""Where a dataset's pixels come from: image files (decoded on demand) or a pack (see :mod:`.pack`,
:func:`.open_source.open_source` picks one).

A source hands out, per image-root-relative path, an ``(H, W, 3)`` BGR uint8 or uint16 array-like that
supports slicing, and the image's per-channel RGB mean on the 0-255 scale. Both kinds are safe to pickle into
DataLoader workers: they hold paths, and open files only when first used in a process.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from ..errors import InputError
from ..imageio import image_size
from .lowlight import rgb_means
from .records import report_missing

__all__ = ["ImageSource", "FileSource", "Size", "decode_image", "report_size_mismatch"]

# Sizes as (width, height), the order of annotation records.
Size = tuple[int, int]
_OPT_OUT = "fix the records or pass check_sizes=False"

# ANYDEPTH keeps 16-bit files 16-bit (plain IMREAD_COLOR keeps only their high byte); COLOR makes the decoder
# itself turn gray into three channels and drop alpha, so 8-bit files decode exactly as with IMREAD_COLOR alone.
# EXIF orientation is ignored: annotation coordinates refer to the stored pixel grid (the OC JPEGs' records
# give 6000x4000, their stored size).
_IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION
_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to an ``(H, W, 3)`` BGR array in its own depth: uint8, or uint16 for 16-bit files.

    Gray images get three equal channels and an alpha channel is dropped.
    """
    img = cv2.imread(str(path), _IMREAD_FLAGS)
    if img is None:
        raise InputError(f"{path}: not a readable image")
    if img.dtype not in _DTYPES:
        raise InputError(f"{path}: {img.dtype} pixels; only 8- and 16-bit integer images are supported")
    return img


def report_size_mismatch(mismatched: list[tuple[str, Size, Size]], total: int, records: str) -> None:
    """Raise one :class:`InputError` for images whose size differs from their records.

    Args:
        mismatched: ``(file, actual (w, h), record (w, h))`` of each such image.
        total: how many images were checked.
        records: the annotation file the record sizes come from.
    """
    if mismatched:
        name, (w, h), (rw, rh) = mismatched[0]
        raise InputError(
            f"{records}: {len(mismatched)} of {total} images differ in size from their annotation records, "
            f"e.g. {name} is {w}x{h}, its record says {rw}x{rh}; {_OPT_OUT}"
        )


class ImageSource(Protocol):
    """Pixels and whole-image means by relative path."""

    def check(self, relpaths: list[str]) -> None:
        """Raise one error naming the paths this source cannot provide."""

    def check_sizes(self, expected: dict[str, Size], records: str) -> None:
        """Raise one error when an image's ``(width, height)`` differs from ``expected`` (from ``records``)."""

    def get(self, relpath: str) -> tuple[Any, tuple[int, int], np.ndarray]:
        """``(pixels, (H, W), rgb_means)`` of one image; ``pixels`` supports ``[y0:y1, x0:x1]`` slicing."""


class FileSource:
    """Decode image files under a root, keeping the last few decoded images.

    Args:
        image_root: folder the relative paths start from.
        cache_images: decoded images kept per process (consecutive samples often share an image).
    """

    def __init__(self, image_root: str | os.PathLike, *, cache_images: int = 4) -> None:
        self.image_root = Path(image_root)
        self.cache_images = cache_images
        self._cache: OrderedDict[str, tuple[np.ndarray, tuple[int, int], np.ndarray]] = OrderedDict()
        self._expected: dict[str, Size] = {}
        self._records = ""

    def check(self, relpaths: list[str]) -> None:
        missing = [p for p in relpaths if not (self.image_root / p).is_file()]
        report_missing(missing, len(relpaths), f"under {self.image_root}")

    def check_sizes(self, expected: dict[str, Size], records: str) -> None:
        """Compare PNG/JPEG header sizes now; images of other formats are compared when first decoded."""
        mismatched = []
        for rel, want in expected.items():
            got = image_size(self.image_root / rel)
            if got is not None and got != want:
                mismatched.append((str(self.image_root / rel), got, want))
        report_size_mismatch(mismatched, len(expected), records)
        self._expected = dict(expected)
        self._records = records

    def get(self, relpath: str) -> tuple[Any, tuple[int, int], np.ndarray]:
        hit = self._cache.get(relpath)
        if hit is not None:
            self._cache.move_to_end(relpath)
            return hit
        img = decode_image(self.image_root / relpath)
        want = self._expected.get(relpath)
        if want is not None and (img.shape[1], img.shape[0]) != want:
            raise InputError(
                f"{self.image_root / relpath}: decoded image is {img.shape[1]}x{img.shape[0]}, its annotation record "
                f"({self._records}) says {want[0]}x{want[1]}; {_OPT_OUT}"
            )
        item = (img, (img.shape[0], img.shape[1]), rgb_means(img))
        if self.cache_images > 0:
            self._cache[relpath] = item
            while len(self._cache) > self.cache_images:
                self._cache.popitem(last=False)
        return item

    def __getstate__(self) -> dict:
        # Decoded images stay in the process that decoded them.
        return {**self.__dict__, "_cache": OrderedDict()}
