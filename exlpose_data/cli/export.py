"""``exlpose export``: a dataset laid out for other code, today the authors' own (``official``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..official_layout import ANNOTATIONS_SUBDIR, write_official_layout
from .common import handle_errors, new_app, out_console

app = new_app("Lay a dataset out for other code: official (the authors' pytorch-cpn test.py).")


@app.callback()
def _group() -> None:
    """Keep ``official`` a sub-command (more layouts may join it), not the app itself."""


@app.command("official")
@handle_errors
def official(
    root: Annotated[Path, typer.Argument(help="Dataset root (bright/, dark/, brightPath2darkPath.txt, annotations).")],
    out: Annotated[Path, typer.Option("--out", help="New or empty folder outside ROOT: image links named as the authors' loaders expect, and their annotation files.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", "--force", help="Replace an earlier export at --out (built beside it, swapped in when complete).")] = False,
) -> None:
    """Links OUT/bright/<name> and OUT/dark/<name> named as the authors' loaders rename images, and
    OUT/Annotations/ExLPose/ExLPose_test_LL-All.json (-Normal, -Hard, -Extreme, WL) with their _trans.json.

    Point their configs' img_path at OUT and gt_path / ori_gt_path at OUT/Annotations/ExLPose. An earlier
    export at OUT is replaced only with --overwrite; anything else there is refused.
    """
    result = write_official_layout(root, out, overwrite=overwrite)
    out_console.print(f"{result.pairs} pairs linked under {result.out}/bright and {result.out}/dark", markup=False)
    for name in result.annotation_files:
        out_console.print(f"{result.out / ANNOTATIONS_SUBDIR / name}", markup=False)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="exlpose-export")
