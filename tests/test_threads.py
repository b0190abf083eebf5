"""Choosing torch's threads at start (exlpose_data.threads): the choice under simulated machines, --threads on the
commands, one thread per DataLoader worker, and the line each command prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, DistributedSampler
from typer.testing import CliRunner

from exlpose_data import threads
from exlpose_data.errors import UsageError
from exlpose_data.threads import Machine, check_threads, choose_threads, probe_machine

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def torch_threads_restored(monkeypatch):
    """Commands and apply_threads change process-wide settings: a fresh guard, and torch's count back after."""
    monkeypatch.setattr(threads, "_applied", None)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("machine", "intra", "wait"), [
    (Machine(cpu_count=8, affinity=None, quota_cpus=None, load=0.0), 8, "short spin"),  # an idle machine: every CPU
    (Machine(cpu_count=8, affinity=4, quota_cpus=None, load=0.2), 4, "short spin"),  # taskset/affinity narrows it
    (Machine(cpu_count=8, affinity=8, quota_cpus=1.5, load=0.0), 1, "short spin"),  # a cgroup quota of 1.5 CPUs: rounded down
    (Machine(cpu_count=8, affinity=8, quota_cpus=3.0, load=None), 3, "short spin"),  # load unknown: counted as none
    (Machine(cpu_count=8, affinity=None, quota_cpus=None, load=2.6), 5, "passive"),  # 8 - 2.6 = 5.4 free
    (Machine(cpu_count=2, affinity=2, quota_cpus=None, load=4.1), 1, "passive"),  # the busy 2-core machine
    (Machine(cpu_count=2, affinity=2, quota_cpus=None, load=0.4), 2, "short spin"),  # 1.6 free rounds to 2
    (Machine(cpu_count=2, affinity=2, quota_cpus=None, load=0.6), 1, "passive"),  # 1.4 free rounds to 1
    (Machine(cpu_count=2, affinity=2, quota_cpus=0.5, load=0.0), 1, "short spin"),  # never fewer than one
])
def test_automatic_choice_from_the_machine(machine, intra, wait):
    choice = choose_threads(None, machine=machine, environ={})
    assert (choice.intra_op, choice.inter_op, choice.wait, choice.source) == (intra, 1, wait, "automatic")


def test_an_explicit_request_and_the_environment_win_over_the_machine():
    busy = Machine(cpu_count=2, affinity=2, load=4.1)
    assert choose_threads(3, machine=busy, environ={"OMP_NUM_THREADS": "1"}).intra_op == 3
    from_env = choose_threads(0, machine=busy, environ={"OMP_NUM_THREADS": "2"})
    assert (from_env.intra_op, from_env.source) == (2, "OMP_NUM_THREADS")
    assert choose_threads(None, machine=busy, environ={"OMP_NUM_THREADS": "bad"}).intra_op == 1
    assert choose_threads(None, machine=busy, environ={"OMP_WAIT_POLICY": "active"}).wait == "as set in the environment"
    assert choose_threads(None, machine=busy, environ={"GOMP_SPINCOUNT": "0"}).wait == "as set in the environment"


def test_probe_reads_affinity_cgroup_quota_and_load(monkeypatch, tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("250000 100000\n")
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", cpu_max)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.4, 0.0, 0.0))
    monkeypatch.setattr(threads, "_own_load", lambda: 0.3)
    monkeypatch.setattr(threads, "_runnable_now", lambda: 5)
    machine = probe_machine()
    assert machine == Machine(cpu_count=16, affinity=6, quota_cpus=2.5, load=pytest.approx(1.1))
    assert machine.allowed == 2
    assert choose_threads(None, machine=machine, environ={}).intra_op == 1  # 2 - 1.1 = 0.9 free


def test_cgroup_quota_file_forms(tmp_path):
    f = tmp_path / "cpu.max"
    f.write_text("max 100000\n")
    assert threads._cgroup_quota(f) is None
    f.write_text("50000 100000\n")
    assert threads._cgroup_quota(f) == 0.5
    assert threads._cgroup_quota(tmp_path / "absent") is None


def test_a_finished_load_does_not_count_once_nothing_runs(monkeypatch):
    """The 1-minute average still holds a stage that just ended; the tasks runnable now cap it."""
    monkeypatch.setattr(os, "getloadavg", lambda: (1.8, 0.0, 0.0))
    monkeypatch.setattr(threads, "_own_load", lambda: 0.0)
    monkeypatch.setattr(threads, "_runnable_now", lambda: 0)
    assert threads._others_load() == 0.0
    monkeypatch.setattr(threads, "_runnable_now", lambda: 4)
    assert threads._others_load() == pytest.approx(1.8)


def test_threads_option_values():
    assert check_threads(None) is None and check_threads(0) is None and check_threads(3) == 3
    with pytest.raises(UsageError, match=r"^--threads -1: give a number of threads \(1 or more\), or 0 to choose automatically$"):
        check_threads(-1)


def test_apply_sets_torch_and_describes_it(torch_threads_restored):
    choice = threads.apply_threads(choose_threads(1, machine=Machine(cpu_count=2, affinity=2, load=0.0), environ={}))
    assert torch.get_num_threads() == 1 and choice.intra_op == 1
    assert choice.describe().startswith("threads: 1 intra-op, ")
    assert "(set by --threads, 2 CPUs allowed, load 0.0" in choice.describe()
    again = threads.apply_threads(choose_threads(2, machine=Machine(cpu_count=2, affinity=2, load=0.0), environ={}))
    assert torch.get_num_threads() == 2 and again.inter_op == choice.inter_op  # the inter-op pool is sized once


@pytest.mark.parametrize("argv", [
    ["train", "--threads", "-1", "--variant", "lsbn-lupi"],
    ["eval", "model", "x.pth", "--dataset", "y", "--threads", "-2"],
    ["eval", "table", "x.pth", "--dataset", "y", "--threads", "-1"],
    ["eval", "gaps", "x.pth", "--dataset", "y", "--threads", "-1"],
    ["predict", "x.pth", "a.png", "--threads", "-1"],
    ["demo", "--out", "demo-out", "--threads", "-1"],
])
def test_negative_threads_refused_in_one_line(argv, tmp_path, monkeypatch):
    from exlpose.cli import app

    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --threads -"), r.stderr
    assert not (tmp_path / "demo-out").exists()


def test_train_prints_its_threads_line_first(tmp_path, torch_threads_restored):
    from baselines.cli import train_app

    r = CliRunner().invoke(train_app, ["--threads", "1", "--variant", "lsbn-lupi", "--output-dir", str(tmp_path / "run"), "--from-scratch"])
    lines = r.stderr.splitlines()
    assert lines[0].startswith("threads: 1 intra-op, 1 inter-op, OpenMP "), r.stderr
    assert "set by --threads" in lines[0] and "CPU" in lines[0]
    assert torch.get_num_threads() == 1
    assert r.exit_code == 2 and "no dataset" in r.stderr  # the command went on after choosing


@pytest.mark.slow
def test_a_fresh_command_sets_the_wait_policy_before_torch_loads(tmp_path):
    """In its own process a command chooses before torch is imported, so OpenMP starts with the chosen policy (no note)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT")}
    proc = subprocess.run([sys.executable, "-m", "baselines.cli", "train", "--threads", "1", "--variant", "lsbn-lupi", "--from-scratch",
                           "--output-dir", str(tmp_path / "run")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    first = proc.stderr.splitlines()[0]
    assert re.match(r"^threads: 1 intra-op, 1 inter-op, OpenMP (passive|short spin) \(set by --threads, \d+ CPUs? allowed, load \d+\.\d\)$", first), proc.stderr
    assert "torch was loaded" not in first and "already started" not in first
    assert proc.returncode == 2 and "no dataset" in proc.stderr


class _ThreadsSeen(Dataset):
    """Reports the torch thread count of the process that loads it."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([torch.get_num_threads()])

    def set_epoch(self, epoch: int, *, seed: int = 0, rank: int = 0) -> None:
        pass


def test_training_loader_workers_run_one_torch_thread(torch_threads_restored):
    """The trainer's workers (forked) run one torch thread while the main process runs two: --workers 4 never
    starts 4 x cores threads. OpenCV's pool is deliberately not touched in workers (module notes)."""
    from baselines.config import make_config
    from baselines.loop import epoch_loader

    torch.set_num_threads(2)
    ds = _ThreadsSeen()
    cfg = make_config({"variant": "baseline-low", "workers": 1, "batch_size": 2})
    loader = epoch_loader(ds, DistributedSampler(ds, num_replicas=1, rank=0), cfg, 2, 0, 0)
    (batch,) = list(loader)
    assert batch.tolist() == [[1], [1]] and torch.get_num_threads() == 2


def test_automatic_keeps_the_threads_of_a_process_that_loaded_torch_first(torch_threads_restored):
    """A notebook or test that imported torch (and maybe set its threads) keeps them; --threads still sets them."""
    torch.set_num_threads(1)
    idle = Machine(cpu_count=2, affinity=2, load=0.0)
    kept = threads.apply_threads(choose_threads(None, machine=idle, environ={}))
    assert torch.get_num_threads() == 1 and kept.intra_op == 1
    assert kept.wait == "torch's default" and "torch was loaded before the wait policy could be set" in kept.describe()
    assert threads.apply_threads(choose_threads(2, machine=idle, environ={})).intra_op == 2
