"""Homography of a static reference pair: SIFT + USAC_MAGSAC to start, ECC coarse to fine to refine.

Both images arrive as linear grey divided by their mean (:mod:`.prepare`). The homography maps well-lit pixel
coordinates to low-light ones. Design choices, each measured in ``benchmarks/bench_align.py``:

- SIFT runs on a binned, smoothed level (feature count capped, exact brute-force matching, so the same
  reference always gives the same ALIGN.json; FLANN's randomised trees did not): full-frame SIFT is slow and
  at low light its keypoints are mostly noise. If a level yields too few inliers the next coarser one is tried.
- ECC takes the noisy LL image as its template and the clean WL image as the warped input, because OpenCV's
  ECC differentiates the input image: the gradients come from the clean image. It runs from the coarsest
  level to full resolution; a level that fails to converge is retried with more smoothing and otherwise
  skipped, keeping the coarser estimate. The coarse levels run from two starts, the feature estimate and the
  identity, because at LL-E light a feature estimate with enough inliers can still be pixels off.
- A fifth of the putative matches is held out of the robust fit; their residuals under the final homography
  are the validation numbers of ``exlpose-align check``.
- Degenerate input is an :class:`~exlpose_data.errors.InputError`, never a wrong homography: a textureless
  reference, too few matches (with a check whether a missing horizontal flip explains it), ECC failing at
  every coarse level, ECC moving far from its start, or an identity start ending at a low correlation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import InputError
from .prepare import bin_image, binning_ladder, feature_image, level_matrix, noise_blur

__all__ = ["EstimateOptions", "Estimate", "FeatureEstimate", "sift_homography", "ecc_refine", "check_bin", "structure_correlation", "estimate_homography", "corner_error", "corners"]


@dataclass(frozen=True)
class EstimateOptions:
    """Settings of :func:`estimate_homography`.

    Attributes:
        max_features: SIFT keypoints kept per image (the strongest).
        ratio_test: Lowe's ratio for accepting a nearest-neighbour match.
        magsac_threshold_px: inlier threshold of USAC_MAGSAC, in pixels of the feature level.
        min_inliers: fewer robust-fit inliers than this is a failed feature estimate.
        heldout_fraction: share of putative matches kept out of the fit for validation.
        feature_min_side_px: the finest feature level is the coarsest binning whose short side is at least this.
        ecc_min_side_px: the coarsest ECC level keeps at least this many pixels on its short side.
        ecc_iterations: ECC iteration cap per level (full resolution gets half, it starts close).
        ecc_eps: ECC convergence threshold on the parameter update.
        max_ecc_shift_px: ECC moving the image corners (mean distance) farther than this from the feature
            estimate is a failure.
        allow_ecc_only: when feature matching fails, refine from the identity (a rig's homography is near it).
        min_identity_correlation: an estimate ECC started from the identity must correlate the pair at least
            this well at the check level (unrelated images end near 0; correct LL-E pairs at 27-30 dB gain at
            0.5-0.6 from one frame, 0.8 and more from 8 averaged frames, with errors of 0.5-1.2 px and 0.3-0.5 px
            at 1920x1200).
        check_min_side_px: the check level is the coarsest binning whose short side keeps at least this many
            pixels: heavy binning averages the LL noise down so that a correct pair correlates clearly.
        seed: random seed of the held-out split.
    """

    max_features: int = 3000
    ratio_test: float = 0.8
    magsac_threshold_px: float = 1.0
    min_inliers: int = 20
    heldout_fraction: float = 0.2
    feature_min_side_px: int = 600
    ecc_min_side_px: int = 120
    ecc_iterations: int = 60
    ecc_eps: float = 1e-5
    max_ecc_shift_px: float = 8.0
    allow_ecc_only: bool = True
    min_identity_correlation: float = 0.6
    check_min_side_px: int = 64
    seed: int = 0


@dataclass
class Estimate:
    """The result of :func:`estimate_homography` (all coordinates full-frame pixels)."""

    homography: np.ndarray
    initial: np.ndarray
    initial_method: str
    n_matches: int = 0
    n_inliers: int = 0
    feature_bin: int = 0
    heldout_wl: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    heldout_ll: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    ecc_levels: list[int] = field(default_factory=list)
    ecc_correlation: float = float("nan")
    notes: list[str] = field(default_factory=list)


def corners(size: tuple[int, int]) -> np.ndarray:
    """The four corner pixel centres of a ``(width, height)`` frame, (4, 2)."""
    w, h = size
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)


def _apply(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return cv2.perspectiveTransform(np.asarray(pts, np.float64).reshape(-1, 1, 2), h).reshape(-1, 2)


def corner_error(h_a: np.ndarray, h_b: np.ndarray, size: tuple[int, int]) -> float:
    """Mean distance between where two homographies send the corners of a ``(width, height)`` frame."""
    c = corners(size)
    return float(np.linalg.norm(_apply(h_a, c) - _apply(h_b, c), axis=1).mean())


def _to_full(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
    return _apply(np.linalg.inv(m), pts)


@dataclass
class _Matches:
    wl: np.ndarray
    ll: np.ndarray
    n_kp_wl: int
    n_kp_ll: int


def _match(wl_u8: np.ndarray, ll_u8: np.ndarray, opts: EstimateOptions, wl_mask: np.ndarray | None = None, ll_mask: np.ndarray | None = None) -> _Matches:
    sift = cv2.SIFT_create(nfeatures=opts.max_features)
    kw, dw = sift.detectAndCompute(wl_u8, wl_mask)
    kl, dl = sift.detectAndCompute(ll_u8, ll_mask)
    if dw is None or dl is None or len(kw) < 2 or len(kl) < 2:
        return _Matches(np.zeros((0, 2)), np.zeros((0, 2)), len(kw), len(kl))
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dw, dl, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < opts.ratio_test * p[1].distance]
    pw = np.array([kw[m.queryIdx].pt for m in good], np.float64).reshape(-1, 2)
    pl = np.array([kl[m.trainIdx].pt for m in good], np.float64).reshape(-1, 2)
    return _Matches(pw, pl, len(kw), len(kl))


def _magsac(src: np.ndarray, dst: np.ndarray, threshold: float) -> tuple[np.ndarray | None, int]:
    if len(src) < 4:
        return None, 0
    h, mask = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, threshold, maxIters=10000, confidence=0.9999)
    if h is None or mask is None or not np.all(np.isfinite(h)) or abs(h[2, 2]) < 1e-12:
        return None, 0
    h = h / h[2, 2]
    # Matches of noise at high gain can produce a degenerate fit (seen: a singular one); a rig's homography
    # keeps the scale near 1, so a fit scaling areas by more than 4x either way is a failed feature level.
    det = float(np.linalg.det(h[:2, :2]))
    if not 0.25 <= det <= 4.0:
        return None, 0
    return h, int(mask.sum())


@dataclass
class FeatureEstimate:
    """The result of :func:`sift_homography`: the estimate (None when too few inliers), match counts, the
    binning level used, held-out match positions (full-frame) and the WL keypoint count."""

    homography: np.ndarray | None
    n_matches: int
    n_inliers: int
    bin: int
    heldout_wl: np.ndarray
    heldout_ll: np.ndarray
    n_kp_wl: int


@dataclass
class _Trial:
    """One ECC start refined over the coarse levels: where it started, where it ended, how well it fits."""

    start: str  # "sift+magsac" or "identity"
    homography: np.ndarray
    levels: list[int]  # binning factors at which ECC converged, coarse to fine (empty: never)
    correlation: float  # ECC's correlation at the last converged level
    notes: list[str]


def _feature_bins(size: tuple[int, int], opts: EstimateOptions) -> list[int]:
    short = min(size)
    return binning_ladder(short, 150, start=max(1, int(short // opts.feature_min_side_px)))


def sift_homography(
    wl: np.ndarray,
    ll: np.ndarray,
    opts: EstimateOptions = EstimateOptions(),
    *,
    bins: list[int] | None = None,
    wl_valid: np.ndarray | None = None,
    ll_valid: np.ndarray | None = None,
) -> FeatureEstimate:
    """Feature estimate on brightness-normalised linear grey images, trying coarser levels on failure.

    Returns the first level's result with at least ``min_inliers`` inliers, else the best one seen (its
    ``homography`` None when no level had enough). Coordinates are full-frame. ``*_valid`` masks (nonzero =
    real image content) keep keypoints off filled-in borders, e.g. of undistorted frames.
    """
    size = (wl.shape[1], wl.shape[0])
    best: FeatureEstimate | None = None
    for b in bins or _feature_bins(size, opts):
        # Smoothing scaled to the LL noise: at low light one binned pixel is still mostly noise.
        m = _match(feature_image(wl, b, 0.0), feature_image(ll, b, noise_blur(bin_image(ll, b))), opts, _level_mask(wl_valid, b), _level_mask(ll_valid, b))
        mat = level_matrix(size, (wl.shape[1] // b, wl.shape[0] // b))
        rng = np.random.default_rng(opts.seed)
        order = rng.permutation(len(m.wl))
        n_held = int(round(len(order) * opts.heldout_fraction))
        held, fit = order[:n_held], order[n_held:]
        h_level, n_in = _magsac(m.wl[fit], m.ll[fit], opts.magsac_threshold_px)
        h_full = None if h_level is None else np.linalg.inv(mat) @ h_level @ mat
        res = FeatureEstimate(
            homography=h_full if n_in >= opts.min_inliers else None,
            n_matches=len(m.wl),
            n_inliers=n_in,
            bin=b,
            heldout_wl=_to_full(m.wl[held], mat) if n_held else np.zeros((0, 2)),
            heldout_ll=_to_full(m.ll[held], mat) if n_held else np.zeros((0, 2)),
            n_kp_wl=m.n_kp_wl,
        )
        if res.homography is not None:
            return res
        if best is None or res.n_inliers > best.n_inliers:
            best = res
    assert best is not None
    return best


def _level_mask(valid: np.ndarray | None, b: int, erode_px: int = 3) -> np.ndarray | None:
    """A validity mask at binning ``b`` (uint8 0/255), shrunk so no filter reaches filled-in pixels."""
    if valid is None:
        return None
    level = bin_image((valid > 0).astype(np.float32), b) >= 0.999
    kernel = np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8)
    return cv2.erode(level.astype(np.uint8) * 255, kernel)


def _ecc_levels(size: tuple[int, int], opts: EstimateOptions) -> list[int]:
    return binning_ladder(min(size), opts.ecc_min_side_px)[::-1]


def ecc_refine(
    wl: np.ndarray,
    ll: np.ndarray,
    initial: np.ndarray,
    opts: EstimateOptions = EstimateOptions(),
    *,
    levels: list[int] | None = None,
    wl_valid: np.ndarray | None = None,
    ll_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, list[int], float, list[str]]:
    """Refine ``initial`` (WL -> LL, full frame) by ECC from the coarsest level to full resolution.

    Returns the refined homography, the levels that converged, the last correlation and notes about
    levels that did not converge (their coarser estimate is kept). Started from the identity, ECC may move
    the corners by up to 2% of the frame diagonal (a rig's misalignment), otherwise ``max_ecc_shift_px``.
    ``*_valid`` masks (nonzero = real image content) restrict the comparison to pixels valid in both.
    """
    size = (wl.shape[1], wl.shape[0])
    max_shift = opts.max_ecc_shift_px
    if np.allclose(initial, np.eye(3)):
        max_shift = max(max_shift, 0.02 * float(np.hypot(*size)))
    h = initial.copy()
    done: list[int] = []
    notes: list[str] = []
    rho = float("nan")
    for b in levels or _ecc_levels(size, opts):
        tpl, inp = bin_image(ll, b), bin_image(wl, b)
        mat = level_matrix(size, (tpl.shape[1], tpl.shape[0]))
        iters = opts.ecc_iterations if b > 1 else max(10, opts.ecc_iterations // 2)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, iters, opts.ecc_eps)
        base = noise_blur(tpl)
        for blur in (base, 2 * base + 1.0):
            ksize = 2 * int(np.ceil(2 * blur)) + 1 if blur > 0.3 else 1
            # ECC's warp maps template (LL) coordinates to input (WL) coordinates: the inverse of ours.
            warp = (mat @ np.linalg.inv(h) @ np.linalg.inv(mat)).astype(np.float32)
            warp /= warp[2, 2]
            mask = _template_mask(wl_valid, ll_valid, b, warp, ksize)
            try:
                level_rho, warp = cv2.findTransformECC(tpl, inp, warp, cv2.MOTION_HOMOGRAPHY, criteria, mask, ksize)
            except cv2.error:
                continue
            if not np.all(np.isfinite(warp)):
                continue
            h_new = np.linalg.inv(mat) @ np.linalg.inv(warp.astype(np.float64)) @ mat
            h_new /= h_new[2, 2]
            if corner_error(h_new, initial, size) > max_shift:
                notes.append(f"ECC at 1/{b} moved the corners {corner_error(h_new, initial, size):.1f} px from the start; estimate not used")
                break
            h, rho = h_new, float(level_rho)
            done.append(b)
            break
        else:
            notes.append(f"ECC did not converge at 1/{b} resolution; kept the coarser estimate")
    return h, done, float(rho), notes


def _template_mask(wl_valid: np.ndarray | None, ll_valid: np.ndarray | None, b: int, warp: np.ndarray, ksize: int) -> np.ndarray | None:
    """LL-level pixels whose own value and whose WL sample (under the current ``warp``) are both real."""
    if wl_valid is None and ll_valid is None:
        return None
    erode = ksize // 2 + 2
    ll_m = _level_mask(ll_valid, b, erode)
    wl_m = _level_mask(wl_valid, b, erode)
    if wl_m is not None:
        shape = ll_m.shape if ll_m is not None else wl_m.shape
        wl_m = cv2.warpPerspective(wl_m, warp, (shape[1], shape[0]), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    if ll_m is None or wl_m is None:
        return ll_m if wl_m is None else wl_m
    return cv2.bitwise_and(ll_m, wl_m)


def check_bin(size: tuple[int, int], opts: EstimateOptions = EstimateOptions()) -> int:
    """The coarsest power-of-two binning whose short side keeps ``check_min_side_px`` pixels (at least 1)."""
    return binning_ladder(min(size), opts.check_min_side_px)[-1]


def structure_correlation(wl: np.ndarray, ll: np.ndarray, h: np.ndarray, b: int) -> float:
    """Pearson correlation of the LL image and the WL image warped by ``h``, both binned by ``b``."""
    tpl, inp = bin_image(ll, b).astype(np.float64), bin_image(wl, b)
    mat = level_matrix((wl.shape[1], wl.shape[0]), (tpl.shape[1], tpl.shape[0]))
    warped = cv2.warpPerspective(inp, mat @ h @ np.linalg.inv(mat), (tpl.shape[1], tpl.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float64)
    a, c = tpl - tpl.mean(), warped - warped.mean()
    return float((a * c).sum() / max(np.sqrt((a * a).sum() * (c * c).sum()), 1e-12))


def estimate_homography(
    wl: np.ndarray,
    ll: np.ndarray,
    opts: EstimateOptions = EstimateOptions(),
    *,
    source: str = "reference",
    wl_valid: np.ndarray | None = None,
    ll_valid: np.ndarray | None = None,
) -> Estimate:
    """WL -> LL homography of a reference pair given as brightness-normalised linear grey images.

    Raises:
        InputError: textureless reference, too few matches (and whether a flip is missing), sizes that
            differ, or ECC failing at every level.
    """
    if wl.shape != ll.shape:
        raise InputError(f"{source}: WL frame {wl.shape[1]}x{wl.shape[0]} and LL frame {ll.shape[1]}x{ll.shape[0]} differ in size")
    feat = sift_homography(wl, ll, opts, wl_valid=wl_valid, ll_valid=ll_valid)
    notes: list[str] = []
    if feat.homography is None:
        _explain_feature_failure(wl, ll, feat, opts, source)
        notes.append(f"feature matching found {feat.n_inliers} inliers (< {opts.min_inliers})")
    masks = {"wl_valid": wl_valid, "ll_valid": ll_valid}
    levels = _ecc_levels((wl.shape[1], wl.shape[0]), opts)
    coarse = levels[:-2] or levels[:1]
    fine = levels[len(coarse) :]
    # At LL-E light a feature estimate with enough inliers can still be off by pixels; the identity (a rig is
    # nearly aligned) is a second start. The coarse levels are cheap: both starts run there, the better
    # correlation continues to full resolution.
    starts = [("sift+magsac", feat.homography)] if feat.homography is not None else []
    if feat.homography is None or opts.allow_ecc_only:
        starts.append(("identity", np.eye(3)))
    trials = [_Trial(name, *ecc_refine(wl, ll, h0, opts, levels=coarse, **masks)) for name, h0 in starts]
    converged = [t for t in trials if t.levels]
    if not converged:
        why = "; ".join(n for t in trials for n in t.notes)
        raise InputError(f"{source}: ECC refinement did not converge at the coarse levels ({why}); the reference pair is too dark, blurred or not the same view")
    # Best: converged down to the finest coarse level, then the higher correlation.
    best = max(converged, key=lambda t: (-min(t.levels), t.correlation))
    first = converged[0]
    if best.start == "identity" and first.start == "sift+magsac" and corner_error(first.homography, best.homography, (wl.shape[1], wl.shape[0])) < 1.0:
        best = first  # both starts reach the same optimum: keep the feature one
    start, h, done, rho = best.start, best.homography, best.levels, best.correlation
    notes += best.notes
    if start == "identity" and feat.homography is not None:
        other = next((t.correlation for t in converged if t.start != "identity"), None)
        notes.append(f"ECC continued from the identity start, which correlates better at the coarse levels ({rho:.3f} vs {'no convergence' if other is None else f'{other:.3f}'} from the feature estimate)")
    if fine:
        h, done_fine, rho_fine, fine_notes = ecc_refine(wl, ll, h, opts, levels=fine, **masks)
        done, notes = done + done_fine, notes + fine_notes
        rho = rho_fine if done_fine else rho
    need_levels = min(2, len(levels))
    if start == "identity":
        # Judged where binning has averaged the noise down: at full resolution a correct LL-E estimate
        # correlates weakly (0.1 at 30 dB even from 8 averaged frames).
        b = check_bin((wl.shape[1], wl.shape[0]), opts)
        check_rho = structure_correlation(wl, ll, h, b)
        if len(done) < need_levels or check_rho < opts.min_identity_correlation:
            raise InputError(
                f"{source}: ECC from the identity converged at {len(done)} level(s) and correlates the pair {check_rho:.2f} at 1/{b} resolution "
                f"(need {need_levels} and {opts.min_identity_correlation}); refusing to guess a homography. "
                "Average more reference frames (a static reference may hold many) or record it with more light"
            )
    initial, method = (feat.homography, "sift+magsac") if feat.homography is not None else (np.eye(3), "identity")
    return Estimate(
        homography=h,
        initial=initial,
        initial_method=method,
        n_matches=feat.n_matches,
        n_inliers=feat.n_inliers,
        feature_bin=feat.bin,
        heldout_wl=feat.heldout_wl,
        heldout_ll=feat.heldout_ll,
        ecc_levels=done,
        ecc_correlation=rho,
        notes=notes,
    )


def _explain_feature_failure(wl: np.ndarray, ll: np.ndarray, feat: FeatureEstimate, opts: EstimateOptions, source: str) -> None:
    """Raise the error that names why feature matching failed, or return when ECC alone may still work."""
    if feat.n_kp_wl < 2 * opts.min_inliers:
        raise InputError(f"{source}: the well-lit reference is textureless ({feat.n_kp_wl} SIFT keypoints); photograph a textured static scene")
    flipped = sift_homography(np.ascontiguousarray(wl[:, ::-1]), ll, opts, bins=[feat.bin])
    if flipped.homography is not None and flipped.n_inliers >= 3 * max(feat.n_inliers, 1):
        raise InputError(
            f"{source}: the pair matches far better with the WL image mirrored ({flipped.n_inliers} vs {feat.n_inliers} inliers): "
            "a beam-splitter flip is missing; set 'mirror' in the rig config (or --mirror)"
        )
    if not opts.allow_ecc_only:
        raise InputError(f"{source}: too few feature matches ({feat.n_inliers} inliers of {feat.n_matches} matches, need {opts.min_inliers})")
