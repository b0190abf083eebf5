"""The index a dataset is built on: images of an annotation file, their LL/WL files and per-image meta.

An annotation file names one image per record. Which file is loaded depends on the condition asked for:
the official LL test files name the *bright* image, files we write name the dark one, and the OC sets name
a low-light camera image that has no pair. So each record is resolved to its pair (through
:mod:`exlpose_data.release`: ``brightPath2darkPath.txt`` or the name grammar) and the condition picks the image.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import InputError, UsageError
from ..keypoints import crowdpose14
from ..lighting import Lighting
from ..layout import normalise_image_path, safe_relpath
from ..naming import ImageName, parse_name
from ..release import Release, open_release
from ..schema import AnnotationDocument, ImageRecord, load_document
from ..split import gain_split, well_lit_gain

__all__ = ["Condition", "CONDITIONS", "ImageEntry", "InstanceEntry", "DatasetIndex", "build_index", "needed_paths", "record_sizes", "report_missing"]

Condition = Literal["LL", "WL", "pair"]
CONDITIONS: tuple[str, ...] = ("LL", "WL", "pair")
_SHOW_MISSING = 5


@dataclass(frozen=True)
class ImageEntry:
    """One image record resolved to its files.

    Attributes:
        image_id: the record's id.
        file_name: the record's ``file_name`` as written in the annotation file.
        ll_path: image-root-relative path of the low-light image (None when unknown).
        wl_path: image-root-relative path of the well-lit image (None when unknown, e.g. OC sets).
        width: record width.
        height: record height.
        gain_db: well-lit gain, the split's key: from the bright name, or inferred from the dark name by the
            protocol when there is no twin (NaN for names outside the release grammar).
        ll_gain_db: low-light gain from the dark name (NaN when unknown).
        exposure_us: nominal exposure from the name (-1 when unknown).
        ratio: the ``exp<R>`` ratio label (-1 when unknown).
        split: ``LL-N``/``LL-H``/``LL-E`` from the well-lit gain (``""`` when unknown).
    """

    image_id: int
    file_name: str
    ll_path: str | None
    wl_path: str | None
    width: int
    height: int
    gain_db: float = math.nan
    ll_gain_db: float = math.nan
    exposure_us: int = -1
    ratio: int = -1
    split: str = ""

    def path(self, condition: str) -> str | None:
        """The image file of ``"LL"`` or ``"WL"``."""
        return self.ll_path if condition == "LL" else self.wl_path


@dataclass(frozen=True)
class InstanceEntry:
    """One person instance (or detection) of an image.

    Attributes:
        image: index of the image in :attr:`DatasetIndex.images`.
        ann_id: annotation id (-1 for a detection).
        bbox: ``(x, y, w, h)``.
        keypoints: ``(K, 3)`` float64 ``(x, y, v)``; all zero for a detection.
        score: 1 for ground truth, the detector's score for a detection.
    """

    image: int
    ann_id: int
    bbox: tuple[float, float, float, float]
    keypoints: np.ndarray = field(repr=False)
    score: float = 1.0


@dataclass
class DatasetIndex:
    """Images and instances of one annotation file, resolved against an image root.

    ``skipped`` says, one line each, which records were left out and why (``build_index(skip_unsafe=True)``).
    """

    image_root: Path
    images: list[ImageEntry]
    instances: list[list[InstanceEntry]]
    skipped: list[str] = field(default_factory=list)

    def image_position(self) -> dict[int, int]:
        """``image_id -> index`` into :attr:`images`."""
        return {img.image_id: i for i, img in enumerate(self.images)}


def _conditions(condition: str) -> tuple[str, ...]:
    if condition not in CONDITIONS:
        raise UsageError(f"condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")
    return ("LL", "WL") if condition == "pair" else (condition,)


def _parse(file_name: str) -> ImageName | None:
    try:
        return parse_name(file_name)
    except ValueError:
        return None


def _entry(record: ImageRecord, name: ImageName | None, release: Release | None) -> ImageEntry:
    base = dict(image_id=record.id, file_name=record.file_name, width=record.width, height=record.height)
    if name is None:
        # Not a release name (OC sets, PID_A7M3/...): a low-light camera image without a twin.
        return ImageEntry(ll_path=record.file_name, wl_path=None, **base)
    pair = release.pair_of(record.file_name) if release is not None else None
    own = normalise_image_path(record.file_name)
    if pair is not None:
        ll_path, wl_path = pair.dark, pair.bright
    elif name.condition == "LL":
        ll_path, wl_path = own, None
    else:
        ll_path, wl_path = None, own
    # Without a bright twin the well-lit gain is inferred from the protocol (the split module's rule).
    gain_db = parse_name(wl_path).gain_db if wl_path else well_lit_gain(ll_path)  # type: ignore[arg-type]
    return ImageEntry(
        ll_path=ll_path,
        wl_path=wl_path,
        gain_db=gain_db,
        ll_gain_db=parse_name(ll_path).gain_db if ll_path else math.nan,
        exposure_us=name.exposure_us,
        ratio=name.ratio,
        split=gain_split(gain_db),
        **base,
    )


def _unsafe_path(record: ImageRecord, name: ImageName | None, release: Release | None, ann_file: str | os.PathLike) -> tuple[ImageEntry | None, str | None]:
    """The record resolved to its files, or why its files would lie outside the image root (absolute, ``..``).

    The record's own ``file_name`` is checked before it is resolved: ``../bright/x.png`` names a file outside
    the root, and a bare-name lookup must not swap in the root's ``bright/x.png``.
    """
    why = safe_relpath(record.file_name)
    if why is not None:
        return None, f"{ann_file}: image {record.id}: file_name {record.file_name!r}: {why}"
    img = _entry(record, name, release)
    for cond in Lighting:
        path = img.path(cond)
        why = safe_relpath(path) if path is not None else None
        if why is not None:
            return None, f"{ann_file}: image {img.image_id} ({img.file_name!r}): its {cond} file {path!r}: {why}"
    return img, None


def build_index(root: str | os.PathLike, ann_file: str | os.PathLike, condition: str, *, skip_unlabelled: bool = True,
                skip_unsafe: bool = False) -> DatasetIndex:
    """Resolve every image of ``ann_file`` under ``root`` for ``condition``.

    Args:
        root: the image root (or a release root :func:`exlpose_data.release.open_release` accepts).
        ann_file: CrowdPose-style annotation file.
        condition: ``"LL"``, ``"WL"`` or ``"pair"``.
        skip_unlabelled: leave out instances without a labelled joint (and crowd regions).
        skip_unsafe: leave out an image whose path is absolute or leaves the image root (with its instances),
            saying why in :attr:`DatasetIndex.skipped`, instead of raising.

    Raises:
        UsageError: an image has no file for the condition (e.g. WL asked of an OC set).
        InputError: an image path is absolute or leaves the image root (``..``), unless ``skip_unsafe``.
    """
    wanted = _conditions(condition)
    doc: AnnotationDocument = load_document(ann_file)
    names = [_parse(r.file_name) for r in doc.images]
    release = None
    image_root = Path(root)
    if any(n is not None for n in names):
        release = open_release(root)
        image_root = Path(release.image_root)
    images: list[ImageEntry] = []
    skipped: list[str] = []
    skipped_ids: set[int] = set()
    for r, n in zip(doc.images, names):
        img, why = _unsafe_path(r, n, release, ann_file)
        if img is not None:
            images.append(img)
        elif skip_unsafe:
            skipped.append(f"{why}: outside the image root, skipped")
            skipped_ids.add(r.id)
        else:
            raise InputError(f"{why}; image paths must be relative to the image root")
    for cond in wanted:
        lacking = [img.file_name for img in images if img.path(cond) is None]
        if lacking:
            raise UsageError(
                f"{ann_file}: {len(lacking)} image(s) have no {cond} file (no pair found), e.g. {lacking[0]!r}; "
                f"use condition='LL' for unpaired low-light sets"
            )
    position = {img.image_id: i for i, img in enumerate(images)}
    k = crowdpose14().num_keypoints
    instances: list[list[InstanceEntry]] = [[] for _ in images]
    for ann in doc.annotations:
        if ann.image_id in skipped_ids:
            continue
        if ann.image_id not in position:
            raise InputError(f"{ann_file}: annotation {ann.id} refers to image_id {ann.image_id}, which has no image record")
        kp = np.asarray(ann.keypoints, dtype=np.float64)
        if kp.size != 3 * k:
            raise InputError(f"{ann_file}: annotation {ann.id}: keypoints has {kp.size} values, expected {3 * k}")
        kp = kp.reshape(k, 3)
        if skip_unlabelled and (ann.iscrowd or not np.any(kp[:, 2] > 0)):
            continue
        i = position[ann.image_id]
        instances[i].append(InstanceEntry(image=i, ann_id=ann.id, bbox=tuple(float(v) for v in ann.bbox), keypoints=kp))  # type: ignore[arg-type]
    return DatasetIndex(image_root=image_root, images=images, instances=instances, skipped=skipped)


def needed_paths(index: DatasetIndex, condition: str) -> list[str]:
    """Every image file ``condition`` reads, in index order, without repeats."""
    out: dict[str, None] = {}
    for img in index.images:
        for cond in _conditions(condition):
            out.setdefault(img.path(cond), None)  # type: ignore[arg-type]
    return list(out)


def record_sizes(index: DatasetIndex, condition: str) -> dict[str, tuple[int, int]]:
    """``(width, height)`` the annotation records give each image file ``condition`` reads (one record serves
    both images of a pair)."""
    out: dict[str, tuple[int, int]] = {}
    for img in index.images:
        for cond in _conditions(condition):
            out.setdefault(img.path(cond), (img.width, img.height))  # type: ignore[arg-type]
    return out


def report_missing(missing: list[str], total: int, where: str) -> None:
    """Raise one :class:`InputError` listing the first few ``missing`` files and their count."""
    if missing:
        shown = ", ".join(missing[:_SHOW_MISSING]) + (", ..." if len(missing) > _SHOW_MISSING else "")
        raise InputError(f"{len(missing)} of {total} image files are missing {where}: {shown}")
