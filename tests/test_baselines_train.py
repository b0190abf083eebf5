"""The reference trainer on a tiny synthetic release: loss goes down, checkpoints round-trip, resume is exact."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from baselines.checkpoint import load_checkpoint, save_checkpoint
from baselines.cli import train_app
from baselines.config import VARIANTS, TrainConfig, load_config, make_config
from baselines.engine import PairModel, compute_losses, train_one_epoch
from baselines.models import build_cpn
from baselines.train import build_optimizer, resume_config
from exlpose_data.datasets import ExLPoseTopDown
from exlpose_data.errors import InputError
from exlpose_data.keypoints import crowdpose14
from exlpose_data.layout import write_pairs
from exlpose_data.naming import ImageName

K = crowdpose14().num_keypoints
W, H = 160, 120
BOXES = [(20.0, 15.0, 40.0, 90.0), (95.0, 10.0, 45.0, 100.0)]
SMALL = ["--backbone", "resnet18", "--input-size", "64x48", "--heatmap-size", "16x12", "--batch-size", "2", "--no-progress", "--from-scratch"]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models on tiny inputs run faster on one intra-op thread than on two contending ones (measured 4x on
    the shared 2-core runner); the process-wide setting is restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_tiny_release(root: Path, n_images: int = 3) -> Path:
    """Release layout under ``root``: textured WL images with a white dot on every joint, LL = WL / 40,
    ``brightPath2darkPath.txt`` and ``annotations/ExLPose_{train_LL,test_LL-A,test_WL}.json``."""
    rng = np.random.default_rng(0)
    images, anns, pairs = [], [], []
    for i in range(n_images):
        bright = ImageName(date="0212", site="park", video=5, ratio=400, frame=10 + i, gain_db=6.0 + 10 * i, exposure_us=1250, condition="WL")
        dark = bright.twin()
        wl = cv2.GaussianBlur(rng.integers(0, 160, (H, W, 3), dtype=np.uint8), (5, 5), 0)
        for box in BOXES:
            x, y, w, h = box
            kp = np.zeros((K, 3))
            kp[:, 0] = x + rng.uniform(0.1, 0.9, K) * w
            kp[:, 1] = y + rng.uniform(0.1, 0.9, K) * h
            kp[:, 2] = 2
            for px, py, _ in kp:
                cv2.circle(wl, (int(round(px)), int(round(py))), 2, (255, 255, 255), -1)
            anns.append({"id": len(anns), "image_id": 1 + i, "category_id": 1, "keypoints": kp.ravel().round(2).tolist(),
                         "bbox": list(box), "num_keypoints": K, "iscrowd": 0})
        for name, img in ((bright, wl), (dark, (wl // 40).astype(np.uint8))):
            (root / name.relpath).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / name.relpath), img)
        images.append({"id": 1 + i, "file_name": bright.relpath, "width": W, "height": H, "crowdIndex": 0})
        pairs.append((bright.relpath, dark.relpath))
    write_pairs(root / "brightPath2darkPath.txt", pairs)
    doc = json.dumps({"images": images, "annotations": anns, "categories": [crowdpose14().coco_category()]})
    (root / "annotations").mkdir(exist_ok=True)
    for name in ("ExLPose_train_LL.json", "ExLPose_train_WL.json", "ExLPose_test_LL-A.json", "ExLPose_test_WL.json"):
        (root / "annotations" / name).write_text(doc)
    return root


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_release(tmp_path_factory.mktemp("release"))


def test_variants_and_config(tmp_path):
    assert set(VARIANTS) == {"baseline-low", "baseline-well", "baseline-all", "lupi", "lsbn", "lsbn-lupi", "lsbn-lupi-feat",
                             "lime-baseline-all", "dann", "advent", "lsbn-lupi-unpaired", "lsbn-lupi-uda"}
    cfg = TrainConfig()
    assert (cfg.variant, cfg.lr, cfg.weight_decay, cfg.epochs, cfg.batch_size, cfg.lr_milestones, cfg.lr_gamma) == (
        "lsbn-lupi", 5e-4, 1e-5, 32, 32, [6, 12, 18, 24, 30], 0.5)
    assert cfg.lupi_kind == "gram-reference"
    assert make_config({"variant": "lsbn-lupi-feat"}).lupi_kind == "feat"
    assert make_config({"variant": "lsbn"}).lupi_kind is None
    assert VARIANTS["baseline-low"].dataset_condition == "LL" and VARIANTS["lupi"].dataset_condition == "pair"
    path = tmp_path / "run.yaml"
    path.write_text("variant: lupi\nepochs: 3\ninput_size: [128, 96]\n")
    cfg = load_config(path, {"epochs": 5, "lr": None})
    assert (cfg.variant, cfg.epochs, cfg.input_size, cfg.lr) == ("lupi", 5, (128, 96), 5e-4)
    path.write_text("variant: lsbn-lupi-xyz\n")
    with pytest.raises(InputError, match=r"run.yaml: variant: Input should be"):
        load_config(path)
    path.write_text("epoch: 3\n")
    with pytest.raises(InputError, match=r"run.yaml: epoch: Extra inputs"):
        load_config(path)


def test_optimizer_skips_weight_decay_on_biases():
    net = build_cpn("resnet18", heatmap_size=(16, 12))
    opt, sched = build_optimizer(net, TrainConfig())
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 1e-5 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in net.named_parameters()}
    assert all(names[id(p)].endswith(".bias") for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(net.parameters()))
    lrs = []
    for _ in range(32):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[5] == 5e-4 and lrs[6] == 2.5e-4 and lrs[29] == 5e-4 / 16 and lrs[30] == 5e-4 / 32


@pytest.mark.slow
def test_training_steps_lower_the_loss(release):
    torch.manual_seed(0)
    cfg = make_config({"variant": "lsbn-lupi", "backbone": "resnet18", "input_size": (64, 48), "heatmap_size": (16, 12), "lr": 1e-2})
    ds = ExLPoseTopDown(release, release / "annotations" / "ExLPose_train_LL.json", condition="pair", input_size=(64, 48), heatmap_size=(16, 12))
    batch = next(iter(DataLoader(ds, batch_size=2, shuffle=False)))
    net = build_cpn("resnet18", lsbn=True, heatmap_size=(16, 12))
    model = PairModel(net).train()
    opt, _ = build_optimizer(net, cfg)
    history = []
    for _ in range(4):
        losses = compute_losses(model({"ll": batch["ll"], "wl": batch["wl"]}), batch, cfg)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    assert set(history[0]) == {"pose_ll", "pose_wl", "lupi", "total"}
    # Peak-255 targets against outputs that start near unit scale: the loss falls slowly but surely (~2 % here).
    assert history[-1]["total"] < 0.99 * history[0]["total"]
    assert all(h["total"] < history[0]["total"] for h in history[1:])
    assert history[-1]["pose_ll"] < history[0]["pose_ll"] and history[-1]["pose_wl"] < history[0]["pose_wl"]


def _train(release: Path, out: Path, *extra: str) -> dict:
    result = CliRunner().invoke(
        train_app,
        ["--dataset", str(release), "--output-dir", str(out), *SMALL, "--steps-per-epoch", "1", "--val-splits", "", *extra],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "1"])
def test_resume_continues_identically_and_checkpoints_load_weights_only(release, tmp_path, workers):
    # In-process (0) or one worker: the augmentation stream is seeded from (seed, epoch, rank) either way.
    args = ("--variant", "baseline-low", "--workers", workers)
    straight = _train(release, tmp_path / "a", *args, "--epochs", "2")
    _train(release, tmp_path / "b", *args, "--epochs", "1")
    # Only --epochs given: dataset, variant, sizes, workers, output folder... come from the checkpoint.
    result = CliRunner().invoke(train_app, ["--resume", str(tmp_path / "b" / "checkpoint.pth"), "--epochs", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert [l for l in result.stderr.splitlines() if not l.startswith("threads: ")] == ["warning: epochs: 1 in checkpoint.pth -> 2 (given explicitly)"]
    resumed = json.loads(result.stdout.strip().splitlines()[-1])
    assert resumed == straight  # the same losses and lr in the last epoch's record
    a = torch.load(tmp_path / "a" / "checkpoint.pth", weights_only=True)
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pth")
    assert a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(x, y) for x, y in zip(a["optimizer"]["state"][0].values(), b["optimizer"]["state"][0].values()))
    assert a["config"]["variant"] == "baseline-low" and a["scheduler"]["last_epoch"] == 2
    net = build_cpn("resnet18", heatmap_size=(16, 12))
    net.load_state_dict(a["model"])  # round trip into a fresh model
    assert torch.equal(net.backbone.conv1.weight, a["model"]["backbone.conv1.weight"])
    history = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2] and history[-1] == straight


def test_resume_config_is_the_checkpoints_with_explicit_changes_warned(tmp_path):
    saved = make_config({"variant": "baseline-low", "dataset": tmp_path / "data", "lr": 1e-3, "backbone": "resnet18", "epochs": 3})
    ckpt = save_checkpoint(tmp_path / "checkpoint.pth", model={}, config=saved.to_dict(), epoch=1)
    warnings: list[str] = []
    cfg = resume_config(ckpt, None, {"variant": None, "lr": None, "epochs": None}, warn=warnings.append)
    # the run continues where its checkpoint lies, not in the folder its config names (runs/exlpose); not a change to warn of
    assert cfg == saved.model_copy(update={"output_dir": tmp_path}) and warnings == []
    file = tmp_path / "more.yaml"
    file.write_text("epochs: 6\nlr: 0.001\n")  # lr equal to the checkpoint's: no warning
    cfg = resume_config(ckpt, file, {"lr": None, "seed": 7}, warn=warnings.append)
    assert (cfg.variant, cfg.dataset, cfg.backbone, cfg.lr, cfg.epochs, cfg.seed) == ("baseline-low", tmp_path / "data", "resnet18", 1e-3, 6, 7)
    assert warnings == [
        "epochs: 3 in checkpoint.pth -> 6 (given explicitly)",
        "seed: 0 in checkpoint.pth -> 7 (given explicitly)",
    ]
    with pytest.raises(InputError, match=r"^options: lr: Input should be greater than 0"):
        resume_config(ckpt, None, {"lr": -1.0})


@pytest.mark.slow
def test_lsbn_lupi_run_with_evaluation_then_test_only(release, tmp_path):
    record = _train(release, tmp_path / "r", "--variant", "lsbn-lupi", "--epochs", "1", "--workers", "0", "--deterministic", "--val-splits", "LL-A,WL")
    assert not torch.are_deterministic_algorithms_enabled()  # the global switch is restored after the run
    assert set(record) == {"epoch", "lr", "loss/pose_ll", "loss/pose_wl", "loss/lupi", "loss/total", "AP/LL-A", "AP/WL", "flip_test"}
    assert record["flip_test"] == "ours"
    assert 0.0 <= record["AP/LL-A"] <= 1.0 and 0.0 <= record["AP/WL"] <= 1.0
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoint.pth")
    assert any(".branches.ll." in k for k in ckpt["model"])
    result = CliRunner().invoke(train_app, ["--resume", str(tmp_path / "r" / "checkpoint.pth"), "--test-only", "--val-splits", "WL", "--no-progress"])
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout.strip().splitlines()[-1])
    assert again == {"epoch": 1, "AP/WL": record["AP/WL"], "flip_test": "ours", "crop": "ours", "decode": "ours", "input_scale": "ours"}


def test_cli_errors_exit_2(release, tmp_path):
    runner = CliRunner()
    r = runner.invoke(train_app, ["--variant", "nope", "--dataset", str(release), "--no-progress"])
    assert r.exit_code == 2 and "variant" in r.output
    r = runner.invoke(train_app, ["--test-only", "--variant", "lsbn", "--no-progress"])
    assert r.exit_code == 2 and "--test-only needs --resume" in r.output
    r = runner.invoke(train_app, ["--dataset", str(release), "--val-splits", "LL-Q", *SMALL])
    assert r.exit_code == 2 and "no annotation file for 'test_LL-Q'" in r.output
    bad = tmp_path / "x.pth"
    bad.write_bytes(b"not a checkpoint")
    r = runner.invoke(train_app, ["--resume", str(bad), "--test-only"])
    assert r.exit_code == 2 and "x.pth: not a loadable checkpoint" in r.output
    # A diverging run (Adam's first step moves every weight by ~lr) ends with one line and exit code 1.
    r = runner.invoke(train_app, ["--dataset", str(release), "--output-dir", str(tmp_path / "nan"), *SMALL, "--steps-per-epoch", "2",
                                  "--val-splits", "", "--variant", "baseline-low", "--workers", "0", "--lr", "1e30"])
    lines = r.output.splitlines()
    assert r.exit_code == 1 and lines[-1] == "error: loss is nan at step 1: lower the learning rate or check the inputs"
    assert len(lines) == 2 and lines[0].startswith("threads: ")  # the thread choice, then the one error line


def _nan_batch(nan: bool) -> dict:
    g = torch.Generator().manual_seed(0)
    heatmaps = torch.rand(2, 4, K, 16, 12, generator=g) * 255
    if nan:
        heatmaps[1, 2, 3, 4, 5] = float("nan")
    return {"ll": torch.randn(2, 3, 64, 48, generator=g), "heatmaps": heatmaps, "target_weight": torch.ones(2, K), "visible_weight": torch.ones(2, K)}


def test_non_finite_loss_raises_before_the_step():
    cfg = make_config({"variant": "baseline-low", "backbone": "resnet18", "input_size": (64, 48), "heatmap_size": (16, 12)})
    torch.manual_seed(0)
    net = build_cpn("resnet18", heatmap_size=(16, 12))
    before = copy.deepcopy(dict(net.named_parameters()))
    opt, _ = build_optimizer(net, cfg)
    with pytest.raises(FloatingPointError, match=r"^loss is nan at step 1: lower the learning rate or check the inputs$"):
        train_one_epoch(PairModel(net), [_nan_batch(False), _nan_batch(True)], opt, cfg, torch.device("cpu"))
    assert any(not torch.equal(before[k], v) for k, v in net.named_parameters())  # step 0 was applied...
    after_first = copy.deepcopy(dict(net.named_parameters()))
    with pytest.raises(FloatingPointError):
        train_one_epoch(PairModel(net), [_nan_batch(True)], opt, cfg, torch.device("cpu"))
    assert all(torch.equal(after_first[k], v) for k, v in net.named_parameters())  # ...the NaN step was not


_DDP_NAN = """
import datetime, sys, torch, torch.distributed as dist
from torch import nn
from baselines.config import make_config
from baselines.engine import PairModel, train_one_epoch
from baselines.models import build_cpn
from tests.test_baselines_train import _nan_batch
rank = int(sys.argv[1])
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method="file://" + sys.argv[2], rank=rank, world_size=2, timeout=datetime.timedelta(seconds=30))
cfg = make_config({"variant": "baseline-low", "backbone": "resnet18", "input_size": (64, 48), "heatmap_size": (16, 12)})
torch.manual_seed(0)
net = build_cpn("resnet18", heatmap_size=(16, 12))
model = nn.parallel.DistributedDataParallel(PairModel(net))
opt = torch.optim.SGD(net.parameters(), lr=0.01)
try:
    train_one_epoch(model, [_nan_batch(False), _nan_batch(rank == 1)], opt, cfg, torch.device("cpu"))
except FloatingPointError as exc:
    print(exc, flush=True)
dist.barrier()  # both processes got here: nobody is left waiting in a collective
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_non_finite_loss_on_one_process_raises_on_every_process(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    root = Path(__file__).parent.parent
    procs = [subprocess.Popen([sys.executable, "-c", _DDP_NAN, str(rank), str(tmp_path / "store")], cwd=root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a process hung in a collective")
        assert p.returncode == 0, err[-2000:]
        outs.append(out.strip())
    expected = "loss is nan at step 1 on process 1 of 2: lower the learning rate or check the inputs"
    assert outs == [expected, expected]


@pytest.mark.slow
def test_torchrun_two_processes(release, tmp_path):
    """Two CPU processes (gloo) under torchrun: one record printed (rank 0), losses averaged, one checkpoint."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "baselines.cli", "train",
           "--variant", "lsbn-lupi", "--dataset", str(release), "--output-dir", str(tmp_path), *SMALL, "--batch-size", "4",
           "--epochs", "1", "--workers", "0", "--val-splits", ""]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["epoch"] == 1 and record["loss/total"] > 0
    assert load_checkpoint(tmp_path / "checkpoint.pth")["epoch"] == 1


@pytest.mark.slow
def test_run_reports_each_step_to_its_callback(release, tmp_path):
    from baselines.train import run

    cfg = make_config({"variant": "baseline-low", "dataset": release, "output_dir": tmp_path, "backbone": "resnet18", "input_size": (64, 48),
                       "heatmap_size": (16, 12), "batch_size": 2, "from_scratch": True, "epochs": 2, "steps_per_epoch": 2, "workers": 0,
                       "val_splits": []})
    steps: list[tuple[int, int, int, float]] = []
    record = run(cfg, on_step=lambda e, i, n, losses: steps.append((e, i, n, losses["total"])))
    assert [s[:3] for s in steps] == [(1, 1, 2), (1, 2, 2), (2, 1, 2), (2, 2, 2)]
    assert all(s[3] > 0 for s in steps) and record["epoch"] == 2
