"""Reading datasets in the official ExLPose release layout (and ours, which is the same layout).

An image root holds ``bright/`` (well-lit) and ``dark/`` (low-light) images. Pairs come from
``brightPath2darkPath.txt`` when present, else from the file-name grammar (pairing on everything but the gain,
since the dark image's gain differs from the bright one's). Annotation files are found in the folders users keep
them in (``ROOT/annotations``, ``ROOT/annotations/ExLPose`` as mmpose documents it with ``data_root`` = ROOT,
``ROOT/Annotations``, ``ROOT/../Annotations``, ``ROOT/../annotations/ExLPose``)
and named by the release's names, accepting the older ``LL-All/Normal/Hard/Extreme`` spellings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError, NameGrammarError
from .layout import BRIGHT_DIR, DARK_DIR, PAIRS_FILE, NameIndex, annotations_dir, normalise_image_path, read_pairs
from .naming import ANNOTATION_PREFIX, LONG_SPLIT_NAMES, ImageName, annotation_key, parse_name

__all__ = ["Pair", "Release", "open_release", "pair_by_grammar", "find_annotation_dir"]


@dataclass(frozen=True)
class Pair:
    """One low-light / well-lit pair.

    Attributes:
        bright: image-root-relative path of the well-lit image (``bright/...``).
        dark: image-root-relative path of the low-light image (``dark/...``).
        name: the parsed bright name.
    """

    bright: str
    dark: str
    name: ImageName

    @property
    def scene_id(self) -> str:
        return self.name.scene_id


def pair_by_grammar(bright: list[str], dark: list[str]) -> tuple[list[Pair], list[str]]:
    """Pair bright and dark paths on every name field but the gain; returns (pairs, unpaired paths)."""
    dark_by_key: dict[tuple, list[str]] = {}
    for d in dark:
        dark_by_key.setdefault(parse_name(d).pair_key, []).append(d)
    pairs, unpaired = [], []
    used: set[str] = set()
    for b in bright:
        name = parse_name(b)
        twins = dark_by_key.get(name.pair_key, [])
        if len(twins) == 1:
            pairs.append(Pair(b, twins[0], name))
            used.add(twins[0])
        else:
            unpaired.append(b)
    unpaired.extend(d for d in dark if d not in used)
    return pairs, unpaired


@dataclass
class Release:
    """An indexed dataset: its pairs, annotation files and what is missing.

    Attributes:
        image_root: folder holding ``bright/`` and ``dark/``.
        annotation_dir: folder of the annotation files, if found.
        pairs: the pairs, sorted by bright path.
        pairs_source: ``"pair-list"`` or ``"grammar"``.
        missing_images: paths named by the pair list that are not on disk.
        unpaired: image files without a twin.
        unconforming: image files whose names do not follow the grammar.
    """

    image_root: Path
    annotation_dir: Path | None
    pairs: list[Pair]
    pairs_source: str
    missing_images: list[str] = field(default_factory=list)
    unpaired: list[str] = field(default_factory=list)
    unconforming: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index: NameIndex[Pair] = NameIndex()
        for p in self.pairs:
            self._index.add(p.bright, p)
            self._index.add(p.dark, p)

    def pair_of(self, file_name: str) -> Pair | None:
        """The pair a bright or dark path (or bare file name) belongs to."""
        return self._index.get(file_name)

    def bright_to_dark(self) -> dict[str, str]:
        return {p.bright: p.dark for p in self.pairs}

    def annotation_files(self) -> dict[str, Path]:
        """Annotation files by canonical key (see :func:`annotation_key`)."""
        if self.annotation_dir is None:
            return {}
        out: dict[str, Path] = {}
        for p in sorted(self.annotation_dir.glob("*.json")):
            key = annotation_key(p.name)
            if key is not None:
                out.setdefault(key, p)
        return out

    def annotation_file(self, key: str) -> Path:
        """The annotation file of ``key`` (``test_LL-A``, ``test_LL-All`` and ``train_WL`` style keys)."""
        short = key
        for long, s in LONG_SPLIT_NAMES.items():
            short = short.replace(f"-{long}", f"-{s}")
        files = self.annotation_files()
        if short not in files:
            where = self.annotation_dir or self.image_root
            hint = ""
            part, _, condition = short.partition("_")
            if condition.startswith("LL-") and f"{part}_LL" in files:
                # by-scene writes <part>_LL/_WL; the per-gain files are by-gain's
                hint = (f"; 'exlpose-split by-gain {files[part + '_LL']} --out {where} --prefix {ANNOTATION_PREFIX}_{part} "
                        f"--pairs {self.image_root}' writes the {part} LL-N/H/E/A files")
            raise InputError(f"{where}: no annotation file for {key!r}; have {sorted(files) or 'none'}{hint}")
        return files[short]


def _list_images(folder: Path, prefix: str) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(f"{prefix}/{n}" for n in os.listdir(folder) if n.lower().endswith(".png") and not n.startswith("."))


def find_annotation_dir(root: str | os.PathLike) -> Path | None:
    """The annotation folder of an image root: ``annotations/`` or ``Annotations/`` inside it or beside it, or
    mmpose's ``annotations/ExLPose/`` beside it, whichever first holds a release annotation file."""
    return _find_annotation_dir(Path(root))


def _find_annotation_dir(root: Path) -> Path | None:
    release, mmpose = (annotations_dir(root, layout) for layout in ("release", "mmpose"))
    for cand in (release, mmpose, root / "Annotations", root.parent / "Annotations", root.parent / "annotations" / "ExLPose", root.parent / "annotations"):
        if cand.is_dir() and any(annotation_key(p.name) for p in cand.glob("*.json")):
            return cand
    return None


def open_release(root: str | os.PathLike, annotations: str | os.PathLike | None = None) -> Release:
    """Index a dataset in the release layout.

    Args:
        root: the image root (holding ``bright/`` and ``dark/``).
        annotations: the annotation folder; searched for when not given.

    Raises:
        InputError: ``root`` is not a folder or holds no dataset, or a pair list is malformed.
    """
    r = Path(root)
    if not r.is_dir():
        raise InputError(f"{r}: no such dataset folder")
    if not ((r / BRIGHT_DIR).is_dir() or (r / DARK_DIR).is_dir() or (r / PAIRS_FILE).is_file()):
        raise InputError(f"{r}: not a dataset (no {BRIGHT_DIR}/, {DARK_DIR}/ or {PAIRS_FILE})")
    ann_dir = Path(annotations) if annotations is not None else _find_annotation_dir(r)
    if ann_dir is not None and not ann_dir.is_dir():
        raise InputError(f"{ann_dir}: no such annotation folder")
    bright_files = _list_images(r / BRIGHT_DIR, BRIGHT_DIR)
    dark_files = _list_images(r / DARK_DIR, DARK_DIR)
    on_disk = set(bright_files) | set(dark_files)
    unconforming = []
    conforming_b, conforming_d = [], []
    for path, bucket in [(b, conforming_b) for b in bright_files] + [(d, conforming_d) for d in dark_files]:
        try:
            parse_name(path)
            bucket.append(path)
        except NameGrammarError:
            unconforming.append(path)
    pair_list = r / PAIRS_FILE
    if pair_list.is_file():
        pairs, missing = [], []
        for n, (b, d) in enumerate(read_pairs(pair_list), start=1):
            b, d = normalise_image_path(b), normalise_image_path(d)
            try:
                name = parse_name(b)
            except NameGrammarError as exc:
                raise InputError(f"{pair_list}:{n}: {exc}") from None
            pairs.append(Pair(b, d, name))
            missing.extend(x for x in (b, d) if x not in on_disk)
        listed = {p.bright for p in pairs} | {p.dark for p in pairs}
        unpaired = sorted(f for f in on_disk if f not in listed and f not in unconforming)
        return Release(r, ann_dir, sorted(pairs, key=lambda p: p.bright), "pair-list", missing, unpaired, unconforming)
    pairs, unpaired = pair_by_grammar(conforming_b, conforming_d)
    return Release(r, ann_dir, sorted(pairs, key=lambda p: p.bright), "grammar", [], sorted(unpaired), unconforming)
