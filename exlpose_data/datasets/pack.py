"""Packs: decoded images in one HDF5 file, so a sample reads only its crop's pixels instead of two PNGs.

Layout (``format = "exlpose-pack"``, ``version = 3`` as root attributes)::

    /paths    (N,)      image-root-relative paths (UTF-8)
    /shapes   (N, 2)    int64 (H, W)
    /means    (N, 3)    float64 per-channel RGB mean of the whole image, 0-255 scale (16-bit values / 257)
    /sizes    (N,)      int64 byte size of each source file when packed   } to detect a stale pack
    /mtimes   (N,)      int64 st_mtime_ns of each source file when packed  }
    /images/<i>         (H, W, 3) BGR in the file's own depth (uint8, or uint16 for 16-bit files),
                        contiguous (unchunked, uncompressed)

The root attribute ``provenance`` (JSON) records what made the pack: the command, the toolkit version, the
settings (which images, which condition), the digests of the inputs (the dataset's manifest and pair list, the
``--ann`` files), the number of images packed and of records skipped. ``exlpose pack`` reads it to tell an
up-to-date pack (nothing to do) from one made of other inputs (replaced only with ``--overwrite``).

Older versions are refused: version 1 stored every image as uint8 (16-bit files cut to their high byte), and
neither 1 nor 2 recorded modification times.

Images are stored exactly as :func:`~exlpose_data.datasets.sources.decode_image` decodes them and the means
are computed by the same function as the file path does, so a packed dataset returns bit-identical samples.
Images are stored contiguous and uncompressed so that a reader can memory-map them: a crop then copies just
its region of interest from the page cache, without HDF5 selection overhead or decompression. The file stays
a plain HDF5 file that any HDF5 tool reads.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..atomic import atomic_path
from ..errors import InputError, UsageError
from ..jsonio import dumps_json, loads_json
from ..layout import PAIRS_FILE
from ..outputs import check_output
from ..progress import ProgressCallback, report
from ..provenance import differences, digest
from ..release import open_release
from .lowlight import rgb_means
from .records import CONDITIONS, build_index, needed_paths, report_missing
from .sources import Size, decode_image, report_size_mismatch

__all__ = ["PACK_FORMAT", "PACK_VERSION", "PACK_COMMAND", "write_pack", "pack_dataset", "PackResult", "PackSource", "pack_paths",
           "pack_provenance"]

PACK_FORMAT = "exlpose-pack"
PACK_VERSION = 3
PACK_COMMAND = "exlpose pack"
# The pixel types a pack may hold, as stored (little-endian, which h5py writes from numpy on every usual host).
_PACK_DTYPES = (np.dtype("|u1"), np.dtype("<u2"))


def write_pack(
    image_root: str | os.PathLike,
    relpaths: Iterable[str],
    out: str | os.PathLike,
    *,
    on_image: Callable[[str], None] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Decode ``relpaths`` under ``image_root`` into a pack at ``out`` (written atomically).

    Args:
        image_root: folder the paths start from.
        relpaths: images to pack (repeats are packed once).
        out: the pack file.
        on_image: called with each path after it is stored (progress).
        provenance: what made the pack (JSON values), stored as the ``provenance`` attribute.
    """
    root = Path(image_root)
    paths = list(dict.fromkeys(relpaths))
    if not paths:
        raise InputError(f"{out}: nothing to pack (no images)")
    missing = [p for p in paths if not (root / p).is_file()]
    report_missing(missing, len(paths), f"under {root}")
    shapes = np.zeros((len(paths), 2), dtype=np.int64)
    # Stat before decoding: a file rewritten while it is packed then looks changed, never fresh.
    stats = [(root / p).stat() for p in paths]
    sizes = np.array([st.st_size for st in stats], dtype=np.int64)
    mtimes = np.array([st.st_mtime_ns for st in stats], dtype=np.int64)
    means = np.zeros((len(paths), 3), dtype=np.float64)
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = PACK_FORMAT
            f.attrs["version"] = PACK_VERSION
            if provenance is not None:
                f.attrs["provenance"] = dumps_json(dict(provenance), source=f"{out}: provenance")
            group = f.create_group("images")
            for i, rel in enumerate(paths):
                img = decode_image(root / rel)
                group.create_dataset(str(i), data=img)
                shapes[i] = img.shape[:2]
                means[i] = rgb_means(img)
                if on_image is not None:
                    on_image(rel)
            f.create_dataset("paths", data=np.array(paths, dtype=object), dtype=h5py.string_dtype("utf-8"))
            f.create_dataset("shapes", data=shapes)
            f.create_dataset("means", data=means)
            f.create_dataset("sizes", data=sizes)
            f.create_dataset("mtimes", data=mtimes)
    return Path(out)


def _open(path: Path) -> h5py.File:
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise InputError(f"{path}: no such pack") from None
    except OSError as exc:
        raise InputError(f"{path}: not an HDF5 pack ({exc})") from None
    if f.attrs.get("format") != PACK_FORMAT:
        f.close()
        raise InputError(f"{path}: not an {PACK_FORMAT} file (write it with 'exlpose pack')")
    version = int(f.attrs.get("version", -1))
    if version != PACK_VERSION:
        f.close()
        raise InputError(f"{path}: {PACK_FORMAT} version {version}, this toolkit reads version {PACK_VERSION}; run 'exlpose pack' again with --overwrite")
    return f


def pack_paths(path: str | os.PathLike) -> list[str]:
    """The image paths a pack holds, in pack order."""
    with _open(Path(path)) as f:
        return [p.decode("utf-8") if isinstance(p, bytes) else str(p) for p in f["paths"][()]]


class PackSource:
    """Read images from a pack through a read-only memory map of its contiguous image datasets.

    The index (paths, shapes, means, byte offsets, pixel types) is read once at construction; the map is created
    on first use in each process (DataLoader workers never share a handle) and is never pickled.

    Args:
        path: the pack file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        with _open(self.path) as f:
            paths = [p.decode("utf-8") if isinstance(p, bytes) else str(p) for p in f["paths"][()]]
            self._shapes = f["shapes"][()]
            self._means = f["means"][()]
            self._sizes = f["sizes"][()]
            self._mtimes = f["mtimes"][()]
            offsets, dtypes = [], []
            for i in range(len(paths)):
                ds = f["images"][str(i)]
                offset = ds.id.get_offset()
                if ds.chunks is not None or ds.compression is not None or ds.dtype not in _PACK_DTYPES or offset is None:
                    raise InputError(
                        f"{self.path}: image {i} is not stored contiguous uncompressed uint8/uint16 (rewrite the pack with 'exlpose pack')"
                    )
                offsets.append(int(offset))
                dtypes.append(ds.dtype)
        self._offsets = offsets
        self._dtypes = dtypes
        self._slot = {p: i for i, p in enumerate(paths)}
        self._map: np.memmap | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self._slot)

    def check(self, relpaths: list[str]) -> None:
        missing = [p for p in relpaths if p not in self._slot]
        report_missing(missing, len(relpaths), f"from the pack {self.path}")

    def check_sizes(self, expected: dict[str, Size], records: str) -> None:
        """Compare the packed images' sizes with ``expected`` ``(width, height)`` (from ``records``)."""
        mismatched = []
        for rel, want in expected.items():
            h, w = (int(v) for v in self._shapes[self._slot[rel]])
            if (w, h) != want:
                mismatched.append((f"{rel} in the pack {self.path}", (w, h), want))
        report_size_mismatch(mismatched, len(expected), records)

    def check_fresh(self, image_root: str | os.PathLike, relpaths: list[str]) -> None:
        """Raise when a source file still under ``image_root`` changed (byte size or modification time) since
        it was packed.

        Files that are gone are fine: a pack can be used without the images. The modification time catches a
        re-aligned image of the same byte size (uncompressed or same-sized PNGs); a copy that does not keep
        times (``cp`` without ``-p``) also counts as changed, which costs a re-pack, never wrong pixels.
        """
        root = Path(image_root)
        changed = []
        for p in relpaths:
            try:
                st = (root / p).stat()
            except FileNotFoundError:
                continue
            i = self._slot[p]
            if st.st_size != self._sizes[i] or st.st_mtime_ns != self._mtimes[i]:
                changed.append(p)
        if changed:
            raise InputError(
                f"{self.path}: stale pack: {len(changed)} image(s) changed (size or modification time) since packing, "
                f"e.g. {changed[0]}; run 'exlpose pack' again with --overwrite"
            )

    def get(self, relpath: str) -> tuple[Any, tuple[int, int], np.ndarray]:
        if self._map is None or self._pid != os.getpid():
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
            self._pid = os.getpid()
        i = self._slot[relpath]
        h, w = (int(v) for v in self._shapes[i])
        start, dtype = self._offsets[i], self._dtypes[i]
        # The map is bytes; each image is viewed in its own pixel type.
        pixels = self._map[start : start + h * w * 3 * dtype.itemsize].view(dtype).reshape(h, w, 3)
        return pixels, (h, w), self._means[i]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None, "_pid": None}


def pack_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``provenance`` record of a pack (None for a pack written before packs recorded it).

    Raises:
        InputError: not a pack of this version, or a provenance attribute that is not a JSON object.
    """
    with _open(Path(path)) as f:
        raw = f.attrs.get("provenance")
    if raw is None:
        return None
    text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    record = loads_json(text, f"{path}: provenance")
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict) or not isinstance(record.get("inputs"), dict):
        raise InputError(f"{path}: provenance attribute is not a pack provenance record")
    return record


@dataclass(frozen=True)
class PackResult:
    """What :func:`pack_dataset` did.

    Attributes:
        out: the pack file.
        images: images in the pack.
        skipped: one line per annotation record left out, saying why.
        written: False when the pack at ``out`` was up to date and left as it was.
    """

    out: Path
    images: int
    skipped: list[str] = field(default_factory=list)
    written: bool = True


def _all_images(root: Path) -> tuple[Path, list[str]]:
    release = open_release(root)
    paths = [p for pair in release.pairs for p in (pair.bright, pair.dark)] + list(release.unpaired)
    return Path(release.image_root), paths


def _stale_reasons(out: Path, old: Mapping[str, Any] | None, new: Mapping[str, Any], image_root: Path, relpaths: list[str]) -> list[str]:
    """Why the pack at ``out`` is not what this run would write (empty when it is)."""
    if old is None:
        return ["it records no provenance (written by an older toolkit)"]
    reasons = differences(old["settings"], new["settings"])
    old_inputs = {role: {k: v for k, v in d.items() if k != "path"} for role, d in old["inputs"].items() if isinstance(d, dict)}
    new_inputs = {role: {k: v for k, v in d.items() if k != "path"} for role, d in new["inputs"].items()}
    reasons += [f"input {role} changed" for role in sorted(set(old_inputs) | set(new_inputs)) if old_inputs.get(role) != new_inputs.get(role)]
    if pack_paths(out) != relpaths:
        reasons.append("other images")
    else:
        try:
            PackSource(out).check_fresh(image_root, relpaths)
        except InputError:
            reasons.append("images changed since packing")
    return reasons


def pack_dataset(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    ann: Sequence[str | os.PathLike] = (),
    condition: str = "pair",
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    on_skip: Callable[[str], None] | None = None,
) -> PackResult:
    """Pack the images of a dataset (every pair, or those the ``ann`` files use) into ``out``.

    ``out`` is checked first: never an input nor inside one (an annotation file, the dataset folder), never
    something other than a pack. A pack already at ``out`` made from the same settings and inputs, whose
    images have not changed, is left as it is (``written`` False); one made otherwise is replaced only with
    ``overwrite``. Annotation records whose ``file_name`` is absolute or leaves the image root are left out and
    named in ``skipped`` (and given to ``on_skip`` as they are found, before any later error). The pack records
    its provenance (:func:`pack_provenance`).

    Raises:
        UsageError: ``out`` is refused, ``condition`` unknown, nothing to pack.
        InputError: a dataset or annotation file is missing or malformed.
    """
    from .. import __version__

    if condition not in CONDITIONS:
        raise UsageError(f"--condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")
    root_path, out_path = Path(root), Path(out)
    ann = [Path(a) for a in ann]
    check_output(out_path, inputs=[root_path, *ann], writes="file", produces="pack", replaces=("pack",), overwrite=overwrite,
                 resumes=True)
    skipped: list[str] = []
    if ann:
        paths: dict[str, None] = {}
        image_root = root_path
        for a in ann:
            index = build_index(root_path, a, condition, skip_unsafe=True)
            image_root = index.image_root
            skipped += index.skipped
            for line in index.skipped:
                if on_skip is not None:
                    on_skip(line)
            paths.update(dict.fromkeys(needed_paths(index, condition)))
        relpaths = list(paths)
    else:
        image_root, relpaths = _all_images(root_path)
    if not relpaths:
        raise UsageError(f"{root}: no images to pack (expected bright/ and dark/ PNGs, or give --ann)")
    inputs: dict[str, Path] = {"dataset": root_path, "pairs": root_path / PAIRS_FILE}
    inputs.update({f"ann{i + 1}": a for i, a in enumerate(ann)})
    inputs = {role: p for role, p in inputs.items() if p.exists()}  # an absent root: write_pack names the missing images
    record = {
        "command": PACK_COMMAND, "toolkit": __version__,
        "settings": {"images": "annotation files" if ann else "all pairs", "condition": condition if ann else "pair"},
        "inputs": {role: {"path": str(p), **digest(p)} for role, p in inputs.items()},
        "images": len(relpaths), "skipped": len(skipped),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if out_path.exists() and not overwrite:
        reasons = _stale_reasons(out_path, pack_provenance(out_path), record, image_root, relpaths)
        if not reasons:
            return PackResult(out_path, len(relpaths), skipped, written=False)
        raise UsageError(f"--out {out}: already holds a pack made otherwise ({'; '.join(reasons)}); "
                         "pass --overwrite to replace it, or choose another --out")
    total = len(relpaths)
    done = 0

    def on_image(_: str) -> None:
        nonlocal done
        done += 1
        report(progress, done, total)

    report(progress, 0, total)
    write_pack(image_root, relpaths, out_path, on_image=on_image, provenance=record)
    return PackResult(out_path, total, skipped)
