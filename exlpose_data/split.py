"""Splits of annotation documents: by the well-lit gain (LL-N / LL-H / LL-E) and by scene (train / val / test).

Gain split (ExLPose): each image goes by the gain of its *well-lit* twin: LL-N gain < 15 dB, LL-H 15 <= gain <
24, LL-E gain >= 24; LL-A is their union and WL the bright twins of LL-A. Scene split: a scene (date, site,
video) holds several frames with up to five exposure variants each, so train and test never share a scene.

Files written here have annotation ids renumbered from 1 (COCO-style evaluators never match a ground truth whose
id is 0), ``num_keypoints`` recomputed and ``area`` added (:mod:`exlpose_data.annotations`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .annotations import normalise_document, placeholder_crowd_index
from .atomic import write_json_atomic
from .errors import InputError, NameGrammarError, UsageError
from .exposure import wl_gain_from_ll
from .layout import NameIndex, annotations_dir, check_dataset_manifest, load_manifest, normalise_image_path, update_dataset_manifest, update_manifest
from .lighting import Lighting
from .naming import ANNOTATION_PREFIX, annotation_file_name, parse_name
from .outputs import check_output, what_is
from .provenance import read_record, recorded_run
from .schema import AnnotationDocument
from .validate import require_structure

__all__ = [
    "DEFAULT_THRESHOLDS",
    "GAIN_SPLITS",
    "gain_split",
    "gain_split_names",
    "PairMap",
    "SPLIT_COMMAND",
    "SplitWrite",
    "check_split_output",
    "scene_split_files",
    "scene_split_names",
    "write_split",
    "SplitResult",
    "split_by_gain",
    "split_by_scene",
    "to_condition",
    "unpaired_warning",
    "well_lit_gain",
    "write_release_annotations",
    "write_scene_split",
]

DEFAULT_THRESHOLDS: tuple[float, float] = (15.0, 24.0)
GAIN_SPLITS = ("LL-N", "LL-H", "LL-E")
# The command recorded in a folder's provenance for every split step (``exlpose-split by-gain`` ...).
SPLIT_COMMAND = "exlpose-split"


def gain_split(gain_db: float, thresholds: tuple[float, float] = DEFAULT_THRESHOLDS) -> str:
    """``"LL-N"``, ``"LL-H"`` or ``"LL-E"`` for a well-lit gain."""
    low, high = thresholds
    if not low < high:
        raise ValueError(f"thresholds must increase, got {thresholds}")
    return "LL-N" if gain_db < low else ("LL-H" if gain_db < high else "LL-E")


class PairMap:
    """Bright <-> dark path lookup, tolerant of bare file names."""

    def __init__(self, bright_to_dark: Mapping[str, str] | None = None) -> None:
        self._dark: NameIndex[str] = NameIndex()
        self._bright: NameIndex[str] = NameIndex()
        for b, d in (bright_to_dark or {}).items():
            self._dark.add(b, normalise_image_path(d))
            self._bright.add(d, normalise_image_path(b))

    def __bool__(self) -> bool:
        return bool(self._dark)

    def dark_of(self, name: str) -> str | None:
        return self._dark.get(name)

    def bright_of(self, name: str) -> str | None:
        return self._bright.get(name)


def well_lit_gain(file_name: str, pairs: PairMap | None = None) -> float:
    """The gain of the well-lit image of a pair, from a bright or dark name.

    A dark name is mapped to its bright twin through ``pairs``; without one, the WL gain is inferred from the
    protocol (``G_WL = G_LL + 20*log10(R/100)``).
    """
    name = parse_name(file_name)
    if name.condition == "WL":
        return name.gain_db
    if pairs:
        bright = pairs.bright_of(file_name)
        if bright is not None:
            return parse_name(bright).gain_db
    try:
        return wl_gain_from_ll(name.gain_db, name.ratio)
    except ValueError as exc:
        raise InputError(f"{file_name}: {exc}") from None


@dataclass
class SplitResult:
    """Documents by part name, and what the caller should be told."""

    documents: dict[str, AnnotationDocument]
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for part, doc in self.documents.items():
            scenes = set()
            for img in doc.images:
                try:
                    scenes.add(parse_name(img.file_name).scene)
                except NameGrammarError:
                    pass
            out[part] = {"scenes": len(scenes), "images": len(doc.images), "instances": len(doc.annotations)}
        return out


def _subset(doc: AnnotationDocument, image_ids: set[int]) -> AnnotationDocument:
    return AnnotationDocument(
        info=doc.info,
        categories=doc.categories,
        images=[img for img in doc.images if img.id in image_ids],
        annotations=[a for a in doc.annotations if a.image_id in image_ids],
    )


def to_condition(doc: AnnotationDocument, condition: str, pairs: PairMap | None) -> tuple[AnnotationDocument, int]:
    """A copy of ``doc`` whose file names name the ``condition`` ("LL" dark, "WL" bright) image of each pair.

    Names whose twin is unknown are kept as given; the second value counts them.
    """
    out = doc.model_copy(deep=True)
    kept = 0
    for img in out.images:
        name = parse_name(img.file_name)
        if name.condition == condition:
            continue
        twin = None
        if pairs:
            twin = pairs.dark_of(img.file_name) if condition == "LL" else pairs.bright_of(img.file_name)
        if twin is None:
            kept += 1
        else:
            img.file_name = twin
    return out, kept


def unpaired_warning(count: int, condition: str) -> str:
    """The warning for ``count`` images whose ``condition`` twin is unknown."""
    other = Lighting(condition).twin.folder
    return (f"{count} image(s) kept their {other} names in the {condition} file: "
            "pairing unknown (give --pairs brightPath2darkPath.txt or a dataset root)")


def _check_input(doc: AnnotationDocument, source: str) -> None:
    require_structure(doc.to_json_dict(), source=source)
    for n, img in enumerate(doc.images):
        try:
            parse_name(img.file_name)
        except NameGrammarError as exc:
            raise InputError(f"{source}: images[{n}].file_name: {exc}") from None


def split_by_gain(
    doc: AnnotationDocument,
    *,
    thresholds: tuple[float, float] = DEFAULT_THRESHOLDS,
    pairs: PairMap | None = None,
    recompute_crowd_index: bool = False,
    source: str = "annotations",
) -> SplitResult:
    """Split by the well-lit gain into ``LL-N``, ``LL-H``, ``LL-E``, ``LL-A`` and ``WL`` documents.

    LL documents name dark images when the pairing is known, WL documents bright ones. Ids are renumbered
    from 1, ``num_keypoints`` and ``area`` recomputed; each image's ``crowdIndex`` is kept as given (computed
    where absent, everywhere with ``recompute_crowd_index``). The official files carry crowdIndex 0 everywhere:
    the result's warnings say so when the computed values would differ. Keypoints, boxes and images are
    untouched.

    Raises:
        InputError: ``doc`` has a structural problem (wrong keypoint count, bad box, missing image, ...) or
            a name outside the release grammar; ``source`` names it.
    """
    _check_input(doc, source)
    by_split: dict[str, set[int]] = {s: set() for s in GAIN_SPLITS}
    for img in doc.images:
        by_split[gain_split(well_lit_gain(img.file_name, pairs), thresholds)].add(img.id)
    ll_all, ll_unpaired = to_condition(doc, "LL", pairs)
    wl_all, wl_unpaired = to_condition(doc, "WL", pairs)
    warnings = [unpaired_warning(n, c) for n, c in ((ll_unpaired, "LL"), (wl_unpaired, "WL")) if n]
    crowd = "all" if recompute_crowd_index else "missing"
    if not recompute_crowd_index:
        crowded = placeholder_crowd_index(doc)
        if crowded:
            warnings.append(
                f"{source}: crowdIndex is 0 on every image, kept as given, although {crowded} image(s) have people inside "
                "others' boxes; --recompute-crowd-index computes it (CrowdPose's easy/medium/hard subsets are cut on it)"
            )
    docs = {s: normalise_document(_subset(ll_all, ids), crowd=crowd) for s, ids in by_split.items()}
    docs["LL-A"] = normalise_document(ll_all, crowd=crowd)
    docs["WL"] = normalise_document(wl_all, crowd=crowd)
    return SplitResult(docs, warnings)


def split_by_scene(
    doc: AnnotationDocument,
    *,
    test_fraction: float,
    val_fraction: float = 0.0,
    seed: int = 0,
    source: str = "annotations",
) -> SplitResult:
    """Split scenes (never images) into ``train``, ``test`` and, if ``val_fraction`` > 0, ``val``.

    Scenes are shuffled with ``seed`` and the test and val parts get ``round(fraction * n_scenes)`` scenes each
    (at least one when the fraction is positive). Names are kept as given; ids restart from 1 in every part.
    """
    if not (0 <= test_fraction < 1 and 0 <= val_fraction < 1 and test_fraction + val_fraction < 1):
        raise InputError(f"fractions must be in [0, 1) and sum below 1: test {test_fraction}, val {val_fraction}")
    _check_input(doc, source)
    scenes = sorted({parse_name(img.file_name).scene for img in doc.images})
    order = [scenes[i] for i in np.random.default_rng(seed).permutation(len(scenes))]

    def take(fraction: float) -> int:
        return 0 if fraction == 0 else max(1, round(fraction * len(scenes)))

    n_test, n_val = take(test_fraction), take(val_fraction)
    if n_test + n_val >= len(scenes) and (n_test or n_val):
        raise InputError(f"{len(scenes)} scene(s) cannot fill test ({n_test}) and val ({n_val}) and leave a training scene")
    part_of = {s: "test" for s in order[:n_test]}
    part_of.update({s: "val" for s in order[n_test : n_test + n_val]})
    parts = ["train", "test"] + (["val"] if val_fraction > 0 else [])
    ids: dict[str, set[int]] = {p: set() for p in parts}
    for img in doc.images:
        ids[part_of.get(parse_name(img.file_name).scene, "train")].add(img.id)
    return SplitResult({p: normalise_document(_subset(doc, ids[p])) for p in parts})


def gain_split_names(prefix: str = f"{ANNOTATION_PREFIX}_test") -> list[str]:
    """The files a gain split writes: ``<prefix>_LL-{N,H,E,A}.json`` and ``<prefix>_WL.json``."""
    return [annotation_file_name(None, key, prefix=prefix) for key in (*GAIN_SPLITS, "LL-A", "WL")]


def scene_split_names(prefix: str = ANNOTATION_PREFIX, *, val: bool = False) -> list[str]:
    """The files a scene split writes: ``<prefix>_<part>_{LL,WL}.json`` for train, test (and val)."""
    parts = ["train", "test"] + (["val"] if val else [])
    return [annotation_file_name(part, cond, prefix=prefix) for part in parts for cond in Lighting]


def scene_split_files(
    result: SplitResult, pairs: PairMap | None, *, prefix: str = ANNOTATION_PREFIX, skip: tuple[str, ...] = (),
) -> tuple[dict[str, AnnotationDocument], dict[str, int]]:
    """Each part of a scene split as ``<prefix>_<part>_LL.json`` and ``<prefix>_<part>_WL.json`` documents.

    Each LL document names the dark twins and each WL document the bright ones, as far as ``pairs`` knows them.

    Returns:
        File name -> document, and per condition how many images kept their other-condition name
        (see :func:`unpaired_warning`).
    """
    files: dict[str, AnnotationDocument] = {}
    unpaired = {cond.value: 0 for cond in Lighting}
    for part, part_doc in result.documents.items():
        if part in skip:
            continue
        for cond in Lighting:
            cdoc, kept = to_condition(part_doc, cond, pairs)
            unpaired[cond.value] += kept
            files[annotation_file_name(part, cond, prefix=prefix)] = cdoc
    return files, unpaired


def write_scene_split(
    result: SplitResult,
    out: str | Path,
    pairs: PairMap | None,
    *,
    prefix: str = ANNOTATION_PREFIX,
    skip: tuple[str, ...] = (),
) -> tuple[list[Path], dict[str, int]]:
    """Write each part of a scene split (:func:`scene_split_files`) under ``out``, without a provenance record
    (the release writers' building block; ``exlpose-split`` writes through :func:`write_split`).

    Returns:
        The files written, and per condition how many images kept their other-condition name.
    """
    files, unpaired = scene_split_files(result, pairs, prefix=prefix, skip=skip)
    written = [write_json_atomic(Path(out) / name, doc.to_json_dict()) for name, doc in files.items()]
    return written, unpaired


def _split_owned(out: Path) -> set[str]:
    """The files that split steps recorded in ``out``'s provenance own."""
    owned: set[str] = set()
    for entry in read_record(out)["steps"].values():
        if str(entry.get("command", "")).startswith(SPLIT_COMMAND):
            owned.update(str(f) for f in entry["files"])
    return owned


def check_split_output(
    out: str | os.PathLike, names: Iterable[str], *, inputs: Iterable[str | os.PathLike | None], overwrite: bool,
    option: str = "--out",
) -> Path:
    """Refuse a split's output folder that would lose what the user has.

    A split adds its files to a folder (a dataset's ``annotations/``), so the folder itself may hold other
    things. Refused: a file to write that is one of the inputs (always), a folder of another kind (a feeds
    folder, a training run, ...), and an existing file of a name the split writes that no split step wrote
    there (per the folder's provenance record) unless ``overwrite``. Files an earlier split wrote are
    replaced; :func:`write_split`'s provenance record then decides whether the settings allow it.

    Raises:
        UsageError: one line naming the path and what is there.
        InputError: the folder's provenance record is broken.
    """
    names = list(names)
    target = check_output(out, inputs=inputs, writes="folder", produces="split", replaces=("folder", "release"),
                          overwrite=overwrite, resumes=True, files=names, option=option)
    if overwrite or not target.is_dir():
        return target
    owned = _split_owned(target)
    for name in names:
        path = target / name
        if name not in owned and (path.exists() or path.is_symlink()):
            kind = what_is(path) or "file"
            article = "an" if kind[0] in "aeiou" else "a"
            raise UsageError(f"{option} {out}: {name} is already there ({article} {kind}) and no exlpose-split run wrote it; "
                             f"pass --overwrite to replace it, or choose another {option}")
    return target


@dataclass(frozen=True)
class SplitWrite:
    """What :func:`write_split` did: files written, files of the step's previous run removed (folder-relative)."""

    written: list[Path]
    removed: list[str]
    resumed: bool


def write_split(
    out: str | os.PathLike,
    files: Mapping[str, AnnotationDocument],
    *,
    command: str,
    step: str,
    settings: Mapping[str, object],
    inputs: Mapping[str, str | os.PathLike],
    overwrite: bool = False,
) -> SplitWrite:
    """Write a split's files into ``out`` under the folder's provenance record, as step ``step``.

    The output is checked first (:func:`check_split_output`). A re-run with the same settings and inputs
    rewrites the step's files; with others it is refused naming each difference unless ``overwrite``. Files
    the step's previous run wrote and this one does not (``val`` files after a split without a val part) are
    removed, and the manifest of the dataset ``out`` lies in is updated for what was written and removed.

    Args:
        out: the output folder.
        files: file name -> document.
        command: the command, recorded (``exlpose-split by-scene``; it starts with :data:`SPLIT_COMMAND`).
        step: the step's name in the record (``split by-scene ExLPose``).
        settings: every option that changes what is written (JSON values).
        inputs: role -> file read (the annotation file, the pair list).
        overwrite: the user passed ``--overwrite``.
    """
    check_split_output(out, files, inputs=inputs.values(), overwrite=overwrite)
    folder = Path(out)
    check_dataset_manifest(folder)
    with recorded_run(folder, step, command=command, settings=settings, inputs=inputs, overwrite=overwrite) as run:
        written = []
        for name, doc in files.items():
            written.append(write_json_atomic(folder / name, doc.to_json_dict()))
            run.own(name)
        removed = list(run.remove_stale())
    root = update_dataset_manifest(folder)
    if root is not None and removed:
        base = folder.resolve()
        update_manifest(root, [(base / rel).relative_to(root).as_posix() for rel in removed])
    return SplitWrite(written, removed, run.resumed)


def write_release_annotations(
    root: str | Path,
    doc: AnnotationDocument,
    pairs: Mapping[str, str],
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    seed: int = 0,
    thresholds: tuple[float, float] = DEFAULT_THRESHOLDS,
    prefix: str = ANNOTATION_PREFIX,
    layout: str = "release",
) -> list[Path]:
    """Write a dataset's annotation files under ``ROOT/annotations`` (``ROOT/annotations/ExLPose`` with
    ``layout="mmpose"``) with the release's names.

    Writes ``<prefix>_train_{LL,WL}.json`` (and ``_val_``), ``<prefix>_test_LL-{A,N,H,E}.json`` and
    ``<prefix>_test_WL.json``, then records them in the manifest.

    Args:
        root: dataset root.
        doc: all annotations, file names naming the bright images.
        pairs: bright path -> dark path.
    """
    out_dir = annotations_dir(root, layout)
    load_manifest(root)  # a broken manifest is refused before the files it should list are written
    pmap = PairMap(pairs)
    scene_split = split_by_scene(doc, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed)
    # The test part is written by gain below; the split's documents are normalised already.
    written, _ = write_scene_split(scene_split, out_dir, pmap, prefix=prefix, skip=("test",))
    test_doc = normalise_document(scene_split.documents["test"])
    gain = split_by_gain(test_doc, thresholds=thresholds, pairs=pmap)
    for key, gdoc in gain.documents.items():
        written.append(write_json_atomic(out_dir / annotation_file_name("test", key, prefix=prefix), gdoc.to_json_dict()))
    update_manifest(root, [p.relative_to(root).as_posix() for p in written])
    return written
