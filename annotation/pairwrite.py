"""Writing two files that belong together (a WL and an LL annotation file) so that an error never mixes them.

Each file alone is written atomically (:func:`exlpose_data.atomic.atomic_path`), but two renames are two steps:
when the second fails (full disk, a permission, a read-only remount) after the first succeeded, the new first
file would sit beside the old second one. So both temporaries are written and fsynced before either rename,
the first file's old content is kept as a hidden hard link (or copy) until the second rename succeeded, and
put back when it fails.

What no user-space code can rule out: a crash (power loss, SIGKILL) in the microseconds between the two
renames leaves the new first file beside the old second one; the first file's old content then survives as
the hidden ``.<name>.tmp-old-*`` file beside it, which readers and manifests ignore.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from exlpose_data.atomic import TMP_MARK, atomic_path

__all__ = ["write_pair"]


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _keep_old(path: Path) -> Path | None:
    """A hidden hard link (or, where links are impossible, a copy) of ``path`` beside it; None if it does not exist."""
    if not path.exists():
        return None
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}{TMP_MARK}old-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    backup = Path(name)
    try:
        backup.unlink()
        os.link(path, backup)
    except OSError:  # no hard links on this file system (FAT, some network shares)
        shutil.copyfile(path, backup)
    return backup


def write_pair(first: Path, first_text: str, second: Path, second_text: str) -> None:
    """Write ``first`` and ``second``; on any error both are left as they were (existing or absent).

    Raises:
        OSError: a write or rename failed (naming the file); neither file was changed.
    """
    backup = _keep_old(first)
    try:
        with contextlib.ExitStack() as stack:
            # Entered first, left last: ``second`` is renamed into place after ``first``.
            tmp_second = stack.enter_context(atomic_path(second))
            tmp_first = stack.enter_context(atomic_path(first))
            _write_synced(tmp_first, first_text)
            _write_synced(tmp_second, second_text)
    except BaseException as exc:
        # Whether or not ``first`` was renamed already, putting its old content back is right.
        if backup is None:
            first.unlink(missing_ok=True)
            raise
        try:
            os.replace(backup, first)
        except OSError as undo:
            kept, backup = backup, None  # the only copy of the old content now: never delete it
            raise OSError(undo.errno, f"{undo.strerror}; writing {second.name} failed ({exc}) and the old content is kept in {kept}", str(first)) from exc
        raise
    finally:
        if backup is not None:
            backup.unlink(missing_ok=True)
