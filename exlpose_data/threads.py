"""How many threads torch uses, chosen deliberately at start from what the machine offers, what the process is
allowed and what is already running; and how its OpenMP threads wait.

Torch's default is one intra-op thread per core and OpenMP threads that spin while they wait for work. On a
machine other jobs already keep busy, those spinning threads compete with the jobs and with each other (a thread
spins on a core while the thread it waits for is not running), and a short training took 5.85x its time alone
beside four busy processes, where a fair share of the CPU is 3x. So every command that runs torch calls
:func:`use_threads` first:

- intra-op threads: the CPUs this process may use (``os.cpu_count()``, narrowed by ``os.sched_getaffinity`` and a
  cgroup CPU quota in ``/sys/fs/cgroup/cpu.max``) less the load of the other processes (the 1-minute load average
  less this process's own part of it, counted only while that many tasks are runnable now), at least 1;
- inter-op threads: 1 (training and inference here run one graph at a time; torch only uses that pool for
  TorchScript's ``fork`` and a few ops);
- how OpenMP threads wait for work: on a loaded machine (others' load 0.5 or more at start) passively
  (``OMP_WAIT_POLICY=PASSIVE``, and ``KMP_BLOCKTIME=0`` for Intel's OpenMP): a thread with no work sleeps at
  once; on an idle one with a short spin (``GOMP_SPINCOUNT=10000``, ``KMP_BLOCKTIME=1``; libgomp's default is
  300000) before it sleeps. Measured on 2 cores (docs/baselines.md, Threads): passive waiting made a small
  training 1.25x slower alone (waking a sleeping thread for every small operation), the short spin was as fast
  as the default alone, and both kept a load that arrives later from collapsing the run as the default spin does.
  A policy set in the environment (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``, ``KMP_BLOCKTIME``) is left as it is.

``--threads N`` (N >= 1) fixes the intra-op threads; 0 or absent chooses automatically, unless
``OMP_NUM_THREADS`` is set, which is honoured as the user's choice.

When it can take effect: OpenMP reads its wait policy once, when its library loads, which is when torch is first
imported. So the policy is set only while torch is not imported yet: the commands choose before they import torch
(their modules import it inside the command); a notebook or library caller that imported torch already keeps
torch's policy and, when it asks for no count, its own intra-op threads (the description says so); it gets the
policy by setting ``OMP_WAIT_POLICY=PASSIVE`` before importing torch. The inter-op pool can be sized once per
process and only before inter-op work has started; it is set on the first call only. The intra-op count can
change at any time and is set on every call.

Torch is looked up only inside the functions: the core installs without it.

DataLoader workers get one torch thread each from torch itself (its worker loop sets it). OpenCV's pool is left
alone in workers: they are forked, and resizing OpenCV's pool in a forked child deadlocked here (a worker stuck
in ``pthread_cond_destroy`` inside ``cv2.setNumThreads``), so a worker_init_fn that did it was taken out.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import UsageError

__all__ = ["default_workers", "Machine", "ThreadChoice", "probe_machine", "choose_threads", "apply_threads", "use_threads", "check_threads",
           "THREADS_HELP", "WAIT_ENV", "BUSY_LOAD"]

THREADS_HELP = "torch intra-op threads (0 or absent: chosen from the CPUs allowed and the load; one line on stderr says what)"

# Read by OpenMP when its library loads (on the first `import torch`): libgomp's and Intel's names.
WAIT_ENV = {
    "passive": {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"},
    "short spin": {"GOMP_SPINCOUNT": "10000", "KMP_BLOCKTIME": "1"},
}
_USER_WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
# Others' load (CPUs) from which OpenMP threads wait passively.
BUSY_LOAD = 0.5

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
_LOADAVG = Path("/proc/loadavg")
# A load average decays with this time constant (seconds): a process running at r CPUs for t seconds has
# added r (1 - exp(-t / 60)) to the 1-minute figure.
_LOADAVG_WINDOW_S = 60.0


@dataclass(frozen=True)
class Machine:
    """What the machine offers and what is running on it.

    Attributes:
        cpu_count: CPUs of the machine (``os.cpu_count()``).
        affinity: CPUs this process may run on (``os.sched_getaffinity``), None where the platform cannot say.
        quota_cpus: the cgroup's CPU quota in CPUs (``cpu.max``: quota / period), None when unlimited or absent.
        load: other processes' load in CPUs (see :func:`probe_machine`), None where the platform cannot say.
    """

    cpu_count: int
    affinity: int | None = None
    quota_cpus: float | None = None
    load: float | None = None

    @property
    def allowed(self) -> int:
        """CPUs this process can use at most: the fewest of the three, a fractional quota rounded down, at least 1."""
        limits = [self.cpu_count]
        if self.affinity is not None:
            limits.append(self.affinity)
        if self.quota_cpus is not None:
            # Threads beyond a quota are throttled together at the end of each period: round down.
            limits.append(int(self.quota_cpus))
        return max(1, min(limits))


@dataclass(frozen=True)
class ThreadChoice:
    """The threads torch uses in this process.

    Attributes:
        intra_op: threads per operation (``torch.set_num_threads``).
        inter_op: threads running independent operations (``torch.set_num_interop_threads``).
        wait: how OpenMP threads wait for work: ``"passive"``, ``"short spin"``, ``"as set in the environment"``
            or ``"torch's default"`` (torch was loaded before it could be set).
        source: ``"automatic"``, ``"--threads"`` or ``"OMP_NUM_THREADS"``.
        machine: what the choice was made from.
        note: why part of the choice could not take effect (empty when all did).
    """

    intra_op: int
    inter_op: int
    wait: str
    source: str
    machine: Machine
    note: str = ""

    def describe(self) -> str:
        """One line: ``threads: 1 intra-op, 1 inter-op, OpenMP passive (2 CPUs allowed, load 4.1)``."""
        load = "load unknown" if self.machine.load is None else f"load {self.machine.load:.1f}"
        allowed = self.machine.allowed
        facts = [f"{allowed} CPU{'s' if allowed != 1 else ''} allowed", load]
        if self.source != "automatic":
            facts.insert(0, f"set by {self.source}")
        if self.note:
            facts.append(self.note)
        return f"threads: {self.intra_op} intra-op, {self.inter_op} inter-op, OpenMP {self.wait} ({', '.join(facts)})"


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def default_workers() -> int:
    """Worker processes to use by default (aligning, simulating, enhancing): the CPUs this process may run on."""
    return max(1, _affinity() or os.cpu_count() or 1)


def _cgroup_quota(path: Path | None = None) -> float | None:
    """CPUs of a cgroup v2 ``cpu.max`` (``"max 100000"``: unlimited; ``"150000 100000"``: 1.5 CPUs)."""
    try:
        quota, period = (CGROUP_CPU_MAX if path is None else path).read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _runnable_now(samples: int = 7, interval_s: float = 0.004) -> int | None:
    """Tasks runnable on the machine now, this one excluded: the median of a few reads of ``/proc/loadavg``."""
    counts = []
    for i in range(samples):
        try:
            running = _LOADAVG.read_text().split()[3].split("/")[0]
        except (OSError, IndexError):
            return None
        counts.append(int(running) - 1)  # the thread reading it is running
        if i + 1 < samples:
            time.sleep(interval_s)
    return max(0, sorted(counts)[len(counts) // 2])


def _own_load() -> float:
    """This process's part of the 1-minute load average, from its CPU time and age (0 where they are unknown)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
        age_s = uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0
    if age_s <= 0:
        return 0.0
    used = os.times()
    rate = (used.user + used.system) / age_s
    return rate * (1 - math.exp(-age_s / _LOADAVG_WINDOW_S))


def _others_load() -> float | None:
    """Load of the other processes: the 1-minute load average less this process's part, but no more than the
    tasks runnable now (a stage that just finished still weighs on the average; it no longer runs)."""
    try:
        average = os.getloadavg()[0] - _own_load()
    except (AttributeError, OSError):
        return None
    now = _runnable_now()
    return max(0.0, average if now is None else min(average, float(now)))


def probe_machine() -> Machine:
    """What this machine offers this process, and its load (about 30 ms: the runnable tasks are read a few times)."""
    return Machine(cpu_count=os.cpu_count() or 1, affinity=_affinity(), quota_cpus=_cgroup_quota(), load=_others_load())


def check_threads(value: int | None, option: str = "--threads") -> int | None:
    """``value`` of ``option`` as a request: None for automatic (absent or 0), N >= 1 as given.

    Raises:
        UsageError: a negative count.
    """
    if value is None or value == 0:
        return None
    if value < 0:
        raise UsageError(f"{option} {value}: give a number of threads (1 or more), or 0 to choose automatically")
    return value


def _env_threads(environ: Mapping[str, str]) -> int | None:
    text = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 1 else None


def choose_threads(requested: int | None = None, *, machine: Machine | None = None,
                   environ: Mapping[str, str] | None = None) -> ThreadChoice:
    """The threads for this process (nothing is applied: see :func:`apply_threads`).

    Args:
        requested: intra-op threads asked for (``--threads``); None or 0 chooses: ``OMP_NUM_THREADS`` when set,
            else the CPUs allowed less the other processes' load rounded to the nearest whole CPU, at least 1.
        machine: what to choose from (default :func:`probe_machine`).
        environ: the environment (default ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    requested = check_threads(requested)
    machine = probe_machine() if machine is None else machine
    from_env = _env_threads(environ)
    if requested is not None:
        intra, source = requested, "--threads"
    elif from_env is not None:
        intra, source = from_env, "OMP_NUM_THREADS"
    else:
        free = machine.allowed - (machine.load or 0.0)
        intra, source = max(1, min(machine.allowed, math.floor(free + 0.5))), "automatic"
    if any(name in environ for name in _USER_WAIT_VARS):
        wait = "as set in the environment"
    else:
        wait = "passive" if (machine.load or 0.0) >= BUSY_LOAD else "short spin"
    return ThreadChoice(intra_op=intra, inter_op=1, wait=wait, source=source, machine=machine)


_applied: ThreadChoice | None = None
_torch_first = False  # torch was imported before the first apply_threads in this process


def _torch():  # noqa: ANN202
    # Imported when called: the core installs without torch, and these functions only run where torch is (the
    # import contract in pyproject.toml names this module beside the torch datasets).
    import torch

    return torch


def apply_threads(choice: ThreadChoice) -> ThreadChoice:
    """Make ``choice`` torch's; return what took effect (``note`` says what could not).

    The wait policy goes into the environment before torch is first imported (OpenMP reads it then); the inter-op
    threads are set on the first call in a process only (torch allows it once, before inter-op work starts); the
    intra-op threads on every call, except an automatic choice in a process that imported torch before the first
    call (a notebook, a test run): that process owns its thread count, which is kept.
    """
    global _applied, _torch_first
    notes = []
    wait, intra = choice.wait, choice.intra_op
    if _applied is None:
        _torch_first = "torch" in sys.modules
    if _applied is not None:  # OpenMP read its policy once, when torch loaded
        wait = _applied.wait
    elif _torch_first:
        if wait in WAIT_ENV:
            wait = "torch's default"
            notes.append("torch was loaded before the wait policy could be set")
    elif wait in WAIT_ENV:
        os.environ.update(WAIT_ENV[wait])
    torch = _torch()
    if _torch_first and choice.source == "automatic":
        # A process that imported torch before (a notebook, a test) owns its thread count.
        intra = torch.get_num_threads()
        notes.append("its intra-op threads kept")
    torch.set_num_threads(intra)
    if _applied is None:
        try:
            torch.set_num_interop_threads(choice.inter_op)
        except RuntimeError:  # parallel work started before this process chose
            notes.append("inter-op pool already started")
    done = replace(choice, intra_op=torch.get_num_threads(), inter_op=torch.get_num_interop_threads(), wait=wait,
                   note="; ".join(notes))
    if _applied is None:
        _applied = done
    return done


def use_threads(requested: int | None = None) -> ThreadChoice:
    """Choose (:func:`choose_threads`) and apply (:func:`apply_threads`) this process's threads: what a command
    calls before it imports torch (it prints :meth:`ThreadChoice.describe` once its options are checked).

    Raises:
        UsageError: a negative ``requested``.
    """
    return apply_threads(choose_threads(requested))
