"""Running scenes on several cores, reporting progress, into an output folder that appears only when complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import TypeVar

import cv2

from ..atomic import TMP_MARK
from ..atomic import current_umask
from ..errors import UsageError
from ..layout import MANIFEST_LOCK_FILE
from ..outputs import building_folder, check_output
from ..threads import default_workers
from ..progress import ProgressCallback, report
from ..provenance import RECORD_FILE, RecordedRun, recorded_run

__all__ = ["staged_output", "simulation_output", "run_scenes", "default_workers"]

T = TypeVar("T")


@contextlib.contextmanager
def staged_output(out: str | Path) -> Iterator[Path]:
    """Yield a hidden staging folder beside ``out``; rename it to ``out`` on success, delete it on failure.

    ``out`` must not exist or be an empty folder, so a finished run never mixes with older files and a failed
    run leaves nothing behind. The folder gets the mode a plain ``mkdir`` would give it, not mkdtemp's 0700.
    """
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target}: already exists and is not an empty folder; choose a new output folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}{TMP_MARK}", dir=target.parent))
    try:
        yield stage
        # Nobody else can hold the staging folder's manifest lock, so its lock file is only litter once writing ends.
        (stage / MANIFEST_LOCK_FILE).unlink(missing_ok=True)
        os.chmod(stage, 0o777 & ~current_umask())
        if target.exists():
            target.rmdir()
        os.replace(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


@contextlib.contextmanager
def simulation_output(out: str | Path, *, produces: str, command: str, settings: dict, inputs: dict[str, Path],
                      overwrite: bool = False) -> Iterator[tuple[Path, RecordedRun]]:
    """The staging folder of a simulation's output folder ``out``, under a provenance record.

    ``out`` is checked first (:func:`exlpose_data.outputs.check_output`): never inside one of ``inputs`` (a
    backgrounds folder) nor one of them; new or empty, or with ``overwrite`` a folder of the kind ``produces``,
    which is then replaced only when the new one is complete. Every file the run leaves in the folder is
    recorded as its own.

    Yields:
        The staging folder, and the provenance run.
    """
    check_output(out, inputs=inputs.values(), writes="folder", produces=produces, replaces=(produces,), overwrite=overwrite)
    target = Path(out)
    replacing = overwrite and target.exists() and any(target.iterdir())
    with building_folder(target, overwrite=True) if replacing else contextlib.nullcontext(target) as dest, \
            staged_output(dest) as root, \
            recorded_run(root, command.removeprefix("exlpose-"), command=command, settings=settings, inputs=inputs) as run:
        yield root, run
        run.own(*sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                        if p.is_file() and p.name not in (RECORD_FILE, MANIFEST_LOCK_FILE) and TMP_MARK not in p.name))


def _single_threaded() -> None:
    # Worker processes already use every core; OpenCV's own thread pool would only oversubscribe them.
    cv2.setNumThreads(1)


def run_scenes(tasks: Sequence[Callable[[], T]], *, workers: int, progress: ProgressCallback | None = None) -> list[T]:
    """Run one picklable callable per scene, in worker processes when ``workers > 1``.

    Args:
        tasks: one zero-argument callable per scene (``functools.partial`` of a module-level function).
        workers: processes to use (1 = in this process).
        progress: called with ``(done, total)`` as scenes finish.

    Returns:
        The results in task order, whatever order they finished in.
    """
    results: list[T | None] = [None] * len(tasks)
    total = len(tasks)
    report(progress, 0, total)
    if workers <= 1 or total <= 1:
        for i, task in enumerate(tasks):
            results[i] = task()
            report(progress, i + 1, total)
        return results  # type: ignore[return-value]
    # "spawn", not the default fork: forking a process whose other threads (torch, pylon, OpenCV pools) hold
    # locks can deadlock the children, which is what happened when the CLI ran after such imports.
    ctx = get_context("spawn")
    done_count = 0
    with ProcessPoolExecutor(max_workers=min(workers, total), mp_context=ctx, initializer=_single_threaded) as pool:
        pending = {pool.submit(task): i for i, task in enumerate(tasks)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in done:
                i = pending.pop(fut)
                if fut.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise fut.exception()  # type: ignore[misc]
                results[i] = fut.result()
                done_count += 1
                report(progress, done_count, total)
    return results  # type: ignore[return-value]
