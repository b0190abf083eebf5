"""The simulator's feeds format, read by the simulator that writes it and by the rig that plays it.

Layout of a feed folder::

    DIR/<scene>/<k>/ll/NNNNNN.png              LL camera, frame NNNNNN of the video at exposure cut k
    DIR/<scene>/<k>/wl/NNNNNN.png              WL camera
    DIR/<scene>/reference/{ll,wl}/000000.png   a static textured pair for estimating the homography
    DIR/feeds.json                             :class:`FeedsDocument`

pylon's emulator plays a folder in name order and fails on any non-image file, so those folders hold PNGs only.
Each PNG is 16-bit greyscale: the raw mosaic MSB-aligned (shifted left by ``16 - bit_depth``,
:func:`msb_align`); fed with ``PixelFormat = BayerRG12`` the emulator returns exactly the raw values (measured
with pypylon 26.9).

Scenes are described as :class:`SceneTruth` (protocol, geometry, the people of each frame), the same model
``simulation.json`` beside a simulated release uses. ``FeedsDocument.model_json_schema()`` gives the JSON Schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InputError
from .jsonio import load_json
from .lighting import Lighting

__all__ = ["GeometryTruth", "StepTruth", "PersonTruth", "FrameTruthRecord", "ReleaseImage", "ReferenceFeed",
           "SceneTruth", "FeedsDocument", "FORMAT_VERSION", "FEEDS_FILE", "REFERENCE_DIR", "FEED_ROLES",
           "feed_folder", "msb_align", "read_feeds"]

FORMAT_VERSION = 1
FEEDS_FILE = "feeds.json"
REFERENCE_DIR = "reference"
FEED_ROLES = tuple(member.key for member in Lighting)  # "ll", "wl"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GeometryTruth(_Model):
    """The true beam-splitter geometry of a scene.

    A WL pixel ``x`` (after demosaic and mirroring, full frame, OpenCV pixel centres) maps to the LL pixel
    ``H @ d(x)``, ``d(x) = c + (x - c)(1 + k1 r^2 + k2 r^4)``, ``r = |x - c| / focal_px``.
    """

    homography: list[list[float]] = Field(description="3x3 WL -> LL homography, row-major, H[2][2] = 1")
    k1: float = Field(0.0, description="residual radial distortion of the WL path")
    k2: float = 0.0
    centre: tuple[float, float] = Field(description="distortion centre (x, y) in WL pixels")
    focal_px: float = Field(description="distortion radius unit in pixels")
    mirror: str = Field("none", description="camera whose raw image is mirrored left-right by the splitter: none, ll or wl")
    size: tuple[int, int] = Field(description="full frame (width, height)")
    crop: tuple[int, int, int, int] = Field(description="aligned release frame (x0, y0, x1, y1) in LL pixels, end-exclusive")


class StepTruth(_Model):
    """One exposure step: settings of both cameras and the electrons per unit scene signal."""

    k: float
    ratio: int = Field(description="the exp<R> label: nd_factor x k")
    exposure_us: float = Field(description="exposure time of both cameras")
    nominal_exposure_us: int = Field(description="exposure written in release names")
    wl_gain_db: float
    ll_gain_db: float
    ll_dir: str | None = Field(None, description="feed folder of the LL frames, relative to feeds.json")
    wl_dir: str | None = Field(None, description="feed folder of the WL frames, relative to feeds.json")


class PersonTruth(_Model):
    """One person in the aligned release frame (LL frame after the crop)."""

    keypoints: list[float] = Field(description="14 x (x, y, v): v 2 visible, 1 occluded, 0 outside (x = y = 0)")
    bbox: list[float] = Field(description="[x, y, w, h] of the whole figure, clipped to the frame")


class FrameTruthRecord(_Model):
    """One video frame: its feed file name, release frame number and people."""

    index: int = Field(description="position in the video (feed files are NNNNNN.png of this index)")
    frame: int = Field(description="frame number written in release names")
    file: str
    people: list[PersonTruth]


class ReleaseImage(_Model):
    """One released pair (``simulation.json`` only)."""

    frame: int
    k: float
    bright: str
    dark: str


class ReferenceFeed(_Model):
    """The static textured reference pair of a scene, for estimating the homography."""

    ll_dir: str
    wl_dir: str
    file: str
    ll_exposure_us: float = Field(description="long LL exposure (nd_factor x the WL one) so both are well exposed")
    wl_exposure_us: float
    ll_gain_db: float
    wl_gain_db: float


class SceneTruth(_Model):
    """Everything true about one simulated scene."""

    scene: str = Field(description="<MMDD>[_<site>]_vid<6 digits>")
    date: str
    site: str
    video: int
    preset: str
    base_exposure_us: float
    base_gain_db: float
    nd_factor: float
    geometry: GeometryTruth
    steps: list[StepTruth]
    frames: list[FrameTruthRecord]
    reference: ReferenceFeed | None = None
    images: list[ReleaseImage] = Field(default_factory=list)


class FeedsDocument(_Model):
    """``DIR/feeds.json``: how to play the feeds on the pylon emulator and what they show.

    Each PNG is a 16-bit greyscale image holding the 12-bit raw Bayer mosaic shifted left by ``bit_shift``; with
    ``PixelFormat = BayerRG12`` the emulator returns the raw values unchanged. Developing a frame with
    :class:`exlpose_data.isp.IspParams` of ``black_level_dn``, ``bit_depth``, ``bayer_pattern`` and ``isp`` (the colour
    steps: ``wb_gains``, ``ccm``, ``demosaic``) gives exactly the simulated release's image.
    """

    version: int = FORMAT_VERSION
    pixel_format: str = "BayerRG12"
    bayer_pattern: str = "RGGB"
    bit_depth: int = 12
    bit_shift: int = 4
    black_level_dn: float
    isp: dict[str, Any] = Field(default_factory=dict)
    seed: int
    scenes: list[SceneTruth]


def feed_folder(feeds: str | Path, scene: str, step: str, role: str) -> Path:
    """``DIR/<scene>/<step>/<role>``: the frames one camera plays (``step`` is ``1``, ``2``, ... or ``reference``)."""
    if role not in FEED_ROLES:
        raise ValueError(f"feed role {role!r}: expected one of {', '.join(FEED_ROLES)}")
    return Path(feeds) / scene / step / role


def msb_align(raw: np.ndarray, bit_depth: int) -> np.ndarray:
    """Raw samples as a feed PNG stores them: uint16, shifted left so the top bit of ``bit_depth`` is bit 15."""
    return (np.asarray(raw).astype(np.uint16) << np.uint16(16 - bit_depth)).astype(np.uint16)


def read_feeds(folder: str | Path) -> FeedsDocument | None:
    """The ``feeds.json`` of a feed folder; None when there is none or it lists no scenes (hand-made feeds).

    Raises:
        InputError: ``feeds.json`` lists scenes but does not match :class:`FeedsDocument` (field named).
    """
    path = Path(folder) / FEEDS_FILE
    if not path.is_file():
        return None
    data = load_json(path)
    if not isinstance(data, dict) or "scenes" not in data:
        return None
    try:
        return FeedsDocument.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"{path}: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None
