"""A folder the authors' ``test.py`` can read: image links named as their loaders expect, and their annotation files.

``OUT/bright/<internal name>`` and ``OUT/dark/<internal name>`` are symbolic links to the dataset's images
(:func:`exlpose_data.official.internal_name`), so their ``cfg.img_path`` can point at OUT unchanged;
``OUT/Annotations/ExLPose/`` holds each test annotation file under the authors' name
(``ExLPose_test_LL-All.json``, ``-Normal``, ``-Hard``, ``-Extreme``, ``ExLPose_test_WL.json``), naming bright
images as their files do, beside its ``_trans.json``. OUT is built in a hidden sibling folder and renamed into
place when complete, so it is never left half made; its provenance record (:mod:`exlpose_data.provenance`) says
what made it. OUT must be new or empty, never inside the dataset; an earlier export is replaced only with
``overwrite`` (built beside it, then swapped in).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import TMP_MARK, write_text_atomic
from .errors import InputError
from .layout import PAIRS_FILE
from .official import OFFICIAL_SPLIT_NAMES, internal_name, trans_json_text
from .outputs import building_folder, check_output
from .provenance import recorded_run
from .release import open_release
from .schema import AnnotationDocument, load_document

__all__ = ["OfficialLayout", "write_official_layout", "ANNOTATIONS_SUBDIR", "EXPORT_COMMAND"]

ANNOTATIONS_SUBDIR = "Annotations/ExLPose"
EXPORT_COMMAND = "exlpose-export official"
_STEP = "export official"
_FIRST_FEW = 3


@dataclass(frozen=True)
class OfficialLayout:
    """What :func:`write_official_layout` wrote."""

    out: Path
    pairs: int
    annotation_files: list[str] = field(default_factory=list)


def _as_bright(doc: AnnotationDocument, bright_of: dict[str, str], source: str) -> AnnotationDocument:
    """``doc`` with every image named by the bright image of its pair (the authors' files name bright images)."""
    out = doc.model_copy(deep=True)
    for im in out.images:
        bright = bright_of.get(im.file_name)
        if bright is None:
            raise InputError(f"{source}: {im.file_name} is not an image of the dataset's pairs")
        im.file_name = bright
    return out


def _check_out(root: Path, target: Path, overwrite: bool) -> None:
    check_output(target, inputs=[root], writes="folder", produces="export folder", replaces=("export folder",), overwrite=overwrite)


def write_official_layout(root: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> OfficialLayout:
    """Lay out the dataset at ``root`` as the authors' loaders read it, in the new folder ``out``.

    Args:
        root: the dataset.
        out: a new or empty folder, outside ``root``; with ``overwrite``, an earlier export is replaced (the new
            one is built beside it and swapped in when complete).
        overwrite: the user passed ``--overwrite``.

    Raises:
        UsageError: ``out`` is inside ``root``, holds something else, or holds an earlier export without
            ``overwrite``.
        InputError: an image name the authors' loaders cannot spell, two images they would spell alike, an image
            of the pair list missing on disk, or an annotation file naming images outside the pairs.
    """
    target = Path(out)
    _check_out(Path(root), target, overwrite)
    release = open_release(root)
    names: dict[str, str] = {}
    missing: list[str] = []
    for pair in release.pairs:
        name = internal_name(pair.bright)
        if name in names:
            raise InputError(f"{root}: {pair.bright} and {names[name]} would both be {name} for the authors' loaders")
        names[name] = pair.bright
        missing += [p for p in (pair.bright, pair.dark) if not (release.image_root / p).is_file()]
    if missing:
        few = ", ".join(missing[:_FIRST_FEW]) + (", ..." if len(missing) > _FIRST_FEW else "")
        raise InputError(f"{root}: {len(missing)} image(s) of the pair list are not on disk ({few}); nothing was written")
    annotation_files = {key: path for key, path in sorted(release.annotation_files().items()) if key in OFFICIAL_SPLIT_NAMES}
    inputs: dict[str, Path] = {f"annotations {key}": Path(path) for key, path in annotation_files.items()}
    if (Path(root) / PAIRS_FILE).is_file():
        inputs["pairs"] = Path(root) / PAIRS_FILE
    bright_of = {p: pair.bright for pair in release.pairs for p in (pair.bright, pair.dark)}
    replacing = overwrite and target.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    with building_folder(target, overwrite=True) if replacing else contextlib.nullcontext(target) as dest:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}{TMP_MARK}", dir=target.parent))
        try:
            with recorded_run(staging, _STEP, command=EXPORT_COMMAND, settings={"layout": "official"}, inputs=inputs) as run:
                image_root = release.image_root.resolve()
                for cond in ("bright", "dark"):
                    (staging / cond).mkdir()
                for pair in release.pairs:
                    name = internal_name(pair.bright)
                    os.symlink(image_root / pair.bright, staging / "bright" / name)
                    os.symlink(image_root / pair.dark, staging / "dark" / name)
                    run.own(f"bright/{name}", f"dark/{name}")
                written = []
                for key, path in annotation_files.items():
                    doc = _as_bright(load_document(path), bright_of, str(path))
                    stem = OFFICIAL_SPLIT_NAMES[key]
                    write_text_atomic(staging / ANNOTATIONS_SUBDIR / f"{stem}.json", doc.model_dump_json(exclude_none=True) + "\n")
                    write_text_atomic(staging / ANNOTATIONS_SUBDIR / f"{stem}_trans.json", trans_json_text(doc, source=str(path)))
                    written += [f"{stem}.json", f"{stem}_trans.json"]
                    run.own(f"{ANNOTATIONS_SUBDIR}/{stem}.json", f"{ANNOTATIONS_SUBDIR}/{stem}_trans.json")
            if dest.exists():
                dest.rmdir()  # empty: checked above, or the fresh folder building_folder made
            os.replace(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return OfficialLayout(target, len(release.pairs), written)
