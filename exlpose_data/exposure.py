"""The ExLPose exposure protocol: ladders of exposure cuts and the gains that go with them.

Per scene the operator finds a well-lit (WL) exposure time and gain. Each step of the ladder divides the
exposure time of *both* cameras by ``k``; the WL camera raises its gain by ``20*log10(k)`` dB to keep its
brightness, the low-light (LL) camera keeps its gain. The ratio label of release file names is
``R = nd_factor * k`` (100x from the ND filter times ``k``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

__all__ = [
    "PRESETS",
    "LadderStep",
    "build_ladder",
    "resolve_ks",
    "nominal_exposure_us",
    "wl_gain_db",
    "ll_gain_from_wl",
    "wl_gain_from_ll",
    "round_gain",
    "ratio_label",
]

PRESETS: dict[str, tuple[int, ...]] = {"outdoor": (1, 2, 4, 8, 12), "indoor": (1, 2, 3, 4, 6)}
DEFAULT_ND_FACTOR = 100.0


def nominal_exposure_us(base_exposure_us: float, k: float) -> int:
    """Exposure as written in release file names: ``base / k`` rounded half up (5000/16 -> 313)."""
    value = Fraction(str(base_exposure_us)) / Fraction(str(k))
    return int(math.floor(value + Fraction(1, 2)))


def round_gain(gain_db: float) -> float:
    """Gains carry two decimals, rounded half up (as the release's names do)."""
    # "+ 0.0" turns a rounded -0.00 into 0.00
    return float(Decimal(repr(gain_db)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)) + 0.0


def wl_gain_db(base_gain_db: float, k: float) -> float:
    """Well-lit gain at exposure cut ``k``: ``base + 20*log10(k)``, two decimals."""
    return round_gain(base_gain_db + 20.0 * math.log10(k))


def ratio_label(k: float, nd_factor: float = DEFAULT_ND_FACTOR) -> int:
    """The ``exp<R>`` label of file names: ND factor times the exposure cut."""
    r = nd_factor * k
    if abs(r - round(r)) > 1e-6:
        raise ValueError(f"ratio {r} (nd_factor {nd_factor} x k {k}) is not an integer")
    return int(round(r))


def ll_gain_from_wl(wl_gain: float, ratio: int, nd_factor: float = DEFAULT_ND_FACTOR) -> float:
    """Low-light gain implied by a WL gain and ratio label (inferred protocol): ``G_WL - 20*log10(R/nd)``.

    Clamped at 0 dB, the cameras' minimum gain (18.06 dB at R = 800 gives 0.00, not -0.00).
    """
    return max(0.0, round_gain(wl_gain - 20.0 * math.log10(ratio / nd_factor)))


def wl_gain_from_ll(ll_gain: float, ratio: int, nd_factor: float = DEFAULT_ND_FACTOR) -> float:
    """Well-lit gain implied by an LL gain and ratio label (inferred protocol): ``G_LL + 20*log10(R/nd)``."""
    if ratio <= 0:
        raise ValueError(f"ratio label must be positive, got {ratio}")
    return round_gain(ll_gain + 20.0 * math.log10(ratio / nd_factor))


def resolve_ks(preset: str | None = None, ks: list[float] | tuple[float, ...] | None = None) -> tuple[float, ...]:
    """The exposure cuts of a preset name or an explicit list (exactly one of them)."""
    if (preset is None) == (ks is None):
        raise ValueError("give either a preset or a list of k values")
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        return PRESETS[preset]
    out = tuple(ks)  # type: ignore[arg-type]
    if not out or any(k < 1 for k in out):
        raise ValueError(f"exposure cuts must be >= 1, got {list(out)}")
    if len(set(out)) != len(out):
        raise ValueError(f"exposure cuts repeat: {list(out)}")
    return tuple(int(k) if float(k).is_integer() else float(k) for k in out)


@dataclass(frozen=True)
class LadderStep:
    """One step of an exposure ladder.

    Attributes:
        k: exposure divisor.
        ratio: the ``R`` label of file names (nd_factor * k).
        exposure_us: exact exposure time applied to both cameras (base / k).
        nominal_exposure_us: the integer written in file names.
        wl_gain_db: gain of the well-lit camera.
        ll_gain_db: gain of the low-light camera (fixed over the ladder).
    """

    k: float
    ratio: int
    exposure_us: float
    nominal_exposure_us: int
    wl_gain_db: float
    ll_gain_db: float

    @property
    def step_name(self) -> str:
        """``k`` as written in session files and feed folders (``1``, ``2``, ``12``, ``1.5``)."""
        return format_k(self.k)


def format_k(k: float) -> str:
    return str(int(k)) if float(k).is_integer() else repr(float(k))


def build_ladder(
    base_exposure_us: float,
    base_gain_db: float,
    ks: tuple[float, ...] | list[float],
    *,
    nd_factor: float = DEFAULT_ND_FACTOR,
    ll_gain_db: float | None = None,
) -> list[LadderStep]:
    """The exposure ladder of one scene.

    Args:
        base_exposure_us: well-exposing WL exposure time at k = 1.
        base_gain_db: WL gain at k = 1.
        ks: exposure divisors.
        nd_factor: light attenuation of the LL path (100 for a 1% ND filter).
        ll_gain_db: fixed LL gain; defaults to the base WL gain (what the release's names imply).
    """
    if base_exposure_us <= 0:
        raise ValueError(f"base exposure must be positive, got {base_exposure_us} us")
    ll = round_gain(base_gain_db if ll_gain_db is None else ll_gain_db)
    return [
        LadderStep(
            k=k,
            ratio=ratio_label(k, nd_factor),
            exposure_us=base_exposure_us / k,
            nominal_exposure_us=nominal_exposure_us(base_exposure_us, k),
            wl_gain_db=wl_gain_db(base_gain_db, k),
            ll_gain_db=ll,
        )
        for k in ks
    ]
