"""Atomic file writes: a temporary file in the target's folder, fsync, then rename.

A reader never sees a half-written file, and a killed process leaves at most a hidden ``.<name>.tmp-*`` file
beside the target, which readers and manifests ignore (``exlpose verify`` does not count it).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["current_umask", "atomic_path", "write_bytes_atomic", "write_text_atomic", "write_json_atomic",
           "write_image_atomic", "TMP_MARK"]

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
    """Serialise ``obj`` as JSON and write it atomically (compact unless ``indent`` is given).

    What is written obeys the rules :func:`exlpose_data.jsonio.load_json` reads by (finite numbers, integers within
    2^53, bounded nesting): a value that breaks them raises :class:`~exlpose_data.errors.InputError` naming ``path``
    and the place, and nothing is written.
    """
    from .jsonio import dumps_json

    return write_text_atomic(path, dumps_json(obj, indent=indent, source=str(path)) + "\n")


def write_image_atomic(path: str | os.PathLike, image: np.ndarray, *, rgb: bool = False, fast: bool = False) -> str:
    """Encode ``image`` in the format of ``path``'s suffix with OpenCV and write it atomically.

    Args:
        path: the image file; its suffix (``.png``, ``.jpg``, ...) picks the format.
        image: ``(H, W)`` or ``(H, W, 3)`` pixels, BGR as OpenCV expects (uint8, or uint16 for PNG).
        rgb: the three-channel ``image`` is RGB (converted to BGR before encoding).
        fast: PNG settings that encode several times faster than OpenCV's defaults, for files written in bulk
            (simulated releases and feeds): larger files, identical pixels.

    Returns:
        The SHA-256 (hex) of the bytes written, for manifests.

    Raises:
        OSError: the image cannot be encoded in that format (named by ``path``), or the write failed.
    """
    import cv2  # imported here: most users of this module write JSON only

    suffix = Path(path).suffix or ".png"
    # OpenCV would silently convert other depths (float, uint16 in a JPEG) to 8 bit: refuse them instead.
    if not (image.dtype == "uint8" or (image.dtype == "uint16" and suffix.lower() in (".png", ".tif", ".tiff"))):
        raise OSError(errno.EINVAL, f"cannot store {image.dtype} pixels as {suffix} (uint8, or uint16 in PNG/TIFF)", str(path))
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if rgb and image.ndim == 3 else image
    params: list[int] = []
    if fast and suffix.lower() == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
                  cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
    try:
        ok, buf = cv2.imencode(suffix, pixels, params)
    except cv2.error as exc:
        raise OSError(errno.EINVAL, f"cannot encode {image.dtype} {'x'.join(map(str, image.shape))} pixels as {suffix} ({exc.err})", str(path)) from None
    if not ok:
        raise OSError(errno.EINVAL, f"cannot encode {image.dtype} {'x'.join(map(str, image.shape))} pixels as {suffix}", str(path))
    data = buf.tobytes()
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()
