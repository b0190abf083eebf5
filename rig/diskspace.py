"""Free disk space: the refusal before recording and the low-space stop during it."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from exlpose_data.errors import UsageError

__all__ = ["free_bytes", "check_room", "stop_reserve_bytes", "MB"]

MB = 1 << 20
# HDF5 metadata, chunk index and frames tables on top of the raw pixels.
OVERHEAD = 1.02


def free_bytes(path: str | Path) -> int:
    """Free bytes on the file system holding ``path`` (its nearest existing parent)."""
    p = Path(path).resolve()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def check_room(path: str | Path, expected_bytes: int, reserve_bytes: int) -> int:
    """Refuse to start when the estimate plus the reserve does not fit; return the free bytes.

    Raises:
        UsageError: not enough free space (the message gives both sizes).
    """
    free = free_bytes(path)
    need = int(expected_bytes * OVERHEAD) + reserve_bytes
    if need > free:
        raise UsageError(
            f"{path}: needs about {need / MB:.0f} MB (recording {expected_bytes * OVERHEAD / MB:.0f} MB + reserve "
            f"{reserve_bytes / MB:.0f} MB) but only {free / MB:.0f} MB are free; record fewer frames, a smaller ROI, or elsewhere"
        )
    return free


def stop_reserve_bytes(min_free_bytes: int, pair_bytes: int, queue_pairs: int, frame_rate_hz: float, flush_interval_s: float) -> int:
    """Free space below which recording stops, so that what is still written afterwards keeps ``min_free_bytes``.

    Free space is measured while pairs wait in the writer queue and before the file system has seen the pairs
    written since the last flush; after the stop all of them may still be written: the full queue, one flush
    interval of pairs and the pair in hand.
    """
    in_flight = queue_pairs + math.ceil(frame_rate_hz * flush_interval_s) + 1
    return min_free_bytes + in_flight * pair_bytes
