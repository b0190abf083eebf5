"""Output safety: whether a command may write where it was told. Every command that writes calls this module.

The rules (docs/data-safety.md):

- An output is never one of the command's inputs, never sits inside a folder the command reads, and a folder
  output never receives a file of the same name as one of its inputs.
- Something that already exists at the output path and is of another kind (a capture session where an ALIGN.json
  would go, an annotation file where a pack would go, a release where a training run would go) is refused with one
  line naming what it is. Something of the same kind is replaced only with ``--overwrite``, unless the command
  resumes it (see :mod:`exlpose_data.provenance`).
- ``--overwrite`` of a folder builds the new folder beside the old one and swaps it in at the end
  (:func:`building_folder`): an interrupted overwrite leaves the old output as it was.

What a path holds is judged from its contents (HDF5 attributes, a JSON file's top-level keys, a folder's
marker files), never from its name alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from .errors import UsageError

__all__ = ["what_is", "check_output", "building_folder", "terminate_as_interrupt", "Interrupted", "OUTPUT_KINDS",
           "BUILDING_MARK"]

BUILDING_MARK = ".incomplete-"

# The kinds what_is() names; commands list the ones their output may replace.
OUTPUT_KINDS = (
    "capture session", "capture session (in use)", "dark-frame session", "pack", "HDF5 file", "annotation file", "alignment model",
    "lens calibration", "manifest", "predictions file", "JSON file", "checkpoint", "ONNX model", "release", "training run", "detector run",
    "enhanced-image folder", "review folder", "annotation task package", "evaluation folder", "detector evaluation folder", "comparison folder",
    "table folder", "prediction folder", "feeds folder", "demo folder", "export folder", "folder", "file",
)


class Interrupted(KeyboardInterrupt):
    """SIGTERM turned into an exception, so the cleanup that Ctrl-C gets (finally blocks) also runs for it."""

    exit_code = 143


def _h5_kind(path: Path) -> str:
    try:
        import h5py
    except ModuleNotFoundError:
        return "HDF5 file"
    try:
        with h5py.File(path, "r", locking=False) as f:
            if f.attrs.get("format") == "exlpose-pack":
                return "pack"
            scenes = f.get("scenes")
            names = set(scenes) if scenes is not None else set()
            if names == {"darks"} and scenes["darks"].attrs.get("kind") == "darks" and "reference" not in f:
                return "dark-frame session"
            if "rig_config" in f.attrs or scenes is not None or "reference" in f:
                return "capture session"
    except OSError:
        # Held open for writing by this or another process (HDF5 refuses a second open even without locking):
        # the recorder is the toolkit's only long-lived HDF5 writer, so say what it most likely is.
        return "capture session (in use)"
    return "HDF5 file"


def _json_kind(path: Path) -> str:
    # Only the first bytes: the kind shows in the top-level keys, and an annotation file may be large.
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16).decode("utf-8", errors="replace")
    except OSError:
        return "file"
    text = head.lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        return "predictions file" if '"image_id"' in head else "JSON file"
    if not text.startswith("{"):
        return "file"
    if '"images"' in head and ('"annotations"' in head or '"categories"' in head):
        return "annotation file"
    compact = head.replace(" ", "")
    if '"format":"exlpose-align/' in compact or ('"homography"' in head and '"crop"' in head):
        return "alignment model"
    if '"files"' in head and '"version"' in head and path.name == "manifest.json":
        return "manifest"
    if '"camera_matrix"' in head or ('"ll"' in head and '"rms_px"' in head):
        return "lens calibration"
    return "JSON file"


# What a folder is, from the command that its provenance record says wrote it (an interrupted run has no
# marker files yet, but it has its record; an export has bright/ and dark/ but is not a release).
_KIND_OF_COMMAND = {
    "exlpose demo": "demo folder", "exlpose-align apply": "release", "exlpose-simulate release": "release",
    "exlpose-simulate feeds": "feeds folder", "exlpose-export official": "export folder", "exlpose-train": "training run", "exlpose-detect train": "detector run",
    "exlpose-detect eval": "detector evaluation folder",
    "exlpose enhance": "enhanced-image folder", "exlpose-eval model": "evaluation folder",
    "exlpose-eval gaps": "comparison folder", "exlpose-eval table": "table folder", "exlpose-predict": "prediction folder",
}


def _recorded_kind(path: Path) -> str | None:
    import json

    from .provenance import RECORD_FILE

    try:
        record = json.loads((path / RECORD_FILE).read_text(encoding="utf-8"))
        commands = [step.get("command") for step in record["steps"].values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no record, or a broken one (the command that reads it refuses it)
    kinds = [_KIND_OF_COMMAND[c] for c in commands if c in _KIND_OF_COMMAND]
    return kinds[0] if kinds else None


def _folder_kind(path: Path) -> str | None:
    try:
        names = set(os.listdir(path))
    except OSError:
        return "folder"
    names.discard(".DS_Store")
    if not names:
        return None
    recorded = _recorded_kind(path)
    if recorded is not None:
        return recorded
    if "manifest.json" in names or {"bright", "dark"} <= names:
        return "release"
    if "feeds.json" in names:
        return "feeds folder"
    if "label_studio_tasks.json" in names:
        return "annotation task package"
    if "commands.sh" in names and "report.html" in names:
        return "demo folder"
    if any(n.endswith(".pth") for n in names) or "metrics.json" in names or "config.yaml" in names and "tb" in names:
        return "training run"
    if "index.html" in names and ("flags.json" in names or any(n.endswith(".html") and n != "index.html" for n in names)):
        return "review folder"
    return "folder"


def what_is(path: str | os.PathLike) -> str | None:
    """What exists at ``path``, in the words of :data:`OUTPUT_KINDS`; None when nothing (or an empty folder) is there."""
    p = Path(path)
    if p.is_dir():
        return _folder_kind(p)
    if not p.exists():
        return None
    try:
        with open(p, "rb") as fh:
            magic = fh.read(8)
    except OSError:
        return "file"
    if magic == b"\x89HDF\r\n\x1a\n":
        return _h5_kind(p)
    if p.suffix.lower() == ".onnx" and len(magic) > 1 and magic[0] == 0x08 and 0 < magic[1] < 0x80:
        return "ONNX model"  # a serialised ModelProto starts with its ir_version field (tag 0x08, a small varint)
    if magic[:2] == b"PK" and p.suffix in (".pth", ".pt"):
        return "checkpoint"
    if p.suffix.lower() == ".json" or magic.lstrip()[:1] in (b"{", b"["):
        return _json_kind(p)
    if magic[:2] == b"PK" or p.suffix in (".pth", ".pt", ".ckpt"):
        return "checkpoint"
    return "file"


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiouAEIOUH" and not kind.startswith("us") else "a ") + kind


def _resolve(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))


def _real(path: Path) -> Path:
    with contextlib.suppress(OSError):
        return path.resolve()
    return path


def _inside(child: Path, parent: Path) -> bool:
    return child != parent and parent in child.parents


def check_output(
    out: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    writes: Literal["file", "folder"],
    produces: str,
    replaces: Sequence[str] = (),
    overwrite: bool = False,
    resumes: bool = False,
    files: Iterable[str] = (),
    option: str = "--out",
) -> Path:
    """Refuse an output path that would lose or mix what the user has; returns the output path.

    Args:
        out: where the command will write.
        inputs: every file or folder the command reads (None entries are ignored).
        writes: whether ``out`` is a ``file`` or a ``folder``.
        produces: what the command writes, in words ("alignment model", "pack", ...), for messages.
        replaces: the kinds (:func:`what_is`) an existing ``out`` may be; others are refused even with
            ``overwrite``. A folder command that adds to a folder (a split into ``annotations/``) lists ``folder``.
        overwrite: the user passed ``--overwrite``.
        resumes: the command continues an existing output of a kind in ``replaces`` without ``--overwrite``
            (its provenance record decides whether the settings allow it).
        files: for a folder output, the names it will write inside it (checked against the inputs).
        option: the option that named ``out``, for messages.

    Raises:
        UsageError: one line naming the path and what is there.
    """
    target = _resolve(out)
    real_target = _real(target)
    for raw in inputs:
        if raw is None:
            continue
        src = _resolve(raw)
        real_src = _real(src)
        if real_src == real_target:
            raise UsageError(f"{option} {out}: is also an input of this command; it would be replaced by the {produces} (choose another {option})")
        if real_src.is_dir() and _inside(real_target, real_src):
            raise UsageError(f"{option} {out}: lies inside the input {raw}; write the {produces} elsewhere")
        if writes == "file" and _inside(real_src, real_target):
            raise UsageError(f"{option} {out}: holds the input {raw}")
        if writes == "folder" and _inside(real_src, real_target):
            for name in files:
                if real_src == _real(real_target / name):
                    raise UsageError(f"{option} {out}: would replace its input {raw} with the {produces}'s {name} (choose another {option})")
    kind = what_is(target)
    if kind is None:
        if writes == "folder" and target.exists() and not target.is_dir():
            raise UsageError(f"{option} {out}: is a file, expected a folder")
        return target
    if writes == "file" and target.is_dir():
        raise UsageError(f"{option} {out}: is a folder ({kind}); give a file name for the {produces}")
    if writes == "folder" and not target.is_dir():
        raise UsageError(f"{option} {out}: is a file ({kind}), expected a folder for the {produces}")
    if kind not in replaces:
        raise UsageError(f"{option} {out}: already holds {_a(kind)}, not {_a(produces)}; refusing to replace it (choose another {option})")
    if not (overwrite or resumes):
        raise UsageError(f"{option} {out}: already holds {_a(kind)}; pass --overwrite to replace it")
    return target


@contextlib.contextmanager
def building_folder(out: str | os.PathLike, *, overwrite: bool, new_beside: bool = False) -> Iterator[Path]:
    """The folder to write a new ``out`` into.

    With ``overwrite`` and an existing ``out``, the new output is built in a hidden sibling and swapped in only
    when the block succeeds; on failure the sibling is removed and the old output is untouched. Otherwise the
    output is written in place (``out`` is new, empty, or resumed), unless ``new_beside``: then a new output is
    also built beside and renamed into place at the end, so a failed first run leaves nothing a second run would
    have to refuse (for outputs that are cheap to remake: review pages, annotator packages; a training run, whose
    checkpoints are worth keeping after a crash, is written in place).
    """
    target = _resolve(out)
    exists = target.exists() and (not target.is_dir() or any(target.iterdir()))
    if not (overwrite and exists) and not new_beside:
        target.mkdir(parents=True, exist_ok=True)
        yield target
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{target.name}{BUILDING_MARK}", dir=target.parent))
    try:
        yield build
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    if not exists:
        with contextlib.suppress(FileNotFoundError):
            target.rmdir()  # an empty folder the user made for it
        try:
            os.replace(build, target)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.replaced-", dir=target.parent))
    old.rmdir()
    os.replace(target, old)
    try:
        os.replace(build, target)
    except BaseException:
        os.replace(old, target)
        shutil.rmtree(build, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Interrupted` (a KeyboardInterrupt) so cleanup runs as for Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
