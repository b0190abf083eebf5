"""Export for annotators: the well-lit images to label and ready-to-import label configurations.

``OUT/images/bright/`` holds the well-lit images (copies, or hard links with ``link=True``),
``OUT/images/ll_preview/`` optionally their low-light twins brightened for reference, ``cvat_labels.json``
the CVAT project labels (a 14-point ``person`` skeleton with the CrowdPose joint names and a ``person_box``
rectangle to group with it), ``label_studio_config.xml`` the Label Studio labelling interface
(RectangleLabels + KeyPointLabels + relations per person) and ``label_studio_tasks.json`` one task per image.

The package is written outside the dataset (the dataset root is an input of
:func:`exlpose_data.outputs.check_output`: copies of its images inside it would be a second, unlisted copy of
the release). An existing package is replaced only with ``overwrite``, built beside it and swapped in when
complete, so images of pairs the dataset no longer has do not survive; a folder holding anything else is refused.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2

from exlpose_data.atomic import atomic_path, write_image_atomic, write_json_atomic, write_text_atomic
from exlpose_data.errors import InputError
from exlpose_data.outputs import building_folder, check_output
from exlpose_data.progress import ProgressCallback, report
from exlpose_data.release import Release, open_release

from .formats.cvat import cvat_labels
from .formats.label_studio import DEFAULT_URL_PREFIX, IMAGE_TAG, label_studio_config
from .visual import LL_GAIN, brighten

__all__ = ["TaskExport", "export_tasks", "TASKS_URL_PREFIX"]

# Label Studio serving OUT as its local-files document root sees the images under images/.
TASKS_URL_PREFIX = DEFAULT_URL_PREFIX + "images/"
TASKS_FILE = "label_studio_tasks.json"
LABELS_FILE = "cvat_labels.json"


@dataclass(frozen=True)
class TaskExport:
    """What an export wrote."""

    out: Path
    images: int
    previews: int
    missing: list[str]


def _place_file(src: Path, dst: Path, link: bool) -> None:
    if link:
        with atomic_path(dst, fsync=False) as tmp:
            tmp.unlink()
            try:
                os.link(src, tmp)
            except OSError:  # another file system, or links not allowed: copy instead
                shutil.copyfile(src, tmp)
    else:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


def _write_preview(src: Path, dst: Path, gain: float | None, target_mean: float | None) -> bool:
    img = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if img is None:
        return False
    write_image_atomic(dst, brighten(img, gain=gain, target_mean=target_mean))
    return True


def export_tasks(
    root: str | Path,
    out: str | Path,
    *,
    ll_preview: bool = False,
    link: bool = False,
    url_prefix: str = TASKS_URL_PREFIX,
    ll_gain: float | None = LL_GAIN,
    ll_target_mean: float | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> TaskExport:
    """Write the annotators' package for every pair of the dataset at ``root``.

    Args:
        root: the dataset root.
        out: output folder.
        ll_preview: also write each pair's LL image brightened (x ``ll_gain`` or to ``ll_target_mean``).
        link: hard-link the well-lit images instead of copying them (falls back to copying).
        url_prefix: prefix of ``data.image`` in the Label Studio tasks (followed by ``bright/<name>``).
        ll_gain: brightening factor of previews.
        ll_target_mean: brighten previews to this mean (0-255) instead.
        overwrite: replace an existing task package at ``out``.
        progress: called with ``(pairs done, pairs)``.

    Raises:
        InputError: the dataset has no pairs.
        UsageError: ``out`` is or lies inside the dataset, holds something other than a task package, or
            holds one and ``overwrite`` is False; nothing was written.
    """
    release = open_release(root)
    if not release.pairs:
        raise InputError(f"{release.image_root}: no image pairs (needs bright/ and dark/ or {release.image_root}/brightPath2darkPath.txt)")
    target = Path(out)
    check_output(out, inputs=[release.image_root], writes="folder", produces="annotation task package", replaces=["annotation task package"], overwrite=overwrite)
    with building_folder(out, overwrite=overwrite, new_beside=True) as out_dir:
        tasks, previews, missing = _write_package(release, out_dir, link, url_prefix, ll_preview, ll_gain, ll_target_mean, progress)
    return TaskExport(target, len(tasks), previews, missing)


def _write_package(
    release: Release, out_dir: Path, link: bool, url_prefix: str, ll_preview: bool, ll_gain: float | None,
    ll_target_mean: float | None, progress: ProgressCallback | None,
) -> tuple[list[dict], int, list[str]]:
    missing: list[str] = []
    tasks = []
    previews = 0
    total = len(release.pairs)
    report(progress, 0, total)
    for done, pair in enumerate(release.pairs, start=1):
        src = release.image_root / pair.bright
        if not src.is_file():
            missing.append(pair.bright)
            report(progress, done, total)
            continue
        _place_file(src, out_dir / "images" / pair.bright, link)
        data = {IMAGE_TAG: url_prefix + pair.bright}
        if ll_preview:
            name = "ll_preview/" + pair.dark.rsplit("/", 1)[-1]
            if _write_preview(release.image_root / pair.dark, out_dir / "images" / name, ll_gain, ll_target_mean):
                previews += 1
                data["ll_preview"] = url_prefix + name
            else:
                missing.append(pair.dark)
        tasks.append({"data": data})
        report(progress, done, total)
    write_json_atomic(out_dir / TASKS_FILE, tasks, indent=1)
    write_json_atomic(out_dir / LABELS_FILE, cvat_labels(), indent=1)
    write_text_atomic(out_dir / "label_studio_config.xml", label_studio_config())
    return tasks, previews, missing
