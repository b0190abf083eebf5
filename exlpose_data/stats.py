"""Dataset statistics: the columns of the paper's Table 1 and counts per split and per ratio.

Mean intensity is the mean 8-bit pixel value over all channels and pixels of an image, averaged over images
(the paper reports 2.0 for LL and 90.5 for WL on ExLPose).
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
from .naming import parse_name
from .release import Release, open_release
from .schema import AnnotationDocument, load_document
from .split import DEFAULT_THRESHOLDS, PairMap, gain_split, well_lit_gain

__all__ = ["document_stats", "dataset_stats", "mean_intensity"]


def mean_intensity(path: str | Path) -> float:
    """Mean pixel value of an image file, scaled to 8 bits (16-bit PNGs are divided by 257)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(str(path))
    mean = float(img.mean())
    return mean / 257.0 if img.dtype == np.uint16 else mean


def document_stats(doc: AnnotationDocument, *, pairs: PairMap | None = None, thresholds: tuple[float, float] = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """Counts of an annotation document: scenes, images, instances, resolution, images per ratio and gain split."""
    scenes: set = set()
    ratios: Counter = Counter()
    splits: Counter = Counter()
    unconforming = 0
    for img in doc.images:
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
    return out


def _means(release: Release, paths: list[str], workers: int) -> dict[str, float]:
    def one(rel: str) -> tuple[str, float | None]:
        try:
            return rel, mean_intensity(release.image_root / rel)
        except FileNotFoundError:
            return rel, None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return {rel: m for rel, m in pool.map(one, paths) if m is not None}


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
    """
    release = open_release(root, annotations)
    pmap = PairMap(release.bright_to_dark())
    pairs = release.pairs
    if max_images is not None and len(pairs) > max_images:
        pairs = [pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, max_images)]
    means = _means(release, [p.bright for p in pairs] + [p.dark for p in pairs], workers) if intensity else {}

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
        "intensity_images": len(pairs) if intensity else 0,
        "per_ratio": dict(sorted(Counter(str(p.name.ratio) for p in release.pairs).items(), key=lambda kv: int(kv[0]))),
        "missing_images": len(release.missing_images),
        "unpaired": len(release.unpaired),
    }
    files: dict[str, Any] = {}
    for key, path in release.annotation_files().items():
        doc = load_document(path)
        entry = document_stats(doc, pairs=pmap, thresholds=thresholds)
        entry["file"] = path.name
        if intensity:
            resolved = [release.pair_of(img.file_name) for img in doc.images]
            entry["mean_intensity_ll"] = avg([p.dark for p in resolved if p is not None])
            entry["mean_intensity_wl"] = avg([p.bright for p in resolved if p is not None])
        files[key] = entry
    return {"root": str(release.image_root), "dataset": table, "annotation_files": files}
