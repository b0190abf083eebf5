"""Splits of annotation documents: by the well-lit gain (LL-N / LL-H / LL-E) and by scene (train / val / test).

Gain split (ExLPose): each image goes by the gain of its *well-lit* twin: LL-N gain < 15 dB, LL-H 15 <= gain <
24, LL-E gain >= 24; LL-A is their union and WL the bright twins of LL-A. Scene split: a scene (date, site,
video) holds several frames with up to five exposure variants each, so train and test never share a scene.

Files written here have annotation ids renumbered from 1 (COCO-style evaluators never match a ground truth whose
id is 0), ``num_keypoints`` recomputed and ``area`` added (:mod:`exlpose_data.annotations`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .annotations import normalise_document, placeholder_crowd_index
from .atomic import write_json_atomic
from .errors import InputError, NameGrammarError
from .exposure import wl_gain_from_ll
from .layout import annotations_dir, update_manifest
from .naming import parse_name
from .release import normalise_image_path
from .schema import AnnotationDocument
from .validate import require_structure

__all__ = [
    "DEFAULT_THRESHOLDS",
    "GAIN_SPLITS",
    "gain_split",
    "PairMap",
    "SplitResult",
    "split_by_gain",
    "split_by_scene",
    "to_condition",
    "unpaired_warning",
    "well_lit_gain",
    "write_release_annotations",
]

DEFAULT_THRESHOLDS: tuple[float, float] = (15.0, 24.0)
GAIN_SPLITS = ("LL-N", "LL-H", "LL-E")


def gain_split(gain_db: float, thresholds: tuple[float, float] = DEFAULT_THRESHOLDS) -> str:
    """``"LL-N"``, ``"LL-H"`` or ``"LL-E"`` for a well-lit gain."""
    low, high = thresholds
    if not low < high:
        raise ValueError(f"thresholds must increase, got {thresholds}")
    return "LL-N" if gain_db < low else ("LL-H" if gain_db < high else "LL-E")


class PairMap:
    """Bright <-> dark path lookup, tolerant of bare file names."""

    def __init__(self, bright_to_dark: Mapping[str, str] | None = None) -> None:
        self.b2d: dict[str, str] = {}
        self.d2b: dict[str, str] = {}
        for b, d in (bright_to_dark or {}).items():
            b, d = normalise_image_path(b), normalise_image_path(d)
            for kb, kd in ((b, d), (b.rsplit("/", 1)[-1], d.rsplit("/", 1)[-1])):
                self.b2d[kb] = d
                self.d2b[kd] = b

    def __bool__(self) -> bool:
        return bool(self.b2d)

    def dark_of(self, name: str) -> str | None:
        n = normalise_image_path(name)
        return self.b2d.get(n) or self.b2d.get(n.rsplit("/", 1)[-1])

    def bright_of(self, name: str) -> str | None:
        n = normalise_image_path(name)
        return self.d2b.get(n) or self.d2b.get(n.rsplit("/", 1)[-1])


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
    other = "bright" if condition == "LL" else "dark"
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


def write_release_annotations(
    root: str | Path,
    doc: AnnotationDocument,
    pairs: Mapping[str, str],
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    seed: int = 0,
    thresholds: tuple[float, float] = DEFAULT_THRESHOLDS,
    prefix: str = "ExLPose",
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
    pmap = PairMap(pairs)
    scene_split = split_by_scene(doc, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed)
    written: list[Path] = []
    for part, part_doc in scene_split.documents.items():
        if part == "test":
            continue
        for cond in ("LL", "WL"):
            cdoc, _ = to_condition(part_doc, cond, pmap)
            written.append(write_json_atomic(out_dir / f"{prefix}_{part}_{cond}.json", normalise_document(cdoc).to_json_dict()))
    test_doc = normalise_document(scene_split.documents["test"])
    gain = split_by_gain(test_doc, thresholds=thresholds, pairs=pmap)
    for key, gdoc in gain.documents.items():
        written.append(write_json_atomic(out_dir / f"{prefix}_test_{key}.json", gdoc.to_json_dict()))
    update_manifest(root, [p.relative_to(root).as_posix() for p in written])
    return written
