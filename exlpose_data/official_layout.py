"""A folder the authors' ``test.py`` can read: image links named as their loaders expect, and their annotation files.

``OUT/bright/<internal name>`` and ``OUT/dark/<internal name>`` are symbolic links to the dataset's images
(:func:`exlpose_data.official.internal_name`), so their ``cfg.img_path`` can point at OUT unchanged;
``OUT/Annotations/ExLPose/`` holds each test annotation file under the authors' name
(``ExLPose_test_LL-All.json``, ``-Normal``, ``-Hard``, ``-Extreme``, ``ExLPose_test_WL.json``), naming bright
images as their files do, beside its ``_trans.json``. OUT is built in a hidden sibling folder and renamed into
place when complete, so it is never left half made.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import TMP_MARK, write_text_atomic
from .errors import InputError, UsageError
from .official import OFFICIAL_SPLIT_NAMES, internal_name, trans_json_text
from .release import open_release
from .schema import AnnotationDocument, load_document

__all__ = ["OfficialLayout", "write_official_layout", "ANNOTATIONS_SUBDIR"]

ANNOTATIONS_SUBDIR = "Annotations/ExLPose"
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


def write_official_layout(root: str | os.PathLike, out: str | os.PathLike) -> OfficialLayout:
    """Lay out the dataset at ``root`` as the authors' loaders read it, in the new folder ``out``.

    Raises:
        UsageError: ``out`` exists and is not empty.
        InputError: an image name the authors' loaders cannot spell, two images they would spell alike, an image
            of the pair list missing on disk, or an annotation file naming images outside the pairs.
    """
    release = open_release(root)
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target}: exists and is not an empty folder; choose a new --out")
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
    bright_of = {p: pair.bright for pair in release.pairs for p in (pair.bright, pair.dark)}
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}{TMP_MARK}", dir=target.parent))
    try:
        image_root = release.image_root.resolve()
        for cond in ("bright", "dark"):
            (staging / cond).mkdir()
        for pair in release.pairs:
            name = internal_name(pair.bright)
            os.symlink(image_root / pair.bright, staging / "bright" / name)
            os.symlink(image_root / pair.dark, staging / "dark" / name)
        written = []
        for key, path in sorted(release.annotation_files().items()):
            if key not in OFFICIAL_SPLIT_NAMES:
                continue
            doc = _as_bright(load_document(path), bright_of, str(path))
            stem = OFFICIAL_SPLIT_NAMES[key]
            write_text_atomic(staging / ANNOTATIONS_SUBDIR / f"{stem}.json", doc.model_dump_json(exclude_none=True) + "\n")
            write_text_atomic(staging / ANNOTATIONS_SUBDIR / f"{stem}_trans.json", trans_json_text(doc, source=str(path)))
            written += [f"{stem}.json", f"{stem}_trans.json"]
        if target.exists():
            target.rmdir()  # empty, checked above
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return OfficialLayout(target, len(release.pairs), written)
