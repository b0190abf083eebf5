"""The core's feeds format: what the simulator writes and the rig reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from exlpose_data.errors import InputError
from exlpose_data.feeds_format import FEEDS_FILE, feed_folder, msb_align, read_feeds


def test_msb_align_puts_the_top_raw_bit_at_bit_15() -> None:
    raw = np.array([[0, 1, 240, 4095]], dtype=np.int32)
    out = msb_align(raw, 12)
    assert out.dtype == np.uint16
    assert out.tolist() == [[0, 16, 3840, 65520]]
    assert msb_align(np.array([[255]]), 8).tolist() == [[65280]]


def test_feed_folder_layout_and_roles(tmp_path) -> None:
    assert feed_folder(tmp_path, "0101_vid000001", "2", "ll") == tmp_path / "0101_vid000001" / "2" / "ll"
    assert feed_folder("", "s", "reference", "wl").as_posix() == "s/reference/wl"
    with pytest.raises(ValueError, match="feed role 'LL'"):
        feed_folder(tmp_path, "s", "1", "LL")


def test_read_feeds_absent_hand_made_and_invalid(tmp_path) -> None:
    assert read_feeds(tmp_path) is None
    (tmp_path / FEEDS_FILE).write_text(json.dumps({"black_level_dn": 240}))
    assert read_feeds(tmp_path) is None  # hand-made feeds: no scenes listed
    (tmp_path / FEEDS_FILE).write_text(json.dumps({"scenes": [], "black_level_dn": 240}))
    with pytest.raises(InputError, match=r"feeds\.json: seed: Field required"):
        read_feeds(tmp_path)
    (tmp_path / FEEDS_FILE).write_text(json.dumps({"scenes": [], "black_level_dn": 240, "seed": 4}))
    doc = read_feeds(tmp_path)
    assert doc is not None and doc.seed == 4 and doc.bit_shift == 4 and doc.scenes == []
