"""The session writer: one thread owns the HDF5 file and writes pairs taken from a bounded queue.

Crash safety without SWMR: the file is opened with h5py's default (earliest) format, which still opens after a
``kill -9`` (the ``libver='latest'`` format marks files open-for-write and refuses them after a crash). The
raw-data chunk cache is off, so each frame reaches the OS the moment it is written; a pair is written ll, then
wl; the ``frames`` rows of the pairs written since the last flush are appended just before each flush, and
:meth:`SessionReader.frames_table` trusts only rows whose frames exist. The file is flushed at least every
``flush_interval_s``: what was flushed survives a crash intact.
"""

from __future__ import annotations

import datetime as _dt
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from exlpose_data import __version__
from exlpose_data.errors import ExlposeError, UsageError
from exlpose_data.session_format import FRAME_DTYPE, FRAMES, LL, WL, in_use_by, is_lock_error

from . import diskspace
from .cameras import FrameFormat

__all__ = ["WriterError", "SessionWriter", "WriterStats", "frame_attrs", "json_attr"]

TABLE_CHUNK_ROWS = 256
# Free-space probes from write_pair: often enough to stop within a few pairs, rare enough to cost nothing.
PROBE_INTERVAL_S = 0.1


class WriterError(ExlposeError):
    """The writer thread failed (disk full, file removed, ...); the message says why."""


def frame_attrs(fmt: FrameFormat) -> dict[str, Any]:
    """The attributes a frame dataset carries (names from ``exlpose_data.session_format``)."""
    return {
        "pixel_format": fmt.pixel_format,
        "bayer_pattern": fmt.bayer_pattern or "",
        "bit_depth": fmt.bit_depth,
        "black_level": fmt.black_level,
        "mirrored_x": fmt.mirrored_x,
    }


@dataclass
class WriterStats:
    """What the live display shows about the writer."""

    pairs_written: int = 0
    bytes_written: int = 0
    flushes: int = 0
    queue_depth: int = 0
    free_bytes: int = -1
    pairs_discarded: int = 0
    flushed_rows: dict[str, int] = field(default_factory=dict)


class SessionWriter:
    """Write a session file from a background thread.

    Args:
        path: the ``.h5`` session file.
        root_attrs: attributes of ``/`` for a new file (``rig_config`` JSON and any extension).
        flush_interval_s: longest time between flushes.
        queue_pairs: pairs the queue holds before :meth:`write_pair` blocks.
        min_free_bytes: below this free space :attr:`low_space` is set and the recorder stops cleanly (checked at
            flushes and, at most every ``PROBE_INTERVAL_S``, in :meth:`write_pair`).
        floor_bytes: free space never written into: a queued pair that would take the disk below it is discarded
            and counted (``stats.pairs_discarded``, group attribute ``discarded_pairs``) instead.
        on_flush: called on the writer thread after each flush with ``{group path: rows flushed}``.

    An existing file is opened for appending (new scenes, resumed steps); its root attributes are kept.

    Raises:
        UsageError: the file exists but is not an HDF5 file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        root_attrs: dict[str, Any] | None = None,
        flush_interval_s: float = 0.5,
        queue_pairs: int = 64,
        min_free_bytes: int = 0,
        floor_bytes: int = 0,
        on_flush: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        self.path = Path(path)
        existing = self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # rdcc_nbytes=0: no raw-data cache, frames go to the OS at once (see the module docstring).
        try:
            self._f = h5py.File(self.path, "r+" if existing else "w-", rdcc_nbytes=0)
        except OSError as exc:
            if is_lock_error(exc):
                raise UsageError(f"{self.path}: {in_use_by(self.path)}; wait for it to finish or close it, then try again") from None
            raise UsageError(f"{self.path}: cannot open as a session file ({exc})") from None
        if not existing:
            self._f.attrs["software_version"] = __version__
            self._f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            for key, value in (root_attrs or {}).items():
                self._f.attrs[key] = value
            self._f.flush()  # a kill from here on leaves a file that opens
        self.flush_interval_s = flush_interval_s
        self.min_free_bytes = min_free_bytes
        self.floor_bytes = floor_bytes
        self.stats = WriterStats()
        self.low_space = threading.Event()
        # (free bytes probed, bytes written at that moment): free space now is estimated from both.
        self._probed = (0, 0)
        self._last_probe = 0.0
        self._discarded: dict[str, int] = {}
        self._probe()
        self._on_flush = on_flush
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=queue_pairs)
        self._error: BaseException | None = None
        self._dirty = False
        self._rows: dict[str, int] = {}
        self._pending_rows: dict[str, list[tuple[Any, ...]]] = {}
        self._datasets: dict[str, tuple[Any, Any, Any]] = {}
        self._thread = threading.Thread(target=self._run, name="session-writer", daemon=True)
        self._thread.start()

    # -- producer side (recorder thread) ---------------------------------------------------------------

    def set_attrs(self, group: str, attrs: dict[str, Any]) -> None:
        """Create ``group`` if needed and set attributes on it (queued in order with the pairs)."""
        self._put(("attrs", group, attrs))

    def open_step(self, group: str, attrs: dict[str, Any], ll: FrameFormat, wl: FrameFormat) -> tuple[int, int]:
        """Create (or reopen) the frame datasets of a step or reference.

        Returns:
            (pairs it already holds, the trigger index to continue from).

        Reopening trims frames written after the last complete pair (a crash between the two frames of a pair).

        Raises:
            UsageError: an existing group holds frames of another shape.
        """
        reply: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._put(("step", group, attrs, ll, wl, reply))
        result = reply.get()
        if isinstance(result, BaseException):
            raise result
        return result

    def write_pair(self, group: str, ll: np.ndarray, wl: np.ndarray, row: tuple[Any, ...]) -> None:
        """Queue one pair; blocks while the queue is full (acquisition waits rather than losing data).

        Free space is probed here too (rate-limited), so low space stops acquisition within a few pairs rather
        than at the next flush.
        """
        if time.monotonic() - self._last_probe >= PROBE_INTERVAL_S:
            self._probe()
        self._put(("pair", group, ll, wl, row))

    def close(self) -> None:
        """Write what is queued, flush, close the file; re-raise a failure of the writer thread."""
        if self._thread.is_alive():
            self._queue.put(("close",))
            self._thread.join()
        if self._f.id.valid:
            self._f.close()
        if self._error is not None:
            raise WriterError(f"{self.path}: writing failed: {self._error}") from self._error

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def _probe(self) -> None:
        """Measure free space (either thread); below ``min_free_bytes`` set :attr:`low_space`."""
        self._last_probe = time.monotonic()
        written = self.stats.bytes_written
        free = diskspace.free_bytes(self.path)
        self._probed = (free, written)
        self.stats.free_bytes = free
        if free < self.min_free_bytes:
            self.low_space.set()

    def _free_estimate(self) -> int:
        free, written = self._probed
        return free - (self.stats.bytes_written - written)

    def _put(self, item: tuple[Any, ...]) -> None:
        while True:
            if self._error is not None or not self._thread.is_alive():
                raise WriterError(f"{self.path}: writing failed: {self._error}")
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    # -- writer thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        last_flush = time.monotonic()
        try:
            while True:
                wait = max(0.0, self.flush_interval_s - (time.monotonic() - last_flush))
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    item = None
                if item is not None and item[0] == "close":
                    self._flush()
                    self._f.close()
                    return
                if item is not None:
                    self._handle(item)
                if time.monotonic() - last_flush >= self.flush_interval_s:
                    self._flush()
                    last_flush = time.monotonic()
        except BaseException as exc:  # surfaced to the producer by _put/close
            self._error = exc
            self._fail_pending()
            try:
                self._f.close()
            except Exception:  # the file may be the cause; nothing more can be saved
                pass

    def _fail_pending(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item[0] == "step":
                item[-1].put(WriterError(f"{self.path}: writing failed: {self._error}"))

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "pair":
            _, group, ll, wl, row = item
            if self._free_estimate() - (ll.nbytes + wl.nbytes) < self.floor_bytes:
                # Past the stop, the disk filled faster than the reserve allowed for: lose this pair, not the floor.
                self.low_space.set()
                self.stats.pairs_discarded += 1
                self._discarded[group] = self._discarded.get(group, 0) + 1
                self._f[group].attrs["discarded_pairs"] = self._discarded[group]
                self._dirty = True
                return
            ll_ds, wl_ds, table = self._datasets[group]
            n = self._rows[group]
            zeros = (0,) * ll.ndim
            for ds, frame in ((ll_ds, ll), (wl_ds, wl)):
                if frame.shape != ds.shape[1:]:
                    raise ValueError(f"{group}: frame of shape {frame.shape} does not fit {ds.shape[1:]}")
                ds.resize(n + 1, axis=0)
                # One frame is one whole chunk: hand its bytes to HDF5 as they are (no selection, no conversion).
                ds.id.write_direct_chunk((n, *zeros), np.ascontiguousarray(frame, dtype=ds.dtype))
            # The row waits for the next flush: it is written just before the file is flushed, after its frames,
            # so a flushed row always has its frames (and one HDF5 write per flush replaces two per pair).
            self._pending_rows.setdefault(group, []).append(row)
            self._rows[group] = n + 1
            self.stats.pairs_written += 1
            self.stats.bytes_written += ll.nbytes + wl.nbytes
            self._dirty = True
        elif kind == "attrs":
            _, group, attrs = item
            g = self._f.require_group(group)
            for key, value in attrs.items():
                g.attrs[key] = value
            self._dirty = True
        elif kind == "step":
            self._write_rows()
            reply = item[-1]
            try:
                reply.put(self._open_step(*item[1:-1]))
            except UsageError as exc:
                reply.put(exc)
            self._dirty = True

    def _open_step(self, group: str, attrs: dict[str, Any], ll: FrameFormat, wl: FrameFormat) -> tuple[int, int]:
        g = self._f.require_group(group)
        for key, value in attrs.items():
            g.attrs[key] = value
        for name, fmt in ((LL, ll), (WL, wl)):
            if name in g:
                if g[name].shape[1:] != fmt.shape or g[name].dtype != fmt.dtype:
                    raise UsageError(f"{self.path}:{group}/{name}: holds frames of shape {g[name].shape[1:]} {g[name].dtype}, camera gives {fmt.shape} {np.dtype(fmt.dtype)}")
            else:
                g.create_dataset(name, shape=(0, *fmt.shape), maxshape=(None, *fmt.shape), chunks=(1, *fmt.shape), dtype=fmt.dtype)
            for key, value in frame_attrs(fmt).items():
                g[name].attrs[key] = value
        if FRAMES not in g:
            g.create_dataset(FRAMES, shape=(0,), maxshape=(None,), chunks=(TABLE_CHUNK_ROWS,), dtype=FRAME_DTYPE)
        n = min(g[FRAMES].shape[0], g[LL].shape[0], g[WL].shape[0])
        for name in (LL, WL, FRAMES):
            if g[name].shape[0] != n:
                g[name].resize(n, axis=0)
        self._rows[group] = n
        self._datasets[group] = (g[LL], g[WL], g[FRAMES])
        next_index = int(g[FRAMES][n - 1]["index"]) + 1 if n else 0
        return n, next_index

    def _write_rows(self) -> None:
        """Append the rows of the pairs written since the last flush to their ``frames`` tables."""
        for group, rows in self._pending_rows.items():
            if rows:
                table = self._datasets[group][2]
                start = table.shape[0]
                table.resize(start + len(rows), axis=0)
                table[start:] = np.array(rows, dtype=FRAME_DTYPE)
        self._pending_rows = {}

    def _flush(self) -> None:
        self.stats.queue_depth = self._queue.qsize()
        self._write_rows()
        if self._dirty:
            self._f.flush()
            self._dirty = False
            self.stats.flushes += 1
            self.stats.flushed_rows = dict(self._rows)
            if self._on_flush is not None:
                self._on_flush(dict(self._rows))
        self._probe()


def json_attr(value: Any) -> str:
    """A JSON-encoded attribute value (k lists, configs)."""
    return json.dumps(value, separators=(",", ":"))
