"""Dataset statistics: the columns of the paper's Table 1 and counts per split and per ratio.

Mean intensity is the mean 8-bit pixel value over all channels and pixels of an image, averaged over images
(the paper reports 2.0 for LL and 90.5 for WL on ExLPose).

Nothing is skipped without a word: an image that cannot be read (missing, unreadable, outside the image root, or
of another pixel size than its annotation record says) and a record whose ``file_name`` leaves the image root
(absolute, ``..``) are left out of every mean and count they would enter, and each is listed under ``skipped``
with the reason (``exlpose stats`` prints one warning line for each).
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .annotations import count_labelled
from .errors import NameGrammarError
from .layout import normalise_image_path, safe_relpath
from .naming import parse_name
from .release import Release, open_release
from .schema import AnnotationDocument, load_document
from .split import DEFAULT_THRESHOLDS, PairMap, gain_split, well_lit_gain

__all__ = ["document_stats", "dataset_stats", "mean_intensity"]


def mean_intensity(path: str | Path) -> float:
    """Mean pixel value of an image file, scaled to 8 bits (16-bit PNGs are divided by 257).

    Raises:
        FileNotFoundError: the file is missing or not an image OpenCV can decode.
    """
    return _mean_of(_decode(Path(path)))


def _decode(path: Path) -> np.ndarray:
    try:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is None:
        raise FileNotFoundError(str(path))
    return img


def _mean_of(img: np.ndarray) -> float:
    mean = float(img.mean())
    return mean / 257.0 if img.dtype == np.uint16 else mean


def _outside_root(file_name: str) -> str | None:
    why = safe_relpath(file_name)
    return f"outside the image root ({why})" if why else None


def _skip(path: str, why: str, file: str | None = None) -> dict[str, str]:
    return {"path": path, "why": why, **({"file": file} if file else {})}


def document_stats(doc: AnnotationDocument, *, pairs: PairMap | None = None, thresholds: tuple[float, float] = DEFAULT_THRESHOLDS,
                   source: str | None = None) -> dict[str, Any]:
    """Counts of an annotation document: scenes, images, instances, resolution, images per ratio and gain split.

    A record whose ``file_name`` leaves the image root is not counted by scene, ratio or gain split; it is listed
    under ``skipped`` (``source`` names the file there).
    """
    scenes: set = set()
    ratios: Counter = Counter()
    splits: Counter = Counter()
    unconforming = 0
    skipped = []
    for img in doc.images:
        why = _outside_root(img.file_name)
        if why:
            skipped.append(_skip(img.file_name, why, source))
            continue
        try:
            name = parse_name(img.file_name)
        except NameGrammarError:
            unconforming += 1
            continue
        scenes.add(name.scene)
        ratios[name.ratio] += 1
        splits[gain_split(well_lit_gain(img.file_name, pairs), thresholds)] += 1
    sizes = Counter((img.width, img.height) for img in doc.images)
    labelled = sum(1 for a in doc.annotations if count_labelled(a.keypoints) > 0)
    out: dict[str, Any] = {
        "scenes": len(scenes),
        "images": len(doc.images),
        "instances": len(doc.annotations),
        "labelled_instances": labelled,
        "resolution": f"{sizes.most_common(1)[0][0][0]}x{sizes.most_common(1)[0][0][1]}" if sizes else None,
        "resolutions": len(sizes),
        "per_ratio": {str(r): ratios[r] for r in sorted(ratios)},
        "per_gain_split": {s: splits.get(s, 0) for s in ("LL-N", "LL-H", "LL-E")},
    }
    if unconforming:
        out["names_outside_grammar"] = unconforming
    if skipped:
        out["skipped"] = skipped
    return out


class _RecordSizes:
    """The pixel sizes annotation records give each image (by root-relative path, or by bare file name for
    records that name bare files)."""

    def __init__(self) -> None:
        self._sizes: dict[str, list[tuple[int, int, str]]] = {}

    def add(self, file_name: str, width: int, height: int, source: str) -> None:
        self._sizes.setdefault(normalise_image_path(file_name), []).append((width, height, source))

    def of(self, rel: str) -> list[tuple[int, int, str]]:
        norm = normalise_image_path(rel)
        bare = norm.rsplit("/", 1)[-1]
        return self._sizes.get(norm, []) + (self._sizes.get(bare, []) if bare != norm else [])


def _read_mean(root: Path, rel: str, records: list[tuple[int, int, str]]) -> tuple[float | None, str | None]:
    """(mean, None) for an image that counts, (None, why) for one that is skipped."""
    why = _outside_root(rel)
    if why:
        return None, why
    path = root / rel
    if not path.is_file():
        return None, "missing"
    try:
        img = _decode(path)
    except FileNotFoundError:
        return None, "unreadable (not an image OpenCV can decode)"
    height, width = img.shape[:2]
    for w, h, source in records:
        if (w, h) != (width, height):
            return None, f"size {width}x{height} unlike its record in {source} ({w}x{h})"
    return _mean_of(img), None


def _means(release: Release, paths: list[str], records: _RecordSizes, workers: int) -> tuple[dict[str, float], list[dict[str, str]]]:
    def one(rel: str) -> tuple[str, float | None, str | None]:
        return (rel, *_read_mean(release.image_root, rel, records.of(rel)))

    means: dict[str, float] = {}
    skipped = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for rel, mean, why in pool.map(one, paths):
            if mean is None:
                skipped.append(_skip(rel, why or "unreadable"))
            else:
                means[rel] = mean
    return means, skipped


def dataset_stats(
    root: str | Path,
    *,
    annotations: str | Path | None = None,
    intensity: bool = True,
    max_images: int | None = None,
    workers: int = 2,
    thresholds: tuple[float, float] = DEFAULT_THRESHOLDS,
) -> dict[str, Any]:
    """Statistics of a dataset in the release layout.

    Args:
        root: image root.
        annotations: annotation folder (found automatically when None).
        intensity: compute mean intensities (reads every image, or ``max_images`` evenly spaced pairs).
        max_images: cap on the pairs whose images are read.
        workers: reader threads.
        thresholds: gain-split thresholds.

    Returns:
        ``{"root", "dataset", "annotation_files", "skipped"}``; ``dataset["intensity_images"]`` counts the images
        whose means count; ``skipped`` lists ``{"path", "why"[, "file"]}`` for every image and record left out.
    """
    release = open_release(root, annotations)
    pmap = PairMap(release.bright_to_dark())
    documents = {key: (path, load_document(path)) for key, path in release.annotation_files().items()}
    records = _RecordSizes()
    skipped: list[dict[str, str]] = []
    for path, doc in documents.values():
        for img in doc.images:
            why = _outside_root(img.file_name)
            if why:
                skipped.append(_skip(img.file_name, why, path.name))
            else:
                records.add(img.file_name, img.width, img.height, path.name)
    pairs = release.pairs
    if max_images is not None and len(pairs) > max_images:
        pairs = [pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, max_images)]
    means: dict[str, float] = {}
    if intensity:
        means, unread = _means(release, [p.bright for p in pairs] + [p.dark for p in pairs], records, workers)
        skipped.extend(unread)

    def avg(paths: list[str]) -> float | None:
        vals = [means[p] for p in paths if p in means]
        return round(float(np.mean(vals)), 3) if vals else None

    table = {
        "scenes": len({p.name.scene for p in release.pairs}),
        "pairs": len(release.pairs),
        "paired": bool(release.pairs),
        "pairs_source": release.pairs_source,
        "mean_intensity_ll": avg([p.dark for p in pairs]),
        "mean_intensity_wl": avg([p.bright for p in pairs]),
        "intensity_images": len(means),
        "per_ratio": dict(sorted(Counter(str(p.name.ratio) for p in release.pairs).items(), key=lambda kv: int(kv[0]))),
        "missing_images": len(release.missing_images),
        "unpaired": len(release.unpaired),
    }
    files: dict[str, Any] = {}
    for key, (path, doc) in documents.items():
        entry = document_stats(doc, pairs=pmap, thresholds=thresholds)
        entry.pop("skipped", None)  # listed once, in the result's "skipped"
        entry["file"] = path.name
        if intensity:
            resolved = []
            for img in doc.images:
                if _outside_root(img.file_name):
                    continue
                pair = release.pair_of(img.file_name)
                if pair is None:
                    skipped.append(_skip(img.file_name, "not an image of the release's pairs (missing or unpaired)", path.name))
                else:
                    resolved.append(pair)
            entry["mean_intensity_ll"] = avg([p.dark for p in resolved])
            entry["mean_intensity_wl"] = avg([p.bright for p in resolved])
        files[key] = entry
    return {"root": str(release.image_root), "dataset": table, "annotation_files": files, "skipped": skipped}
