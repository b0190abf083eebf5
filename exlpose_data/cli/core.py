"""Core commands mounted at the top of ``exlpose``: validate, stats, verify, schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..atomic import write_json_atomic
from ..errors import InputError
from ..layout import verify_dataset
from ..outputs import check_output
from ..provenance import incomplete_steps
from ..schema import annotation_json_schema, load_document
from ..stats import dataset_stats, document_stats
from ..jsonio import load_json
from ..validate import edge_joints, fix_document, validate_document
from .common import handle_errors, new_app, out_console

app = new_app("Core dataset commands.")
schema_app = new_app("Print JSON Schemas of the toolkit's file formats.")
app.add_typer(schema_app, name="schema")


@schema_app.command("annotations")
@handle_errors
def schema_annotations() -> None:
    """Print the JSON Schema of a CrowdPose-style annotation file."""
    typer.echo(json.dumps(annotation_json_schema(), indent=2))


@app.command()
@handle_errors
def validate(
    file: Annotated[Path, typer.Argument(help="Annotation JSON file to check.")],
    images: Annotated[Optional[Path], typer.Option(help="Image root: also check that every file_name exists under it.")] = None,
    fix: Annotated[Optional[Path], typer.Option("--fix", help="Write a corrected copy here (never edits FILE in place).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print problems as JSON lines.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing annotation file at --fix (nothing else is ever replaced).")] = False,
) -> None:
    """Check an annotation file and list every problem with its JSON location.

    With --images, every image must exist under the root, be readable, and have the pixel size its record gives.
    The file is read strictly (duplicate keys, NaN/Infinity, integers beyond 2^53, deep nesting are refused), so
    --fix never "fixes" what a key given twice hid.

    Exit code 0: clean; 1: problems found; 2: unusable input (missing, not JSON, no images/annotations lists).
    """
    if images is not None and not images.is_dir():
        raise InputError(f"{images}: --images is not a folder")
    if fix is not None:
        if fix.resolve() == file.resolve():
            raise InputError(f"{fix}: --fix must name a new file; the input is never edited in place")
        check_output(fix, inputs=[file, images], writes="file", produces="annotation file", replaces=["annotation file"],
                     overwrite=overwrite, option="--fix")
    raw = load_json(file)
    problems = validate_document(raw, images_root=images, source=str(file))
    for p in problems:
        typer.echo(json.dumps({"location": p.location, "code": p.code, "message": p.message}) if as_json else f"{file}: {p}")
    on_edge = edge_joints(raw)
    if on_edge:
        typer.echo(f"note: {len(on_edge)} labelled joint(s) lie exactly on x = width or y = height (accepted: bounds are "
                   f"inclusive), first {on_edge[0]}", err=True)
    if fix is not None:
        fixed, changes = fix_document(raw, source=str(file))
        write_json_atomic(fix, fixed)
        for c in changes:
            typer.echo(f"fixed: {c}", err=True)
        remaining = validate_document(fixed, images_root=images, source=str(fix))
        typer.echo(f"wrote {fix}: {len(changes)} change(s), {len(remaining)} problem(s) left", err=True)
    typer.echo(f"{file}: {len(problems)} problem(s)" if problems else f"{file}: clean", err=True)
    if problems:
        raise typer.Exit(1)


@app.command()
@handle_errors
def stats(
    target: Annotated[Path, typer.Argument(help="Dataset root (bright/, dark/, annotations) or one annotation file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    no_intensity: Annotated[bool, typer.Option("--no-intensity", help="Skip reading images for mean intensities.")] = False,
    max_images: Annotated[Optional[int], typer.Option(help="Read at most this many pairs for intensities.")] = None,
    annotations: Annotated[Optional[Path], typer.Option(help="Annotation folder, if not found automatically.")] = None,
) -> None:
    """Dataset statistics: the columns of the paper's Table 1, counts per split and per ratio R.

    Every image that cannot be read (missing, unreadable, outside the image root, a pixel size unlike its
    annotation record) and every record whose file_name leaves the image root is named on stderr, one line each,
    and not counted; --json lists them under "skipped".
    """
    if target.is_file():
        result = {"file": str(target), **document_stats(load_document(target), source=str(target))}
        _warn_skipped(result.get("skipped", []))
        if as_json:
            typer.echo(json.dumps(result, indent=2))
            return
        _print_doc_stats(result)
        return
    if not target.is_dir():
        raise InputError(f"{target}: no such dataset folder or annotation file")
    result = dataset_stats(target, annotations=annotations, intensity=not no_intensity, max_images=max_images)
    _warn_skipped(result["skipped"])
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    d = result["dataset"]
    t = Table(title=f"{result['root']}")
    for col in ("scenes", "pairs", "mean LL", "mean WL", "paired", "pairs from"):
        t.add_column(col)
    t.add_row(str(d["scenes"]), str(d["pairs"]), _fmt(d["mean_intensity_ll"]), _fmt(d["mean_intensity_wl"]), "yes" if d["paired"] else "no", d["pairs_source"])
    out_console.print(t)
    if result["annotation_files"]:
        ft = Table(title="annotation files (by release name: ExLPose_<file>.json)")
        for col in ("file", "scenes", "images", "people", "size", "LL mean", "WL mean", "N/H/E"):
            ft.add_column(col, no_wrap=True)
        for key, entry in result["annotation_files"].items():
            g = entry["per_gain_split"]
            ft.add_row(key, str(entry["scenes"]), str(entry["images"]), str(entry["instances"]), str(entry["resolution"]),
                       _fmt(entry.get("mean_intensity_ll")), _fmt(entry.get("mean_intensity_wl")), f"{g['LL-N']}/{g['LL-H']}/{g['LL-E']}")
        out_console.print(ft)
    out_console.print("pairs per ratio R: " + ", ".join(f"{r}: {n}" for r, n in d["per_ratio"].items()))
    if d["missing_images"] or d["unpaired"]:
        out_console.print(f"missing images: {d['missing_images']}, unpaired files: {d['unpaired']}")


def _warn_skipped(skipped: list[dict[str, str]]) -> None:
    for s in skipped:
        where = f" (record in {s['file']})" if "file" in s else ""
        typer.echo(f"warning: skipped {s['path']}{where}: {s['why']}", err=True)
    if skipped:
        typer.echo(f"warning: {len(skipped)} image(s) or record(s) skipped and not counted", err=True)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _print_doc_stats(r: dict) -> None:
    t = Table(title=r["file"])
    for col in ("scenes", "images", "instances", "labelled", "resolution"):
        t.add_column(col)
    t.add_row(str(r["scenes"]), str(r["images"]), str(r["instances"]), str(r["labelled_instances"]), str(r["resolution"]))
    out_console.print(t)
    g = r["per_gain_split"]
    out_console.print(f"images per gain split: LL-N {g['LL-N']}, LL-H {g['LL-H']}, LL-E {g['LL-E']}")
    out_console.print("images per ratio R: " + ", ".join(f"{k}: {v}" for k, v in r["per_ratio"].items()))


@app.command()
@handle_errors
def verify(root: Annotated[Path, typer.Argument(help="Dataset root holding manifest.json.")]) -> None:
    """Check every file of a dataset against its manifest (SHA-256 and size) and list every difference, and every
    run that wrote into it and did not finish (interrupted, failed: marked incomplete in its provenance record)."""
    diffs = verify_dataset(root)
    unfinished = incomplete_steps(root)
    for d in diffs:
        typer.echo(str(d))
    for line in unfinished:
        typer.echo(f"incomplete: {line}")
    if diffs or unfinished:
        parts = ([f"{len(diffs)} difference(s)"] if diffs else []) + ([f"{len(unfinished)} unfinished run(s)"] if unfinished else [])
        typer.echo(f"{root}: {', '.join(parts)}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{root}: all files match the manifest, every run that wrote into it finished", err=True)
