"""``exlpose-split``: split annotation files by well-lit gain or by scene."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..atomic import write_json_atomic
from ..errors import InputError
from ..layout import PAIRS_FILE, read_pairs, update_dataset_manifest
from ..release import open_release
from ..schema import load_document
from ..split import DEFAULT_THRESHOLDS, PairMap, split_by_gain, split_by_scene, to_condition, unpaired_warning
from .common import handle_errors, new_app, warn

app = new_app("Split annotation files: by-gain (LL-N/H/E) or by-scene (train/val/test).")


def _pairs(pairs: Optional[Path]) -> PairMap | None:
    if pairs is None:
        return None
    if pairs.is_dir():
        if (pairs / PAIRS_FILE).is_file():
            return PairMap(dict(read_pairs(pairs / PAIRS_FILE)))
        return PairMap(open_release(pairs).bright_to_dark())
    return PairMap(dict(read_pairs(pairs)))


PairsOpt = Annotated[
    Optional[Path],
    typer.Option("--pairs", help=f"{PAIRS_FILE}, or a dataset root, to name dark images in LL files."),
]


@app.command("by-gain")
@handle_errors
def by_gain(
    annotations: Annotated[Path, typer.Argument(help="Annotation file (e.g. ExLPose_test_LL-All.json).")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    thresholds: Annotated[tuple[float, float], typer.Option(help="WL gain thresholds in dB: N < first <= H < second <= E.")] = DEFAULT_THRESHOLDS,
    prefix: Annotated[str, typer.Option(help="File name prefix.")] = "ExLPose_test",
    pairs: PairsOpt = None,
    recompute_crowd_index: Annotated[bool, typer.Option("--recompute-crowd-index", help="Recompute every image's crowdIndex instead of keeping the file's.")] = False,
) -> None:
    """Split by the well-lit gain into <prefix>_LL-{N,H,E,A}.json and <prefix>_WL.json.

    Annotation ids are renumbered from 1 (COCO-style evaluators never match a ground truth whose id is 0),
    num_keypoints recomputed (not a crowd region's) and area (w*h*0.53) added; crowdIndex kept as the file gives it
    (computed where absent); keypoints, boxes and images are kept.
    """
    if thresholds[0] >= thresholds[1]:
        raise InputError(f"--thresholds must increase, got {thresholds[0]} {thresholds[1]}")
    doc = load_document(annotations)
    result = split_by_gain(doc, thresholds=thresholds, pairs=_pairs(pairs), recompute_crowd_index=recompute_crowd_index, source=str(annotations))
    for w in result.warnings:
        warn(w)
    for key, part in result.documents.items():
        path = write_json_atomic(out / f"{prefix}_{key}.json", part.to_json_dict())
        typer.echo(f"{path}: {len(part.images)} images, {len(part.annotations)} instances")
    update_dataset_manifest(out)


@app.command("by-scene")
@handle_errors
def by_scene(
    annotations: Annotated[Path, typer.Argument(help="Annotation file covering all scenes.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    test_fraction: Annotated[float, typer.Option(help="Fraction of scenes for test.")],
    seed: Annotated[int, typer.Option(help="Seed of the scene shuffle.")],
    val_fraction: Annotated[float, typer.Option(help="Fraction of scenes for validation.")] = 0.0,
    prefix: Annotated[str, typer.Option(help="File name prefix.")] = "ExLPose",
    pairs: PairsOpt = None,
) -> None:
    """Split by scene (date, site, video) into <prefix>_{train,val,test}_{LL,WL}.json; no scene in two parts."""
    doc = load_document(annotations)
    pmap = _pairs(pairs)
    result = split_by_scene(doc, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed, source=str(annotations))
    counts = result.counts()
    unpaired = {"LL": 0, "WL": 0}
    for part, part_doc in result.documents.items():
        for cond in ("LL", "WL"):
            cdoc, kept = to_condition(part_doc, cond, pmap)
            unpaired[cond] += kept
            write_json_atomic(out / f"{prefix}_{part}_{cond}.json", cdoc.to_json_dict())
        c = counts[part]
        typer.echo(f"{part}: {c['scenes']} scenes, {c['images']} images, {c['instances']} instances")
    for cond, n in unpaired.items():
        if n:
            warn(unpaired_warning(n, cond))
    update_dataset_manifest(out)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="exlpose-split")
