"""Test splits by name: which annotation file of a release and which lighting condition each one uses."""

from __future__ import annotations

import os
from pathlib import Path

from exlpose_data.errors import UsageError

__all__ = ["SPLIT_HELP", "resolve_split"]

SPLIT_HELP = "LL-N, LL-H, LL-E, LL-A, WL, or an ExLPose-OC camera (A7M3, RICOH3)"


def resolve_split(dataset: str | os.PathLike, annotations: str | os.PathLike | None, split: str) -> tuple[Path, str]:
    """The annotation file and dataset condition (``"LL"``/``"WL"``) of a test split.

    ``LL-*`` and ``WL`` are the ExLPose test files (``ExLPose_test_<split>.json``); any other name is an
    ExLPose-OC camera (``ExLPose-OC_test_<camera>.json``, low-light images without pairs, under a release root or
    an ExLPose-OCN root; see :mod:`exlpose_data.datasets.ocn`).

    Raises:
        UsageError: an empty name.
        InputError: the release has no annotation file for the split (the message lists what it has).
    """
    from exlpose_data.release import open_release

    name = split.strip()
    if not name:
        raise UsageError(f"empty split name; use {SPLIT_HELP}")
    if name == "WL" or name.startswith("LL-"):
        return open_release(dataset, annotations).annotation_file(f"test_{name}"), ("WL" if name == "WL" else "LL")
    # An OC camera: its root need not be a release (ExLPose-OCN holds PID_<camera>/ folders only).
    from exlpose_data.datasets.ocn import ocn_annotation_file

    return ocn_annotation_file(dataset, name, annotations), "LL"
