"""rig.stream.CameraStream: one camera's frame numbering, stale frames, realignment and silence, no cameras."""

from __future__ import annotations

import numpy as np

from rig.device import Frame
from rig.stream import CameraStream, Silence


def frame(block_id: int) -> Frame:
    return Frame(block_id, True, "", np.zeros((2, 2), np.uint16), -1, 0)


def test_frames_are_numbered_from_the_first_block_id() -> None:
    s = CameraStream("ll")
    assert s.newest == -1 and s.take(0) is None
    assert s.accept(frame(41), 1.0, decided=-1) and s.accept(frame(43), 1.1, decided=-1)
    assert (s.first_block_id, s.raw_first_block_id, s.newest, sorted(s.pending)) == (41, 41, 2, [0, 2])
    assert s.take(0).block_id == 41 and s.take(1) is None and s.take(2).block_id == 43
    assert s.last_arrival_s == 1.1


def test_a_frame_of_an_index_already_decided_is_stale() -> None:
    s = CameraStream("wl")
    s.accept(frame(0), 0.0, decided=-1)
    assert not s.accept(frame(0), 0.1, decided=0)
    assert s.pending == {0: s.pending[0]} and s.newest == 0


def test_shift_moves_a_camera_that_missed_edges() -> None:
    s = CameraStream("wl")
    for b in (10, 11, 12, 13):
        s.accept(frame(b), 0.0, decided=-1)
    taken = s.take(2)  # block 12 turned out to be the frame of edge 4: the camera missed 2 edges
    s.shift(2, 2, taken)
    assert s.first_block_id == 8 and s.raw_first_block_id == 10
    assert {i: f.block_id for i, f in s.pending.items()} == {2: 10, 3: 11, 4: 12, 5: 13} and s.newest == 5
    assert s.frames_since_arming(taken) == 2
    # Later frames land at their edges.
    s.accept(frame(14), 0.5, decided=5)
    assert s.newest == 6 and s.pending[6].block_id == 14


def test_silence_grace_then_one_stall_then_give_up() -> None:
    s = CameraStream("ll")
    assert s.silence(now_s=1.0, armed_s=0.0, stall_s=0.5, grace_s=2.0, max_stalls=3) == Silence(silent_s=1.0)
    assert s.silence(now_s=2.5, armed_s=0.0, stall_s=0.5, grace_s=2.0, max_stalls=3).no_first_frame
    s.accept(frame(0), 3.0, decided=-1)
    assert s.silence(3.25, 0.0, 0.5, 2.0, 3) == Silence(silent_s=0.25)
    first = s.silence(3.75, 0.0, 0.5, 2.0, 3)
    assert first.new_stall and not first.give_up
    assert s.silence(3.875, 0.0, 0.5, 2.0, 3) == Silence(silent_s=0.875)  # still within the second timeout
    second = s.silence(4.25, 0.0, 0.5, 2.0, 3)
    assert not second.new_stall and not second.give_up
    assert s.silence(4.75, 0.0, 0.5, 2.0, 3).give_up
    s.accept(frame(1), 4.875, decided=-1)
    assert s.silent_timeouts == 0
