"""LIME (Guo, Li and Ling, "LIME: Low-Light Image Enhancement via Illumination Map Estimation", TIP 2017).

1. Initial illumination: the per-pixel maximum over the RGB channels, ``T0 = max_c L_c``.
2. Refinement (the paper's sped-up solver, its Eq. 19): ``T`` minimises
   ``||T - T0||^2 + alpha * sum_x sum_{d in h, v} w_d(x) (grad_d T(x))^2`` with
   ``w_d(x) = W_d(x) / (|grad_d T0(x)| + eps)``, i.e. ``T`` solves the sparse linear system
   ``(I + alpha * sum_d D_d^T diag(w_d) D_d) t = t0`` (``D_d`` forward differences inside the image).
   ``W_d`` by the paper's three strategies: 1: ``W = 1``; 2: ``W = 1 / (|grad_d T0| + eps)``;
   3: ``W = 1 / (|G_sigma * grad_d T0| + eps)`` (a normalised Gaussian window, so its sum is 1).
3. Gamma correction ``T <- T^gamma``, then ``R = L / T`` per channel, clipped to [0, 1].

The paper's optional BM3D denoising of the result is not applied. Defaults: alpha 0.15, sigma 2, gamma 0.8,
eps 1e-3 and strategy 3, as we read the paper's experiments. ``illumination_floor`` (ours) keeps black pixels
from dividing by zero; ``downscale`` (ours, default 1: off) solves for the illumination on a smaller image and
resizes it back, trading detail for speed.

The solver (``solver``, ours): the system is symmetric positive definite, so

- ``"amg"`` (the default) solves it by conjugate gradients preconditioned with one V-cycle of smoothed-aggregation
  algebraic multigrid (aggregates and Gauss-Seidel sweeps from pyamg, the hierarchy built here in CSR), started
  from ``T0``, to a relative residual of :data:`AMG_TOLERANCE`. Its cost grows linearly with the pixels: measured
  (``benchmarks/bench_enhance.py``) it is many times faster than the direct solve at 1920x1200, with an enhanced
  image equal to the direct solve's far inside 16-bit rounding (mean difference around 1e-8 on [0, 1]);
- ``"direct"`` factorises it (SuperLU), whose cost grows faster than the pixels: 37-150 s at 1920x1200 on a
  shared 2-core machine.

pyamg's own ``smoothed_aggregation_solver`` is not used: its setup (block-sparse matrices, an Arnoldi estimate of
each level's spectral radius) took longer than the whole solve here, and the Krylov loop here computes its inner
products without BLAS, whose threads contend on a busy machine. The solver is not part of the enhancer's
identity (:meth:`Lime.identity`, the cache key): both solve the same system, and their outputs agree within the
cache's own 16-bit rounding (a pixel at most one step apart), so images cached by one, including every cache
filled before the solver was a setting, are valid for the other.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal

import cv2
import numpy as np

__all__ = ["SOLVERS", "AMG_TOLERANCE", "LimeSettings", "initial_illumination", "smoothness_weights", "system_matrix", "refine_illumination", "lime_illumination", "lime_enhance", "Lime"]

SOLVERS = ("amg", "direct")
"""The refinement's solvers: ``amg`` (default, fast) and ``direct`` (the exact factorisation)."""

AMG_TOLERANCE = 1e-4
"""Relative residual at which the ``amg`` solve stops (its enhanced image differs from the direct solve's by about
1e-8 on average: far below one 16-bit step, 1.5e-5)."""

_AMG_MAX_ITERATIONS = 200
_AMG_MAX_COARSE = 400  # unknowns solved densely at the coarsest level (an image this small is solved exactly)


@dataclass(frozen=True)
class LimeSettings:
    """LIME's parameters (see the module docstring)."""

    alpha: float = 0.15
    sigma: float = 2.0
    gamma: float = 0.8
    eps: float = 1e-3
    strategy: Literal[1, 2, 3] = 3
    illumination_floor: float = 1e-3
    downscale: float = 1.0
    solver: Literal["amg", "direct"] = "amg"

    def __post_init__(self) -> None:
        if self.strategy not in (1, 2, 3):
            raise ValueError(f"LIME strategy must be 1, 2 or 3, got {self.strategy!r}")
        if not (self.alpha >= 0 and self.sigma > 0 and self.gamma > 0 and self.eps > 0 and self.illumination_floor > 0):
            raise ValueError(f"LIME settings out of range: {self}")
        if not 0 < self.downscale <= 1:
            raise ValueError(f"LIME downscale must be in (0, 1], got {self.downscale}")
        if self.solver not in SOLVERS:
            raise ValueError(f"LIME solver must be {' or '.join(SOLVERS)}, got {self.solver!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def initial_illumination(rgb: np.ndarray) -> np.ndarray:
    """``max_c L_c`` of an ``(H, W, 3)`` image on [0, 1], float64 ``(H, W)``."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"need an (H, W, 3) image, got shape {rgb.shape}")
    return rgb.max(axis=2).astype(np.float64)


def smoothness_weights(t0: np.ndarray, settings: LimeSettings) -> tuple[np.ndarray, np.ndarray]:
    """``w_h`` ``(H, W-1)`` and ``w_v`` ``(H-1, W)``: the weights of the squared forward differences."""
    from scipy.ndimage import gaussian_filter

    out = []
    for grad in (np.diff(t0, axis=1), np.diff(t0, axis=0)):
        magnitude = np.abs(grad) + settings.eps
        if settings.strategy == 1:
            big_w = np.ones_like(grad)
        elif settings.strategy == 2:
            big_w = 1.0 / magnitude
        else:
            big_w = 1.0 / (np.abs(gaussian_filter(grad, settings.sigma, mode="nearest")) + settings.eps) if grad.size else grad
        out.append(big_w / magnitude)
    return out[0], out[1]


def system_matrix(w_h: np.ndarray, w_v: np.ndarray, alpha: float, shape: tuple[int, int], fmt: str = "csr") -> Any:
    """``I + alpha * (D_h^T W_h D_h + D_v^T W_v D_v)`` of an ``(H, W)`` image as a scipy sparse matrix (pixels
    in row-major order)."""
    import scipy.sparse as sp

    h, w = shape
    n = h * w
    # Each edge (i, j) of weight a adds a to A[i, i] and A[j, j] and -a to A[i, j] and A[j, i].
    horizontal = np.zeros((h, w))
    horizontal[:, :-1] = alpha * w_h  # edge between pixel i and i + 1
    vertical = np.zeros((h, w))
    vertical[:-1, :] = alpha * w_v  # edge between pixel i and i + w
    eh, ev = horizontal.ravel(), vertical.ravel()
    diag = 1.0 + eh + ev
    diag[1:] += eh[:-1]
    diag[w:] += ev[: n - w]
    # Row i holds columns i - w, i - 1, i, i + 1, i + w where those pixels are its neighbours in the image: built
    # as CSR directly (scipy's banded constructor and its conversion took a second at 1920x1200).
    values = np.zeros((n, 5))
    present = np.zeros((n, 5), dtype=bool)
    values[w:, 0], present[w:, 0] = -ev[: n - w], True
    values[1:, 1], present[1:, 1] = -eh[:-1], (np.arange(1, n) % w) != 0
    values[:, 2], present[:, 2] = diag, True
    values[:-1, 3], present[:-1, 3] = -eh[:-1], (np.arange(n - 1) % w) != w - 1
    values[: n - w, 4], present[: n - w, 4] = -ev[: n - w], True
    columns = np.arange(n)[:, None] + np.array([-w, -1, 0, 1, w])
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(present.sum(axis=1), out=indptr[1:])
    index_type = np.int32 if present.sum() < 2**31 else np.int64
    a = sp.csr_array((values[present], columns[present].astype(index_type), indptr.astype(index_type)), shape=(n, n))
    return a if fmt == "csr" else a.asformat(fmt)


def refine_illumination(t0: np.ndarray, w_h: np.ndarray, w_v: np.ndarray, alpha: float,
                        solver: Literal["amg", "direct"] = "amg") -> np.ndarray:
    """Solve ``(I + alpha * (D_h^T W_h D_h + D_v^T W_v D_v)) t = t0`` by ``solver`` (see the module docstring)."""
    if solver not in SOLVERS:
        raise ValueError(f"LIME solver must be {' or '.join(SOLVERS)}, got {solver!r}")
    if solver == "direct":
        from scipy.sparse.linalg import splu

        a = system_matrix(w_h, w_v, alpha, t0.shape, "csc")
        # The matrix is symmetric positive definite: a symmetric ordering (minimum degree on A + A^T) and no
        # pivoting off the diagonal roughly halve the factorisation time of SuperLU's default.
        lu = splu(a, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
        return lu.solve(t0.ravel()).reshape(t0.shape)
    if alpha == 0:
        return t0.astype(np.float64, copy=True)
    a = system_matrix(w_h, w_v, alpha, t0.shape, "csr")
    b = t0.ravel().astype(np.float64)
    t, converged = _conjugate_gradients(a, b, b.copy(), _Multigrid(a).vcycle, AMG_TOLERANCE, _AMG_MAX_ITERATIONS)
    if not converged:  # never seen; the exact solve rather than a wrong image
        warnings.warn(f"LIME: multigrid did not converge in {_AMG_MAX_ITERATIONS} iterations; solving directly", RuntimeWarning, stacklevel=2)
        return refine_illumination(t0, w_h, w_v, alpha, "direct")
    return t.reshape(t0.shape)


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    # Not np.dot: BLAS's threads spin against each other on a busy machine (a 150 k-element dot took 8 ms, not 0.07).
    return float(np.add.reduce(x * y))


def _conjugate_gradients(a: Any, b: np.ndarray, x: np.ndarray, precondition: Any, tolerance: float,
                         max_iterations: int) -> tuple[np.ndarray, bool]:
    """Preconditioned conjugate gradients from ``x`` until ``|b - a x| <= tolerance |b|``; (x, converged)."""
    r = b - a @ x
    stop = tolerance * np.sqrt(_dot(b, b))
    z = precondition(r)
    p = z.copy()
    rz = _dot(r, z)
    for _ in range(max_iterations):
        if np.sqrt(_dot(r, r)) <= stop:
            return x, True
        q = a @ p
        step = rz / _dot(p, q)
        x += step * p
        r -= step * q
        z = precondition(r)
        rz_next = _dot(r, z)
        p *= rz_next / rz
        p += z
        rz = rz_next
    return x, bool(np.sqrt(_dot(r, r)) <= stop)


class _Multigrid:
    """A smoothed-aggregation hierarchy of a symmetric positive definite CSR matrix and its V-cycle.

    Each level: pyamg's standard aggregation of the (all-strong, theta 0) connection graph; the tentative
    prolongator is the aggregates' normalised indicator (the constant vector is the near-null space); it is smoothed
    by one damped Jacobi step, ``P = (I - 4/3 / rho D^-1 A) T``, with ``rho`` bounded by Gershgorin's row sums of
    ``D^-1 A`` (no eigenvalue estimate); the coarse matrix is ``P^T A P``. The coarsest (at most
    ``_AMG_MAX_COARSE`` unknowns) is factorised densely. The V-cycle smooths by one forward Gauss-Seidel sweep
    before the coarse correction and one backward sweep after, so it is a symmetric preconditioner.
    """

    def __init__(self, a: Any) -> None:
        import scipy.linalg
        import scipy.sparse as sp
        from pyamg.aggregation import standard_aggregation

        self.matrices, self.prolongators, self.restrictions = [a.tocsr()], [], []
        while self.matrices[-1].shape[0] > _AMG_MAX_COARSE:
            fine = self.matrices[-1]
            # Every connection is strong (theta 0, as pyamg's symmetric strength with theta 0 says): the
            # aggregation reads only the matrix's pattern, so it is given the matrix itself.
            aggregates = standard_aggregation(fine)[0].tocsr()
            if not 0 < aggregates.shape[1] < fine.shape[0]:
                break
            aggregates.data[:] = 1.0
            sizes = np.asarray(aggregates.sum(axis=0)).ravel()
            tentative = aggregates @ sp.diags(1.0 / np.sqrt(sizes))
            diagonal = fine.diagonal()
            rho = float((np.asarray(abs(fine).sum(axis=1)).ravel() / diagonal).max())
            prolongator = (tentative - sp.diags((4.0 / 3.0) / rho / diagonal) @ (fine @ tentative)).tocsr()
            restriction = prolongator.T.tocsr()
            self.prolongators.append(prolongator)
            self.restrictions.append(restriction)
            self.matrices.append((restriction @ (fine @ prolongator)).tocsr())
        self.coarsest = scipy.linalg.cho_factor(self.matrices[-1].toarray())

    def vcycle(self, b: np.ndarray, level: int = 0) -> np.ndarray:
        """One V-cycle from zero for ``A x = b`` at ``level``: an approximation of ``A^-1 b``."""
        import scipy.linalg
        from pyamg.relaxation.relaxation import gauss_seidel

        if level == len(self.prolongators):
            return scipy.linalg.cho_solve(self.coarsest, b)
        a = self.matrices[level]
        x = np.zeros_like(b)
        gauss_seidel(a, x, b, iterations=1, sweep="forward")
        x += self.prolongators[level] @ self.vcycle(self.restrictions[level] @ (b - a @ x), level + 1)
        gauss_seidel(a, x, b, iterations=1, sweep="backward")
        return x


def lime_illumination(rgb: np.ndarray, settings: LimeSettings = LimeSettings()) -> np.ndarray:
    """The refined, gamma-corrected illumination map ``T`` ``(H, W)`` of an RGB image on [0, 1]."""
    t0 = initial_illumination(rgb)
    h, w = t0.shape
    small = t0
    if settings.downscale < 1:
        size = (max(1, round(w * settings.downscale)), max(1, round(h * settings.downscale)))
        small = cv2.resize(t0, size, interpolation=cv2.INTER_AREA)
    t = refine_illumination(small, *smoothness_weights(small, settings), settings.alpha, settings.solver)
    if settings.downscale < 1:
        t = cv2.resize(t, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.maximum(t, settings.illumination_floor) ** settings.gamma


def lime_enhance(rgb: np.ndarray, settings: LimeSettings = LimeSettings()) -> np.ndarray:
    """LIME's enhanced image ``L / T`` of an ``(H, W, 3)`` RGB image on [0, 1], float32 on [0, 1]."""
    rgb = np.asarray(rgb, dtype=np.float64)
    t = lime_illumination(rgb, settings)
    return np.clip(rgb / t[:, :, None], 0.0, 1.0).astype(np.float32)


class Lime:
    """LIME as an enhancer (see :mod:`baselines.enhance.base`): RGB float on [0, 1] in and out."""

    name = "lime"

    def __init__(self, settings: LimeSettings = LimeSettings()) -> None:
        self.settings = settings

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return lime_enhance(rgb, self.settings)

    def identity(self) -> dict[str, Any]:
        """What determines the output (cache key): the settings but the solver, whose choice changes the image far
        less than the tolerance of the cache (see the module docstring), so caches filled before it existed (by the
        direct solve) stay valid."""
        settings = self.settings.to_dict()
        del settings["solver"]
        return {"enhancer": self.name, **settings}
