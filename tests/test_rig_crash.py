"""SIGKILL during recording: the session file opens with h5py's defaults and every flushed pair is intact.

A subprocess records on the emulated cameras (feeds encode the frame number, so a torn or mis-paired frame is
visible) and prints the rows of each step after every flush; the test kills it with SIGKILL at random moments.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from exlpose_data.session_format import SessionReader

pytestmark = [pytest.mark.timeout(300, method="thread"), pytest.mark.slow]  # kills emulator recordings in subprocesses

KILLS = 20
W, H, N_FEED = 160, 120, 5
# Short steps, so that kills also land while a step's datasets are being created.
KS, FRAMES = (1, 2, 4, 8, 12), 20

RECORDER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    from rig import emulate
    from rig.capture import CaptureSession, SceneSpec
    from rig.config import emulated_config

    feeds, out = Path(sys.argv[1]), Path(sys.argv[2])
    KS, FRAMES = %(KS)r, %(FRAMES)d
    emulate.enable(2)
    cfg = emulated_config(roi={"width": %(W)d, "height": %(H)d}, frame_rate_hz=400.0, flush_interval_s=0.05)

    def flushed(rows):
        print(json.dumps(rows), flush=True)

    with CaptureSession(cfg, out, emulated=True, on_flush=flushed) as session:
        plan = session.plan(base_exposure_us=2000, base_gain_db=0.0, ks=list(KS), frames=FRAMES)
        session.record_scene(SceneSpec("s", "1125", "", 1, plan, 400.0, feeds))
    """
) % {"W": W, "H": H, "KS": KS, "FRAMES": FRAMES}


def make_feeds(root: Path) -> Path:
    from rig import emulate

    yy, xx = np.mgrid[0:H, 0:W]
    for k in KS:
        for i in range(N_FEED):
            # A gradient plus the frame number: a torn frame (half old, half new) fails the check too.
            ll = (xx + yy + 10 * i + 100 * k).astype(np.uint16)
            emulate.write_raw_png(root / "s" / str(k) / "ll" / f"{i:06d}.png", ll)
            emulate.write_raw_png(root / "s" / str(k) / "wl" / f"{i:06d}.png", ll + 1000)
    return root


def check_file(path: Path, flushed: dict[str, int]) -> int:
    yy, xx = np.mgrid[0:H, 0:W]
    with h5py.File(path, "r"):  # h5py's defaults: what any user will try first
        pass
    total = 0
    with SessionReader(path) as r:
        for group, rows in flushed.items():
            step = group.rsplit("/", 1)[-1]
            table = r.frames_table("s", step)
            assert len(table) >= rows, f"{group}: {len(table)} pairs after the kill, {rows} were flushed"
            k = int(step)
            for i, row in enumerate(table):
                ll, wl = r.pair("s", step, i)
                expect = (xx + yy + 10 * (row["ll_block_id"] % N_FEED) + 100 * k).astype(np.uint16)
                assert np.array_equal(ll, expect), f"{group} pair {i}: LL frame damaged"
                assert np.array_equal(wl, expect + 1000), f"{group} pair {i}: WL frame damaged or mis-paired"
                assert row["ll_block_id"] == row["wl_block_id"]
            total += len(table)
    return total


def test_sigkill_at_random_moments_keeps_flushed_pairs(tmp_path: Path) -> None:
    feeds = make_feeds(tmp_path / "feeds")
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    rng = random.Random(4)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    checked = 0
    for n in range(KILLS):
        out = tmp_path / f"kill{n}.h5"
        proc = subprocess.Popen([sys.executable, str(script), str(feeds), str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first flush: recording is under way
        assert first, proc.stderr.read() if proc.stderr else "recorder ended early"
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate()
        assert proc.returncode in (-signal.SIGKILL, 0)  # 0: it finished before the kill
        lines = [first, *rest.splitlines()]
        flushed: dict[str, int] = {}
        for line in lines:
            line = line.strip()
            if line.startswith("{") and line.endswith("}"):
                flushed = json.loads(line)
        checked += check_file(out, flushed)
    assert checked > KILLS  # pairs were really recorded and checked
