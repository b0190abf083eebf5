"""ExLPose-OCN: night images of two other cameras (Sony A7M3, Ricoh GR III), 6000x4000 JPEGs without pairs.

Layout: an image root holding ``PID_A7M3/`` and ``PID_RICOH3/`` (file names as in the labels, e.g.
``PID_A7M3/0829_DSC08058.JPG``), and the label files ``ExLPose-OC_test_<CAMERA>.json`` in an annotation folder
inside or beside it (``annotations/``, ``Annotations/``, as for the release). The images are low-light only, so
they are read as ExLPose's LL images are (each channel's whole-image mean scaled to 0.4) through the LL branch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..naming import annotation_key
from ..release import find_annotation_dir
from .topdown import ExLPoseTopDown

__all__ = ["OCN_CAMERAS", "ocn_annotation_file", "ExLPoseOCN"]

OCN_CAMERAS: tuple[str, ...] = ("A7M3", "RICOH3")


def ocn_annotation_file(root: str | os.PathLike, camera: str, annotations: str | os.PathLike | None = None) -> Path:
    """The label file of ``camera`` (``ExLPose-OC_test_<camera>.json``) in ``annotations`` or the annotation
    folder found beside ``root``.

    Raises:
        InputError: no annotation folder, or it has no file for the camera (the message lists the cameras it has).
    """
    folder = Path(annotations) if annotations is not None else find_annotation_dir(root)
    if folder is None or not folder.is_dir():
        raise InputError(f"{annotations or root}: no annotation folder with ExLPose-OC_test_<CAMERA>.json files (pass --annotations DIR)")
    have = sorted(key[len("OC_"):] for key in (annotation_key(p.name) for p in folder.glob("*.json")) if key and key.startswith("OC_"))
    path = folder / f"ExLPose-OC_test_{camera}.json"
    if not path.is_file():
        raise InputError(f"{folder}: no ExLPose-OC_test_{camera}.json; cameras with labels here: {', '.join(have) or 'none'}")
    return path


class ExLPoseOCN(ExLPoseTopDown):
    """Person crops of one ExLPose-OCN camera (see the module docstring); every option of
    :class:`ExLPoseTopDown` but ``condition`` (always ``"LL"``) and ``train`` (test images: False by default).

    Args:
        root: the image root holding ``PID_<camera>/``.
        camera: ``"A7M3"`` or ``"RICOH3"`` (any camera with a label file is accepted).
        annotations: the annotation folder (found beside ``root`` when omitted).
    """

    def __init__(self, root: str | os.PathLike, camera: str = "A7M3", annotations: str | os.PathLike | None = None, *,
                 train: bool = False, **options: Any) -> None:
        self.camera = camera
        super().__init__(root, ocn_annotation_file(root, camera, annotations), condition="LL", train=train, **options)
