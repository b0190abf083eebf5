"""Import labels from an annotation tool into a dataset's LL and WL annotation files.

Read the tool's file (:mod:`annotation.formats`), resolve every image against the dataset's pairs, check
every person (a box inside the image, joints inside the image), then normalise (ids from 1, ``num_keypoints``,
``area`` = w*h*0.53, ``crowdIndex``; :func:`exlpose_data.annotations.normalise_document`) and write the WL
file (naming the bright images) and the LL file (naming their dark twins). All problems are collected first;
nothing is written while there is any. An input without images or people is refused, and existing annotation
files are only replaced when the caller says so (``overwrite``), so an empty or wrong export cannot wipe labels.

The output folder (``ROOT/annotations`` by default) lies inside the dataset it labels, so the dataset root is not
an input for :func:`exlpose_data.outputs.check_output` (the release is not rewritten: two files are added to its
annotation folder); the tool's file is, so ``--out`` may not be that file nor receive a file of its name. Each
import is recorded in the folder's provenance record (step ``annotate import <split>``: settings, the digest of
the tool's file and of the pair list): a re-import with other settings or another file needs ``overwrite``.
What is written is checked with the validator's rules first (:func:`annotation.checks.refuse_invalid`) and
serialised by the strict writer (:func:`exlpose_data.jsonio.dumps_json`).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from exlpose_data.annotations import normalise_document
from exlpose_data.errors import InputError, UsageError
from exlpose_data.imageio import image_size
from exlpose_data.jsonio import dumps_json, load_json
from exlpose_data.keypoints import crowdpose14
from exlpose_data.layout import MANIFEST_FILE, PAIRS_FILE, annotations_dir, load_manifest, update_manifest
from exlpose_data.naming import annotation_file_name
from exlpose_data.outputs import check_output
from exlpose_data.provenance import recorded_run
from exlpose_data.release import Pair, Release, open_release
from exlpose_data.schema import AnnotationDocument, AnnotationRecord, ImageRecord, Info

from .checks import refuse_invalid
from .formats.coco import read_coco, read_crowdpose
from .formats.cvat import read_cvat
from .formats.label_studio import read_label_studio
from .labels import BOX_FROM_KEYPOINTS, JOINTS_BY_GEOMETRY, ImageLabel, LabelSet, PersonLabel, UnlabelledImage, keypoints_extent
from .pairwrite import write_pair
from .problems import ProblemLog

__all__ = [
    "FORMATS",
    "SPLITS",
    "EXPORTS_EVERY_FRAME",
    "ImportResult",
    "ReplacedFile",
    "read_labels",
    "resolve_labels",
    "annotation_file_names",
    "import_annotations",
    "held_text",
    "BOX_FROM_KEYPOINTS",
]

Reader = Callable[[str | Path, ProblemLog], LabelSet]
FORMATS: dict[str, Reader] = {"cvat": read_cvat, "label-studio": read_label_studio, "coco": read_coco, "crowdpose": read_crowdpose}
SPLITS = ("all", "train", "val", "test")
# Formats whose exports hold every frame of a task, labelled or not: there an image without people is as likely
# "not labelled yet" as "nobody here", so it is refused unless the caller says it means "nobody here".
EXPORTS_EVERY_FRAME = frozenset({"cvat"})
_FIRST_FEW = 5
# Coordinates this close outside the image are taken as on its edge (percent round trips, float noise).
_EDGE_TOL_PX = 1e-3


@dataclass(frozen=True)
class ReplacedFile:
    """An annotation file an import replaced (``--overwrite``), with what it held before.

    ``images`` and ``people`` are None when the old file was not a readable annotation file.
    """

    path: Path
    images: int | None
    people: int | None


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote.

    ``unlabelled``: images of the input left out because it gives no usable labels for them (``skip_unlabelled``);
    ``pairs_without_labels``: bright names of the dataset's pairs the written files do not cover (of
    ``total_pairs``); ``joints_by_geometry``: joints given to a person only because they lie in its box alone;
    ``warnings``: what the reader read as written but may not be what the labeller meant.
    """

    wl_path: Path
    ll_path: Path
    images: int
    people: int
    boxes_from_keypoints: int
    replaced: tuple[ReplacedFile, ...] = ()
    empty_images: tuple[str, ...] = ()
    unlabelled: tuple[UnlabelledImage, ...] = ()
    pairs_without_labels: tuple[str, ...] = ()
    total_pairs: int = 0
    joints_by_geometry: int = 0
    warnings: tuple[str, ...] = ()


def annotation_file_names(split: str) -> tuple[str, str]:
    """(WL file name, LL file name) of a split as the release names them (the test LL file is ``LL-A``)."""
    if split not in SPLITS:
        raise UsageError(f"split name {split!r}: choose one of {', '.join(SPLITS)}")
    ll = "LL-A" if split == "test" else "LL"
    return annotation_file_name(split, "WL"), annotation_file_name(split, ll)


def read_labels(path: str | Path, fmt: str, log: ProblemLog) -> LabelSet:
    """Read ``path`` in format ``fmt`` (one of :data:`FORMATS`), logging problems."""
    if fmt not in FORMATS:
        raise UsageError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return FORMATS[fmt](path, log)


def _inside(v: float, hi: float) -> bool:
    return -_EDGE_TOL_PX <= v <= hi + _EDGE_TOL_PX


def _check_person(person: PersonLabel, w: int, h: int, log: ProblemLog, box_from_keypoints: bool) -> tuple[list[float], bool, list[float]] | None:
    """(checked bbox, derived-from-joints flag, keypoints snapped onto the image), or None with problems logged."""
    ok = True
    kp = person.keypoints.copy()
    for j in range(len(kp)):
        x, y, v = kp[j]
        if v > 0 and not (_inside(x, w) and _inside(y, h)):
            log.add(person.place, f"keypoints[{3 * j}:{3 * j + 2}]", f"joint at ({x:g}, {y:g}) lies outside the {w}x{h} image")
            ok = False
        elif v > 0:  # within the tolerance: onto the edge, as the validator's bounds are exact
            kp[j, 0], kp[j, 1] = min(max(x, 0.0), float(w)), min(max(y, 0.0), float(h))
    derived = person.box_from_keypoints and person.bbox is not None
    bbox = person.bbox
    if bbox is None:
        if not box_from_keypoints:
            log.add(person.place, "bbox", "person has no box (draw/group one in the tool, or import with --box-from-keypoints)")
            return None
        bbox = keypoints_extent(kp)
        if bbox is None or bbox[2] <= 0 or bbox[3] <= 0:
            log.add(person.place, "bbox", "person has no box and too few distinct joints to derive one")
            return None
        derived = True
    x, y, bw, bh = bbox
    if bw <= 0 or bh <= 0:
        log.add(person.place, "bbox", f"box {bbox} has no area")
        return None
    if not (_inside(x, w) and _inside(y, h) and _inside(x + bw, w) and _inside(y + bh, h)):
        log.add(person.place, "bbox", f"box {[round(b, 3) for b in bbox]} reaches outside the {w}x{h} image")
        return None
    # Within the tolerance: snap onto the image edges so the written box is exactly inside.
    x0, y0 = min(max(x, 0.0), float(w)), min(max(y, 0.0), float(h))
    x1, y1 = min(max(x + bw, 0.0), float(w)), min(max(y + bh, 0.0), float(h))
    return ([x0, y0, x1 - x0, y1 - y0], derived, [round(float(v), 4) for v in kp.ravel()]) if ok else None


def _image_size(image: ImageLabel, pair: Pair, release: Release, log: ProblemLog) -> tuple[int, int] | None:
    on_disk = image_size(release.image_root / pair.bright)
    if image.width is None or image.height is None:
        if on_disk is None:
            log.add(image.place, "width/height", f"the input gives no image size and {pair.bright} is not a readable PNG or JPEG on disk to read it from")
        return on_disk
    if on_disk is not None and on_disk != (image.width, image.height):
        log.add(image.place, "width/height", f"labelled on a {image.width}x{image.height} image but {pair.bright} is {on_disk[0]}x{on_disk[1]}")
        return None
    return image.width, image.height


def resolve_labels(
    labels: LabelSet, release: Release, log: ProblemLog, *, box_from_keypoints: bool = False, source: str = ""
) -> tuple[AnnotationDocument, AnnotationDocument, int]:
    """Resolve labels against a dataset: (WL document, LL document, number of boxes derived from joints).

    A person's joints that the input linked to it only by geometry are named in its extra
    ``joints_by_geometry`` field (the review flags them).

    Problems are logged; the documents are only meaningful when ``log`` stays empty.
    """
    taken: dict[str, str] = {}
    images: list[tuple[ImageLabel, Pair, int, int]] = []
    for image in labels.images:
        pair = release.pair_of(image.file_name)
        if pair is None:
            log.add(image.place, "file_name", f"{image.file_name!r} is not an image of the dataset {release.image_root} (neither its bright nor its dark twin)")
            continue
        if pair.bright in taken:
            log.add(image.place, "file_name", f"{image.file_name!r} is the same pair as {taken[pair.bright]}")
            continue
        taken[pair.bright] = image.place
        size = _image_size(image, pair, release, log)
        if size is not None:
            images.append((image, pair, *size))
    ids = [im.image_id for im, *_ in images]
    keep_ids = all(isinstance(i, int) and i > 0 for i in ids) and len(set(ids)) == len(ids)
    wl_images: list[ImageRecord] = []
    ll_images: list[ImageRecord] = []
    records: list[AnnotationRecord] = []
    derived = 0
    for n, (image, pair, w, h) in enumerate(images, start=1):
        image_id = image.image_id if keep_ids else n
        crowd = {} if image.crowd_index is None else {"crowdIndex": image.crowd_index}  # given: kept, else computed
        wl_images.append(ImageRecord(id=image_id, file_name=pair.bright, width=w, height=h, **crowd))
        ll_images.append(ImageRecord(id=image_id, file_name=pair.dark, width=w, height=h, **crowd))
        for person in image.people:
            checked = _check_person(person, w, h, log, box_from_keypoints)
            if checked is None:
                continue
            bbox, from_joints, keypoints = checked
            extra: dict = {"bbox_source": BOX_FROM_KEYPOINTS} if from_joints else {}
            if person.num_keypoints is not None:
                extra["num_keypoints"] = person.num_keypoints
            if person.joints_by_geometry:
                extra[JOINTS_BY_GEOMETRY] = [crowdpose14().keypoints[j] for j in person.joints_by_geometry]
            derived += from_joints
            records.append(
                AnnotationRecord(
                    id=len(records) + 1, image_id=image_id, category_id=1, keypoints=keypoints,
                    bbox=[round(b, 4) for b in bbox], iscrowd=person.iscrowd, **extra,
                )
            )
    info = Info(description=f"Imported by exlpose-data from {source or labels.source}", year=_dt.date.today().year, date_created=_dt.date.today().isoformat())
    wl = normalise_document(AnnotationDocument(info=info, images=wl_images, annotations=records))
    ll = wl.model_copy(deep=True)
    ll.images = [img.model_copy(update={"crowdIndex": wimg.crowdIndex}) for img, wimg in zip(ll_images, wl.images)]
    return wl, ll, derived


def _json_text(doc: AnnotationDocument, path: Path) -> str:
    """The file text of ``doc``, refused (naming ``path``) where the validator or a JSON reader would refuse it."""
    raw = doc.to_json_dict()
    refuse_invalid(raw, path)
    return dumps_json(raw, source=str(path)) + "\n"


def _held(path: Path) -> ReplacedFile:
    """What the annotation file at ``path`` holds (counts None when it is not a readable annotation file)."""
    try:
        raw = load_json(path)
    except InputError:
        return ReplacedFile(path, None, None)
    if not isinstance(raw, dict) or not isinstance(raw.get("images"), list) or not isinstance(raw.get("annotations"), list):
        return ReplacedFile(path, None, None)
    return ReplacedFile(path, len(raw["images"]), len(raw["annotations"]))


def held_text(images: int | None, people: int | None) -> str:
    """``"3 images, 12 people"``, or a phrase for a file that is not a readable annotation file."""
    if images is None or people is None:
        return "no readable annotations"
    return f"{images} image{'' if images == 1 else 's'}, {people} {'person' if people == 1 else 'people'}"


def _refuse_empty(path: str | Path, wl: AnnotationDocument) -> None:
    # An empty export (a tool exported before anyone labelled, a wrong project) would wipe the dataset's labels.
    if not wl.images:
        raise InputError(f"{path}: holds 0 images; nothing to import, nothing was written")
    if not wl.annotations:
        raise InputError(f"{path}: holds {held_text(len(wl.images), 0)}; nothing to import, nothing was written")


def _empty_images(fmt: str, path: str | Path, wl: AnnotationDocument, allow_empty: bool) -> tuple[str, ...]:
    """WL file names of the images without people; refused for formats that export unlabelled frames too."""
    people = {a.image_id for a in wl.annotations}
    empty = tuple(im.file_name for im in wl.images if im.id not in people)
    if empty and fmt in EXPORTS_EVERY_FRAME and not allow_empty:
        few = ", ".join(empty[:_FIRST_FEW]) + (", ..." if len(empty) > _FIRST_FEW else "")
        raise InputError(
            f"{path}: {len(empty)} of {len(wl.images)} images have nobody labelled ({few}); {fmt} exports every frame, "
            "labelled or not: label them or remove them from the task, or pass --allow-empty if nobody is in them; nothing was written"
        )
    return empty


def _refuse_unlabelled(path: str | Path, labels: LabelSet, skip_unlabelled: bool) -> None:
    # A skipped or never-labelled task is not "nobody here": written as an empty image, its people would later
    # score as false positives; so it is left out, and only when the caller says so.
    if labels.unlabelled and not skip_unlabelled:
        few = ", ".join(str(u) for u in labels.unlabelled[:_FIRST_FEW]) + (", ..." if len(labels.unlabelled) > _FIRST_FEW else "")
        total = len(labels.unlabelled) + len(labels.images)
        raise InputError(
            f"{path}: {len(labels.unlabelled)} of {total} tasks have no usable annotation ({few}); a skipped or unlabelled "
            "task is not a label: label them, or pass --skip-unlabelled to import the labelled tasks and leave these "
            "pairs without labels; nothing was written"
        )


def _refuse_replacing(path: str | Path, targets: list[Path], wl: AnnotationDocument) -> None:
    existing = [_held(t) for t in targets if t.exists()]
    if existing:
        held = " and ".join(f"{e.path} holds {held_text(e.images, e.people)}" for e in existing)
        it = "it" if len(existing) == 1 else "them"
        raise UsageError(
            f"{held}; the import of {path} has {held_text(len(wl.images), len(wl.annotations))}; "
            f"pass --overwrite to replace {it}, nothing was written"
        )


def import_annotations(
    path: str | Path,
    fmt: str,
    dataset: str | Path,
    out_dir: str | Path | None = None,
    *,
    split: str,
    box_from_keypoints: bool = False,
    overwrite: bool = False,
    allow_empty: bool = False,
    skip_unlabelled: bool = False,
    layout: str = "release",
) -> ImportResult:
    """Import a tool's export into the dataset's WL and LL annotation files.

    Args:
        path: the tool's export.
        fmt: ``cvat``, ``label-studio``, ``coco`` or ``crowdpose``.
        dataset: the dataset root (``bright/``, ``dark/``, ``brightPath2darkPath.txt``).
        out_dir: where to write; by default ``ROOT/annotations``, or ``ROOT/annotations/ExLPose`` with
            ``layout="mmpose"``. Inside a ROOT with a manifest, the manifest is updated.
        split: ``all``, ``train``, ``val`` or ``test``: names the files as the release does.
        box_from_keypoints: give people without a box the extent of their joints (marked
            ``"bbox_source": "keypoints"`` in the files).
        overwrite: replace annotation files that already exist (the result lists what they held), also when
            the folder's provenance record says an import with other settings or another file wrote them.
        layout: ``release`` or ``mmpose``: the default output folder (ignored when ``out_dir`` is given).
        allow_empty: accept images without people from a tool that exports unlabelled frames too
            (:data:`EXPORTS_EVERY_FRAME`) as "nobody here" (the result lists them).
        skip_unlabelled: leave out images the input names without usable labels (Label Studio tasks that were
            skipped or never labelled); they are not written at all, not even as "nobody here" (the result lists them).

    Raises:
        AnnotationProblems: the input has problems (all of them listed); nothing was written.
        InputError: the input holds no images or no people, or (CVAT, without ``allow_empty``) images nobody
            labelled, or (without ``skip_unlabelled``) tasks without a usable annotation; nothing was written.
        UsageError: ``out_dir`` is the tool's file or would receive a file of its name, is a file or something
            other than a folder of annotation files (a release root, a training run), or an output file exists,
            or an import with other settings wrote the folder's files, and ``overwrite`` is False; nothing was
            written.
    """
    wl_name, ll_name = annotation_file_names(split)
    release = open_release(dataset)
    log = ProblemLog(str(path))
    labels = read_labels(path, fmt, log)
    wl, ll, derived = resolve_labels(labels, release, log, box_from_keypoints=box_from_keypoints, source=f"{fmt} file {Path(path).name}")
    log.raise_if_any()
    _refuse_unlabelled(path, labels, skip_unlabelled)
    _refuse_empty(path, wl)
    empty = _empty_images(fmt, path, wl, allow_empty)
    out = Path(out_dir) if out_dir is not None else annotations_dir(release.image_root, layout)
    check_output(out, inputs=[path], writes="folder", produces="annotation folder", replaces=["folder"], resumes=True,
                 files=[wl_name, ll_name], overwrite=overwrite)
    wl_path, ll_path = out / wl_name, out / ll_name
    wl_text, ll_text = _json_text(wl, wl_path), _json_text(ll, ll_path)
    if not overwrite:
        _refuse_replacing(path, [wl_path, ll_path], wl)
    replaced = tuple(_held(p) for p in (wl_path, ll_path) if p.exists())
    settings = {"format": fmt, "split": split, "box_from_keypoints": box_from_keypoints, "allow_empty": allow_empty}
    if labels.unlabelled:  # only then does the option change what is written
        settings["skip_unlabelled"] = skip_unlabelled
    inputs = {"labels": path}
    if (release.image_root / PAIRS_FILE).is_file():
        inputs["pairs"] = release.image_root / PAIRS_FILE
    if (release.image_root / MANIFEST_FILE).is_file():
        load_manifest(release.image_root)  # refused now if broken, not after the files it should list are written
    with recorded_run(out, f"annotate import {split}", command="exlpose annotate import", settings=settings, inputs=inputs,
                      overwrite=overwrite) as run:
        write_pair(wl_path, wl_text, ll_path, ll_text)
        run.own(wl_name, ll_name)
        root = release.image_root.resolve()
        written = [wl_path.resolve(), ll_path.resolve()]
        # Only a dataset that has a manifest gets one updated: a release copy without one stays as it was.
        if (root / MANIFEST_FILE).is_file() and all(p.is_relative_to(root) for p in written):
            gone = [(out / rel).resolve() for rel in run.remove_stale()]
            update_manifest(root, [p.relative_to(root).as_posix() for p in written + [g for g in gone if g.is_relative_to(root)]])
    covered = {im.file_name for im in wl.images}
    without = tuple(p.bright for p in release.pairs if p.bright not in covered)
    by_geometry = sum(len(p.joints_by_geometry) for im in labels.images for p in im.people)
    return ImportResult(wl_path, ll_path, len(wl.images), len(wl.annotations), derived, replaced, empty, tuple(labels.unlabelled),
                        without, len(release.pairs), by_geometry, tuple(labels.warnings))
