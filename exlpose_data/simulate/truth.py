"""File formats of the simulator's ground truth: ``feeds.json`` (emulator feeds) and ``simulation.json`` (release).

Both describe each scene the same way (:class:`SceneTruth`): protocol, geometry and the people of each frame.
``FeedsDocument.model_json_schema()`` and ``SimulationDocument.model_json_schema()`` give their JSON Schemas.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["GeometryTruth", "StepTruth", "PersonTruth", "FrameTruthRecord", "ReleaseImage", "ReferenceFeed",
           "SceneTruth", "FeedsDocument", "SimulationDocument", "FORMAT_VERSION"]

FORMAT_VERSION = 1


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


class SimulationDocument(_Model):
    """``ROOT/simulation.json`` beside a simulated release: the truth of every scene and the settings used."""

    version: int = FORMAT_VERSION
    seed: int
    config: dict
    scenes: list[SceneTruth]
