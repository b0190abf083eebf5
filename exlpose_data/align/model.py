"""``ALIGN.json``: the alignment of one session's cameras, as written by ``exlpose-align estimate``.

``homography`` maps well-lit (WL) pixel coordinates to low-light (LL) pixel coordinates ``(x, y, 1)``, row-major,
after demosaicing and mirroring, on the full frame, with OpenCV pixel centres (pixel (0, 0) covers
[-0.5, 0.5]). With a lens ``calibration`` it maps the WL camera's undistorted frame to the LL camera's
undistorted frame (each undistorted with its own camera matrix); :func:`exlpose_data.align.apply.warp_maps`
composes both into one remap. ``crop`` = ``[x0, y0, w, h]`` in LL coordinates is the common valid rectangle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..atomic import write_json_atomic
from ..errors import InputError
from ..jsonio import load_json

__all__ = ["ALIGN_FORMAT", "AlignMetrics", "CameraCalibration", "InputFile", "AlignModel"]

ALIGN_FORMAT = "exlpose-align/1"

Matrix3 = list[list[float]]


def _check_3x3(value: Matrix3) -> Matrix3:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (3, 3) or not np.all(np.isfinite(arr)):
        raise ValueError("must be a 3x3 list of finite numbers")
    if abs(np.linalg.det(arr)) < 1e-12:
        raise ValueError("is singular")
    return arr.tolist()


class AlignMetrics(BaseModel):
    """Measured quality of the estimate on its reference pair(s)."""

    model_config = ConfigDict(extra="forbid")

    n_matches: int = Field(description="putative SIFT matches after the ratio test")
    n_inliers: int = Field(description="USAC_MAGSAC inliers among the fitted matches")
    feature_bin: int = Field(description="binning factor of the level the features were matched on")
    heldout_count: int = Field(description="held-out positions whose LL displacement was measured")
    heldout_median_px: float | None = Field(None, description="median residual of the measured held-out correspondences under the final homography")
    heldout_p95_px: float | None = Field(None, description="95th percentile of those residuals")
    heldout_noise_px: float | None = Field(None, description="median predicted noise of those measurements (px)")
    corner_disagreement_px: float = Field(description="mean corner distance between the initial and the refined homography")
    ecc_levels: list[int] = Field(description="binning factors at which ECC converged, coarse to fine")
    ecc_correlation: float | None = Field(None, description="ECC correlation coefficient at the finest converged level")
    psnr_db: float | None = Field(None, description="masked PSNR of the aligned reference pair (linear grey, LL gain and offset fitted to WL, both binned by quality_bin)")
    ssim: float | None = Field(None, description="masked SSIM of the aligned reference pair (binned likewise)")
    quality_bin: int | None = Field(None, description="binning PSNR/SSIM were computed at (denoises the LL side)")
    reference_spread_px: float | None = Field(None, description="largest mean-corner distance between per-reference estimates")


class CameraCalibration(BaseModel):
    """One camera's intrinsics from checkerboard views (OpenCV model)."""

    model_config = ConfigDict(extra="forbid")

    camera_matrix: Matrix3
    dist_coeffs: list[float]
    image_size: tuple[int, int] = Field(description="(width, height) the calibration was made at")
    rms_px: float = Field(description="RMS reprojection error of the calibration")
    n_views: int

    @field_validator("camera_matrix")
    @classmethod
    def _matrix_3x3(cls, v: Matrix3) -> Matrix3:
        return _check_3x3(v)


class InputFile(BaseModel):
    """A file the estimate was made from, with its SHA-256."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["session", "wl", "ll", "calibration"]
    path: str
    sha256: str
    references: list[str] = Field(default_factory=list, description="reference pairs used, for a session")


class AlignModel(BaseModel):
    """The content of ``ALIGN.json``."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["exlpose-align/1"] = ALIGN_FORMAT
    homography: Matrix3 = Field(description="WL -> LL pixel coordinates (x, y, 1), row-major")
    initial_homography: Matrix3 = Field(description="the feature (or identity) estimate ECC started from")
    initial_method: Literal["sift+magsac", "identity"]
    crop: tuple[int, int, int, int] = Field(description="[x0, y0, w, h] of the common valid rectangle, LL coordinates")
    frame_size: tuple[int, int] = Field(description="(width, height) of both cameras' frames")
    mirror: Literal["none", "ll", "wl"] = Field(description="which camera's frames were flipped in software before estimation")
    brightness_ratio: float = Field(description="measured mean LL / WL linear brightness of the reference pair")
    metrics: AlignMetrics
    heldout_matches: list[tuple[float, float, float, float]] = Field(default_factory=list, description="(x_wl, y_wl, x_ll, y_ll) held-out correspondences, the LL side measured to sub-pixel")
    calibration: dict[Literal["ll", "wl"], CameraCalibration] | None = None
    notes: list[str] = Field(default_factory=list)
    software_version: str
    inputs: list[InputFile]

    @field_validator("homography", "initial_homography")
    @classmethod
    def _homography_3x3(cls, v: Matrix3) -> Matrix3:
        return _check_3x3(v)

    @field_validator("crop")
    @classmethod
    def _crop_positive(cls, v: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        if v[0] < 0 or v[1] < 0 or v[2] <= 0 or v[3] <= 0:
            raise ValueError("needs x0, y0 >= 0 and w, h > 0")
        return v

    @property
    def matrix(self) -> np.ndarray:
        """The homography as a (3, 3) float64 array."""
        return np.asarray(self.homography, dtype=np.float64)

    @property
    def initial_matrix(self) -> np.ndarray:
        return np.asarray(self.initial_homography, dtype=np.float64)

    def save(self, path: str | Path) -> Path:
        """Write atomically as indented JSON (refusing a non-finite number, which JSON cannot hold)."""
        return write_json_atomic(path, self.model_dump(mode="json"), indent=2)

    @classmethod
    def load(cls, path: str | Path) -> "AlignModel":
        """Read and validate an ``ALIGN.json``; errors name the file and the field."""
        p = Path(path)
        if not p.exists():
            raise InputError(f"{p}: no such alignment file")
        data = load_json(p)  # strict: a duplicated key or a NaN is refused with its place, never half-read
        try:
            model = cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "(root)"
            raise InputError(f"{p}: field {where}: {first['msg']}") from None
        x0, y0, w, h = model.crop
        if x0 + w > model.frame_size[0] or y0 + h > model.frame_size[1]:
            raise InputError(f"{p}: field crop {list(model.crop)} exceeds the frame {model.frame_size[0]}x{model.frame_size[1]}")
        return model
