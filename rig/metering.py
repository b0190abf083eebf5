"""Metering a bright static reference: the LL exposure that makes its frames as bright as the WL's.

A reference scene is static, so the LL camera may expose as long as it needs to make up for its ND filter and its
(lower) gain; a bright LL reference aligns far better than one as dark as the scenes (``reference --ll-exposure
auto``). The start is the exposure that would match on paper (WL exposure x ND factor x the gain difference);
then the cameras are metered: mean raw level above black of one frame each, the LL exposure scaled by the ratio
(the sensor is linear), until the means agree within a tolerance or the camera's longest exposure is reached.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exlpose_data.packed12 import unpack_12p

from .cameras import CameraError, Frame, FrameFormat, Rig
from .schedule import retrieve_timeout_ms
from .sync import Sync

__all__ = ["Metering", "frame_level_dn", "meter_ll_exposure"]

# Relative agreement of the LL and WL means at which metering stops.
TOLERANCE = 0.02
MAX_ROUNDS = 5
# Longest LL exposure metering goes to (a choice, not a camera limit: a static scene tolerates a second, and each
# metering round and reference frame takes at least that long).
AUTO_MAX_EXPOSURE_US = 1_000_000.0


@dataclass(frozen=True)
class Metering:
    """The LL exposure found and how close it brought the LL mean to the WL's."""

    ll_exposure_us: float
    ll_to_wl_mean: float
    rounds: int
    at_limit: bool  # the camera's longest exposure was reached before the means agreed


def frame_level_dn(frame: Frame, fmt: FrameFormat) -> float:
    """Mean raw level of a frame above its black level (DN)."""
    assert frame.image is not None
    samples = unpack_12p(frame.image) if fmt.packed else frame.image
    return float(np.mean(samples)) - fmt.black_level


def _grab_pair(rig: Rig, sync: Sync, timeout_ms: float) -> dict[str, Frame]:
    sync.start(rig, rig.config.buffers)
    try:
        if sync.lockstep:
            for cam in rig.cameras.values():
                if cam.wait_ready(timeout_ms):
                    cam.trigger()
        frames = {role: cam.try_retrieve(timeout_ms) for role, cam in rig.cameras.items()}
    finally:
        sync.stop(rig)
    for role, frame in frames.items():
        if frame is None or not frame.ok or frame.image is None:
            raise CameraError(f"metering the reference: camera {rig.cameras[role].name} delivered no complete frame; {sync.no_frame_hint(role)}")
    return frames  # type: ignore[return-value]


def meter_ll_exposure(
    rig: Rig, sync: Sync, *, wl_exposure_us: float, wl_gain_db: float, ll_gain_db: float, nd_factor: float, max_exposure_us: float = AUTO_MAX_EXPOSURE_US
) -> Metering:
    """Find the LL exposure whose frames match the WL's mean level, within the LL camera's exposure range and
    ``max_exposure_us``."""
    limits = rig.limits()["ll"]
    lo, hi = limits.exposure_min_us, min(limits.exposure_max_us, max_exposure_us)
    rig.stop()
    rig.wl.set_exposure_gain(wl_exposure_us, wl_gain_db)
    exposure = float(np.clip(wl_exposure_us * nd_factor * 10 ** ((wl_gain_db - ll_gain_db) / 20), lo, hi))
    ratio = 0.0
    for rounds in range(1, MAX_ROUNDS + 1):
        exposure, _ = rig.ll.set_exposure_gain(exposure, ll_gain_db)
        frames = _grab_pair(rig, sync, retrieve_timeout_ms(max(exposure, wl_exposure_us), rig.config.retrieve_timeout_ms))
        ll_level, wl_level = (frame_level_dn(frames[r], rig.formats[r]) for r in ("ll", "wl"))
        ratio = ll_level / wl_level if wl_level > 0 else 0.0
        if abs(ratio - 1.0) <= TOLERANCE:
            return Metering(exposure, ratio, rounds, at_limit=False)
        wanted = exposure / ratio if ratio > 0 else hi
        if (wanted >= hi and exposure >= hi) or (wanted <= lo and exposure <= lo):
            return Metering(exposure, ratio, rounds, at_limit=True)
        exposure = float(np.clip(wanted, lo, hi))
    return Metering(exposure, ratio, MAX_ROUNDS, at_limit=False)
