"""The runnable examples run."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_evaluate_predictions_example_scores_ground_truth():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "evaluate_predictions.py")], capture_output=True, text=True, check=True).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("LL-")}
    assert rows["LL-A"][1] == "491" and rows["LL-N"][1] == "167"
    assert rows["LL-A"][2] == "0.985"  # maxDets 20 and two images with 21 and 22 people
