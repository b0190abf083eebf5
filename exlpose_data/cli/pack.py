"""``exlpose pack``: decode a dataset's images once into an HDF5 pack for fast training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..datasets.pack import write_pack
from ..datasets.records import CONDITIONS, build_index, needed_paths
from ..errors import UsageError
from ..release import open_release
from .common import err_console, handle_errors, new_app, progress_bar

__all__ = ["app", "main"]

app = new_app("Decode a dataset's images into an HDF5 pack read by the torch datasets (pack=PATH).")


def _all_images(root: Path) -> tuple[Path, list[str]]:
    release = open_release(root)
    paths = [p for pair in release.pairs for p in (pair.bright, pair.dark)] + list(release.unpaired)
    return Path(release.image_root), paths


@app.command()
@handle_errors
def pack(
    root: Annotated[Path, typer.Argument(help="Image root holding bright/ and dark/ (or an OC set's root with --ann).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The pack file to write (HDF5).")],
    ann: Annotated[list[Path] | None, typer.Option("--ann", "-a", help="Pack only the images these annotation files use (repeatable).")] = None,
    condition: Annotated[str, typer.Option(help="With --ann: the images of LL, WL or pair (both).")] = "pair",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Decode the images of ROOT (all pairs, or those --ann files use) into PACK.h5.

    Datasets given pack=PACK.h5 read crops from it and return samples bit-identical to decoding the files.
    """
    if condition not in CONDITIONS:
        raise UsageError(f"--condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")
    if out.exists() and out.is_dir():
        raise UsageError(f"--out {out}: is a folder; give a file name such as {out / 'pack.h5'}")
    if ann:
        paths: dict[str, None] = {}
        image_root = root
        for a in ann:
            index = build_index(root, a, condition)
            image_root = index.image_root
            paths.update(dict.fromkeys(needed_paths(index, condition)))
        relpaths = list(paths)
    else:
        image_root, relpaths = _all_images(root)
    if not relpaths:
        raise UsageError(f"{root}: no images to pack (expected bright/ and dark/ PNGs, or give --ann)")
    with progress_bar(disable=quiet) as bar:
        task = bar.add_task("packing", total=len(relpaths))
        write_pack(image_root, relpaths, out, on_image=lambda _: bar.advance(task))
    err_console.print(f"packed {len(relpaths)} images into {out}", markup=False)


def main() -> None:
    app(prog_name="exlpose-pack")
