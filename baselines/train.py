"""Training the ExLPose reference (CPN + LSBN + LUPI), torchvision ``references/`` style; ``exlpose-train``
(:mod:`baselines.cli`) is its command.

Single process: ``exlpose-train --variant lsbn-lupi --dataset ExLPose/``. Several processes:
``torchrun --nproc_per_node 4 -m baselines.cli train --variant lsbn-lupi --dataset ExLPose/`` (RANK, WORLD_SIZE and
LOCAL_RANK come from torchrun; each process gets ``batch_size / WORLD_SIZE`` pairs; rank 0 writes checkpoints,
logs and evaluates). ``--resume`` continues a run from its ``checkpoint.pth`` exactly (configuration, model,
optimiser, scheduler, epoch, RNG; only flags given explicitly change the configuration, each with a warning);
``--test-only`` evaluates a checkpoint; ``--benchmark-steps N`` measures the data pipeline beside the model's step
rate; ``exlpose-train import-official CKPT --out OURS.pth`` converts the authors' released checkpoint.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import random
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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

from .adaptation import optimised_modules, variant_adaptation
from .checkpoint import checkpoint_config, checkpoint_origin, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig, make_config, read_config_file
from .engine import PairModel, autocast, compute_losses, cpu_bf16_flags, evaluate_split, train_one_epoch
from .inputs import dataset_options, inference_settings
from .models import build_cpn
from .models.cpn import CPN, init_output_scale
from .options import check_device
from .results import owned_files
from .splits import resolve_split

__all__ = ["run", "StepCallback", "benchmark", "resume_config", "build_optimizer", "apply_optimizer_settings", "split_annotation",
           "evaluate_splits", "Distributed", "PRETRAINED_HINT", "RUN_IDENTITY", "TRAIN_COMMAND"]

# The provenance record's command for a run folder (exlpose_data.outputs names such a folder a "training run").
TRAIN_COMMAND = "exlpose-train"
# What a run *is*: the network, its inputs and what it learns. A resumed run into the same folder keeps these (and
# the training data: the dataset's manifest, the training annotation file, the pack, the ImageNet weights);
# the schedule, loss weights, batch size, evaluation and runtime settings may change on resume.
RUN_IDENTITY = ("variant", "backbone", "from_scratch", "input_size", "heatmap_size", "heatmap_convention", "wl_normalisation",
                "padding", "global_mask", "head_init", "lupi_gram", "enhancer", "lime_downscale")
_DATA_INPUTS = ("dataset", "train_ann", "pack", "pretrained")
# Optimiser and schedule settings of the config that a resumed run applies to the restored optimiser.
_OPTIMISER_SETTINGS = ("lr", "weight_decay", "lr_milestones", "lr_gamma")

# What a user without ImageNet weights on the machine is told (nothing is downloaded at run time).
PRETRAINED_HINT = (
    "no ImageNet weights given: the reference starts from torchvision's ImageNet ResNet; on a machine with "
    "internet download https://download.pytorch.org/models/resnet50-19c8e357.pth (the reference's; "
    "resnet18-5c106cde.pth etc. for other depths), copy it here and pass --pretrained PATH, or pass "
    "--from-scratch to train without pretraining"
)

StepCallback = Callable[[int, int, int, dict[str, float]], None]
"""Called after each training step with ``(epoch, step, steps in the epoch, losses)``, epoch and step from 1."""


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


def build_optimizer(net: nn.Module, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.MultiStepLR]:
    """Adam with weight decay on everything but biases, and the lr halved at the milestone epochs."""
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith(".bias") else decay).append(p)
    optimizer = torch.optim.Adam(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=cfg.lr_milestones, gamma=cfg.lr_gamma)
    return optimizer, scheduler


def apply_optimizer_settings(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.MultiStepLR, cfg: TrainConfig,
                             saved: dict[str, Any]) -> list[str]:
    """Give a restored optimiser and schedule the optimiser settings of ``cfg`` that differ from ``saved`` (the
    checkpoint's config); returns ``name old -> new`` for each one applied (empty when none differ).

    The schedule restarts from ``cfg.lr`` as if it had been the learning rate from the start: the epoch's lr is
    ``lr x gamma^(milestones passed)``; weight decay goes to the decayed group (biases keep none).
    """
    changed = differences({k: saved.get(k) for k in _OPTIMISER_SETTINGS}, {k: getattr(cfg, k) for k in _OPTIMISER_SETTINGS})
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


def split_annotation(cfg: TrainConfig, split: str) -> tuple[Path, str]:
    """The annotation file and dataset condition of a test split of ``cfg.dataset`` (see :mod:`.splits`)."""
    if cfg.dataset is None:
        raise UsageError("no dataset: pass --dataset ROOT (the folder holding bright/ and dark/)")
    return resolve_split(cfg.dataset, cfg.annotations, split)


def _train_annotation(cfg: TrainConfig) -> Path:
    if cfg.train_ann is not None:
        return cfg.train_ann
    from exlpose_data.release import open_release

    if cfg.dataset is None:
        raise UsageError("no dataset: pass --dataset ROOT (the folder holding bright/ and dark/)")
    key = "train_WL" if cfg.variant == "baseline-well" else "train_LL"
    return open_release(cfg.dataset, cfg.annotations).annotation_file(key)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class TrainWarning(UserWarning):
    """A setting that works but is probably not what the user wants (exlpose-train prints it as a warning line)."""


def _warn(message: str) -> None:
    warnings.warn(message, TrainWarning, stacklevel=3)


def check_precision(cfg: TrainConfig, device: torch.device, flags: list[str] | None = None) -> None:
    """Warn when ``--amp`` asks for bfloat16 on a CPU without bfloat16 units (``flags``: the CPU's, read when None)."""
    if not (cfg.amp and device.type == "cpu"):
        return
    flags = cpu_bf16_flags() if flags is None else flags
    if flags == []:
        _warn("--amp on a CPU without bfloat16 units (no avx512_bf16 or AMX): bfloat16 autocast is usually slower than "
              "float32 there (2-3x here); benchmarks/bench_precision.py measures it on this machine")


def _setup(cfg: TrainConfig, env: Distributed) -> torch.device:
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


def _tensorboard(output_dir: Path) -> Any:
    """The run's TensorBoard writer (scalars under ``output_dir/tensorboard``)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(output_dir / "tensorboard"))


def evaluate_splits(net: CPN, cfg: TrainConfig, device: torch.device, splits: list[str] | None = None,
                    settings: Any = None) -> dict[str, float]:
    """AP@0.5:0.95 of ``net`` on each test split (GT boxes), as ``{"AP/LL-A": ..., ...}``; ``settings``: the
    :class:`baselines.inputs.InferenceSettings` to run with (default ours with ``cfg.flip_test``)."""
    out = {}
    for split in splits if splits is not None else cfg.val_splits:
        ann, condition = split_annotation(cfg, split)
        metrics, _ = evaluate_split(net, cfg, cfg.dataset, ann, condition, device, settings=settings)
        out[f"AP/{split}"] = metrics.AP
    return out


def _epoch_loader(dataset: Any, sampler: DistributedSampler, cfg: TrainConfig, per_process: int, epoch: int, rank: int) -> DataLoader:
    sampler.set_epoch(epoch)
    pin = cfg.device.startswith("cuda")
    # Augmentation depends only on (seed, epoch, rank), in worker processes (their seeds come from the loader's
    # generator) and in this one (workers=0): a resumed run draws the same as an unbroken one, and no two
    # processes share a stream.
    dataset.set_epoch(epoch, seed=cfg.seed, rank=rank)
    generator = torch.Generator().manual_seed((cfg.seed * 1_000_003 + epoch) * 4_099 + rank)
    return DataLoader(dataset, batch_size=per_process, sampler=sampler, num_workers=cfg.workers, drop_last=True, generator=generator,
                      pin_memory=pin, persistent_workers=False)


def _check_start(cfg: TrainConfig) -> None:
    """Refuse a fresh run that would silently train from scratch."""
    if cfg.pretrained is None and not cfg.from_scratch:
        raise UsageError(PRETRAINED_HINT)


def _build_net(cfg: TrainConfig, device: torch.device, env: Distributed) -> CPN:
    net = build_cpn(cfg.backbone, lsbn=cfg.spec.lsbn, pretrained=cfg.pretrained, heatmap_size=cfg.heatmap_size)
    if cfg.head_init == "target-scale":
        init_output_scale(net)
    if cfg.sync_bn and env.enabled:
        from .syncbn import convert_global_bn

        convert_global_bn(net)
    elif cfg.sync_bn and env.is_main:
        _warn("--sync-bn: one process, so BatchNorm statistics are the batch's anyway (it matters under torchrun)")
    net = net.to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def _scaler(cfg: TrainConfig, device: torch.device) -> Any:
    """A GradScaler for float16 on CUDA; bfloat16 (CPU) needs none."""
    if cfg.amp and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


def _train_dataset(cfg: TrainConfig) -> Any:
    from exlpose_data.datasets import ExLPoseTopDown

    from .enhance import attach_enhancer

    if not cfg.spec.paired:
        from .pairing import UnpairedPairs

        unpaired = UnpairedPairs.from_annotation(cfg.dataset, _train_annotation(cfg), seed=cfg.seed, pack=cfg.pack, **dataset_options(cfg))
        attach_enhancer(unpaired.ll, cfg, fill=True)
        return unpaired
    dataset = ExLPoseTopDown(
        cfg.dataset, _train_annotation(cfg), condition=cfg.spec.dataset_condition,  # type: ignore[arg-type]
        train=True, pack=cfg.pack, **dataset_options(cfg),
    )
    return attach_enhancer(dataset, cfg, fill=True)


def run(cfg: TrainConfig, *, resume: Path | None = None, test_only: bool = False, on_step: StepCallback | None = None,
        overwrite: bool = False, config_file: Path | None = None, notify: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train (or with ``test_only`` evaluate) as ``cfg`` says; return the last epoch's record.

    The record holds ``epoch``, ``lr``, the mean losses and, on evaluation epochs, ``AP/<split>``. Rank 0
    writes ``checkpoint.pth`` after every epoch, ``metrics.json`` (one record per epoch) and, when tensorboard is
    installed, scalars under ``tensorboard/``. ``on_step`` (progress) is called on rank 0 only.

    ``cfg.output_dir`` must be new or empty, or the run folder ``resume``'s checkpoint lies in (a resumed run keeps
    its :data:`RUN_IDENTITY` settings and training data), or be replaced with ``overwrite`` (the new run is built
    beside the old one and swapped in when it completes). It never is, holds or sits inside an input. The folder's
    provenance record (:mod:`exlpose_data.provenance`) holds the settings and the digests of the dataset's
    manifest, the training annotation file, the pack, the ImageNet weights and ``config_file``; it stays marked
    incomplete until the run completes. ``notify`` receives one-line notices (optimiser settings applied on resume).
    """
    env = Distributed.from_env()
    if cfg.batch_size % env.world_size:
        raise UsageError(f"batch size {cfg.batch_size} is not divisible by the {env.world_size} processes")
    check_device(cfg.device)
    for split in cfg.val_splits:  # fail before anything is written or trained
        split_annotation(cfg, split)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    try:
        if test_only or not env.is_main:  # only rank 0 writes
            return _run(cfg, env, resume=resume, test_only=test_only, on_step=None if not env.is_main else on_step, folder=cfg.output_dir,
                        notify=notify if env.is_main else None)
        with _run_folder(cfg, env, resume=resume, overwrite=overwrite, config_file=config_file) as (folder, recorded):
            try:
                return _run(cfg, env, resume=resume, test_only=False, on_step=on_step, folder=folder, notify=notify)
            finally:
                recorded.own(*owned_files(folder))
    finally:
        # A library caller (a notebook, the tests) gets its global switch back.
        torch.use_deterministic_algorithms(deterministic_before)
        if env.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _data_inputs(cfg: TrainConfig) -> dict[str, Path]:
    train_ann = _train_annotation(cfg) if cfg.dataset is not None or cfg.train_ann is not None else None
    found = {"dataset": cfg.dataset, "train_ann": train_ann, "pack": cfg.pack, "pretrained": cfg.pretrained}
    return {role: Path(p) for role, p in found.items() if p is not None}


@contextlib.contextmanager
def _run_folder(cfg: TrainConfig, env: Distributed, *, resume: Path | None, overwrite: bool,
                config_file: Path | None) -> Iterator[tuple[Path, RecordedRun]]:
    """The folder a run writes into (``cfg.output_dir``, or a sibling it replaces with ``overwrite``) and its record."""
    out = Path(cfg.output_dir)
    option = "--output-dir"
    in_place = resume is not None and _same_path(Path(resume).parent, out)
    data = _data_inputs(cfg)
    inputs: dict[str, Path] = {**data, **({"config": Path(config_file)} if config_file is not None else {})}
    if resume is not None and not in_place:
        inputs["resume"] = Path(resume)
    read = [*inputs.values(), cfg.annotations]
    kind = what_is(out)
    if kind == "training run" and not (overwrite or in_place):
        raise UsageError(f"{option} {out}: already holds a training run; pass --resume {out / 'checkpoint.pth'} to continue it, "
                         f"or --overwrite to replace it (or choose another {option})")
    check_output(out, inputs=read, writes="folder", produces="training run", replaces=["training run"], overwrite=overwrite,
                 resumes=in_place, files=["checkpoint.pth", "metrics.json", "tensorboard", "enhanced"], option=option)
    if cfg.enhance_cache is not None and (cfg.enhancer or cfg.spec.enhancer):
        check_output(cfg.enhance_cache, inputs=read, writes="folder", produces="enhanced-image cache",
                     replaces=["folder", "enhanced-image folder", "training run"], resumes=True, option="--enhance-cache")
    if overwrite and env.enabled and kind is not None:
        raise UsageError(f"{option} {out}: --overwrite under torchrun is not supported; remove or rename the old run first")
    if in_place and not overwrite:
        _check_resumable(out, cfg, data, option)
    settings = cfg.to_dict()
    existed, was_empty = out.exists(), kind is None
    try:
        with building_folder(out, overwrite=overwrite) as folder, recorded_run(
            folder, "train", command=TRAIN_COMMAND, settings=settings, inputs=inputs,
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


def _check_resumable(out: Path, cfg: TrainConfig, data: dict[str, Path], option: str) -> None:
    """Refuse resuming the run in ``out`` with another identity or other training data than it was started with."""
    previous = read_record(out)["steps"].get("train")
    if previous is None:  # a run written before runs had records
        return
    old = previous["settings"]
    diffs = differences({k: old.get(k, "unset") for k in RUN_IDENTITY}, {k: cfg.to_dict()[k] for k in RUN_IDENTITY})
    recorded_inputs = previous.get("inputs", {})
    for role in _DATA_INPUTS:
        before, now = recorded_inputs.get(role), data.get(role)
        if before is None and now is None:
            continue
        if before is None or now is None:
            diffs.append(f"input {role} {'added' if before is None else 'removed'}")
        elif {k: v for k, v in before.items() if k != "path"} != digest(now):
            diffs.append(f"input {role} changed ({before.get('path', '?')} -> {now}, other content)")
    if diffs:
        raise UsageError(f"{option} {out}: the run there was started with other settings or training data ({'; '.join(diffs)}); "
                         f"a resumed run keeps them: pass --overwrite to train a new run in its place, or choose another {option}")


def _run(cfg: TrainConfig, env: Distributed, *, resume: Path | None, test_only: bool, on_step: StepCallback | None, folder: Path,
         notify: Callable[[str], None] | None) -> dict[str, Any]:
    saved_cfg = cfg
    if not _same_path(folder, Path(cfg.output_dir)):  # an --overwrite run is built beside the old one
        cfg = cfg.model_copy(update={"output_dir": folder})
    if resume is None:
        _check_start(cfg)
    device = _setup(cfg, env)
    net = _build_net(cfg, device, env)
    adaptation = variant_adaptation(cfg, net, env.world_size)
    optimizer, scheduler = build_optimizer(optimised_modules(net, adaptation), cfg)
    start_epoch = 0
    history: list[dict[str, Any]] = []
    if resume is not None:
        ckpt = load_checkpoint(resume)
        try:
            net.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise InputError(f"{resume}: does not fit a {cfg.backbone} {cfg.variant} model ({str(exc).splitlines()[0]})") from None
        start_epoch = int(ckpt.get("epoch", 0))
        if "optimizer" in ckpt and not test_only:
            try:
                optimizer.load_state_dict(ckpt["optimizer"])
            except ValueError as exc:
                raise InputError(f"{resume}: its optimiser state does not fit this {cfg.variant} run ({exc})") from None
            scheduler.load_state_dict(ckpt["scheduler"])
            set_rng_state(ckpt["rng"])
            applied = apply_optimizer_settings(optimizer, scheduler, cfg, checkpoint_config(ckpt))
            if applied and notify is not None:
                notify(f"{Path(resume).name}: applied to the restored optimiser and schedule: {', '.join(applied)} "
                       f"(epoch {start_epoch + 1} trains at lr {optimizer.param_groups[0]['lr']:g})")
        if adaptation is not None and "adaptation" in ckpt:
            adaptation.load_state_dict(ckpt["adaptation"])
        history = list(ckpt.get("history", []))
    if test_only:
        # an imported official checkpoint is tested the authors' way, as exlpose-eval model does by default
        chosen = inference_settings(cfg, checkpoint_origin(ckpt) if resume is not None else "trained")
        return {"epoch": start_epoch, **(evaluate_splits(net, cfg, device, settings=chosen) if env.is_main else {}),
                "flip_test": chosen.flip_test, "crop": chosen.crop, "decode": chosen.decode, "input_scale": chosen.input_scale}

    dataset = _train_dataset(cfg)
    per_process = cfg.batch_size // env.world_size
    if len(dataset) < per_process * env.world_size:
        raise InputError(f"{cfg.train_ann or cfg.dataset}: {len(dataset)} training instances, fewer than one batch of {cfg.batch_size}")
    sampler = DistributedSampler(dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=cfg.seed, drop_last=True)
    if adaptation is not None:  # its schedules run over the whole training
        adaptation.total_steps = cfg.epochs * min(len(dataset) // cfg.batch_size, cfg.steps_per_epoch or len(dataset))
    model: nn.Module = PairModel(net)
    if env.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    writer = _tensorboard(folder) if env.is_main else None
    scaler = _scaler(cfg, device)
    record: dict[str, Any] = {}
    for epoch in range(start_epoch, cfg.epochs):
        loader = _epoch_loader(dataset, sampler, cfg, per_process, epoch, env.rank)
        steps = min(len(loader), cfg.steps_per_epoch or len(loader))

        def step_done(i: int, losses: dict[str, float], epoch: int = epoch, steps: int = steps) -> None:
            if on_step is not None:
                on_step(epoch + 1, i + 1, steps, losses)
            if writer is not None:
                for key, value in losses.items():
                    writer.add_scalar(f"step/{key}", value, epoch * steps + i + 1)

        lr = optimizer.param_groups[0]["lr"]
        losses = train_one_epoch(model, loader, optimizer, cfg, device, steps=steps, on_step=step_done, scaler=scaler, adaptation=adaptation)
        if env.enabled:  # the record holds the mean over all processes, not rank 0's share
            keys = sorted(losses)
            packed = torch.tensor([losses[k] for k in keys], dtype=torch.float64, device=device)
            dist.all_reduce(packed)
            losses = {k: float(v) / env.world_size for k, v in zip(keys, packed.tolist())}
        scheduler.step()
        record = {"epoch": epoch + 1, "lr": lr, **{f"loss/{k}": v for k, v in losses.items()}}
        last = epoch + 1 == cfg.epochs
        if env.is_main and cfg.val_splits and (last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0)):
            record.update(evaluate_splits(net, cfg, device))
            record["flip_test"] = cfg.flip_test
        history.append(record)
        if env.is_main:
            folder.mkdir(parents=True, exist_ok=True)
            save_checkpoint(
                folder / "checkpoint.pth",
                model=net.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                epoch=epoch + 1, config=saved_cfg.to_dict(), rng=rng_state(), history=history,
                **({"adaptation": adaptation.state_dict()} if adaptation is not None else {}),
            )
            write_json_atomic(folder / "metrics.json", history, indent=1)
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


def benchmark(cfg: TrainConfig, steps: int = 20) -> dict[str, Any]:
    """Measure the data pipeline and the model separately, in one process, as the training run would use them.

    ``data_samples_per_s``: training samples (pairs for paired variants) the loader delivers per second with
    ``cfg.workers`` workers, nothing else running. ``model_samples_per_s``: samples per second of training steps
    (forward, losses, backward, optimiser) on one batch already on the device. When the first is lower, the
    accelerator would wait for data (``"bound": "data"``). Nothing is written.
    """
    if steps < 1:
        raise UsageError(f"--benchmark-steps must be at least 1, got {steps}")
    env = Distributed()
    device = _setup(cfg, env)
    net = _build_net(cfg, device, env)
    optimizer, _ = build_optimizer(net, cfg)
    dataset = _train_dataset(cfg)
    per_process = min(cfg.batch_size, len(dataset))
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=cfg.seed, drop_last=False)

    def batches() -> Any:
        epoch = 0
        while True:
            yield from _epoch_loader(dataset, sampler, cfg, per_process, epoch, 0)
            epoch += 1

    stream = batches()
    first = next(stream)  # starts the workers
    start = time.perf_counter()
    delivered = 0
    for _ in range(steps):
        delivered += len(next(stream)["meta"]["image_id"])
    data_rate = delivered / (time.perf_counter() - start)

    model = PairModel(net).train()
    scaler = _scaler(cfg, device)
    for key in [k for k in first if k.startswith(("heatmaps", "target_weight", "visible_weight"))]:  # with unpaired "_wl" ones
        first[key] = first[key].to(device)
    inputs = {c: first[c].to(device) for c in cfg.spec.conditions}
    if cfg.channels_last:
        inputs = {c: x.contiguous(memory_format=torch.channels_last) for c, x in inputs.items()}

    def step() -> None:
        with autocast(device, cfg.amp):
            outputs = model(inputs)
        loss = compute_losses(outputs, first, cfg)["total"]
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
        "benchmark": "exlpose-train", "variant": cfg.variant, "backbone": cfg.backbone, "device": str(device),
        "amp": cfg.amp, "channels_last": cfg.channels_last, "workers": cfg.workers, "batch_size": per_process,
        "input_size": list(cfg.input_size), "steps": steps,
        "data_samples_per_s": round(data_rate, 2), "model_samples_per_s": round(model_rate, 2),
        "data_over_model": round(data_rate / model_rate, 3), "bound": "data" if data_rate < model_rate else "model",
    }


def resume_config(checkpoint: Path, config: Path | None, overrides: dict[str, Any], *, warn: Callable[[str], None] | None = None) -> TrainConfig:
    """The configuration a resumed (or ``--test-only``) run uses: the checkpoint's own, then ``config``'s
    settings and the flags given (``overrides`` that are not None) on top.

    A resumed run rebuilding defaults would silently train another variant, on no dataset, at another learning
    rate; so only what is given explicitly changes, and each changed field is reported to ``warn`` (rank 0 only).
    """
    saved = make_config(checkpoint_config(load_checkpoint(checkpoint)), source=str(checkpoint)).to_dict()
    given = read_config_file(config) if config is not None else {}
    given.update({k: v for k, v in overrides.items() if v is not None})
    cfg = make_config({**saved, **given}, source=str(config) if config is not None else "options")
    changed = {k: v for k, v in cfg.to_dict().items() if v != saved[k]}
    if warn is not None and Distributed.from_env().is_main:
        for key, value in changed.items():
            warn(f"{key}: {saved[key]!r} in {checkpoint.name} -> {value!r} (given explicitly)")
    return cfg
