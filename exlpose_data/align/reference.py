"""Reference pairs in, ``ALIGN.json`` out: loading, per-reference estimates, combination, metrics.

A session's reference holds n frames of a static scene; they are averaged (linear) before estimation, which
cuts the LL noise by sqrt(n). Several references (different static scenes) are estimated one by one and
combined by averaging where each sends the frame corners; their spread is reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import __version__
from ..errors import InputError, UsageError
from ..layout import sha256_file
from ..session_format import SessionReader
from .estimate import Estimate, EstimateOptions, corner_error, corners, estimate_homography
from .geometry import transform_points, valid_crop, warp_maps
from .model import AlignMetrics, AlignModel, CameraCalibration, InputFile
from .prepare import MirrorSide, develop_linear_gray, linear_gray, needs_flip, normalise_brightness, session_mirror
from .validate import aligned_reference, heldout_residuals, image_quality, measure_heldout, residual_stats, validation_positions

__all__ = ["ReferencePair", "read_image", "load_session_references", "load_image_pair", "build_alignment", "undistort_pair"]


@dataclass
class ReferencePair:
    """One reference as linear grey images, flipped as configured; ``*_valid`` mark real content (after
    undistortion the borders are filled in)."""

    name: str
    wl: np.ndarray
    ll: np.ndarray
    wl_valid: np.ndarray | None = None
    ll_valid: np.ndarray | None = None


def read_image(path: str | Path) -> np.ndarray:
    """An 8- or 16-bit PNG/JPEG/TIFF as RGB (or grey); errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such image")
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{p}: not a readable image")
    if img.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{p}: {img.dtype} pixels; expected 8- or 16-bit")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img


def load_session_references(path: str | Path, names: list[str] | None = None, mirror: MirrorSide | None = None) -> tuple[list[ReferencePair], MirrorSide, list[InputFile]]:
    """The reference pairs of a session (all of them unless ``names`` are given).

    ``mirror`` overrides the rig config's ``mirror`` field.
    """
    with SessionReader(path) as reader:
        available = reader.references()
        if not available:
            raise InputError(f"{path}: the session has no /reference pair; record a static reference first")
        wanted = names or available
        side = mirror if mirror is not None else session_mirror(reader)
        pairs = []
        for name in wanted:
            ll, wl, ll_attrs, wl_attrs = reader.reference(name)
            src = f"{path}: reference {name!r}"
            pairs.append(
                ReferencePair(
                    name=name,
                    wl=develop_linear_gray(wl, wl_attrs, flip=needs_flip("wl", side, wl_attrs), source=f"{src} wl"),
                    ll=develop_linear_gray(ll, ll_attrs, flip=needs_flip("ll", side, ll_attrs), source=f"{src} ll"),
                )
            )
    return pairs, side, [InputFile(role="session", path=str(path), sha256=sha256_file(path), references=list(wanted))]


def load_image_pair(wl_path: str | Path | list[str | Path], ll_path: str | Path | list[str | Path], mirror: MirrorSide = "none") -> tuple[list[ReferencePair], list[InputFile]]:
    """An 8/16-bit image pair (sRGB, as exported) as one reference; several images per camera (frames of the
    static reference) are averaged in linear light, which cuts the LL noise by the root of their number."""
    wl_paths = [Path(p) for p in (wl_path if isinstance(wl_path, list) else [wl_path])]
    ll_paths = [Path(p) for p in (ll_path if isinstance(ll_path, list) else [ll_path])]
    size = None
    means = []
    for paths in (wl_paths, ll_paths):
        total = None
        for p in paths:
            img = read_image(p)
            if size is None:
                size, first = img.shape[:2], p
            elif img.shape[:2] != size:
                raise InputError(f"{first} is {size[1]}x{size[0]} but {p} is {img.shape[1]}x{img.shape[0]}; all reference images must be the same size")
            g = linear_gray(img).astype(np.float64)
            total = g if total is None else total + g
        means.append((total / len(paths)).astype(np.float32))
    wl_g, ll_g = means
    if mirror == "wl":
        wl_g = np.ascontiguousarray(wl_g[:, ::-1])
    elif mirror == "ll":
        ll_g = np.ascontiguousarray(ll_g[:, ::-1])
    inputs = [InputFile(role=role, path=str(p), sha256=sha256_file(p)) for role, paths in (("wl", wl_paths), ("ll", ll_paths)) for p in paths]
    return [ReferencePair(name=wl_paths[0].stem, wl=wl_g, ll=ll_g)], inputs


def undistort_pair(pair: ReferencePair, calibration: Mapping[str, CameraCalibration]) -> ReferencePair:
    """Each image undistorted with its camera's own matrix as the new one (estimation only)."""

    def undistort(img: np.ndarray, cal: CameraCalibration, camera: str) -> tuple[np.ndarray, np.ndarray]:
        size = (img.shape[1], img.shape[0])
        if tuple(cal.image_size) != size:
            raise InputError(f"calibration of the {camera} camera is for {cal.image_size[0]}x{cal.image_size[1]}, the reference is {size[0]}x{size[1]}")
        k = np.asarray(cal.camera_matrix)
        map_x, map_y = cv2.initUndistortRectifyMap(k, np.asarray(cal.dist_coeffs), None, k, size, cv2.CV_32FC1)
        # Replicated borders keep SIFT and ECC away from a hard black edge; the mask says what is real.
        out = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        valid = cv2.remap(np.ones(img.shape, np.uint8), map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out, valid

    wl, wl_valid = undistort(pair.wl, calibration["wl"], "wl")
    ll, ll_valid = undistort(pair.ll, calibration["ll"], "ll")
    return ReferencePair(pair.name, wl, ll, wl_valid, ll_valid)


def _average_homography(hs: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    c = corners(size)
    mean = np.mean([transform_points(h, c) for h in hs], axis=0)
    h = cv2.getPerspectiveTransform(c.astype(np.float32), mean.astype(np.float32)).astype(np.float64)
    return h / h[2, 2]


def build_alignment(
    pairs: list[ReferencePair],
    mirror: MirrorSide,
    inputs: list[InputFile],
    opts: EstimateOptions = EstimateOptions(),
    calibration: Mapping[str, CameraCalibration] | None = None,
) -> AlignModel:
    """Estimate, combine and measure: the ``ALIGN.json`` content of some reference pairs."""
    if not pairs:
        raise UsageError("no reference pair to estimate from")
    size = (pairs[0].wl.shape[1], pairs[0].wl.shape[0])
    estimates, ratios, normalised, valid = [], [], [], []
    for pair in pairs:
        if (pair.wl.shape[1], pair.wl.shape[0]) != size or pair.ll.shape != pair.wl.shape:
            raise InputError(f"reference {pair.name!r}: frame size differs from {size[0]}x{size[1]}")
        geo = undistort_pair(pair, calibration) if calibration else pair
        wl_n, wl_mean = normalise_brightness(geo.wl, f"reference {pair.name!r} wl")
        ll_n, ll_mean = normalise_brightness(geo.ll, f"reference {pair.name!r} ll")
        estimates.append(estimate_homography(wl_n, ll_n, opts, source=f"reference {pair.name!r}", wl_valid=geo.wl_valid, ll_valid=geo.ll_valid))
        ratios.append(ll_mean / wl_mean)
        normalised.append((wl_n, ll_n))
        valid.append({"wl_valid": geo.wl_valid, "ll_valid": geo.ll_valid})
    hs = [e.homography for e in estimates]
    h = hs[0] if len(hs) == 1 else _average_homography(hs, size)
    h_init = estimates[0].initial if len(hs) == 1 else _average_homography([e.initial for e in estimates], size)
    spread = max((corner_error(a, b, size) for i, a in enumerate(hs) for b in hs[i + 1 :]), default=None)
    # Held-out positions measured to sub-pixel on each (undistorted) reference under the final homography.
    measured = [measure_heldout(wl_n, ll_n, h, validation_positions(e.heldout_wl, size), **masks) for e, (wl_n, ll_n), masks in zip(estimates, normalised, valid)]
    heldout = np.concatenate([m.matches for m in measured], axis=0)
    noise = np.concatenate([m.noise_px for m in measured])
    median, p95 = residual_stats(heldout_residuals(h, heldout))
    map_x, map_y = warp_maps(h, (0, 0, *size), calibration)
    crop = valid_crop(map_x, map_y, size)
    if crop[2] < size[0] // 2 or crop[3] < size[1] // 2:
        raise InputError(f"the common valid region is only {crop[2]}x{crop[3]} of {size[0]}x{size[1]}: the cameras barely overlap; check the rig")
    initial_method = "sift+magsac" if all(e.initial_method == "sift+magsac" for e in estimates) else "identity"
    # PSNR/SSIM on the raw (not undistorted) first reference, binned to denoise it: the composed remap is what
    # apply will do.
    base = AlignModel(
        homography=h.tolist(),
        initial_homography=h_init.tolist(),
        initial_method=initial_method,
        crop=crop,
        frame_size=size,
        mirror=mirror,
        brightness_ratio=float(np.mean(ratios)),
        metrics=AlignMetrics(
            n_matches=sum(e.n_matches for e in estimates),
            n_inliers=sum(e.n_inliers for e in estimates),
            feature_bin=max(e.feature_bin for e in estimates),
            heldout_count=len(heldout),
            heldout_median_px=median,
            heldout_p95_px=p95,
            heldout_noise_px=float(np.median(noise)) if len(noise) else None,
            corner_disagreement_px=corner_error(h, h_init, size),
            ecc_levels=min((e.ecc_levels for e in estimates), key=len),
            ecc_correlation=float(min(e.ecc_correlation for e in estimates)),
            reference_spread_px=spread,
        ),
        heldout_matches=[tuple(row) for row in heldout.tolist()],
        calibration=dict(calibration) if calibration else None,
        notes=[f"{p.name}: {n}" for p, e in zip(pairs, estimates) for n in e.notes],
        software_version=__version__,
        inputs=inputs,
    )
    wl0, _ = normalise_brightness(pairs[0].wl)
    ll0, _ = normalise_brightness(pairs[0].ll)
    base.metrics.psnr_db, base.metrics.ssim, base.metrics.quality_bin = image_quality(*aligned_reference(wl0, ll0, base))
    return base
