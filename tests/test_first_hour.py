"""A new user's first hour (issue 22): messages that say the way forward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exlpose_data.errors import InputError
from exlpose_data.evaluation.predictions import validate_predictions
from exlpose_data.release import open_release

from .conftest import make_release


def test_a_missing_gain_split_names_the_command_that_makes_it(tmp_path: Path, official_ll_all: dict) -> None:
    root = tmp_path / "DS"
    doc = make_release(root, official_ll_all, 6)
    ann = root / "annotations"
    ann.mkdir()
    for name in ("ExLPose_test_LL.json", "ExLPose_test_WL.json"):  # what by-scene leaves
        (ann / name).write_text(json.dumps(doc))
    with pytest.raises(InputError) as err:
        open_release(root).annotation_file("test_LL-N")
    message = str(err.value)
    assert "no annotation file for 'test_LL-N'" in message
    assert (f"'exlpose-split by-gain {ann / 'ExLPose_test_LL.json'} --out {ann} --prefix ExLPose_test --pairs {root}' "
            "writes the test LL-N/H/E/A files") in message
    with pytest.raises(InputError) as err:  # nothing to point at: no hint
        open_release(root).annotation_file("train_WL")
    assert "by-gain" not in str(err.value)


def test_predict_output_fed_to_the_evaluator_says_what_it_is() -> None:
    record = {"image": "night/IMG_1.png", "bbox": [0, 0, 10, 20], "keypoints": [0.0] * 42, "score": 0.9}
    with pytest.raises(InputError) as err:
        validate_predictions([record], {1}, source="predictions/keypoints.json")
    message = str(err.value)
    assert message.startswith("predictions/keypoints.json: result 0: names its image by path ('image'), as exlpose-predict's keypoints.json does")
    assert "'image_id'" in message and "exlpose-eval model" in message
    with pytest.raises(InputError, match=r"missing field 'score' \(COCO keypoint results: image_id, category_id, keypoints, score\)"):
        validate_predictions([{"image_id": 1, "keypoints": [0.0] * 42}], {1})


REPO = Path(__file__).resolve().parents[1]


def test_readme_says_which_torch_each_machine_installs() -> None:
    readme = (REPO / "README.md").read_text()
    assert 'pip install torch==2.13.0 && pip install -e ".[all,dev]"' in readme  # the CPU-only (and CI) line
    assert "On a CUDA machine" in readme and "--index-url https://download.pytorch.org/whl/cu" in readme


def test_the_main_jobs_default_outputs_are_not_left_untracked() -> None:
    import subprocess

    for path in ("demo-run/report.html", "runs/exlpose/checkpoint.pth", "predictions/keypoints.json"):
        res = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert res.returncode == 0, f"{path} is not ignored"


@pytest.mark.slow
def test_a_simulated_release_the_authors_loaders_can_read_is_one_option_away(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from exlpose.cli import app

    runner = CliRunner()
    common = ["--scenes", "2", "--size", "160x100", "--frames", "1", "--quiet", "--workers", "1"]
    assert runner.invoke(app, ["simulate", "release", "--out", str(tmp_path / "sim"), *common]).exit_code == 0
    res = runner.invoke(app, ["export", "official", str(tmp_path / "sim"), "--out", str(tmp_path / "exp")])
    assert res.exit_code == 2 and "a simulated release: exlpose simulate release --site ''" in res.output
    assert runner.invoke(app, ["simulate", "release", "--out", str(tmp_path / "plain"), "--site", "", *common]).exit_code == 0
    assert all("_sim_" not in p.name for p in (tmp_path / "plain" / "bright").iterdir())
    res = runner.invoke(app, ["export", "official", str(tmp_path / "plain"), "--out", str(tmp_path / "exp")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "exp" / "Annotations" / "ExLPose" / "ExLPose_test_LL-All_trans.json").is_file()
