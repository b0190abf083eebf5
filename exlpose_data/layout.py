"""Our dataset layout and its manifest.

Every tool writes datasets as::

    ROOT/bright/<release name>.png           well-lit images (aligned into the LL frame)
    ROOT/dark/<release name>.png             low-light images
    ROOT/brightPath2darkPath.txt             "<bright path> <dark path>" per line, ROOT-relative
    ROOT/annotations/*.json                  the release's annotation file names
    ROOT/manifest.json                       SHA-256 and size of every other file

``update_manifest`` is the one way files enter the manifest; it holds a lock file so parallel writers do
not lose each other's entries, and it replaces manifest.json atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Generic, TypeVar

from .atomic import TMP_MARK, write_json_atomic, write_text_atomic
from .errors import InputError, UsageError
from .jsonio import load_json
from .lighting import Lighting

__all__ = [
    "BRIGHT_DIR",
    "DARK_DIR",
    "PAIRS_FILE",
    "ANNOTATIONS_DIR",
    "ANNOTATION_LAYOUTS",
    "annotations_dir",
    "MANIFEST_FILE",
    "MANIFEST_LOCK_FILE",
    "sha256_file",
    "read_pairs",
    "write_pairs",
    "update_manifest",
    "rebuild_manifest",
    "load_manifest",
    "verify_dataset",
    "ManifestDifference",
    "safe_relpath",
    "find_dataset_root",
    "update_dataset_manifest",
    "check_dataset_manifest",
    "normalise_image_path",
    "NameIndex",
]

V = TypeVar("V")

BRIGHT_DIR = Lighting.WL.folder
DARK_DIR = Lighting.LL.folder
PAIRS_FILE = "brightPath2darkPath.txt"
ANNOTATIONS_DIR = "annotations"
# Where a dataset's annotation files go, by layout: ours and the release's, or mmpose's documented
# ``data/ExLPose/annotations/ExLPose/ExLPose_*.json`` (its configs set data_root to the image root).
ANNOTATION_LAYOUTS = {"release": ANNOTATIONS_DIR, "mmpose": f"{ANNOTATIONS_DIR}/ExLPose"}
MANIFEST_FILE = "manifest.json"
MANIFEST_LOCK_FILE = ".manifest.lock"
_MANIFEST_VERSION = 1


def normalise_image_path(path: str) -> str:
    """Reduce a path from a pair list or annotation file to ``bright/<name>`` / ``dark/<name>`` when it has that form."""
    p = path.replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    for folder in (BRIGHT_DIR, DARK_DIR):
        marker = f"/{folder}/"
        if marker in p:
            return folder + "/" + p.rsplit(marker, 1)[1]
    return p


class NameIndex(Generic[V]):
    """Values by image path, found by the root-relative path or by the bare file name (annotation files and pair
    lists name images either way; the official test files name bare files)."""

    def __init__(self) -> None:
        self._values: dict[str, V] = {}

    def add(self, path: str, value: V) -> None:
        """Index ``value`` under ``path`` (normalised) and under its bare file name."""
        norm = normalise_image_path(path)
        self._values[norm] = value
        self._values[norm.rsplit("/", 1)[-1]] = value

    def get(self, name: str) -> V | None:
        """The value of a path or bare file name (the path wins when both are indexed)."""
        norm = normalise_image_path(name)
        found = self._values.get(norm)
        return found if found is not None else self._values.get(norm.rsplit("/", 1)[-1])

    def __bool__(self) -> bool:
        return bool(self._values)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def safe_relpath(name: str) -> str | None:
    """Why ``name`` is unsafe as a dataset-relative path (absolute, ``..``, drive letter), or None if safe."""
    if not name:
        return "empty path"
    if "\\" in name:
        return "backslash in path"
    if name.startswith("/") or name.startswith("~"):
        return "absolute path"
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        return "drive letter"
    if any(part == ".." for part in PurePosixPath(name).parts):
        return "'..' in path"
    if "\x00" in name:
        return "NUL byte in path"
    return None


def _check_pairs(numbered: Iterable[tuple[int, str, str]], source: str) -> None:
    """Refuse a pair list that leaves the dataset or gives an image two twins (``numbered``: line, bright, dark)."""
    first_line: dict[str, int] = {}
    for n, bright, dark in numbered:
        for raw in (bright, dark):
            if not raw or any(c.isspace() for c in raw):
                raise InputError(f"{source}:{n}: {raw!r}: a pair-list path is one word (no spaces)")
            image = normalise_image_path(raw)
            why = safe_relpath(image)
            if why:
                raise InputError(f"{source}:{n}: {raw!r}: {why} (pair-list paths are relative to the dataset root)")
            if first_line.get(image) == n:
                raise InputError(f"{source}:{n}: names {image} as its own twin")
            if image in first_line:
                raise InputError(f"{source}:{n}: {image} is already paired on line {first_line[image]}; "
                                 "an image has exactly one twin (remove one of the two lines)")
            first_line[image] = n


def read_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Read a ``brightPath2darkPath.txt``: one ``<bright> <dark>`` per non-empty line.

    Raises:
        InputError: the file is missing or unreadable, a line is not two paths, a path leaves the dataset
            (absolute, ``..``), or an image is named on two lines (one image with two twins, in either
            direction, or a pair listed twice): the message names the file, both line numbers and the image.
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{p}: no such pair list") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as exc:
        raise InputError(f"{p}: unreadable pair list ({exc.__class__.__name__})") from None
    numbered = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise InputError(f"{p}:{n}: expected '<bright path> <dark path>', got {line.strip()!r}")
        numbered.append((n, parts[0], parts[1]))
    _check_pairs(numbered, str(p))
    return [(b, d) for _, b, d in numbered]


def write_pairs(path: str | os.PathLike, pairs: Iterable[tuple[str, str]]) -> Path:
    """Write a pair list atomically, sorted by bright path; refuses what :func:`read_pairs` would refuse."""
    rows = sorted(set(pairs))
    _check_pairs(((n, b, d) for n, (b, d) in enumerate(rows, start=1)), f"{path} (to be written)")
    return write_text_atomic(path, "".join(f"{b} {d}\n" for b, d in rows))


@contextlib.contextmanager
def _manifest_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / MANIFEST_LOCK_FILE, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def load_manifest(root: str | os.PathLike) -> dict[str, dict]:
    """The manifest's file table ``{relpath: {"sha256": ..., "size": ...}}`` (empty when absent).

    Raises:
        InputError: the manifest is not JSON, has no ``files`` table, or an entry is malformed or names a path
            outside the dataset.
    """
    p = Path(root) / MANIFEST_FILE
    if not p.exists():
        return {}
    data = load_json(p)
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        raise InputError(f"{p}: not a manifest (no 'files' table)")
    for rel, entry in files.items():
        why = safe_relpath(rel)
        if why:
            raise InputError(f"{p}: files[{rel!r}]: {why}")
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and isinstance(entry.get("size"), int)):
            raise InputError(f"{p}: files[{rel!r}]: expected {{\"sha256\": str, \"size\": int}}, got {entry!r}")
    return dict(files)


def find_dataset_root(path: str | os.PathLike, levels: int = 2) -> Path | None:
    """The nearest folder at or above ``path`` (up to ``levels`` parents) holding a manifest, if any."""
    p = Path(path).resolve()
    for cand in [p, *p.parents][: levels + 1]:
        if (cand / MANIFEST_FILE).is_file():
            return cand
    return None


def check_dataset_manifest(folder: str | os.PathLike) -> Path | None:
    """Read the manifest of the dataset ``folder`` lies in (if any) strictly, before a command writes there.

    A broken manifest is refused (:class:`InputError`) before anything is written, rather than found after the
    files that it should list were written. Returns the dataset root, or None outside any dataset.
    """
    root = find_dataset_root(folder) if Path(folder).exists() else find_dataset_root(Path(folder).parent)
    if root is not None:
        load_manifest(root)
    return root


def update_dataset_manifest(written_dir: str | os.PathLike) -> Path | None:
    """Refresh the manifest of the dataset that ``written_dir`` lies in (if it has one) for the files in that folder.

    Tools that write into a dataset (``exlpose-split --out ROOT/annotations``) call this so the manifest
    stays true; a folder outside any dataset is left alone.
    """
    root = find_dataset_root(written_dir)
    if root is None:
        return None
    folder = Path(written_dir).resolve()
    rels = [f.relative_to(root).as_posix() for f in sorted(folder.iterdir()) if f.is_file() and _is_payload(f.name)]
    update_manifest(root, rels)
    return root


def _entry(path: Path) -> dict:
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


def _is_payload(rel: str) -> bool:
    from .provenance import RECORD_FILE  # the record describes the files; it is not one of them

    name = rel.rsplit("/", 1)[-1]
    return rel != MANIFEST_FILE and name not in (MANIFEST_LOCK_FILE, RECORD_FILE) and TMP_MARK not in name


def update_manifest(root: str | os.PathLike, relpaths: Iterable[str], *, known_hashes: dict[str, str] | None = None) -> None:
    """Add or refresh the entries of ``relpaths`` (removing those whose file is gone), atomically.

    Args:
        root: dataset root.
        relpaths: ROOT-relative paths of files that were written or removed.
        known_hashes: SHA-256 already computed by the writer, to avoid reading the files again.
    """
    r = Path(root)
    known_hashes = known_hashes or {}
    with _manifest_lock(r):
        files = load_manifest(r)
        for rel in relpaths:
            path = r / rel
            if path.is_file():
                files[rel] = {"sha256": known_hashes[rel], "size": path.stat().st_size} if rel in known_hashes else _entry(path)
            else:
                files.pop(rel, None)
        write_json_atomic(r / MANIFEST_FILE, {"version": _MANIFEST_VERSION, "files": dict(sorted(files.items()))}, indent=1)


def _walk(root: Path) -> list[str]:
    out = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            rel = Path(dirpath, name).relative_to(root).as_posix()
            if _is_payload(rel):
                out.append(rel)
    return sorted(out)


def rebuild_manifest(root: str | os.PathLike) -> int:
    """Hash every file under ``root`` into a new manifest; returns the file count."""
    r = Path(root)
    rels = _walk(r)
    with _manifest_lock(r):
        files = {rel: _entry(r / rel) for rel in rels}
        write_json_atomic(r / MANIFEST_FILE, {"version": _MANIFEST_VERSION, "files": files}, indent=1)
    return len(rels)


@dataclass(frozen=True)
class ManifestDifference:
    """One way a dataset differs from its manifest: ``missing``, ``changed``, ``size`` or ``unlisted``."""

    kind: str
    path: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}" + (f" ({self.detail})" if self.detail else "")


def verify_dataset(root: str | os.PathLike) -> list[ManifestDifference]:
    """Every difference between the files under ``root`` and its manifest."""
    r = Path(root)
    if not (r / MANIFEST_FILE).is_file():
        raise InputError(f"{r}: no {MANIFEST_FILE} (not a dataset written by exlpose-data?)")
    files = load_manifest(r)
    diffs: list[ManifestDifference] = []
    for rel, entry in files.items():
        p = r / rel
        if not p.is_file():
            diffs.append(ManifestDifference("missing", rel))
            continue
        size = p.stat().st_size
        if size != entry.get("size", size):
            diffs.append(ManifestDifference("size", rel, f"{size} bytes, manifest says {entry['size']}"))
        elif sha256_file(p) != entry.get("sha256"):
            diffs.append(ManifestDifference("changed", rel, "SHA-256 differs"))
    for rel in _walk(r):
        if rel not in files:
            diffs.append(ManifestDifference("unlisted", rel))
    return diffs


def annotations_dir(root: str | os.PathLike, layout: str = "release") -> Path:
    """The folder of a dataset's annotation files in ``layout`` (see :data:`ANNOTATION_LAYOUTS`)."""
    if layout not in ANNOTATION_LAYOUTS:
        raise UsageError(f"layout {layout!r}: choose one of {', '.join(ANNOTATION_LAYOUTS)}")
    return Path(root) / ANNOTATION_LAYOUTS[layout]
