"""Progress reporting from library code: a callback, so that only command-line modules draw anything.

A library function that works through items takes ``progress: ProgressCallback | None`` and calls it with
``(done, total)`` after each item; :func:`exlpose_data.cli.common.progress_callback` turns a rich progress bar
into such a callback, a test or a notebook can pass any function.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ProgressCallback", "report"]

ProgressCallback = Callable[[int, int], None]
"""Called with ``(items done, items in all)``."""


def report(progress: ProgressCallback | None, done: int, total: int) -> None:
    """Call ``progress`` with ``(done, total)`` when there is one."""
    if progress is not None:
        progress(done, total)
