"""``exlpose annotate`` (``exlpose-annotate``): tasks for annotators, import of their labels, review, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from exlpose_data.cli.common import choose, err_console, handle_errors, new_app, out_console
from exlpose_data.errors import UsageError
from exlpose_data.layout import ANNOTATION_LAYOUTS
from exlpose_data.schema import load_document

__all__ = ["app", "main"]

app = new_app("Annotation: tasks for annotators, import of CVAT/Label Studio/COCO/CrowdPose labels, review sheets, export.")

_FORMATS = ("cvat", "label-studio", "coco", "crowdpose")
_EXPORT_FORMATS = ("cvat", "label-studio", "official-trans")


@app.command("tasks")
@handle_errors
def tasks_cmd(
    root: Annotated[Path, typer.Argument(help="Dataset root (bright/, dark/, brightPath2darkPath.txt).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder for the annotators' package.")],
    ll_preview: Annotated[bool, typer.Option("--ll-preview", help="Also write each pair's LL image brightened.")] = False,
    link: Annotated[bool, typer.Option("--link", help="Hard-link the images instead of copying them.")] = False,
    url_prefix: Annotated[Optional[str], typer.Option("--url-prefix", help="Prefix of data.image in the Label Studio tasks.")] = None,
    ll_gain: Annotated[float, typer.Option("--ll-gain", help="Brightening factor of LL previews.")] = 30.0,
    ll_target_mean: Annotated[Optional[float], typer.Option("--ll-target-mean", help="Brighten LL previews to this mean (0-255) instead.")] = None,
) -> None:
    """Write the well-lit images to label plus CVAT and Label Studio label configurations."""
    from .tasks import TASKS_URL_PREFIX, export_tasks

    result = export_tasks(
        root, out, ll_preview=ll_preview, link=link, url_prefix=url_prefix if url_prefix is not None else TASKS_URL_PREFIX,
        ll_gain=ll_gain, ll_target_mean=ll_target_mean, show_progress=True,
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
    force: Annotated[bool, typer.Option("--force", help="Replace annotation files that already exist.")] = False,
    allow_empty: Annotated[bool, typer.Option("--allow-empty", help="CVAT: accept frames nobody labelled as images with nobody in them.")] = False,
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
        result = import_annotations(file, fmt, dataset, out, split=split_name, box_from_keypoints=box_from_keypoints, force=force, allow_empty=allow_empty, layout=layout)
    except AnnotationProblems as exc:
        for problem in exc.problems:
            err_console.print(str(problem), markup=False, soft_wrap=True)
        raise UsageError(f"{file}: {len(exc.problems)} problem(s); nothing was written") from None
    out_console.print(f"{result.images} images, {result.people} people -> {result.wl_path} and {result.ll_path}", markup=False)
    for old in result.replaced:
        err_console.print(
            f"replaced {old.path}: it held {held_text(old.images, old.people)}, now {held_text(result.images, result.people)}", markup=False, soft_wrap=True
        )
    if result.empty_images:
        err_console.print(f"note: {len(result.empty_images)} image(s) recorded with nobody in them: {', '.join(result.empty_images)}", markup=False, soft_wrap=True)
    if result.boxes_from_keypoints:
        err_console.print(f"note: {result.boxes_from_keypoints} box(es) derived from joints (marked \"bbox_source\": \"keypoints\")", markup=False)


@app.command("review")
@handle_errors
def review_cmd(
    root: Annotated[Path, typer.Argument(help="Dataset root.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder for sheets and index.html.")],
    annotations: Annotated[Optional[list[Path]], typer.Option("--annotations", help="Annotation file(s) to review (default: the dataset's).")] = None,
    thumb_width: Annotated[int, typer.Option("--thumb-width", min=64, help="Width of each image in a tile, pixels.")] = 480,
    per_sheet: Annotated[int, typer.Option("--per-sheet", min=1, help="Pairs per contact sheet.")] = 8,
    ll_gain: Annotated[float, typer.Option("--ll-gain", help="Brightening factor of the LL images.")] = 30.0,
    ll_target_mean: Annotated[Optional[float], typer.Option("--ll-target-mean", help="Brighten each LL image to this mean (0-255) instead.")] = None,
) -> None:
    """Contact sheets and an HTML index of every pair (WL | LL brightened, skeletons on both) with label flags."""
    from .review import write_review

    summary = write_review(root, out, annotation_files=annotations, thumb_width=thumb_width, per_sheet=per_sheet, ll_gain=ll_gain, ll_target_mean=ll_target_mean, show_progress=True)
    flags = ", ".join(f"{k} {v}" for k, v in summary.flags.items() if v) or "no flags"
    out_console.print(f"{summary.pairs} pairs on {summary.sheets} sheet(s); {flags} -> {summary.index}", markup=False)


@app.command("export")
@handle_errors
def export_cmd(
    file: Annotated[Path, typer.Argument(help="A CrowdPose-style annotation file (ours or the release's).")],
    fmt: Annotated[str, typer.Option("--format", help="cvat (COCO Keypoints 1.0), label-studio (JSON tasks) or official-trans (the authors' *_trans.json).")],
    out: Annotated[Path, typer.Option("--out", help="Output JSON file.")],
    url_prefix: Annotated[Optional[str], typer.Option("--url-prefix", help="Label Studio: prefix of data.image before the file name.")] = None,
) -> None:
    """Export labels to CVAT or Label Studio (to correct them there and import them back) or as the authors' _trans.json."""
    from exlpose_data.atomic import write_json_atomic, write_text_atomic
    from exlpose_data.official import trans_entries, trans_json_text

    from .formats.cvat import to_cvat_dict
    from .formats.label_studio import DEFAULT_URL_PREFIX, to_label_studio_tasks

    choose(fmt, _EXPORT_FORMATS, "--format")
    doc = load_document(file)
    if fmt == "official-trans":
        write_text_atomic(out, trans_json_text(doc, source=str(file)))
        kept = len(trans_entries(doc, source=str(file)))
        out_console.print(f"{kept} of {len(doc.annotations)} people (those with labelled joints, no crowd regions) -> {out}", markup=False)
        return
    payload = to_cvat_dict(doc) if fmt == "cvat" else to_label_studio_tasks(doc, url_prefix if url_prefix is not None else DEFAULT_URL_PREFIX)
    write_json_atomic(out, payload)
    out_console.print(f"{len(doc.images)} images, {len(doc.annotations)} people -> {out}", markup=False)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="exlpose-annotate")
