"""Enhancement as a dataset transform: the low-light images of a dataset pass through an enhancer when read.

:class:`EnhancedSource` wraps a dataset's image source (files or a pack): the LL images it is given come back
enhanced (16-bit, see :mod:`.base`), every other image unchanged. With a cache folder each enhanced image is
computed once and stored as ``<cache>/<enhancer key>/<image path>.png`` (16-bit PNG, written atomically), so
training epochs, DataLoader workers and later evaluations read it instead of recomputing; :func:`fill_cache`
computes them up front with progress. A cached image is used when it is not older than its source file (a
re-aligned source image is enhanced again); the key changes with any enhancer setting.

:func:`run_parallel` runs the enhancement of many images in worker processes (``spawn``, each with one thread for
OpenCV, OpenMP and BLAS, so ``workers`` processes never start ``workers x cores`` threads); :func:`fill_cache` and
``exlpose enhance`` use it, by default on every core this process may use (:func:`default_workers`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from exlpose_data.atomic import write_image_atomic
from exlpose_data.threads import default_workers
from exlpose_data.datasets.lowlight import rgb_means
from exlpose_data.datasets.sources import decode_image

from .base import Enhancer, enhance_bgr, identity_key

__all__ = ["EnhancedSource", "enhance_dataset", "fill_cache", "ll_paths", "default_workers", "run_parallel"]

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

# Read by OpenMP and the BLAS libraries when they load: set while the worker processes start.
_ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_shared: Any = None


@contextlib.contextmanager
def _one_thread_env() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in _ONE_THREAD_ENV}
    os.environ.update(_ONE_THREAD_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _start_worker(shared: Any) -> None:
    import cv2

    global _shared
    _shared = shared
    cv2.setNumThreads(1)


def _call_worker(fn: Callable[[Any, T], R], item: T) -> R:
    return fn(_shared, item)


def run_parallel(fn: Callable[[S, T], R], shared: S, items: Sequence[T], workers: int) -> Iterator[tuple[T, R]]:
    """``(item, fn(shared, item))`` for each item, as they finish: in this process when ``workers <= 1`` (in
    order), else in ``workers`` spawned processes that each receive ``shared`` once.

    ``fn`` is a module-level function. The first error of a worker is raised here, after cancelling the items not
    started yet (those running finish).
    """
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield item, fn(shared, item)
        return
    # spawn, not fork: a process that imported torch or OpenCV holds threads and locks a fork does not copy safely.
    with _one_thread_env():
        pool = ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=get_context("spawn"),
                                   initializer=_start_worker, initargs=(shared,))
    with pool:
        with _one_thread_env():  # the processes start as the items are submitted
            pending = {pool.submit(_call_worker, fn, item): item for item in items}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    item = pending.pop(future)
                    yield item, future.result()
        finally:
            for future in pending:
                future.cancel()


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


def _fill_one(source: EnhancedSource, relpath: str) -> None:
    source.enhanced(relpath)


def fill_cache(dataset: Any, on_image: Callable[[str], None] | None = None, *, workers: int | None = None) -> int:
    """Compute every enhanced image of an :func:`enhance_dataset`-wrapped dataset that its cache lacks, in
    ``workers`` processes (:func:`run_parallel`; None: :func:`default_workers`; 1: in this process); returns how
    many were computed.

    ``on_image`` is called with each image path, the cached ones first, the computed ones as they finish.
    """
    source = dataset.source
    if not isinstance(source, EnhancedSource) or source.folder is None:
        raise ValueError("fill_cache needs a dataset wrapped by enhance_dataset with a cache folder")
    missing = []
    for rel in sorted(source.paths):
        cached = source.cached_file(rel)
        if cached is not None and not source._fresh(cached, rel):
            missing.append(rel)
        elif on_image is not None:
            on_image(rel)
    # The source goes to each worker process once (without its last image, see EnhancedSource.__getstate__).
    for rel, _ in run_parallel(_fill_one, source, missing, default_workers() if workers is None else workers):
        if on_image is not None:
            on_image(rel)
    return len(missing)
