"""Atomic file writes: a temporary file in the target's folder, fsync, then rename.

A reader never sees a half-written file, and a killed process leaves at most a hidden ``.<name>.tmp-*`` file
beside the target, which readers and manifests ignore (``exlpose verify`` does not count it).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["current_umask", "atomic_path", "write_bytes_atomic", "write_text_atomic", "write_json_atomic", "TMP_MARK"]

TMP_MARK = ".tmp-"


def current_umask() -> int:
    """The process umask, read without changing it."""
    # Reading /proc does not touch the process umask, so writer threads never see a transient 0 mask.
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix) and move it over ``path`` on success.

    The temporary file is removed when the block raises. Use it for writers that want a file name
    (``cv2.imwrite``, h5py); the suffix is kept so such writers pick the right format.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, expected a file name", str(target))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}{TMP_MARK}", suffix=target.suffix, dir=target.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(target)) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # mkstemp creates 0600 files; give the result the permissions a plain open() would have.
        os.chmod(tmp, 0o666 & ~current_umask())
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp), tmp):
            # name the user's file, not our hidden temporary
            raise OSError(exc.errno, exc.strerror, str(target)) from None
        raise
    if fsync:
        _fsync_dir(target.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> Path:
    """Serialise ``obj`` as JSON and write it atomically (compact unless ``indent`` is given)."""
    separators = (",", ":") if indent is None else None
    return write_text_atomic(path, json.dumps(obj, indent=indent, separators=separators) + "\n")
