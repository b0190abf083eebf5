"""``exlpose pack``: decode a dataset's images once into an HDF5 pack for fast training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..datasets.pack import pack_dataset
from .common import err_console, handle_errors, new_app, progress_callback, warn

__all__ = ["app", "main"]

app = new_app("Decode a dataset's images into an HDF5 pack read by the torch datasets (pack=PATH).")


@app.command()
@handle_errors
def pack(
    root: Annotated[Path, typer.Argument(help="Image root holding bright/ and dark/ (or an OC set's root with --ann).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The pack file to write (HDF5), outside ROOT; an up-to-date pack there is left as it is.")],
    ann: Annotated[list[Path] | None, typer.Option("--ann", "-a", help="Pack only the images these annotation files use (repeatable).")] = None,
    condition: Annotated[str, typer.Option(help="With --ann: the images of LL, WL or pair (both).")] = "pair",
    overwrite: Annotated[bool, typer.Option("--overwrite", "--force", help="Replace a pack at --out made from other images, settings or inputs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Decode the images of ROOT (all pairs, or those --ann files use) into PACK.h5.

    Datasets given pack=PACK.h5 read crops from it and return samples bit-identical to decoding the files.
    --out must not be an input or lie inside ROOT, and is never anything but a pack (an annotation file there is
    refused). A pack there made from the same images and inputs is left as it is; one made otherwise is
    replaced only with --overwrite. Annotation records whose file_name is absolute or leaves ROOT are skipped,
    each named in a warning.
    """
    with progress_callback("packing", disable=quiet) as progress:
        result = pack_dataset(root, out, ann=ann or [], condition=condition, overwrite=overwrite, progress=progress, on_skip=warn)
    skipped = f"; {len(result.skipped)} annotation record(s) skipped (named above)" if result.skipped else ""
    if result.written:
        err_console.print(f"packed {result.images} images into {out}{skipped}", markup=False, soft_wrap=True)
    else:
        err_console.print(f"{out}: up to date ({result.images} images, same settings and inputs); nothing written{skipped}",
                          markup=False, soft_wrap=True)


def main() -> None:
    app(prog_name="exlpose-pack")
