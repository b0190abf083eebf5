"""The training machinery every trainer of the baselines shares: the pose trainer (:mod:`baselines.train`,
``exlpose-train``) and the person detector's (:mod:`baselines.detect.train`, ``exlpose-detect train``).

One home for: process placement under ``torchrun`` (:class:`Distributed`, :func:`setup`), the optimiser and its
schedule (:func:`build_optimizer`, :func:`apply_optimizer_settings` on resume), the run folder and its provenance
record (:func:`run_folder`: new, resumed or ``--overwrite``-replaced, never an input), restoring a checkpoint
(:func:`restore`), one epoch of steps with AMP, loss scaling and the NaN check on every process
(:func:`fit_epoch`), and the epoch loop with checkpoints, ``metrics.json``, TensorBoard and evaluation
(:func:`fit`). A trainer supplies what differs: its network, dataset, losses, evaluation and configuration
(any pydantic model with the shared fields: ``lr``, ``weight_decay``, ``lr_milestones``, ``lr_gamma``,
``epochs``, ``batch_size``, ``steps_per_epoch``, ``eval_every``, ``val_splits``, ``amp``, ``channels_last``,
``workers``, ``seed``, ``deterministic``, ``device``, ``output_dir``, ``dataset``, ``annotations``, ``train_ann``,
``pack``, ``pretrained``, ``from_scratch``, ``variant``).
"""

from __future__ import annotations

import bisect
import contextlib
import math
import os
import random
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from exlpose_data.atomic import write_json_atomic
from exlpose_data.errors import InputError, UsageError
from exlpose_data.outputs import building_folder, check_output, what_is
from exlpose_data.provenance import RecordedRun, differences, digest, read_record, recorded_run

from .checkpoint import rng_state, save_checkpoint, set_rng_state
from .precision import autocast, cpu_bf16_flags
from .options import check_device

__all__ = ["Distributed", "TrainWarning", "StepCallback", "build_optimizer", "apply_optimizer_settings", "setup", "scaler_for",
           "tensorboard", "epoch_loader", "train_annotation", "data_inputs", "run_folder", "restore", "check_finite", "fit_epoch",
           "fit", "FitTask", "check_precision", "same_path", "place_net", "measure_rates", "check_resume", "run_training"]

StepCallback = Callable[[int, int, int, dict[str, float]], None]
"""Called after each training step with ``(epoch, step, steps in the epoch, losses)``, epoch and step from 1."""

# Optimiser and schedule settings of a config that a resumed run applies to the restored optimiser.
OPTIMISER_SETTINGS = ("lr", "weight_decay", "lr_milestones", "lr_gamma")
# Training data a resumed run keeps (digests in the run's provenance record).
DATA_INPUTS = ("dataset", "train_ann", "pack", "pretrained")


class TrainWarning(UserWarning):
    """A setting that works but is probably not what the user wants (the commands print it as a warning line)."""


def warn(message: str) -> None:
    warnings.warn(message, TrainWarning, stacklevel=3)


@dataclass(frozen=True)
class Distributed:
    """Process placement from torchrun's environment (a single process when absent)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        try:
            return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))
        except ValueError as exc:
            raise UsageError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({exc})") from None


def build_optimizer(net: nn.Module, cfg: Any) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.MultiStepLR]:
    """Adam with weight decay on everything but biases, and the lr multiplied by ``lr_gamma`` at the milestone epochs."""
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith(".bias") else decay).append(p)
    optimizer = torch.optim.Adam(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.lr_milestones, gamma=cfg.lr_gamma)
    return optimizer, scheduler


def apply_optimizer_settings(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.MultiStepLR, cfg: Any,
                             saved: dict[str, Any]) -> list[str]:
    """Give a restored optimiser and schedule the optimiser settings of ``cfg`` that differ from ``saved`` (the
    checkpoint's config); returns ``name old -> new`` for each one applied (empty when none differ).

    The schedule restarts from ``cfg.lr`` as if it had been the learning rate from the start: the epoch's lr is
    ``lr x gamma^(milestones passed)``; weight decay goes to the decayed group (biases keep none).
    """
    changed = differences({k: saved.get(k) for k in OPTIMISER_SETTINGS}, {k: getattr(cfg, k) for k in OPTIMISER_SETTINGS})
    if not changed:
        return []
    groups = optimizer.param_groups
    if len(groups) != 2:
        raise InputError(f"the restored optimiser has {len(groups)} parameter groups, this trainer builds 2: its settings cannot be changed on resume")
    lr_now = cfg.lr * cfg.lr_gamma ** bisect.bisect_right(sorted(cfg.lr_milestones), scheduler.last_epoch)
    for group, decay in zip(groups, (cfg.weight_decay, 0.0)):
        group.update(lr=lr_now, initial_lr=cfg.lr, weight_decay=decay)
    scheduler.base_lrs = [cfg.lr] * len(groups)
    scheduler.milestones = Counter(cfg.lr_milestones)
    scheduler.gamma = cfg.lr_gamma
    scheduler._last_lr = [lr_now] * len(groups)  # what get_last_lr() reports until the next step
    return changed


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def check_precision(cfg: Any, device: torch.device, flags: list[str] | None = None) -> None:
    """Warn when ``--amp`` asks for bfloat16 on a CPU without bfloat16 units (``flags``: the CPU's, read when None)."""
    if not (cfg.amp and device.type == "cpu"):
        return
    flags = cpu_bf16_flags() if flags is None else flags
    if flags == []:
        warn("--amp on a CPU without bfloat16 units (no avx512_bf16 or AMX): bfloat16 autocast is usually slower than "
             "float32 there (2-3x here); benchmarks/bench_precision.py measures it on this machine")


def setup(cfg: Any, env: Distributed) -> torch.device:
    """The process's device, the process group under torchrun, determinism and seeds (``cfg.seed + rank``)."""
    check_device(cfg.device)
    device = torch.device(f"cuda:{env.local_rank}" if cfg.device == "cuda" and env.enabled else cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if env.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if cfg.deterministic:
        # CPU kernels are all deterministic; on CUDA a few (bilinear upsampling's backward) only warn.
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        torch.backends.cudnn.benchmark = False
    _seed_everything(cfg.seed + env.rank)
    if env.is_main:
        check_precision(cfg, device)
    return device


def place_net(net: nn.Module, cfg: Any, device: torch.device, env: Distributed) -> nn.Module:
    """``net`` ready to train: BatchNorm over the global batch under torchrun with ``cfg.sync_bn`` (a warning
    with one process), on ``device``, channels-last with ``cfg.channels_last``."""
    if cfg.sync_bn and env.enabled:
        from .syncbn import convert_global_bn

        convert_global_bn(net)
    elif cfg.sync_bn and env.is_main:
        warn("--sync-bn: one process, so BatchNorm statistics are the batch's anyway (it matters under torchrun)")
    net = net.to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def tensorboard(output_dir: Path) -> Any:
    """The run's TensorBoard writer (scalars under ``output_dir/tensorboard``)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(output_dir / "tensorboard"))


def scaler_for(cfg: Any, device: torch.device) -> Any:
    """A GradScaler for float16 on CUDA; bfloat16 (CPU) needs none."""
    if cfg.amp and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


def epoch_loader(dataset: Any, sampler: DistributedSampler, cfg: Any, per_process: int, epoch: int, rank: int) -> DataLoader:
    """The epoch's DataLoader: augmentation depends only on ``(seed, epoch, rank)``."""
    sampler.set_epoch(epoch)
    pin = cfg.device.startswith("cuda")
    # Augmentation depends only on (seed, epoch, rank), in worker processes (their seeds come from the loader's
    # generator) and in this one (workers=0): a resumed run draws the same as an unbroken one, and no two
    # processes share a stream.
    dataset.set_epoch(epoch, seed=cfg.seed, rank=rank)
    generator = torch.Generator().manual_seed((cfg.seed * 1_000_003 + epoch) * 4_099 + rank)
    return DataLoader(dataset, batch_size=per_process, sampler=sampler, num_workers=cfg.workers, drop_last=True, generator=generator,
                      pin_memory=pin, persistent_workers=False)


def train_annotation(cfg: Any) -> Path:
    """The training annotation file: ``cfg.train_ann``, else the release's train_LL (train_WL for baseline-well)."""
    if cfg.train_ann is not None:
        return Path(cfg.train_ann)
    from exlpose_data.release import open_release

    if cfg.dataset is None:
        raise UsageError("no dataset: pass --dataset ROOT (the folder holding bright/ and dark/)")
    key = "train_WL" if cfg.variant == "baseline-well" else "train_LL"
    return open_release(cfg.dataset, cfg.annotations).annotation_file(key)


def data_inputs(cfg: Any) -> dict[str, Path]:
    """The training data a run reads, by role (digested into its record)."""
    train_ann = train_annotation(cfg) if cfg.dataset is not None or cfg.train_ann is not None else None
    found = {"dataset": cfg.dataset, "train_ann": train_ann, "pack": cfg.pack, "pretrained": cfg.pretrained}
    return {role: Path(p) for role, p in found.items() if p is not None}


def same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


@contextlib.contextmanager
def run_folder(cfg: Any, env: Distributed, *, resume: Path | None, overwrite: bool, config_file: Path | None, command: str,
               produces: str, identity: Sequence[str], files: Sequence[str] = ("checkpoint.pth", "metrics.json", "tensorboard"),
               extra_check: Callable[[list[Path | None]], None] | None = None,
               resume_hint: str = "--resume") -> Iterator[tuple[Path, RecordedRun]]:
    """The folder a run writes into (``cfg.output_dir``, or a sibling it replaces with ``overwrite``) and its record.

    The folder is new or empty, or the run folder ``resume``'s checkpoint lies in (a resumed run keeps its
    ``identity`` settings and :data:`DATA_INPUTS`), or one of the same kind replaced with ``overwrite`` (built beside
    and swapped in when the run completes). It never is, holds or sits inside an input. ``command`` is recorded in
    the folder's provenance record; ``produces`` is the folder's kind (:func:`exlpose_data.outputs.what_is`).
    ``extra_check`` receives the inputs read, for outputs of the trainer's own (an enhancement cache).
    """
    out = Path(cfg.output_dir)
    option = "--output-dir"
    in_place = resume is not None and same_path(Path(resume).parent, out)
    data = data_inputs(cfg)
    inputs: dict[str, Path] = {**data, **({"config": Path(config_file)} if config_file is not None else {})}
    if resume is not None and not in_place:
        inputs["resume"] = Path(resume)
    read = [*inputs.values(), cfg.annotations]
    kind = what_is(out)
    if kind == produces and not (overwrite or in_place):
        raise UsageError(f"{option} {out}: already holds a {produces}; pass {resume_hint} {out / 'checkpoint.pth'} to continue it, "
                         f"or --overwrite to replace it (or choose another {option})")
    check_output(out, inputs=read, writes="folder", produces=produces, replaces=[produces], overwrite=overwrite,
                 resumes=in_place, files=files, option=option)
    if extra_check is not None:
        extra_check(read)
    if overwrite and env.enabled and kind is not None:
        raise UsageError(f"{option} {out}: --overwrite under torchrun is not supported; remove or rename the old run first")
    if in_place and not overwrite:
        _check_resumable(out, cfg, data, option, identity)
    settings = cfg.to_dict()
    existed, was_empty = out.exists(), kind is None
    try:
        with building_folder(out, overwrite=overwrite) as folder, recorded_run(
            folder, "train", command=command, settings=settings, inputs=inputs,
            # A resumed run may change its schedule (checked above); the record then holds the new settings.
            overwrite=overwrite or in_place, out_option=option,
        ) as recorded:
            yield folder, recorded
    except BaseException:
        # A new run that failed before its first checkpoint leaves nothing to resume: remove what it made, so
        # the same command runs again once the cause is fixed.
        if was_empty and not (out / "checkpoint.pth").exists():
            for child in list(out.iterdir()) if existed and out.is_dir() else [out]:
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise


def _check_resumable(out: Path, cfg: Any, data: dict[str, Path], option: str, identity: Sequence[str]) -> None:
    """Refuse resuming the run in ``out`` with another identity or other training data than it was started with."""
    previous = read_record(out)["steps"].get("train")
    if previous is None:  # a run written before runs had records
        return
    old = previous["settings"]
    now = cfg.to_dict()
    diffs = differences({k: old.get(k, "unset") for k in identity}, {k: now[k] for k in identity})
    recorded_inputs = previous.get("inputs", {})
    for role in DATA_INPUTS:
        before, after = recorded_inputs.get(role), data.get(role)
        if before is None and after is None:
            continue
        if before is None or after is None:
            diffs.append(f"input {role} {'added' if before is None else 'removed'}")
        elif {k: v for k, v in before.items() if k != "path"} != digest(after):
            diffs.append(f"input {role} changed ({before.get('path', '?')} -> {after}, other content)")
    if diffs:
        raise UsageError(f"{option} {out}: the run there was started with other settings or training data ({'; '.join(diffs)}); "
                         f"a resumed run keeps them: pass --overwrite to train a new run in its place, or choose another {option}")


def check_resume(resume: Path | None, cfg: Any, *, test_only: bool, format: str) -> None:
    """Refuse, before anything is written, a ``--test-only`` with no split to evaluate and a resumed run that has
    nothing left to train (it would write nothing and print an empty record)."""
    if test_only and not cfg.val_splits:
        raise UsageError("--test-only: no test split to evaluate; pass --val-splits, e.g. LL-A,WL")
    if resume is not None and not test_only:
        from .checkpoint import load_checkpoint

        done = int(load_checkpoint(resume, format=format).get("epoch", 0))
        if done >= cfg.epochs:
            raise UsageError(f"{resume}: has trained {done} of {cfg.epochs} epochs already; pass --epochs N (more than {done}) to train on, "
                             f"or --test-only to evaluate it")


def run_training(cfg: Any, body: Callable[..., dict[str, Any]], folder: Callable[..., Any], *, resume: Path | None, test_only: bool,
                 overwrite: bool, config_file: Path | None, on_step: StepCallback | None, notify: Callable[[str], None] | None,
                 checkpoint_format: str, check_split: Callable[[Any, str], Any]) -> dict[str, Any]:
    """What every trainer's ``run`` does around its own ``body``: check the batch against the processes, the device,
    the resume and every test split before anything is written; then, on rank 0, run ``body`` inside ``folder``
    (a :func:`run_folder` context: the run folder and its record, owning every file the run leaves) and, on the
    other ranks or for ``test_only``, without one; restore torch's determinism switch and leave the process group.

    ``body(cfg, env, *, resume, test_only, on_step, folder, notify)`` trains (or tests) and returns the record.
    """
    from .results import owned_files

    env = Distributed.from_env()
    if cfg.batch_size % env.world_size:
        raise UsageError(f"batch size {cfg.batch_size} is not divisible by the {env.world_size} processes")
    check_device(cfg.device)
    check_resume(resume, cfg, test_only=test_only, format=checkpoint_format)
    for split in cfg.val_splits:  # fail before anything is written or trained
        check_split(cfg, split)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    try:
        if test_only or not env.is_main:  # only rank 0 writes
            return body(cfg, env, resume=resume, test_only=test_only, on_step=on_step if env.is_main else None, folder=Path(cfg.output_dir),
                        notify=notify if env.is_main else None)
        with folder(cfg, env, resume=resume, overwrite=overwrite, config_file=config_file) as (where, recorded):
            try:
                return body(cfg, env, resume=resume, test_only=False, on_step=on_step, folder=where, notify=notify)
            finally:
                recorded.own(*owned_files(where))
    finally:
        # A library caller (a notebook, the tests) gets its global switch back.
        torch.use_deterministic_algorithms(deterministic_before)
        if env.enabled and dist.is_initialized():
            dist.destroy_process_group()


def restore(ckpt: dict[str, Any], source: Path, net: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, cfg: Any, saved_config: dict[str, Any],
            *, test_only: bool, notify: Callable[[str], None] | None, what: str) -> tuple[int, list[dict[str, Any]]]:
    """Load a checkpoint's weights (and, to continue training, optimiser, schedule and RNG, with the optimiser
    settings of ``cfg`` applied); returns ``(epochs completed, history)``. ``what`` names the model in errors."""
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise InputError(f"{source}: does not fit a {what} ({str(exc).splitlines()[0]})") from None
    start_epoch = int(ckpt.get("epoch", 0))
    if "optimizer" in ckpt and not test_only:
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError as exc:
            raise InputError(f"{source}: its optimiser state does not fit this {what} run ({exc})") from None
        scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        applied = apply_optimizer_settings(optimizer, scheduler, cfg, saved_config)
        if applied and notify is not None:
            notify(f"{Path(source).name}: applied to the restored optimiser and schedule: {', '.join(applied)} "
                   f"(epoch {start_epoch + 1} trains at lr {optimizer.param_groups[0]['lr']:g})")
    return start_epoch, list(ckpt.get("history", []))


def check_finite(total: torch.Tensor, step: int) -> None:
    """Raise FloatingPointError on every process when the loss of any process is NaN or infinite.

    Under DDP a process that raised alone would leave the others waiting in the next collective (the gradient
    all-reduce) for ever, so every process's loss is gathered first (one small all-reduce per step) and all
    raise together with the same message.
    """
    loss = total.detach().reshape(1)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        losses = loss.new_zeros(dist.get_world_size())
        losses[dist.get_rank()] = loss[0]
        dist.all_reduce(losses)  # NaN or inf on one process stays NaN or inf in its slot
    else:
        losses = loss
    values = losses.tolist()
    bad = [rank for rank, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        where = f" on process {', '.join(map(str, bad))} of {len(values)}" if len(values) > 1 else ""
        raise FloatingPointError(f"loss is {values[bad[0]]} at step {step}{where}: lower the learning rate or check the inputs")


def fit_epoch(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    conditions: Sequence[str],
    target_keys: Sequence[str],
    loss_fn: Callable[[Any, dict[str, Any]], dict[str, torch.Tensor]],
    amp: bool = False,
    channels_last: bool = False,
    steps: int | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    scaler: Any = None,
    adaptation: Any = None,
) -> dict[str, float]:
    """Train for one pass over ``loader`` (at most ``steps`` batches); return the mean of each loss.

    Each batch's ``conditions`` (``"ll"``, ``"wl"``) go through ``model`` as ``{condition: input}`` under autocast
    when ``amp``; its ``target_keys`` present are moved to ``device``; ``loss_fn(outputs, batch)`` returns the
    named losses with their sum as ``total``. ``adaptation`` (dann, advent) adds loss terms and its own update.

    Raises:
        FloatingPointError: the loss became NaN or infinite, on any process of a distributed run (the step is
            not applied; every process raises, with the same message).
    """
    model.train()
    sums: dict[str, float] = {}
    n = 0
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for i, batch in enumerate(loader):
        if steps is not None and i >= steps:
            break
        for key in target_keys:
            if key in batch:
                batch[key] = batch[key].to(device, non_blocking=True)
        inputs = {c: batch[c].to(device, non_blocking=True).contiguous(memory_format=fmt) for c in conditions}
        with autocast(device, amp):
            outputs = model(inputs)
        losses = loss_fn(outputs, batch)
        if adaptation is not None:
            extra = adaptation.losses(outputs)
            losses.update(extra)
            losses["total"] = losses["total"] + sum(extra.values())
        check_finite(losses["total"], i)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(losses["total"]).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            losses["total"].backward()
            optimizer.step()
        values = {k: float(v.detach()) for k, v in losses.items()}
        if adaptation is not None:
            values.update(adaptation.after_step(outputs))
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        n += 1
        if on_step is not None:
            on_step(i, values)
    return {k: v / max(n, 1) for k, v in sums.items()}


@dataclass
class FitTask:
    """What a trainer gives :func:`fit`.

    Attributes:
        net: the network whose state_dict is saved.
        model: what a step calls (``{condition: input} -> outputs``), e.g. a pair wrapper of ``net``.
        dataset: the training dataset (with ``set_epoch``).
        conditions: the batch keys fed to ``model``.
        target_keys: the batch keys moved to the device for ``loss_fn``.
        loss_fn: ``(outputs, batch) -> {name: loss, ..., "total": sum}``.
        evaluate: rank 0's evaluation, returning ``{"AP/<split>": ...}`` (None: never evaluates).
        adaptation: a :class:`baselines.adaptation.Adaptation` or None.
        checkpoint_format: the checkpoint's format tag.
        checkpoint_extra: further checkpoint fields (``origin`` etc.).
        size_error: the message when the dataset holds fewer samples than one batch.
    """

    net: nn.Module
    model: nn.Module
    dataset: Any
    conditions: Sequence[str]
    target_keys: Sequence[str]
    loss_fn: Callable[[Any, dict[str, Any]], dict[str, torch.Tensor]]
    evaluate: Callable[[], dict[str, Any]] | None = None
    adaptation: Any = None
    checkpoint_format: str | None = None
    checkpoint_extra: dict[str, Any] = field(default_factory=dict)
    size_error: str = "fewer training samples than one batch"


def fit(task: FitTask, cfg: Any, env: Distributed, device: torch.device, folder: Path, optimizer: torch.optim.Optimizer, scheduler: Any, *,
        start_epoch: int, history: list[dict[str, Any]], saved_config: dict[str, Any], on_step: StepCallback | None) -> dict[str, Any]:
    """Train ``task`` from ``start_epoch`` to ``cfg.epochs``; return the last epoch's record.

    Each process gets ``batch_size / world_size`` samples per step (DDP under torchrun). After each epoch rank 0
    writes ``checkpoint.pth`` (model, optimiser, schedule, epoch, ``saved_config``, RNG, history), ``metrics.json``
    (one record per epoch: lr, mean losses over all processes, ``AP/<split>`` on evaluation epochs) and TensorBoard
    scalars; it evaluates every ``cfg.eval_every`` epochs and after the last.
    """
    dataset = task.dataset
    per_process = cfg.batch_size // env.world_size
    if len(dataset) < per_process * env.world_size:
        raise InputError(f"{task.size_error}: {len(dataset)} training instances, fewer than one batch of {cfg.batch_size}")
    sampler = DistributedSampler(dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=cfg.seed, drop_last=True)
    if task.adaptation is not None:  # its schedules run over the whole training
        task.adaptation.total_steps = cfg.epochs * min(len(dataset) // cfg.batch_size, cfg.steps_per_epoch or len(dataset))
    model = task.model
    if env.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    writer = tensorboard(folder) if env.is_main else None
    scaler = scaler_for(cfg, device)
    record: dict[str, Any] = {}
    for epoch in range(start_epoch, cfg.epochs):
        loader = epoch_loader(dataset, sampler, cfg, per_process, epoch, env.rank)
        steps = min(len(loader), cfg.steps_per_epoch or len(loader))

        def step_done(i: int, losses: dict[str, float], epoch: int = epoch, steps: int = steps) -> None:
            if on_step is not None:
                on_step(epoch + 1, i + 1, steps, losses)
            if writer is not None:
                for key, value in losses.items():
                    writer.add_scalar(f"step/{key}", value, epoch * steps + i + 1)

        lr = optimizer.param_groups[0]["lr"]
        losses = fit_epoch(model, loader, optimizer, device, conditions=task.conditions, target_keys=task.target_keys, loss_fn=task.loss_fn,
                           amp=cfg.amp, channels_last=cfg.channels_last, steps=steps, on_step=step_done, scaler=scaler, adaptation=task.adaptation)
        if env.enabled:  # the record holds the mean over all processes, not rank 0's share
            keys = sorted(losses)
            packed = torch.tensor([losses[k] for k in keys], dtype=torch.float64, device=device)
            dist.all_reduce(packed)
            losses = {k: float(v) / env.world_size for k, v in zip(keys, packed.tolist())}
        scheduler.step()
        record = {"epoch": epoch + 1, "lr": lr, **{f"loss/{k}": v for k, v in losses.items()}}
        last = epoch + 1 == cfg.epochs
        history.append(record)

        def save() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            fmt = {"format": task.checkpoint_format} if task.checkpoint_format else {}
            save_checkpoint(
                folder / "checkpoint.pth", **fmt,
                model=task.net.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                epoch=epoch + 1, config=saved_config, rng=rng_state(), history=history,
                **({"adaptation": task.adaptation.state_dict()} if task.adaptation is not None else {}), **task.checkpoint_extra,
            )
            write_json_atomic(folder / "metrics.json", history, indent=1)

        if env.is_main and task.evaluate is not None and cfg.val_splits and (last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0)):
            try:
                record.update(task.evaluate())
            except BaseException:
                save()  # the epoch's training is kept (resumable) even when its evaluation fails
                raise
        if env.is_main:
            save()
            if writer is not None:
                for key, value in record.items():
                    if key != "epoch" and isinstance(value, (int, float)):
                        writer.add_scalar(key, value, epoch + 1)
                writer.flush()
        if env.enabled:
            dist.barrier()
    if writer is not None:
        writer.close()
    return record


def measure_rates(task: FitTask, cfg: Any, device: torch.device, steps: int = 20) -> dict[str, Any]:
    """Measure the data pipeline and the model separately, in one process, as the training run would use them.

    ``data_samples_per_s``: training samples (pairs for paired variants) the loader delivers per second with
    ``cfg.workers`` workers, nothing else running. ``model_samples_per_s``: samples per second of training steps
    (forward, losses, backward, optimiser) on one batch already on the device. When the first is lower, the
    accelerator would wait for data (``"bound": "data"``). Nothing is written.
    """
    if steps < 1:
        raise UsageError(f"--benchmark-steps must be at least 1, got {steps}")
    optimizer, _ = build_optimizer(task.net, cfg)
    dataset = task.dataset
    per_process = min(cfg.batch_size, len(dataset))
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=cfg.seed, drop_last=False)

    def batches() -> Any:
        epoch = 0
        while True:
            yield from epoch_loader(dataset, sampler, cfg, per_process, epoch, 0)
            epoch += 1

    stream = batches()
    first = next(stream)  # starts the workers
    start = time.perf_counter()
    delivered = 0
    for _ in range(steps):
        delivered += len(next(stream)["meta"]["image_id"])
    data_rate = delivered / (time.perf_counter() - start)

    model = task.model.train()
    scaler = scaler_for(cfg, device)
    for key in task.target_keys:
        if key in first:
            first[key] = first[key].to(device)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    inputs = {c: first[c].to(device).contiguous(memory_format=fmt) for c in task.conditions}

    def step() -> None:
        with autocast(device, cfg.amp):
            outputs = model(inputs)
        loss = task.loss_fn(outputs, first)["total"]
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    step()  # warm-up (allocations, cuDNN autotuning)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    model_rate = steps * len(first["meta"]["image_id"]) / (time.perf_counter() - start)
    return {
        "device": str(device), "amp": cfg.amp, "channels_last": cfg.channels_last, "workers": cfg.workers, "batch_size": per_process,
        "input_size": list(cfg.input_size), "steps": steps,
        "data_samples_per_s": round(data_rate, 2), "model_samples_per_s": round(model_rate, 2),
        "data_over_model": round(data_rate / model_rate, 3), "bound": "data" if data_rate < model_rate else "model",
    }
