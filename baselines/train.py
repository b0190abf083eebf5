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

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from exlpose_data.errors import UsageError
from exlpose_data.outputs import check_output
from exlpose_data.provenance import RecordedRun

from .adaptation import optimised_modules, variant_adaptation
from .checkpoint import CHECKPOINT_FORMAT, checkpoint_config, checkpoint_origin, load_checkpoint
from .config import TrainConfig, make_config, read_config_file
from .engine import _TARGET_KEYS, PairModel, compute_losses, evaluate_split
from .loop import (
    Distributed,
    FitTask,
    StepCallback,
    TrainWarning,
    apply_optimizer_settings,
    build_optimizer,
    check_precision,
    fit,
    measure_rates,
    place_net,
    restore,
    run_folder,
    run_training,
    same_path,
    setup,
    train_annotation,
)
from .inputs import dataset_options, inference_settings
from .models import build_cpn
from .models.cpn import CPN, init_output_scale
from .splits import resolve_split

__all__ = ["run", "StepCallback", "benchmark", "resume_config", "build_optimizer", "apply_optimizer_settings", "split_annotation",
           "evaluate_splits", "Distributed", "PRETRAINED_HINT", "RUN_IDENTITY", "TRAIN_COMMAND", "TrainWarning", "check_precision"]

# The provenance record's command for a run folder (exlpose_data.outputs names such a folder a "training run").
TRAIN_COMMAND = "exlpose-train"
# What a run *is*: the network, its inputs and what it learns. A resumed run into the same folder keeps these (and
# the training data: the dataset's manifest, the training annotation file, the pack, the ImageNet weights);
# the schedule, loss weights, batch size, evaluation and runtime settings may change on resume.
RUN_IDENTITY = ("variant", "backbone", "from_scratch", "input_size", "heatmap_size", "heatmap_convention", "wl_normalisation",
                "padding", "global_mask", "head_init", "lupi_gram", "enhancer", "lime_downscale")

# What a user without ImageNet weights on the machine is told (nothing is downloaded at run time).
PRETRAINED_HINT = (
    "no ImageNet weights given: the reference starts from torchvision's ImageNet ResNet; on a machine with "
    "internet download https://download.pytorch.org/models/resnet50-19c8e357.pth (the reference's; "
    "resnet18-5c106cde.pth etc. for other depths), copy it here and pass --pretrained PATH, or pass "
    "--from-scratch to train without pretraining"
)

def split_annotation(cfg: TrainConfig, split: str) -> tuple[Path, str]:
    """The annotation file and dataset condition of a test split of ``cfg.dataset`` (see :mod:`.splits`)."""
    if cfg.dataset is None:
        raise UsageError("no dataset: pass --dataset ROOT (the folder holding bright/ and dark/)")
    return resolve_split(cfg.dataset, cfg.annotations, split)


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


def _check_start(cfg: TrainConfig) -> None:
    """Refuse a fresh run that would silently train from scratch."""
    if cfg.pretrained is None and not cfg.from_scratch:
        raise UsageError(PRETRAINED_HINT)


def _build_net(cfg: TrainConfig, device: torch.device, env: Distributed) -> CPN:
    net = build_cpn(cfg.backbone, lsbn=cfg.spec.lsbn, pretrained=cfg.pretrained, heatmap_size=cfg.heatmap_size)
    if cfg.head_init == "target-scale":
        init_output_scale(net)
    return place_net(net, cfg, device, env)  # type: ignore[return-value]


def _train_dataset(cfg: TrainConfig) -> Any:
    from exlpose_data.datasets import ExLPoseTopDown

    from .enhance import attach_enhancer

    if not cfg.spec.paired:
        from .pairing import UnpairedPairs

        unpaired = UnpairedPairs.from_annotation(cfg.dataset, train_annotation(cfg), seed=cfg.seed, pack=cfg.pack, **dataset_options(cfg))
        attach_enhancer(unpaired.ll, cfg, fill=True)
        return unpaired
    dataset = ExLPoseTopDown(
        cfg.dataset, train_annotation(cfg), condition=cfg.spec.dataset_condition,  # type: ignore[arg-type]
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
    return run_training(cfg, _run, _run_folder, resume=resume, test_only=test_only, overwrite=overwrite, config_file=config_file,
                        on_step=on_step, notify=notify, checkpoint_format=CHECKPOINT_FORMAT, check_split=split_annotation)


@contextlib.contextmanager
def _run_folder(cfg: TrainConfig, env: Distributed, *, resume: Path | None, overwrite: bool,
                config_file: Path | None) -> Iterator[tuple[Path, RecordedRun]]:
    """The pose run's folder and record (:func:`baselines.loop.run_folder`), with its enhancement cache checked."""

    def check_cache(read: list[Path | None]) -> None:
        if cfg.enhance_cache is not None and (cfg.enhancer or cfg.spec.enhancer):
            check_output(cfg.enhance_cache, inputs=read, writes="folder", produces="enhanced-image cache",
                         replaces=["folder", "enhanced-image folder", "training run"], resumes=True, option="--enhance-cache")

    with run_folder(cfg, env, resume=resume, overwrite=overwrite, config_file=config_file, command=TRAIN_COMMAND, produces="training run",
                    identity=RUN_IDENTITY, files=("checkpoint.pth", "metrics.json", "tensorboard", "enhanced"), extra_check=check_cache) as found:
        yield found


def _run(cfg: TrainConfig, env: Distributed, *, resume: Path | None, test_only: bool, on_step: StepCallback | None, folder: Path,
         notify: Callable[[str], None] | None) -> dict[str, Any]:
    saved_cfg = cfg
    if not same_path(folder, Path(cfg.output_dir)):  # an --overwrite run is built beside the old one
        cfg = cfg.model_copy(update={"output_dir": folder})
    if resume is None:
        _check_start(cfg)
    device = setup(cfg, env)
    net = _build_net(cfg, device, env)
    adaptation = variant_adaptation(cfg, net, env.world_size)
    optimizer, scheduler = build_optimizer(optimised_modules(net, adaptation), cfg)
    start_epoch = 0
    history: list[dict[str, Any]] = []
    if resume is not None:
        ckpt = load_checkpoint(resume)
        start_epoch, history = restore(ckpt, Path(resume), net, optimizer, scheduler, cfg, checkpoint_config(ckpt), test_only=test_only,
                                       notify=notify, what=f"{cfg.backbone} {cfg.variant} model")
        if adaptation is not None and "adaptation" in ckpt:
            adaptation.load_state_dict(ckpt["adaptation"])
    if test_only:
        # an imported official checkpoint is tested the authors' way, as exlpose-eval model does by default
        chosen = inference_settings(cfg, checkpoint_origin(ckpt) if resume is not None else "trained")
        return {"epoch": start_epoch, **(evaluate_splits(net, cfg, device, settings=chosen) if env.is_main else {}),
                "flip_test": chosen.flip_test, "crop": chosen.crop, "decode": chosen.decode, "input_scale": chosen.input_scale}

    task = FitTask(
        net=net, model=PairModel(net), dataset=_train_dataset(cfg), conditions=cfg.spec.conditions, target_keys=_TARGET_KEYS,
        loss_fn=lambda outputs, batch: compute_losses(outputs, batch, cfg),
        evaluate=lambda: {**evaluate_splits(net, cfg, device), "flip_test": cfg.flip_test}, adaptation=adaptation,
        size_error=f"{cfg.train_ann or cfg.dataset}",
    )
    return fit(task, cfg, env, device, folder, optimizer, scheduler, start_epoch=start_epoch, history=history,
               saved_config=saved_cfg.to_dict(), on_step=on_step)


def benchmark(cfg: TrainConfig, steps: int = 20) -> dict[str, Any]:
    """The pose variant's data pipeline beside its training steps (:func:`baselines.loop.measure_rates`): pairs per
    second delivered with ``cfg.workers`` workers vs trained on the device, and which one bounds. Nothing is written."""
    env = Distributed()
    device = setup(cfg, env)
    net = _build_net(cfg, device, env)
    task = FitTask(net=net, model=PairModel(net), dataset=_train_dataset(cfg), conditions=cfg.spec.conditions, target_keys=_TARGET_KEYS,
                   loss_fn=lambda outputs, batch: compute_losses(outputs, batch, cfg))
    rates = measure_rates(task, cfg, device, steps)
    return {"benchmark": "exlpose-train", "variant": cfg.variant, "backbone": cfg.backbone, **rates}


def resume_config(checkpoint: Path, config: Path | None, overrides: dict[str, Any], *, warn: Callable[[str], None] | None = None) -> TrainConfig:
    """The configuration a resumed (or ``--test-only``) run uses: the checkpoint's own, then ``config``'s
    settings and the flags given (``overrides`` that are not None) on top.

    A resumed run rebuilding defaults would silently train another variant, on no dataset, at another learning
    rate; so only what is given explicitly changes, and each changed field is reported to ``warn`` (rank 0 only).
    """
    saved = make_config(checkpoint_config(load_checkpoint(checkpoint)), source=str(checkpoint)).to_dict()
    given = read_config_file(config) if config is not None else {}
    overrides_given = {k for k, v in overrides.items() if v is not None} | set(given)
    given.update({k: v for k, v in overrides.items() if v is not None})
    # a resumed run continues in the folder its checkpoint lies in (a copied or moved run included), unless told
    given.setdefault("output_dir", str(Path(checkpoint).parent))
    cfg = make_config({**saved, **given}, source=str(config) if config is not None else "options")
    changed = {k: v for k, v in cfg.to_dict().items() if v != saved[k]}
    if warn is not None and Distributed.from_env().is_main:
        for key, value in changed.items():
            if key == "output_dir" and "output_dir" not in overrides_given:
                continue
            warn(f"{key}: {saved[key]!r} in {checkpoint.name} -> {value!r} (given explicitly)")
    return cfg
