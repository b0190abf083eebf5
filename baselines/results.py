"""Result folders of the baselines' commands (predictions, overlays, tables, gap plots, enhanced images): where
they may be written and what they record.

Each follows the toolkit's output rules (:mod:`exlpose_data.outputs`, :mod:`exlpose_data.provenance`): the folder is
new or empty, or one this same command wrote (its provenance record says so); it never is, holds or sits inside an
input; a re-run with the same settings and inputs rewrites it in place (``resumed``), one with other settings is
refused naming each difference unless ``--overwrite``, which builds the new folder beside the old one and swaps
it in at the end, so no file of the old run survives in it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from exlpose_data.outputs import building_folder, check_output
from exlpose_data.provenance import RECORD_FILE, RecordedRun, recorded_run

__all__ = ["result_folder", "owned_files"]


def owned_files(folder: Path) -> list[str]:
    """Every file under ``folder`` (relative, POSIX), the provenance record aside."""
    out = []
    for dirpath, _, names in os.walk(folder):
        for name in names:
            rel = (Path(dirpath) / name).relative_to(folder).as_posix()
            if rel != RECORD_FILE:
                out.append(rel)
    return sorted(out)


@contextlib.contextmanager
def result_folder(
    out: str | os.PathLike,
    *,
    command: str,
    produces: str,
    settings: Mapping[str, Any],
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
    read: Iterable[str | os.PathLike | None] = (),
    files: Iterable[str] = (),
    overwrite: bool = False,
    option: str = "--out",
) -> Iterator[tuple[Path, RecordedRun]]:
    """``(folder to write into, its recorded run)`` for a command writing the result folder ``out``.

    Args:
        out: the folder the user named.
        command: the command's name, recorded (``exlpose-predict``).
        produces: what it writes, in words, for messages.
        settings: every setting that changes what is written.
        inputs: role -> file or folder that changes what is written (digested; None entries skipped).
        read: further inputs that are only checked against ``out`` (not digested: many images).
        files: the names written at the top of ``out`` (checked against the inputs).
        overwrite: the user passed ``--overwrite``.
        option: the option naming ``out``.

    A run that fails leaves the folder's record marked incomplete (``exlpose verify`` lists it; a re-run with the
    same settings continues it), so commands check their inputs (models, images) before entering this.

    Raises:
        UsageError: ``out`` is or holds an input, holds something this command did not write, or holds an
            earlier run with other settings (without ``overwrite``).
    """
    digested = {role: p for role, p in (inputs or {}).items() if p is not None}
    # what_is() names a folder by the command its provenance record names: only this command's own folder
    # is continued (its settings then decide, in recorded_run) or, with --overwrite, replaced
    check_output(out, inputs=[*digested.values(), *read], writes="folder", produces=produces, replaces=[produces],
                 overwrite=overwrite, resumes=True, files=files, option=option)
    with building_folder(out, overwrite=overwrite) as build, recorded_run(
        build, command, command=command, settings=settings, inputs=digested, overwrite=overwrite, out_option=option,
    ) as run:
        yield build, run
