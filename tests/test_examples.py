"""The runnable examples run."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the examples as subprocesses, one trains

ROOT = Path(__file__).resolve().parents[1]


def test_evaluate_predictions_example_scores_ground_truth():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "evaluate_predictions.py")], capture_output=True, text=True, check=True).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("LL-")}
    assert rows["LL-A"][1] == "491" and rows["LL-N"][1] == "167"
    assert rows["LL-A"][2] == "0.985"  # maxDets 20 and two images with 21 and 22 people


def test_capture_example_runs_on_the_emulator(tmp_path):
    out = tmp_path / "demo.h5"
    subprocess.run([sys.executable, str(ROOT / "examples" / "capture_real_rig.py"), "--emulate", "--scene", "demo", "--frames", "2",
                    "--out", str(out)], capture_output=True, text=True, check=True)
    from exlpose_data.session_format import SessionReader

    with SessionReader(out) as r:
        assert r.references() == ["setup"]
        assert r.steps("demo") == ["1", "2", "4", "8", "12"]
        assert all(len(r.frames_table("demo", k)) == 2 for k in r.steps("demo"))


def test_training_example_smoke_run(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "train_on_official_release.py"), "--simulate", "2", "--out", str(tmp_path)],
                         capture_output=True, text=True, check=True)
    assert "'epoch': 1" in res.stdout and "AP/LL-A" in res.stdout
    assert (tmp_path / "run" / "checkpoint.pth").is_file()
