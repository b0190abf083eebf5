"""Checkpoints as plain dicts of tensors, numbers and strings, loadable with ``torch.load(weights_only=True)``.

A checkpoint holds ``format``, ``version``, ``model`` (the CPN's state_dict), ``config`` (the TrainConfig as a
JSON-safe dict), ``epoch`` (epochs completed), and for resuming ``optimizer``, ``scheduler`` and ``rng``. RNG
states are stored as tensors and ints (numpy's state as its key array, position and Gaussian cache), because a
pickled numpy state does not load under ``weights_only``.

``origin`` says where the weights come from: ``"official"`` for the authors' released model converted by
``exlpose-train import-official`` (which also records ``imported_from``, the file it read; checkpoints imported
before ``origin`` existed are recognised by that key), ``"trained"`` otherwise (absent in older files). An official
checkpoint is evaluated with the authors' crop, flip test, decoding and input scale by default
(:mod:`baselines.inputs`).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from exlpose_data.atomic import atomic_path
from exlpose_data.errors import InputError

__all__ = ["CHECKPOINT_FORMAT", "DETECTOR_FORMAT", "ORIGINS", "rng_state", "set_rng_state", "save_checkpoint", "load_checkpoint", "checkpoint_config",
           "checkpoint_origin", "load_model", "load_model_and_origin"]

CHECKPOINT_FORMAT = "exlpose-cpn"
# The person detector's checkpoints (baselines.detect): the same layout, their own tag.
DETECTOR_FORMAT = "exlpose-detector"
_FORMAT_NAMES = {CHECKPOINT_FORMAT: "a pose checkpoint (exlpose-train)", DETECTOR_FORMAT: "a person-detector checkpoint (exlpose-detect train)"}
# 2: the input settings follow the reference by default (WL statistics, mean padding, visible-only GlobalNet
# mask); version-1 checkpoints were trained with ImageNet statistics, zero padding and every labelled joint.
_VERSION = 2
_VERSION_1_INPUTS = {"wl_normalisation": "imagenet", "padding": "zero", "global_mask": "labelled"}
ORIGINS: tuple[str, ...] = ("trained", "official")


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python RNG states as tensors and ints."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    version, py_state, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss),
        "numpy_cached_gaussian": float(cached),
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_version": int(version),
        "python_gauss_next": float("nan") if gauss_next is None else float(gauss_next),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], state["numpy_has_gauss"], state["numpy_cached_gaussian"]))
    gauss = state["python_gauss_next"]
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()), None if gauss != gauss else gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, **content: Any) -> Path:
    """Write ``{"format", "version", **content}`` atomically."""
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, "version": _VERSION, **content}, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, format: str = CHECKPOINT_FORMAT) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; raise :class:`InputError` naming the file when it is not one
    of ``format`` (:data:`CHECKPOINT_FORMAT`, the pose network's, or :data:`DETECTOR_FORMAT`)."""
    p = Path(path)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{p}: no such checkpoint") from None
    except IsADirectoryError:
        raise InputError(f"{p}: is a directory, expected a checkpoint file") from None
    except Exception as exc:  # unpickling errors of files that are not our checkpoints
        raise InputError(f"{p}: not a loadable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    found = ckpt.get("format") if isinstance(ckpt, dict) else None
    if found in _FORMAT_NAMES and found != format:
        raise InputError(f"{p}: is {_FORMAT_NAMES[found]}, expected {_FORMAT_NAMES.get(format, format)}")
    if not isinstance(ckpt, dict) or found != format or "model" not in ckpt:
        tool = "exlpose-train" if format == CHECKPOINT_FORMAT else "exlpose-detect"
        raise InputError(f"{p}: not an {tool} checkpoint (no '{format}' format tag)")
    return ckpt


def checkpoint_config(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The training configuration stored in a loaded checkpoint, with the settings version-1 checkpoints were
    trained with filled in where they predate the field (so evaluating them feeds the inputs they learnt on)."""
    config = dict(ckpt.get("config", {}))
    if int(ckpt.get("version", 1)) < 2:
        for key, value in _VERSION_1_INPUTS.items():
            config.setdefault(key, value)
    return config


def checkpoint_origin(ckpt: dict[str, Any]) -> str:
    """``"official"`` for an imported authors' checkpoint (its ``origin``, or ``imported_from`` in files written
    before ``origin`` existed), ``"trained"`` otherwise."""
    origin = ckpt.get("origin")
    if origin is None:
        return "official" if "imported_from" in ckpt else "trained"
    if origin not in ORIGINS:
        raise InputError(f"checkpoint origin {origin!r}: expected one of {', '.join(ORIGINS)}")
    return str(origin)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Any, Any]:
    """The CPN of a training checkpoint (in eval mode) and its :class:`~baselines.config.TrainConfig`."""
    net, cfg, _ = load_model_and_origin(path, device)
    return net, cfg


def load_model_and_origin(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Any, Any, str]:
    """:func:`load_model` and the checkpoint's origin (:func:`checkpoint_origin`)."""
    from .config import make_config
    from .models import build_cpn

    ckpt = load_checkpoint(path)
    cfg = make_config(checkpoint_config(ckpt), source=str(path))
    net = build_cpn(cfg.backbone, lsbn=cfg.spec.lsbn, heatmap_size=cfg.heatmap_size)
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not fit its own config ({str(exc).splitlines()[0]})") from None
    try:
        origin = checkpoint_origin(ckpt)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    return net.to(device).eval(), cfg, origin
