"""Nothing a user already has is lost or mixed, in the baselines' commands: --device checked before torch uses it,
--resume applies a changed optimiser setting, run folders and result folders never replace inputs or mix runs,
config files go through the strict loader, non-finite numbers are refused naming their option."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from baselines.checkpoint import load_checkpoint
from baselines.cli import eval_app, predict_app, train_app
from baselines.enhance.cli import app as enhance_app
from exlpose_data.errors import UsageError
from exlpose_data.provenance import RECORD_FILE, read_record

from .test_baselines_train import SMALL, make_tiny_release, one_torch_thread  # noqa: F401 (autouse fixture)
from .test_comparisons import make_checkpoint

TINY_RUN = [*SMALL, "--steps-per-epoch", "1", "--val-splits", "", "--variant", "baseline-low", "--workers", "0"]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_release(tmp_path_factory.mktemp("release"))


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --device


@pytest.mark.parametrize("device", ["tpu", "", "cuda:x", "gpu0"])
def test_unknown_device_is_refused_in_one_line_before_anything_is_written(release, tmp_path, device):
    before = _listing(release)
    r = CliRunner().invoke(train_app, ["--dataset", str(release), "--output-dir", str(tmp_path / "run"), *TINY_RUN, "--device", device])
    assert r.exit_code == 2, r.output
    assert r.output == f"error: --device {device!r}: expected cpu, cuda or cuda:N (cuda:N numbers the GPUs from 0)\n"
    assert not (tmp_path / "run").exists() and _listing(release) == before
    r = CliRunner().invoke(predict_app, [str(tmp_path / "none.pth"), str(tmp_path / "none.png"), "--out", str(tmp_path / "p"), "--device", device])
    assert r.exit_code == 2 and r.output.startswith(f"error: --device {device!r}: expected cpu, cuda or cuda:N")
    r = CliRunner().invoke(eval_app, ["model", str(tmp_path / "none.pth"), "--dataset", str(release), "--device", device])
    assert r.exit_code == 2 and r.output.startswith(f"error: --device {device!r}: expected cpu, cuda or cuda:N")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_and_mps_without_them_are_refused_naming_the_option(release, tmp_path):
    from baselines.options import check_device

    r = CliRunner().invoke(train_app, ["--dataset", str(release), "--output-dir", str(tmp_path / "run"), *TINY_RUN, "--device", "cuda:0"])
    assert r.exit_code == 2 and r.output.startswith("error: --device 'cuda:0': CUDA is not available on this machine")
    assert len(r.output.splitlines()) == 1 and not (tmp_path / "run").exists()
    if not torch.backends.mps.is_available():
        with pytest.raises(UsageError, match=r"^--device 'mps': torch's Metal backend is not available on this machine"):
            check_device("mps")
    assert check_device("cpu") == "cpu"


# config files and numbers


@pytest.mark.parametrize(("name", "text", "where"), [
    ("run.yaml", "variant: baseline-low\nlr: 0.001\nlr: 0.1\n", "run.yaml: line 3 column 1: key 'lr' given more than once"),
    ("run.json", '{"variant": "baseline-low", "lr": 0.001, "lr": 0.1}', "run.json"),
])
def test_duplicate_key_in_a_config_file_is_refused_with_its_place(release, tmp_path, name, text, where):
    (tmp_path / name).write_text(text)
    r = CliRunner().invoke(train_app, ["--config", str(tmp_path / name), "--dataset", str(release), "--output-dir", str(tmp_path / "run"), *SMALL])
    assert r.exit_code == 2 and where in r.output and "'lr'" in r.output, r.output
    assert len(r.output.splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize(("option", "value"), [("--lr", "nan"), ("--lr", "inf"), ("--lupi-weight", "-inf")])
def test_non_finite_numbers_are_refused_naming_the_option(release, tmp_path, capsys, option, value):
    # Called as the console scripts call them (CliRunner goes around the apps' one-line usage errors).
    with pytest.raises(SystemExit) as exc:
        train_app(["--dataset", str(release), "--output-dir", str(tmp_path / "run"), *SMALL, option, value], prog_name="exlpose-train")
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith(f"error: {option} {value}: expected a finite number (see "), err
    assert len(err.splitlines()) == 1 and not (tmp_path / "run").exists()
    with pytest.raises(SystemExit) as exc:
        enhance_app(["lime", str(tmp_path / "x.png"), "--out", str(tmp_path / "e"), "--gamma", value], prog_name="exlpose enhance")
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith(f"error: --gamma {value}: expected a finite number (see "), err


# train's run folder


def test_run_folder_never_is_or_sits_inside_the_dataset(release, tmp_path):
    before = _listing(release)
    r = CliRunner().invoke(train_app, ["--dataset", str(release), "--output-dir", str(release), *TINY_RUN])
    assert r.exit_code == 2 and "is also an input of this command" in r.output, r.output
    r = CliRunner().invoke(train_app, ["--dataset", str(release), "--out", str(release / "runs" / "a"), *TINY_RUN])
    assert r.exit_code == 2 and f"lies inside the input {release}" in r.output, r.output
    assert _listing(release) == before  # no checkpoint, no record, no tensorboard folder in the release
    other = make_tiny_release(tmp_path / "other", n_images=1)
    (other / "manifest.json").write_text('{"version": 1, "files": {}}')
    r = CliRunner().invoke(train_app, ["--dataset", str(release), "--output-dir", str(other), *TINY_RUN])
    assert r.exit_code == 2 and "already holds a release" in r.output, r.output


@pytest.mark.slow
def test_resume_applies_a_new_lr_and_refuses_another_run_in_the_folder(release, tmp_path):
    run = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text("variant: baseline-low\nworkers: 0\n")
    r = CliRunner().invoke(train_app, ["--config", str(config), "--dataset", str(release), "--output-dir", str(run), *TINY_RUN, "--epochs", "1"])
    assert r.exit_code == 0, r.output
    record = read_record(run)["steps"]["train"]
    assert record["command"] == "exlpose-train" and record["state"] == "complete" and record["settings"]["lr"] == 5e-4
    assert set(record["inputs"]) == {"dataset", "train_ann", "config"}
    assert len(record["inputs"]["config"]["sha256"]) == 64 and len(record["inputs"]["train_ann"]["sha256"]) == 64
    assert {"checkpoint.pth", "metrics.json"} <= set(record["files"])

    # The same command again would train a second run over the first: refused, naming --resume and --overwrite.
    r = CliRunner().invoke(train_app, ["--dataset", str(release), "--output-dir", str(run), *TINY_RUN, "--epochs", "1"])
    assert r.exit_code == 2 and "already holds a training run; pass --resume" in r.output and "--overwrite" in r.output
    # A resumed run keeps what the run is: another crop size is refused, naming it.
    ckpt = run / "checkpoint.pth"
    r = CliRunner().invoke(train_app, ["--resume", str(ckpt), "--epochs", "2", "--input-size", "96x72", "--no-progress"])
    assert r.exit_code == 2 and "input_size [64, 48] -> [96, 72]" in r.output, r.output
    assert load_checkpoint(ckpt)["epoch"] == 1

    r = CliRunner().invoke(train_app, ["--resume", str(ckpt), "--epochs", "2", "--lr", "0.1", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "checkpoint.pth: applied to the restored optimiser and schedule: lr 0.0005 -> 0.1" in r.stderr
    saved = load_checkpoint(ckpt)
    assert saved["epoch"] == 2
    assert [g["lr"] for g in saved["optimizer"]["param_groups"]] == [0.1, 0.1]
    assert [g["weight_decay"] for g in saved["optimizer"]["param_groups"]] == [1e-5, 0.0]
    assert saved["scheduler"]["base_lrs"] == [0.1, 0.1] and saved["config"]["lr"] == 0.1
    history = json.loads((run / "metrics.json").read_text())
    assert [h["lr"] for h in history] == [5e-4, 0.1]
    record = read_record(run)["steps"]["train"]
    assert record["state"] == "complete" and record["settings"]["lr"] == 0.1 and record["settings"]["epochs"] == 2

    # --overwrite trains a new run beside the old one and swaps it in: nothing of the old run is left.
    r = CliRunner().invoke(train_app, ["--dataset", str(release), "--output-dir", str(run), *TINY_RUN, "--epochs", "1",
                                       "--variant", "baseline-well", "--overwrite"])
    assert r.exit_code == 0, r.output
    saved = load_checkpoint(ckpt)
    assert saved["epoch"] == 1 and saved["config"]["variant"] == "baseline-well" and saved["config"]["output_dir"] == str(run)
    assert len(json.loads((run / "metrics.json").read_text())) == 1
    assert read_record(run)["steps"]["train"]["settings"]["variant"] == "baseline-well"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.yaml"]  # no building or replaced sibling left


# result folders: enhance, predict, eval


def _image(path: Path, value: int) -> Path:
    img = np.zeros((4, 5, 3), np.uint8)
    img[:] = (value, 2 * value, 3 * value)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


def test_enhance_folder_refuses_other_settings_and_overwrite_leaves_only_the_new_run(tmp_path):
    a, b = _image(tmp_path / "in" / "a.png", 10), _image(tmp_path / "in" / "b.png", 20)
    out = tmp_path / "out"
    runner = CliRunner()
    r = runner.invoke(enhance_app, ["lime", "--workers", "1", str(a), str(b), "--out", str(out)])
    assert r.exit_code == 0, r.output
    first = (out / "a.png").read_bytes()
    assert read_record(out)["steps"]["exlpose enhance"]["settings"]["enhancer"]["gamma"] == 0.8

    r = runner.invoke(enhance_app, ["lime", "--workers", "1", str(a), "--out", str(out), "--gamma", "0.5"])
    assert r.exit_code == 2 and "with other settings or inputs" in r.output and "pass --overwrite" in r.output, r.output
    assert (out / "a.png").read_bytes() == first and (out / "b.png").exists()

    r = runner.invoke(enhance_app, ["lime", "--workers", "1", str(a), "--out", str(out), "--gamma", "0.5", "--overwrite"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == [RECORD_FILE, "a.png"]  # b.png belonged to the old settings
    assert (out / "a.png").read_bytes() != first
    step = read_record(out)["steps"]["exlpose enhance"]
    assert step["settings"]["enhancer"]["gamma"] == 0.5 and step["files"] == ["a.png"] and step["state"] == "complete"
    r = runner.invoke(enhance_app, ["lime", "--workers", "1", str(a), "--out", str(out), "--gamma", "0.8", "--force"])  # the old name
    assert r.exit_code == 0 and read_record(out)["steps"]["exlpose enhance"]["settings"]["enhancer"]["gamma"] == 0.8


def test_enhance_never_writes_into_its_input_folder(tmp_path):
    a = _image(tmp_path / "in" / "a.png", 10)
    original = a.read_bytes()
    for extra in ([], ["--force"], ["--overwrite"]):
        r = CliRunner().invoke(enhance_app, ["lime", str(tmp_path / "in"), "--out", str(tmp_path / "in"), *extra])
        assert r.exit_code == 2 and "is also an input of this command" in r.output, r.output
    assert a.read_bytes() == original and sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.png"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    r = CliRunner().invoke(enhance_app, ["lime", str(a), "--out", str(tmp_path / "mine"), "--overwrite"])
    assert r.exit_code == 2 and "already holds a folder, not an enhanced-image folder" in r.output, r.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_predict_and_eval_outputs_refuse_foreign_folders_and_inputs(release, tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt" / "checkpoint.pth", "baseline-low")
    dark = sorted((release / "dark").rglob("*.png"))[0]
    images = tmp_path / "photos"
    images.mkdir()
    photo = images / "p.png"
    photo.write_bytes(dark.read_bytes())
    r = CliRunner().invoke(predict_app, [str(ckpt), str(photo), "--out", str(images)])
    assert r.exit_code == 2 and "already holds a folder, not a prediction folder" in r.output, r.output
    assert sorted(p.name for p in images.iterdir()) == ["p.png"]
    r = CliRunner().invoke(predict_app, [str(ckpt), str(photo), "--out", str(tmp_path / "pred"), "--no-overlays"])
    assert r.exit_code == 0, r.output
    assert read_record(tmp_path / "pred")["steps"]["exlpose-predict"]["files"] == ["keypoints.json", "settings.json"]
    r = CliRunner().invoke(predict_app, [str(ckpt), str(photo), "--out", str(tmp_path / "pred"), "--condition", "WL", "--no-overlays"])
    assert r.exit_code == 2 and "condition LL -> WL" in r.output, r.output
    r = CliRunner().invoke(eval_app, ["model", str(ckpt), "--dataset", str(release), "--splits", "WL", "--save-predictions", str(release)])
    assert r.exit_code == 2 and "--save-predictions" in r.output and "is also an input" in r.output, r.output


def test_enhancement_cache_never_lies_in_the_images_it_enhances(release, tmp_path):
    before = _listing(release)
    args = ["--dataset", str(release), "--out", str(tmp_path / "run"), *SMALL, "--steps-per-epoch", "1", "--val-splits", "",
            "--variant", "lime-baseline-all", "--workers", "0"]
    r = CliRunner().invoke(train_app, [*args, "--enhance-cache", str(release / "dark" / "enhanced")])
    assert r.exit_code == 2 and f"--enhance-cache {release / 'dark' / 'enhanced'}: lies inside the input" in r.output, r.output
    assert _listing(release) == before and not (tmp_path / "run").exists()
