"""One camera's frames on their way to pairs, when frames come on their own (hardware trigger, free run).

Both cameras are armed before the first edge, so frame ``i`` of each camera (block ID minus its first) belongs
to edge ``i``. A :class:`CameraStream` holds that numbering for one camera: the frames not yet paired, the newest
index seen, the first block ID (moved when the camera turns out to have missed edges), and when it was last heard
from. The recorder decides pairs from two of them; this module knows nothing of cameras or files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .device import Frame

__all__ = ["CameraStream", "Silence"]


@dataclass(frozen=True)
class Silence:
    """What a camera's silence amounts to now (see :meth:`CameraStream.silence`)."""

    no_first_frame: bool = False  # nothing since arming, beyond the grace period
    new_stall: bool = False  # a stall timeout just passed (counted once per silence)
    give_up: bool = False  # ``max_stalls`` stall timeouts in a row
    silent_s: float = 0.0


@dataclass
class CameraStream:
    """The frames of one camera by frame index (edge number), until paired.

    Attributes:
        role: ``ll`` or ``wl``.
        first_block_id: block ID of frame index 0; lowered when the camera is found to have missed edges.
        raw_first_block_id: the first block ID seen, never moved (counts frames since arming).
        pending: frames received and not yet decided, by index.
        newest: the highest index received (-1 before the first frame).
        last_arrival_s: monotonic time of the last frame, None before the first.
        silent_timeouts: stall timeouts passed since the last frame.
    """

    role: str
    first_block_id: int | None = None
    raw_first_block_id: int | None = None
    pending: dict[int, Frame] = field(default_factory=dict)
    newest: int = -1
    last_arrival_s: float | None = None
    silent_timeouts: int = 0

    def accept(self, frame: Frame, now_s: float, decided: int) -> bool:
        """Take a frame that arrived at ``now_s``; False when its index was already decided (a stale frame)."""
        self.last_arrival_s = now_s
        self.silent_timeouts = 0
        if self.first_block_id is None:
            self.first_block_id = self.raw_first_block_id = frame.block_id
        idx = frame.block_id - self.first_block_id
        if idx <= decided:
            return False
        self.pending[idx] = frame
        self.newest = max(self.newest, idx)
        return True

    def take(self, idx: int) -> Frame | None:
        """The frame of index ``idx`` (removed), None when it never came."""
        return self.pending.pop(idx, None)

    def frames_since_arming(self, frame: Frame) -> int:
        """How many frames the camera delivered before ``frame`` since grabbing started."""
        return frame.block_id - (self.raw_first_block_id or 0)

    def shift(self, missed: int, idx: int, frame: Frame) -> None:
        """The camera missed ``missed`` edges before ``frame`` (taken as index ``idx``): move it and every later
        frame ``missed`` indexes on, so each sits at the edge it belongs to."""
        assert self.first_block_id is not None
        self.first_block_id -= missed
        self.pending = {i + missed: f for i, f in self.pending.items()}
        self.pending[idx + missed] = frame
        self.newest += missed

    def silence(self, now_s: float, armed_s: float, stall_s: float, grace_s: float, max_stalls: int) -> Silence:
        """Judge a retrieve that brought nothing: a stall per ``stall_s`` of silence, give up after ``max_stalls``."""
        if self.last_arrival_s is None:
            return Silence(no_first_frame=now_s - armed_s > grace_s, silent_s=now_s - armed_s)
        silent = now_s - self.last_arrival_s
        if silent <= stall_s * (self.silent_timeouts + 1):
            return Silence(silent_s=silent)
        self.silent_timeouts += 1
        return Silence(new_stall=self.silent_timeouts == 1, give_up=self.silent_timeouts >= max_stalls, silent_s=silent)
