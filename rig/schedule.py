"""The capture plan of one scene: the exposure ladder (from ``exlpose_data.exposure``), timeouts, sizes, checks.

The ladder maths (exposure / k, WL gain + 20 log10 k, nominal rounding, ratio label) lives in the core; this
module only adds what capture needs around it and refuses plans the cameras cannot follow, before anything
is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from exlpose_data.errors import UsageError
from exlpose_data.exposure import LadderStep, build_ladder, resolve_ks

from .cameras import Limits

__all__ = ["PlannedStep", "Plan", "make_plan", "retrieve_timeout_ms", "stall_timeout_s", "check_plan", "nominal_warnings", "NOMINAL_LIMITS"]

# Allowance beyond the exposure for readout and USB transfer of one frame (a full 1920x1200 16-bit frame
# takes ~13 ms at the dart's 360 MB/s link limit) plus host scheduling jitter.
TRANSFER_ALLOWANCE_MS = 250.0


def retrieve_timeout_ms(exposure_us: float, override_ms: float | None = None) -> float:
    """How long to wait for a frame: twice the exposure plus the transfer allowance, or ``override_ms``.

    Raises:
        UsageError: ``override_ms`` is shorter than the exposure plus readout (every grab would time out).
    """
    exposure_ms = exposure_us / 1000.0
    if override_ms is None:
        return 2.0 * exposure_ms + TRANSFER_ALLOWANCE_MS
    if override_ms <= exposure_ms + 20.0:
        raise UsageError(
            f"exposure {exposure_us:g} us is longer than the retrieve timeout {override_ms:g} ms allows "
            f"(needs > {exposure_ms + 20.0:g} ms): raise retrieve_timeout_ms or remove it from the rig config"
        )
    return float(override_ms)


# Ranges assumed when no camera is attached to ask (``plan`` without --config/--emulate): the daA1920-160uc's
# documented gain range, and the exposures the ExLPose release was recorded with (DOMAIN.md section 1; the
# dart's own ExposureTime range is read from the camera when one is attached).
NOMINAL_LIMITS = Limits(exposure_min_us=83.0, exposure_max_us=25_000.0, gain_min_db=0.0, gain_max_db=48.0)

# Trigger periods without a frame before a hardware-triggered or free-running camera counts as stalled: one
# late frame is jitter, three periods of silence are not.
STALL_PERIODS = 3.0


def stall_timeout_s(timeout_ms: float, frame_rate_hz: float | None) -> float:
    """How long a camera fed by its own trigger may stay silent: the retrieve timeout or three periods, the longer.

    The retrieve timeout alone (twice the exposure plus the transfer allowance) is shorter than the gap between
    two edges at low frame rates (500 ms at 2 fps), so every edge would look like a stall.
    """
    period_s = 1.0 / frame_rate_hz if frame_rate_hz else 0.0
    return max(timeout_ms / 1000.0, STALL_PERIODS * period_s)


@dataclass(frozen=True)
class PlannedStep:
    """A ladder step with what recording it costs."""

    step: LadderStep
    frames: int
    timeout_ms: float
    expected_bytes: int


@dataclass(frozen=True)
class Plan:
    """The ladder of one scene plus its inputs."""

    base_exposure_us: float
    base_gain_db: float
    ll_gain_db: float
    nd_factor: float
    ks: tuple[float, ...]
    steps: tuple[PlannedStep, ...]

    @property
    def expected_bytes(self) -> int:
        return sum(s.expected_bytes for s in self.steps)


def make_plan(
    *,
    base_exposure_us: float,
    base_gain_db: float,
    preset: str | None = None,
    ks: list[float] | None = None,
    nd_factor: float = 100.0,
    ll_gain_db: float | None = None,
    frames: int = 10,
    pair_bytes: int = 0,
    timeout_override_ms: float | None = None,
) -> Plan:
    """Build the plan of one scene.

    Args:
        base_exposure_us / base_gain_db: the well-exposing WL settings at k = 1.
        preset / ks: ``outdoor``, ``indoor`` or an explicit list of exposure divisors (exactly one).
        nd_factor: attenuation of the LL path.
        ll_gain_db: fixed LL gain; the base WL gain when None.
        frames: pairs to record per step.
        pair_bytes: stored bytes of one pair (both frames), for the size estimate.
        timeout_override_ms: a fixed retrieve timeout from the rig config.

    Raises:
        UsageError: bad preset, k list or exposure.
    """
    if preset is None and not ks:
        preset = "outdoor"
    try:
        resolved = resolve_ks(preset, ks if ks else None)
        ladder = build_ladder(base_exposure_us, base_gain_db, resolved, nd_factor=nd_factor, ll_gain_db=ll_gain_db)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if frames < 1:
        raise UsageError(f"--frames must be at least 1, got {frames}")
    steps = tuple(
        PlannedStep(step=s, frames=frames, timeout_ms=retrieve_timeout_ms(s.exposure_us, timeout_override_ms), expected_bytes=frames * pair_bytes)
        for s in ladder
    )
    return Plan(base_exposure_us, base_gain_db, ladder[0].ll_gain_db, nd_factor, resolved, steps)


def _problems(plan: Plan, ll: Limits, wl: Limits, frame_rate_hz: float | None) -> list[tuple[str, str]]:
    """``(step name, what is wrong)`` for every value of the plan outside the ranges or the frame period."""
    problems: list[tuple[str, str]] = []
    period_us = 1e6 / frame_rate_hz if frame_rate_hz else None
    for planned in plan.steps:
        s = planned.step
        for role, lim, gain in (("LL", ll, s.ll_gain_db), ("WL", wl, s.wl_gain_db)):
            if not lim.exposure_min_us <= s.exposure_us <= lim.exposure_max_us:
                problems.append((s.step_name, f"{role} exposure {s.exposure_us:g} us outside {lim.exposure_min_us:g}..{lim.exposure_max_us:g} us"))
            if not lim.gain_min_db - 1e-9 <= gain <= lim.gain_max_db + 1e-9:
                problems.append((s.step_name, f"{role} gain {gain:.2f} dB outside {lim.gain_min_db:.2f}..{lim.gain_max_db:.2f} dB"))
        if period_us is not None and s.exposure_us >= period_us:
            problems.append((s.step_name, f"exposure {s.exposure_us:g} us does not fit the {period_us:g} us frame period at {frame_rate_hz:g} fps"))
    return problems


def check_plan(plan: Plan, ll: Limits, wl: Limits, frame_rate_hz: float | None = None) -> None:
    """Refuse a plan any step of which the cameras cannot follow; every violation is listed.

    Raises:
        UsageError: an exposure or gain outside a camera's range, or an exposure longer than the frame period.
    """
    problems = _problems(plan, ll, wl, frame_rate_hz)
    if problems:
        raise UsageError("plan refused, nothing recorded: " + "; ".join(f"k={step}: {text}" for step, text in problems))


def nominal_warnings(plan: Plan) -> list[str]:
    """One line per step outside :data:`NOMINAL_LIMITS`, for plans made with no camera attached to ask."""
    by_step: dict[str, list[str]] = {}
    for step, text in _problems(plan, NOMINAL_LIMITS, NOMINAL_LIMITS, None):
        by_step.setdefault(step, []).append(text)
    return [f"k={step}: {'; '.join(texts)}" for step, texts in by_step.items()]
