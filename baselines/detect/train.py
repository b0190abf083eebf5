"""Training the person detector (``exlpose-detect train``) on the pose trainer's machinery (:mod:`baselines.loop`):
the same run folder rules and provenance record, ``--resume`` (configuration, model, optimiser, schedule, epoch,
RNG), DDP under ``torchrun`` (``torchrun --nproc_per_node 4 -m baselines.detect.cli train ...``), AMP on CUDA,
progress, ``metrics.json`` and TensorBoard. What is the detector's own: the network (:mod:`.model`), whole-image
samples with CenterNet targets (:class:`exlpose_data.datasets.ExLPoseDetection`), the losses (:mod:`.losses`) and
box AP per split (:mod:`.evaluate`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from exlpose_data.errors import UsageError

from ..checkpoint import DETECTOR_FORMAT, checkpoint_config, load_checkpoint
from ..engine import PairModel
from ..loop import Distributed, FitTask, build_optimizer, fit, run_training, measure_rates, place_net, restore, run_folder, same_path, setup, train_annotation
from ..splits import resolve_split
from .config import DETECT_IDENTITY, DetectConfig, make_detect_config
from .losses import compute_detect_losses
from .model import CentreNet, build_detector

__all__ = ["run", "benchmark", "resume_config", "DETECT_COMMAND", "PRETRAINED_HINT", "build_from_config", "evaluate_splits"]

DETECT_COMMAND = "exlpose-detect train"
TARGET_KEYS = ("heatmap", "size", "offset", "index", "mask")
PRETRAINED_HINT = (
    "no ImageNet weights given: the detector starts from torchvision's ImageNet ResNet, as the pose network; pass "
    "--pretrained PATH (e.g. resnet50-19c8e357.pth, downloaded on a machine with internet) or --from-scratch"
)


def build_from_config(cfg: DetectConfig, *, pretrained: bool = True) -> CentreNet:
    """The detector ``cfg`` describes (ImageNet weights loaded when ``pretrained`` and the config names them)."""
    return build_detector(cfg.backbone, lsbn=cfg.spec.lsbn, pretrained=cfg.pretrained if pretrained else None,
                          neck_channels=cfg.neck_channels, head_channels=cfg.head_channels)


def _build_net(cfg: DetectConfig, device: torch.device, env: Distributed) -> CentreNet:
    return place_net(build_from_config(cfg), cfg, device, env)  # type: ignore[return-value]


def train_dataset(cfg: DetectConfig, *, train: bool = True) -> Any:
    """Whole images of the training file with their person boxes, both images of each pair for two-condition variants."""
    from exlpose_data.datasets import ExLPoseDetection
    from exlpose_data.datasets.lowlight import WL_NORMALISATIONS

    return ExLPoseDetection(cfg.dataset, train_annotation(cfg), condition=cfg.spec.dataset_condition, input_size=tuple(cfg.input_size),
                            train=train, pack=cfg.pack, wl_normalisation=WL_NORMALISATIONS[cfg.wl_normalisation], radius_rule=cfg.centre_radius)


def evaluate_splits(net: CentreNet, cfg: DetectConfig, device: torch.device, splits: list[str] | None = None) -> dict[str, float]:
    """Box AP@0.5:0.95 and AP@0.5 of ``net`` on each test split, as ``{"AP/LL-A": ..., "AP50/LL-A": ...}``."""
    from .evaluate import evaluate_split

    out: dict[str, float] = {}
    for split in splits if splits is not None else cfg.val_splits:
        ann, condition = _split(cfg, split)
        metrics, _ = evaluate_split(net, cfg, cfg.dataset, ann, condition, device, workers=cfg.workers)
        out[f"AP/{split}"] = metrics.AP
        out[f"AP50/{split}"] = metrics.AP50
    return out


def _split(cfg: DetectConfig, split: str) -> tuple[Path, str]:
    if cfg.dataset is None:
        raise UsageError("no dataset: pass --dataset ROOT (the folder holding bright/ and dark/)")
    return resolve_split(cfg.dataset, cfg.annotations, split)


def run(cfg: DetectConfig, *, resume: Path | None = None, test_only: bool = False, on_step: Callable[[int, int, int, dict[str, float]], None] | None = None,
        overwrite: bool = False, config_file: Path | None = None, notify: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the detector as ``cfg`` says (or with ``test_only`` evaluate ``resume``); return the last epoch's record
    (``epoch``, ``lr``, mean losses, and ``AP/<split>``, ``AP50/<split>`` on evaluation epochs).

    The run folder ``cfg.output_dir`` follows the pose trainer's rules (:func:`baselines.loop.run_folder`): new or
    empty, the folder of the ``resume`` checkpoint (same identity and training data), or replaced with ``overwrite``;
    never an input. Rank 0 writes ``checkpoint.pth`` (format ``exlpose-detector``), ``metrics.json`` and TensorBoard
    scalars after every epoch.
    """
    folder = functools.partial(run_folder, command=DETECT_COMMAND, produces="detector run", identity=DETECT_IDENTITY)
    return run_training(cfg, _run, folder, resume=resume, test_only=test_only, overwrite=overwrite, config_file=config_file, on_step=on_step,
                        notify=notify, checkpoint_format=DETECTOR_FORMAT, check_split=_split)


def _run(cfg: DetectConfig, env: Distributed, *, resume: Path | None, test_only: bool, on_step: Any, folder: Path,
         notify: Callable[[str], None] | None) -> dict[str, Any]:
    saved_cfg = cfg
    if not same_path(folder, Path(cfg.output_dir)):  # an --overwrite run is built beside the old one
        cfg = cfg.model_copy(update={"output_dir": folder})
    if resume is None and cfg.pretrained is None and not cfg.from_scratch:
        raise UsageError(PRETRAINED_HINT)
    device = setup(cfg, env)
    net = _build_net(cfg, device, env)
    optimizer, scheduler = build_optimizer(net, cfg)
    start_epoch, history = 0, []
    if resume is not None:
        ckpt = load_checkpoint(resume, format=DETECTOR_FORMAT)
        start_epoch, history = restore(ckpt, Path(resume), net, optimizer, scheduler, cfg, checkpoint_config(ckpt), test_only=test_only,
                                       notify=notify, what=f"{cfg.backbone} {cfg.variant} detector")
    if test_only:
        return {"epoch": start_epoch, **(evaluate_splits(net, cfg, device) if env.is_main else {})}
    task = FitTask(
        net=net, model=PairModel(net), dataset=train_dataset(cfg), conditions=cfg.spec.conditions, target_keys=TARGET_KEYS,  # type: ignore[arg-type]
        loss_fn=lambda outputs, batch: compute_detect_losses(outputs, batch, cfg), evaluate=lambda: evaluate_splits(net, cfg, device),
        checkpoint_format=DETECTOR_FORMAT, size_error=f"{cfg.train_ann or cfg.dataset}",
    )
    return fit(task, cfg, env, device, folder, optimizer, scheduler, start_epoch=start_epoch, history=history,
               saved_config=saved_cfg.to_dict(), on_step=on_step)


def benchmark(cfg: DetectConfig, steps: int = 20) -> dict[str, Any]:
    """The detector's data pipeline beside its training steps (:func:`baselines.loop.measure_rates`): whether an
    accelerator would wait for whole-image samples. Nothing is written."""
    env = Distributed()
    device = setup(cfg, env)
    net = _build_net(cfg, device, env)
    task = FitTask(net=net, model=PairModel(net), dataset=train_dataset(cfg), conditions=cfg.spec.conditions, target_keys=TARGET_KEYS,  # type: ignore[arg-type]
                   loss_fn=lambda outputs, batch: compute_detect_losses(outputs, batch, cfg))
    return {"benchmark": "exlpose-detect train", "variant": cfg.variant, "backbone": cfg.backbone, **measure_rates(task, cfg, device, steps)}


def resume_config(checkpoint: Path, config: Path | None, overrides: dict[str, Any], *, warn: Callable[[str], None] | None = None) -> DetectConfig:
    """The configuration a resumed (or ``--test-only``) detector run uses: the checkpoint's own, then ``config``'s
    settings and the flags given on top, each changed field reported to ``warn`` (as the pose trainer's)."""
    from ..config import read_config_file

    saved = make_detect_config(checkpoint_config(load_checkpoint(checkpoint, format=DETECTOR_FORMAT)), source=str(checkpoint)).to_dict()
    given = read_config_file(config) if config is not None else {}
    overrides_given = {k for k, v in overrides.items() if v is not None} | set(given)
    given.update({k: v for k, v in overrides.items() if v is not None})
    # a resumed run continues in the folder its checkpoint lies in (a copied or moved run included), unless told
    given.setdefault("output_dir", str(Path(checkpoint).parent))
    cfg = make_detect_config({**saved, **given}, source=str(config) if config is not None else "options")
    if warn is not None and Distributed.from_env().is_main:
        for key, value in cfg.to_dict().items():
            if value != saved[key] and not (key == "output_dir" and "output_dir" not in overrides_given):
                warn(f"{key}: {saved[key]!r} in {checkpoint.name} -> {value!r} (given explicitly)")
    return cfg


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> tuple[CentreNet, DetectConfig]:
    """The detector of a checkpoint (in eval mode) and its configuration."""
    from exlpose_data.errors import InputError

    ckpt = load_checkpoint(path, format=DETECTOR_FORMAT)
    cfg = make_detect_config(checkpoint_config(ckpt), source=str(path))
    net = build_from_config(cfg, pretrained=False)
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not fit its own config ({str(exc).splitlines()[0]})") from None
    return net.to(device).eval(), cfg
