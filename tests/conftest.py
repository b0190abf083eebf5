"""Shared fixtures: the real official annotation files and tiny datasets in the release layout."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
OFFICIAL_LL_ALL = DATA / "ExLPose_test_LL-All.json"
OFFICIAL_A7M3 = DATA / "ExLPose-OC_test_A7M3.json"


@pytest.fixture(scope="session")
def official_ll_all() -> dict:
    return json.loads(OFFICIAL_LL_ALL.read_text())


def make_release(root: Path, official: dict, n_images: int = 12, *, pair_list: bool = True, size: tuple[int, int] = (48, 30), seed: int = 0) -> dict:
    """Write a tiny dataset in the release layout from the first ``n_images`` official names.

    Bright images are filled with 90, dark ones with 2 (plus a little noise), so mean intensities are known.
    Returns the subset annotation document (bright names, official image sizes).
    """
    from exlpose_data.naming import parse_name

    rng = np.random.default_rng(seed)
    images = official["images"][:n_images]
    ids = {img["id"] for img in images}
    (root / "bright").mkdir(parents=True, exist_ok=True)
    (root / "dark").mkdir(parents=True, exist_ok=True)
    lines = []
    for img in images:
        bright = img["file_name"]
        dark = parse_name(bright).twin().relpath
        w, h = size
        cv2.imwrite(str(root / bright), np.full((h, w, 3), 90, np.uint8))
        noise = rng.integers(0, 2, (h, w, 3)).astype(np.uint8) * 2
        cv2.imwrite(str(root / dark), (np.full((h, w, 3), 1, np.uint8) + noise))
        lines.append(f"{bright} {dark}\n")
    if pair_list:
        (root / "brightPath2darkPath.txt").write_text("".join(lines))
    return {
        "info": official["info"],
        "categories": official["categories"],
        "images": images,
        "annotations": [a for a in official["annotations"] if a["image_id"] in ids],
    }
