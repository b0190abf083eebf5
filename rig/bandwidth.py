"""The USB link budget: bytes per frame of a pixel format, the frame rate a link limit carries, refusals.

A dart limits its own USB throughput (``DeviceLinkThroughputLimit``, 160,000,000 B/s on a camera in the field):
BayerRG12 at 1920x1200 (2 B/px) then tops out near 34.7 fps, BayerRG12p (1.5 B/px) near 46.3 fps, BayerRG8 near
69.4 fps (protocol overhead not counted). Plans above what the link carries are refused before recording.
"""

from __future__ import annotations

from dataclasses import dataclass

from exlpose_data.errors import UsageError

from .cameras import FrameFormat

__all__ = ["LinkBudget", "bytes_per_pixel", "link_budget", "check_link"]

MB = 1e6  # link limits are decimal (B/s), as the camera states them


def bytes_per_pixel(fmt: FrameFormat) -> float:
    """Bytes one pixel takes on the link: 8-bit 1 per channel, 10/12-bit 2, packed 12-bit 1.5."""
    per_channel = 1.0 if fmt.bit_depth <= 8 else (fmt.bit_depth / 8.0 if fmt.packed else 2.0)
    return per_channel * fmt.channels


@dataclass(frozen=True)
class LinkBudget:
    """What one camera's stream needs at a frame rate, and what its link limit carries."""

    frame_bytes: int
    needed_bytes_per_s: float
    limit_bytes_per_s: float | None
    max_fps: float | None

    def describe(self, fmt: FrameFormat, fps: float) -> str:
        limit = "no limit set" if self.limit_bytes_per_s is None else f"limit {self.limit_bytes_per_s / MB:.1f} MB/s carries at most {self.max_fps:.1f} fps"
        return f"{fmt.pixel_format} {fmt.width}x{fmt.height} at {fps:g} fps needs {self.needed_bytes_per_s / MB:.1f} MB/s; {limit}"


def link_budget(fmt: FrameFormat, fps: float, limit_bytes_per_s: float | None) -> LinkBudget:
    """The link budget of one camera's stream."""
    frame_bytes = int(round(fmt.width * fmt.height * bytes_per_pixel(fmt)))
    max_fps = limit_bytes_per_s / frame_bytes if limit_bytes_per_s else None
    return LinkBudget(frame_bytes, frame_bytes * fps, limit_bytes_per_s, max_fps)


def check_link(name: str, fmt: FrameFormat, fps: float, limit_bytes_per_s: float | None) -> LinkBudget:
    """Refuse a frame rate the camera's link limit cannot carry; the message gives the highest rate it can.

    Raises:
        UsageError: ``fps`` needs more than ``limit_bytes_per_s``.
    """
    budget = link_budget(fmt, fps, limit_bytes_per_s)
    if budget.max_fps is not None and fps > budget.max_fps:
        hint = " (BayerRG12p carries 4/3 as many frames as BayerRG12)" if fmt.bit_depth > 8 and not fmt.packed else ""
        raise UsageError(
            f"camera {name}: {budget.describe(fmt, fps)}; lower frame_rate_hz/--fps to {budget.max_fps:.1f} or less, "
            f"or raise link_limit_bytes_per_s{hint}"
        )
    return budget
