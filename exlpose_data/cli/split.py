"""``exlpose-split``: split annotation files by well-lit gain or by scene."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import InputError, UsageError
from ..layout import PAIRS_FILE, read_pairs
from ..naming import ANNOTATION_PREFIX, annotation_file_name
from ..release import open_release
from ..schema import load_document
from ..split import (DEFAULT_THRESHOLDS, PairMap, SplitWrite, check_split_output, gain_split_names, scene_split_files,
                     scene_split_names, split_by_gain, split_by_scene, unpaired_warning, write_split)
from .common import finite_number, handle_errors, new_app, warn

app = new_app("Split annotation files: by-gain (LL-N/H/E) or by-scene (train/val/test).")


def _pair_list(pairs: Optional[Path]) -> Path | None:
    """The pair-list file ``--pairs`` reads, if any (a dataset root is read through its pair list or its names)."""
    if pairs is None:
        return None
    if pairs.is_dir():
        return pairs / PAIRS_FILE if (pairs / PAIRS_FILE).is_file() else None
    return pairs


def _inputs(annotations: Path, pairs: Optional[Path]) -> dict[str, Path]:
    pair_list = _pair_list(pairs)
    return {"annotations": annotations, **({"pairs": pair_list} if pair_list is not None else {})}


def _report(result: SplitWrite, out: Path) -> None:
    for rel in result.removed:
        typer.echo(f"{out / rel}: removed (the previous run of this split wrote it, this one does not)")


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
OutOpt = Annotated[Path, typer.Option(help="Output folder; files of these names there that no split wrote are refused, "
                                           "and a re-run with other settings too, unless --overwrite.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", "--force", help="Replace files of these names that a split did not write, "
                                                                             "or a previous split's files made with other settings or inputs.")]


@app.command("by-gain")
@handle_errors
def by_gain(
    annotations: Annotated[Path, typer.Argument(help="Annotation file (e.g. ExLPose_test_LL-All.json).")],
    out: OutOpt,
    thresholds: Annotated[tuple[float, float], typer.Option(help="WL gain thresholds in dB: N < first <= H < second <= E.")] = DEFAULT_THRESHOLDS,
    prefix: Annotated[str, typer.Option(help="File name prefix.")] = f"{ANNOTATION_PREFIX}_test",
    pairs: PairsOpt = None,
    recompute_crowd_index: Annotated[bool, typer.Option("--recompute-crowd-index", help="Recompute every image's crowdIndex instead of keeping the file's.")] = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Split by the well-lit gain into <prefix>_LL-{N,H,E,A}.json and <prefix>_WL.json.

    Annotation ids are renumbered from 1 (COCO-style evaluators never match a ground truth whose id is 0),
    num_keypoints recomputed (not a crowd region's) and area (w*h*0.53) added; crowdIndex kept as the file gives it
    (computed where absent); keypoints, boxes and images are kept.
    """
    if not all(math.isfinite(t) for t in thresholds):  # a tuple option takes no parser: the same rule here
        raise UsageError(f"--thresholds {thresholds[0]} {thresholds[1]}: expected a finite number for each")
    if thresholds[0] >= thresholds[1]:
        raise InputError(f"--thresholds must increase, got {thresholds[0]} {thresholds[1]}")
    inputs = _inputs(annotations, pairs)
    check_split_output(out, gain_split_names(prefix), inputs=inputs.values(), overwrite=overwrite)
    doc = load_document(annotations)
    result = split_by_gain(doc, thresholds=thresholds, pairs=_pairs(pairs), recompute_crowd_index=recompute_crowd_index, source=str(annotations))
    for w in result.warnings:
        warn(w)
    files = {annotation_file_name(None, key, prefix=prefix): part for key, part in result.documents.items()}
    settings = {"thresholds": list(thresholds), "prefix": prefix, "recompute_crowd_index": recompute_crowd_index}
    written = write_split(out, files, command="exlpose-split by-gain", step=f"split by-gain {prefix}", settings=settings,
                          inputs=inputs, overwrite=overwrite)
    for path, part in zip(written.written, files.values()):
        typer.echo(f"{path}: {len(part.images)} images, {len(part.annotations)} instances")
    _report(written, out)


@app.command("by-scene")
@handle_errors
def by_scene(
    annotations: Annotated[Path, typer.Argument(help="Annotation file covering all scenes.")],
    out: OutOpt,
    test_fraction: Annotated[float, typer.Option(help="Fraction of scenes for test.", parser=finite_number)],
    seed: Annotated[int, typer.Option(help="Seed of the scene shuffle.")],
    val_fraction: Annotated[float, typer.Option(help="Fraction of scenes for validation.", parser=finite_number)] = 0.0,
    prefix: Annotated[str, typer.Option(help="File name prefix.")] = ANNOTATION_PREFIX,
    pairs: PairsOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Split by scene (date, site, video) into <prefix>_{train,val,test}_{LL,WL}.json; no scene in two parts.

    A re-run into the same folder with other settings is refused (naming them) unless --overwrite, which also
    removes the files the earlier run wrote and this one does not (its val files after a run without
    --val-fraction), so no scene is left in two parts on disk.
    """
    inputs = _inputs(annotations, pairs)
    check_split_output(out, scene_split_names(prefix, val=val_fraction > 0), inputs=inputs.values(), overwrite=overwrite)
    doc = load_document(annotations)
    pmap = _pairs(pairs)
    result = split_by_scene(doc, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed, source=str(annotations))
    files, unpaired = scene_split_files(result, pmap, prefix=prefix)
    settings = {"test_fraction": test_fraction, "val_fraction": val_fraction, "seed": seed, "prefix": prefix}
    written = write_split(out, files, command="exlpose-split by-scene", step=f"split by-scene {prefix}", settings=settings,
                          inputs=inputs, overwrite=overwrite)
    for part, c in result.counts().items():
        typer.echo(f"{part}: {c['scenes']} scenes, {c['images']} images, {c['instances']} instances")
    for cond, n in unpaired.items():
        if n:
            warn(unpaired_warning(n, cond))
    _report(written, out)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="exlpose-split")
