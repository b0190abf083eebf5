"""Outputs know what made them: a provenance record in every output folder.

Each folder a command writes (a release, a split's annotation folder, a training run, an enhancement cache) holds
``.exlpose-provenance.json``: for every *step* that wrote into it (one ``align apply`` per session, one
``split by-scene``, ...) the command, the toolkit version, the settings, the digests of its inputs, the files it
owns, and whether it finished. From it a re-run decides (the DVC idea, applied per step):

- same settings and inputs: resume, skipping the finished work;
- other settings or inputs: refused, naming each difference, unless ``--overwrite``;
- settings that every step of a command in the folder must share (the bit depth of a release): refused when they
  differ from another step's, even with ``--overwrite`` (the folder would mix them);
- files the previous run of the step owned and this run did not write are removed when it completes, so nothing a
  run no longer makes survives it (a ``val`` file after a split without ``--val-fraction``);
- a run that did not complete (Ctrl-C, SIGTERM, disk full, a crash) stays marked ``incomplete``; ``exlpose verify``
  reports it.

The record is read strictly (:mod:`exlpose_data.jsonio`) before anything is written; a broken record is refused.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import write_json_atomic
from .errors import InputError, UsageError
from .jsonio import load_json

__all__ = ["RECORD_FILE", "RecordedRun", "recorded_run", "read_record", "incomplete_steps", "find_records", "digest",
           "differences"]

RECORD_FILE = ".exlpose-provenance.json"
_FORMAT = "exlpose-provenance"
_VERSION = 1
# Inputs up to this size are hashed whole; larger ones (capture sessions of many GB) by size, mtime and the
# SHA-256 of their first and last MiB, which any rewrite of an HDF5 file changes.
_FULL_HASH_BYTES = 256 << 20
_EDGE_BYTES = 1 << 20


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def digest(path: str | os.PathLike) -> dict[str, Any]:
    """A digest of an input file or folder, cheap enough for multi-GB sessions (see the module notes)."""
    p = Path(path)
    if p.is_dir():
        manifest = p / "manifest.json"
        return {"kind": "folder", "manifest_sha256": _sha256_whole(manifest) if manifest.is_file() else None}
    st = p.stat()
    if st.st_size <= _FULL_HASH_BYTES:
        return {"size": st.st_size, "sha256": _sha256_whole(p)}
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        h.update(fh.read(_EDGE_BYTES))
        fh.seek(max(0, st.st_size - _EDGE_BYTES))
        h.update(fh.read(_EDGE_BYTES))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "edges_sha256": h.hexdigest()}


def _sha256_whole(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``name old -> new`` for every setting that differs (absent settings shown as ``unset``)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "unset"), new.get(key, "unset")
        if a != b:
            out.append(f"{key} {_show(a)} -> {_show(b)}")
    return out


def _input_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    out = []
    for role in sorted(set(old) | set(new)):
        a, b = old.get(role), new.get(role)
        if a is None or b is None:
            out.append(f"input {role} {'added' if a is None else 'removed'}")
        elif {k: v for k, v in a.items() if k != "path"} != {k: v for k, v in b.items() if k != "path"}:
            out.append(f"input {role} changed ({a.get('path', '?')} -> {b.get('path', '?')}, other content)")
    return out


def read_record(folder: str | os.PathLike) -> dict[str, Any]:
    """The folder's record ``{"format", "version", "steps": {...}}`` (empty steps when there is none).

    Raises:
        InputError: the record is not valid JSON or not a provenance record.
    """
    p = Path(folder) / RECORD_FILE
    if not p.exists():
        return {"format": _FORMAT, "version": _VERSION, "steps": {}}
    data = load_json(p)
    if not (isinstance(data, dict) and data.get("format") == _FORMAT and isinstance(data.get("steps"), dict)):
        raise InputError(f"{p}: not a provenance record of this toolkit (delete it only if you know what wrote the folder)")
    if data.get("version") != _VERSION:
        raise InputError(f"{p}: provenance version {data.get('version')!r}, this toolkit reads version {_VERSION}")
    for step, entry in data["steps"].items():
        if not (isinstance(entry, dict) and isinstance(entry.get("settings"), dict) and isinstance(entry.get("files"), list)
                and entry.get("state") in ("complete", "incomplete")):
            raise InputError(f"{p}: steps[{step!r}]: malformed entry")
    return data


def _write(folder: Path, record: dict[str, Any]) -> None:
    write_json_atomic(folder / RECORD_FILE, record, indent=1)


@dataclass
class RecordedRun:
    """One run of a step, as the command writes: tell it every file the run owns (written or kept)."""

    folder: Path
    step: str
    previous_files: frozenset[str]
    resumed: bool
    files: set[str] = field(default_factory=set)
    removed: list[str] = field(default_factory=list)
    _stale_done: bool = False

    def own(self, *relpaths: str) -> None:
        """Record files (relative to the folder) that this run wrote or kept as its own."""
        self.files.update(relpaths)

    def remove_stale(self) -> list[str]:
        """Remove the files the step's previous run owned that this run did not write; returns their paths.

        Called at the end of the run by :func:`recorded_run` when the command has not called it itself (a command
        whose folder has a manifest calls it first, to update the manifest with what went).
        """
        if self._stale_done:
            return self.removed
        for rel in sorted(self.previous_files - self.files):
            path = self.folder / rel
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                self.removed.append(rel)
        self._stale_done = True
        return self.removed


@contextlib.contextmanager
def recorded_run(
    folder: str | os.PathLike,
    step: str,
    *,
    command: str,
    settings: Mapping[str, Any],
    inputs: Mapping[str, str | os.PathLike],
    overwrite: bool = False,
    shared: Sequence[str] = (),
    out_option: str = "--out",
) -> Iterator[RecordedRun]:
    """Run one step into ``folder`` under its provenance record.

    Args:
        folder: the output folder (created when absent).
        step: which part of the folder this run writes (e.g. ``"align apply <session name>"``).
        command: the command line's name (``exlpose-align apply``), recorded.
        settings: every setting that changes what is written (JSON values).
        inputs: role -> path of every input that changes what is written; digested.
        overwrite: the user passed ``--overwrite``: differing settings replace the step's files.
        shared: settings every step of ``command`` in this folder must agree on.
        out_option: the option naming the folder, for messages.

    Raises:
        InputError: the folder's record is broken (before anything is written).
        UsageError: the settings or inputs differ from the step's earlier run (without ``overwrite``), or a
            ``shared`` setting differs from another step's.
    """
    from . import __version__

    root = Path(folder)
    record = read_record(root)
    settings = dict(settings)
    digests = {role: {"path": str(Path(p)), **digest(p)} for role, p in inputs.items()}
    for other, entry in record["steps"].items():
        if other == step or entry.get("command") != command:
            continue
        clash = [d for d in differences({k: entry["settings"].get(k, "unset") for k in shared}, {k: settings.get(k, "unset") for k in shared})]
        if clash:
            raise UsageError(f"{out_option} {root}: {other} wrote it with other settings ({'; '.join(clash)}); "
                             f"one folder must not mix them: choose another {out_option}")
    previous = record["steps"].get(step)
    resumed = False
    previous_files: frozenset[str] = frozenset()
    if previous is not None:
        previous_files = frozenset(str(f) for f in previous["files"])
        diffs = differences(previous["settings"], settings) + _input_differences(previous.get("inputs", {}), digests)
        if diffs and not overwrite:
            raise UsageError(f"{out_option} {root}: {step} was written there with other settings or inputs ({'; '.join(diffs)}); "
                             f"pass --overwrite to replace its files, or choose another {out_option}")
        resumed = not diffs and not overwrite
    root.mkdir(parents=True, exist_ok=True)
    entry: dict[str, Any] = {"command": command, "toolkit": __version__, "settings": settings, "inputs": digests,
                             "state": "incomplete", "started": _now(), "finished": None,
                             "files": sorted(previous_files)}
    record["steps"][step] = entry
    _write(root, record)
    run = RecordedRun(root, step, previous_files, resumed)
    try:
        yield run
    except BaseException:
        # Keep every file either run owns listed, so a later run (or --overwrite) can find and clean them.
        entry["files"] = sorted(previous_files | run.files)
        with contextlib.suppress(OSError):
            _write(root, record)
        raise
    run.remove_stale()
    entry.update(state="complete", finished=_now(), files=sorted(run.files))
    _write(root, record)


def find_records(root: str | os.PathLike) -> list[Path]:
    """Every folder at or below ``root`` that holds a provenance record."""
    out = []
    for dirpath, _, names in os.walk(root):
        if RECORD_FILE in names:
            out.append(Path(dirpath))
    return sorted(out)


def incomplete_steps(root: str | os.PathLike) -> list[str]:
    """``<folder>: <step> (started ...)`` for every step at or below ``root`` that did not finish."""
    out = []
    for folder in find_records(root):
        record = read_record(folder)
        for step, entry in record["steps"].items():
            if entry["state"] != "complete":
                out.append(f"{folder}: {step} did not finish (started {entry.get('started')}, {entry.get('command')}); re-run it to complete")
    return out
