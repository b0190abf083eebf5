"""Enhancement as a dataset transform: the low-light images of a dataset pass through an enhancer when read.

:class:`EnhancedSource` wraps a dataset's image source (files or a pack): the LL images it is given come back
enhanced (16-bit, see :mod:`.base`), every other image unchanged. With a cache folder each enhanced image is
computed once and stored as ``<cache>/<enhancer key>/<image path>.png`` (16-bit PNG, written atomically), so
training epochs, DataLoader workers and later evaluations read it instead of recomputing; :func:`fill_cache`
computes them up front with progress. A cached image is used when it is not older than its source file (a
re-aligned source image is enhanced again); the key changes with any enhancer setting.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from exlpose_data.atomic import write_image_atomic
from exlpose_data.datasets.lowlight import rgb_means
from exlpose_data.datasets.sources import decode_image

from .base import Enhancer, enhance_bgr, identity_key

__all__ = ["EnhancedSource", "enhance_dataset", "fill_cache", "ll_paths"]


class EnhancedSource:
    """An image source whose images in ``paths`` are enhanced by ``enhancer`` (see the module docstring).

    Args:
        base: the dataset's own source.
        paths: image-root-relative paths to enhance (the LL images).
        enhancer: the enhancer.
        image_root: where the source files are (for the cache's staleness check).
        cache: cache folder, or None to enhance on every read (the last image is kept in memory).
    """

    def __init__(self, base: Any, paths: Iterable[str], enhancer: Enhancer, image_root: str | os.PathLike,
                 cache: str | os.PathLike | None = None) -> None:
        self.base = base
        self.paths = frozenset(paths)
        self.enhancer = enhancer
        self.image_root = Path(image_root)
        self.folder = Path(cache) / identity_key(enhancer) if cache is not None else None
        self._last: tuple[str, tuple[Any, tuple[int, int], np.ndarray]] | None = None

    def check(self, relpaths: list[str]) -> None:
        self.base.check(relpaths)

    def check_sizes(self, expected: dict, records: str) -> None:
        self.base.check_sizes(expected, records)

    def cached_file(self, relpath: str) -> Path | None:
        """Where ``relpath``'s enhanced image is cached (None without a cache)."""
        return None if self.folder is None else self.folder / f"{relpath}.png"

    def _fresh(self, cached: Path, relpath: str) -> bool:
        try:
            mtime = cached.stat().st_mtime_ns
        except FileNotFoundError:
            return False
        try:
            return mtime >= (self.image_root / relpath).stat().st_mtime_ns
        except FileNotFoundError:  # read from a pack without the files: nothing to compare with
            return True

    def enhanced(self, relpath: str) -> np.ndarray:
        """The enhanced BGR uint16 image of ``relpath``, from the cache when fresh (computed and stored otherwise)."""
        cached = self.cached_file(relpath)
        if cached is not None and self._fresh(cached, relpath):
            return decode_image(cached)
        pixels, _, _ = self.base.get(relpath)
        out = enhance_bgr(self.enhancer, np.asarray(pixels))
        if cached is not None:
            write_image_atomic(cached, out, fast=True)
        return out

    def get(self, relpath: str) -> tuple[Any, tuple[int, int], np.ndarray]:
        if relpath not in self.paths:
            return self.base.get(relpath)
        if self._last is not None and self._last[0] == relpath:
            return self._last[1]
        img = self.enhanced(relpath)
        item = (img, (img.shape[0], img.shape[1]), rgb_means(img))
        self._last = (relpath, item)
        return item

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_last": None}


def ll_paths(dataset: Any) -> list[str]:
    """The low-light image paths an ``ExLPoseTopDown`` reads (none for a WL-only dataset)."""
    if "LL" not in dataset.conditions:
        return []
    return sorted({img.ll_path for img in dataset.index.images if img.ll_path is not None})


def enhance_dataset(dataset: Any, enhancer: Enhancer, cache: str | os.PathLike | None = None) -> Any:
    """Make ``dataset`` (an ``ExLPoseTopDown``) read its LL images through ``enhancer``; returns the dataset."""
    dataset.source = EnhancedSource(dataset.source, ll_paths(dataset), enhancer, dataset.index.image_root, cache)
    return dataset


def fill_cache(dataset: Any, on_image: Callable[[str], None] | None = None) -> int:
    """Compute every enhanced image of an :func:`enhance_dataset`-wrapped dataset that its cache lacks; returns
    how many were computed."""
    source = dataset.source
    if not isinstance(source, EnhancedSource) or source.folder is None:
        raise ValueError("fill_cache needs a dataset wrapped by enhance_dataset with a cache folder")
    done = 0
    for rel in sorted(source.paths):
        cached = source.cached_file(rel)
        if cached is not None and not source._fresh(cached, rel):
            source.enhanced(rel)
            done += 1
        if on_image is not None:
            on_image(rel)
    return done
