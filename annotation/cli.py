"""``exlpose annotate`` (``exlpose-annotate``): tasks for annotators, import of their labels, review, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from exlpose_data.cli.common import choose, err_console, finite_number, handle_errors, new_app, out_console, progress_callback
from exlpose_data.errors import UsageError
from exlpose_data.layout import ANNOTATION_LAYOUTS

__all__ = ["app", "main"]

app = new_app("Annotation: tasks for annotators, import of CVAT/Label Studio/COCO/CrowdPose labels, review sheets, export.")

_FORMATS = ("cvat", "label-studio", "coco", "crowdpose")
_LISTED = 10  # names printed before "..."


@app.command("tasks")
@handle_errors
def tasks_cmd(
    root: Annotated[Path, typer.Argument(help="Dataset root (bright/, dark/, brightPath2darkPath.txt).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder for the annotators' package (outside ROOT).")],
    ll_preview: Annotated[bool, typer.Option("--ll-preview", help="Also write each pair's LL image brightened.")] = False,
    link: Annotated[bool, typer.Option("--link", help="Hard-link the images instead of copying them.")] = False,
    url_prefix: Annotated[Optional[str], typer.Option("--url-prefix", help="Prefix of data.image in the Label Studio tasks.")] = None,
    ll_gain: Annotated[float, typer.Option("--ll-gain", help="Brightening factor of LL previews.", parser=finite_number)] = 30.0,
    ll_target_mean: Annotated[Optional[float], typer.Option("--ll-target-mean", help="Brighten LL previews to this mean (0-255) instead.", parser=finite_number)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing task folder (built beside it, swapped in when complete).")] = False,
) -> None:
    """Write the well-lit images to label plus CVAT and Label Studio label configurations."""
    from .tasks import TASKS_URL_PREFIX, export_tasks

    with progress_callback("tasks") as progress:
        result = export_tasks(
            root, out, ll_preview=ll_preview, link=link, url_prefix=url_prefix if url_prefix is not None else TASKS_URL_PREFIX,
            ll_gain=ll_gain, ll_target_mean=ll_target_mean, overwrite=overwrite, progress=progress,
        )
    out_console.print(f"{result.images} images, {result.previews} LL previews -> {result.out}", markup=False)
    if result.missing:
        err_console.print(f"warning: {len(result.missing)} image(s) named by the dataset are not on disk, e.g. {result.missing[0]}", markup=False)


@app.command("import")
@handle_errors
def import_cmd(
    file: Annotated[Path, typer.Argument(help="The annotation tool's export (JSON; for CVAT also its XML or the zip it downloads).")],
    fmt: Annotated[str, typer.Option("--format", help="cvat (COCO Keypoints 1.0 or CVAT for images 1.1, JSON/XML/zip), label-studio (JSON), coco or crowdpose.")],
    dataset: Annotated[Path, typer.Option("--dataset", help="Dataset root the labelled images belong to.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: ROOT/annotations).")] = None,
    split_name: Annotated[Optional[str], typer.Option("--split-name", help="Required: train, val or test names the files as the release does (ExLPose_test_LL-A.json, ...); all writes ExLPose_all_{WL,LL}.json for 'exlpose split by-scene'.")] = None,
    box_from_keypoints: Annotated[bool, typer.Option("--box-from-keypoints", help="Give people without a box their joints' extent (marked in the output).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", "--force", help="Replace annotation files that already exist, also when an earlier import wrote them with other settings (--force: old name).")] = False,
    allow_empty: Annotated[bool, typer.Option("--allow-empty", help="CVAT: accept frames nobody labelled as images with nobody in them.")] = False,
    skip_unlabelled: Annotated[bool, typer.Option("--skip-unlabelled", help="Label Studio: import the labelled tasks and leave out those skipped or not labelled yet (listed; their pairs get no labels).")] = False,
    layout: Annotated[str, typer.Option("--layout", help="release (ROOT/annotations) or mmpose (ROOT/annotations/ExLPose): the default --out.")] = "release",
) -> None:
    """Import labels into the dataset's WL and LL annotation files (nothing is written if any problem is found)."""
    from .importer import held_text, import_annotations
    from .problems import AnnotationProblems

    choose(fmt, _FORMATS, "--format")
    if split_name is None:
        # No silent default: ExLPose_all_*.json is a name no training or evaluation tool looks for.
        raise UsageError(
            "--split-name is required: train, val or test writes the release's file names (ExLPose_train_WL.json, "
            "ExLPose_test_LL-A.json, ...); all writes ExLPose_all_{WL,LL}.json, to be split by scene with 'exlpose split by-scene'"
        )
    choose(layout, tuple(ANNOTATION_LAYOUTS), "--layout")
    try:
        result = import_annotations(file, fmt, dataset, out, split=split_name, box_from_keypoints=box_from_keypoints, overwrite=overwrite, allow_empty=allow_empty, skip_unlabelled=skip_unlabelled, layout=layout)
    except AnnotationProblems as exc:
        for problem in exc.problems:
            err_console.print(str(problem), markup=False, soft_wrap=True)
        raise UsageError(f"{file}: {len(exc.problems)} problem(s); nothing was written") from None
    out_console.print(f"{result.images} images, {result.people} people -> {result.wl_path} and {result.ll_path}", markup=False)
    if result.pairs_without_labels:  # part of the summary: which pairs these files leave without labels
        few = ", ".join(result.pairs_without_labels[:_LISTED]) + (", ..." if len(result.pairs_without_labels) > _LISTED else "")
        out_console.print(
            f"{len(result.pairs_without_labels)} of {result.total_pairs} pairs of the dataset have no labels in this import: {few}", markup=False, soft_wrap=True
        )
    for old in result.replaced:
        err_console.print(
            f"replaced {old.path}: it held {held_text(old.images, old.people)}, now {held_text(result.images, result.people)}", markup=False, soft_wrap=True
        )
    if result.empty_images:
        err_console.print(f"note: {len(result.empty_images)} image(s) recorded with nobody in them: {', '.join(result.empty_images)}", markup=False, soft_wrap=True)
    if result.unlabelled:
        listed = ", ".join(str(u) for u in result.unlabelled)
        err_console.print(f"note: {len(result.unlabelled)} task(s) without a usable annotation left out: {listed}", markup=False, soft_wrap=True)
    if result.joints_by_geometry:
        err_console.print(
            f"note: {result.joints_by_geometry} joint(s) given to a person only because they lie in its box alone (no parentID, no relation); "
            "marked \"joints_by_geometry\" in the files and flagged by 'exlpose annotate review'", markup=False, soft_wrap=True,
        )
    for warning in result.warnings:
        err_console.print(f"warning: {warning}", markup=False, soft_wrap=True)
    if result.boxes_from_keypoints:
        err_console.print(f"note: {result.boxes_from_keypoints} box(es) derived from joints (marked \"bbox_source\": \"keypoints\")", markup=False)


@app.command("review")
@handle_errors
def review_cmd(
    root: Annotated[Path, typer.Argument(help="Dataset root.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder for sheets and index.html (outside ROOT).")],
    annotations: Annotated[Optional[list[Path]], typer.Option("--annotations", help="Annotation file(s) to review (default: the dataset's).")] = None,
    thumb_width: Annotated[int, typer.Option("--thumb-width", min=64, help="Width of each image in a tile, pixels.")] = 480,
    per_sheet: Annotated[int, typer.Option("--per-sheet", min=1, help="Pairs per contact sheet.")] = 8,
    ll_gain: Annotated[float, typer.Option("--ll-gain", help="Brightening factor of the LL images.", parser=finite_number)] = 30.0,
    ll_target_mean: Annotated[Optional[float], typer.Option("--ll-target-mean", help="Brighten each LL image to this mean (0-255) instead.", parser=finite_number)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing review folder (built beside it, swapped in when complete).")] = False,
) -> None:
    """Contact sheets and an HTML index of every pair (WL | LL brightened, skeletons on both) with label flags."""
    from .review import write_review

    with progress_callback("review") as progress:
        summary = write_review(root, out, annotation_files=annotations, thumb_width=thumb_width, per_sheet=per_sheet,
                               ll_gain=ll_gain, ll_target_mean=ll_target_mean, overwrite=overwrite, progress=progress)
    for skip in summary.skipped:
        err_console.print(f"warning: {skip}; skipped", markup=False, soft_wrap=True)
    if summary.skipped:
        err_console.print(f"warning: {len(summary.skipped)} image record(s) skipped (listed on the review page too)", markup=False)
    flags = ", ".join(f"{k} {v}" for k, v in summary.flags.items() if v) or "no flags"
    out_console.print(f"{summary.pairs} pairs on {summary.sheets} sheet(s); {flags} -> {summary.index}", markup=False)


@app.command("export")
@handle_errors
def export_cmd(
    file: Annotated[Path, typer.Argument(help="A CrowdPose-style annotation file (ours or the release's).")],
    fmt: Annotated[str, typer.Option("--format", help="cvat (COCO Keypoints 1.0), label-studio (JSON tasks) or official-trans (the authors' *_trans.json).")],
    out: Annotated[Path, typer.Option("--out", help="Output JSON file (never the input; an existing file of another kind is refused).")],
    url_prefix: Annotated[Optional[str], typer.Option("--url-prefix", help="Label Studio: prefix of data.image before the file name.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file of the same kind.")] = False,
) -> None:
    """Export labels to CVAT or Label Studio (to correct them there and import them back) or as the authors' _trans.json."""
    from .exporter import EXPORT_FORMATS, export_annotations

    choose(fmt, tuple(EXPORT_FORMATS), "--format")
    result = export_annotations(file, fmt, out, url_prefix=url_prefix, overwrite=overwrite)
    if fmt == "official-trans":
        out_console.print(f"{result.written_people} of {result.people} people (those with labelled joints, no crowd regions) -> {result.out}", markup=False)
    else:
        out_console.print(f"{result.images} images, {result.people} people -> {result.out}", markup=False)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="exlpose-annotate")
