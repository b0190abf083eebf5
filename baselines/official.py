"""The authors' checkpoint in our model: key mapping from the reference network (sohyun-l/ExLPose, pytorch-cpn).

The reference saves ``{"epoch", "state_dict", "optimizer"}`` from an ``nn.DataParallel`` model (keys start with
``module.``). Its network is ``CPN_lsbn`` (``resnet_lsbn`` with ``LSBN2d`` layers holding ``bns.0`` for low-light
and ``bns.1`` for well-lit inputs, the indices its training and test code pass) or the plain ``CPN``
(``resnet``), then ``global_net`` and ``refine_net``:

===============================================  ================================================
reference                                        ours
===============================================  ================================================
``resnet_lsbn.<path>.bns.0|1.<p>``               ``backbone.<path>.branches.ll|wl.<p>``
``resnet_lsbn.<path>`` / ``resnet.<path>``       ``backbone.<path>`` (torchvision names on both sides)
``global_net.laterals.i.0|1``                    ``global_net.laterals.i.0|1``
``global_net.upsamples.i.1|2`` (after Upsample)  ``global_net.upsamples.i.0|1``
``global_net.predict.i.0|1|3|5``                 ``global_net.predicts.i.0.0|0.1|1``, ``predict_norms.i``
``refine_net.cascade.i.k.conv1|bn1|...|bn3``     ``refine_net.cascades.i.k.body.0.0|0.1|...|2.1``
``refine_net.cascade.i.k.downsample.0|1``        ``refine_net.cascades.i.k.downsample.0|1``
``refine_net.final_predict.0|1|2``               ``refine_net.final.0|1|2``
===============================================  ================================================

Anything left over on either side is refused with the list of unmatched keys; nothing is half-loaded. The
written checkpoint records the reference's input settings and its heatmap convention (targets at
``floor(x/4)``, decoded at ``4j + 2``) and is marked ``origin: "official"``, so ``exlpose-eval model`` and
``exlpose-predict`` run it with the authors' crop, flip test, decoding and input scale by default
(:mod:`baselines.inputs`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from exlpose_data.errors import InputError

from .checkpoint import save_checkpoint
from .config import make_config
from .models import build_cpn

__all__ = ["official_to_ours", "convert_official_state_dict", "import_official"]

_BRANCH = {"0": "ll", "1": "wl"}
_REFINE_BLOCK = {"conv1": "body.0.0", "bn1": "body.0.1", "conv2": "body.1.0", "bn2": "body.1.1", "conv3": "body.2.0", "bn3": "body.2.1"}
_PREDICT = {"0": "0.0", "1": "0.1", "3": "1"}
_SHOW = 12


def _refine_block(rest: str) -> str | None:
    m = re.fullmatch(r"(conv[123]|bn[123])\.(.+)", rest)
    if m:
        return f"{_REFINE_BLOCK[m.group(1)]}.{m.group(2)}"
    m = re.fullmatch(r"downsample\.([01])\.(.+)", rest)
    if m:
        return f"downsample.{m.group(1)}.{m.group(2)}"
    return None


def official_to_ours(key: str) -> str | None:
    """Our key for one reference key (``module.`` already removed), or None when it has no counterpart."""
    m = re.fullmatch(r"(?:resnet_lsbn|resnet)\.(.+)", key)
    if m:
        rest = re.sub(r"\.bns\.([01])\.", lambda b: f".branches.{_BRANCH[b.group(1)]}.", m.group(1))
        return f"backbone.{rest}"
    m = re.fullmatch(r"global_net\.laterals\.(\d+)\.([01])\.(.+)", key)
    if m:
        return f"global_net.laterals.{m.group(1)}.{m.group(2)}.{m.group(3)}"
    m = re.fullmatch(r"global_net\.upsamples\.(\d+)\.([12])\.(.+)", key)
    if m:
        return f"global_net.upsamples.{m.group(1)}.{int(m.group(2)) - 1}.{m.group(3)}"
    m = re.fullmatch(r"global_net\.predict\.(\d+)\.([0135])\.(.+)", key)
    if m:
        level, index, rest = m.groups()
        if index == "5":
            return f"global_net.predict_norms.{level}.{rest}"
        return f"global_net.predicts.{level}.{_PREDICT[index]}.{rest}"
    m = re.fullmatch(r"refine_net\.(cascade\.\d+\.\d+|final_predict\.0)\.(.+)", key)
    if m:  # a RefineNet bottleneck: in a cascade, or the first module of the final prediction
        where = m.group(1).replace("cascade.", "cascades.").replace("final_predict.0", "final.0")
        block = _refine_block(m.group(2))
        return None if block is None else f"refine_net.{where}.{block}"
    m = re.fullmatch(r"refine_net\.final_predict\.([12])\.(.+)", key)
    if m:
        return f"refine_net.final.{m.group(1)}.{m.group(2)}"
    return None


def _architecture(state: dict[str, torch.Tensor]) -> tuple[str, bool]:
    """Backbone name and whether the backbone is LSBN, read off the reference keys."""
    lsbn = any(".bns." in k for k in state)
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"resnet(?:_lsbn)?\.layer3\.(\d+)\.", k))}
    bottleneck = any(re.match(r"resnet(?:_lsbn)?\.layer1\.0\.conv3\.", k) for k in state)
    depth = {(True, 6): 50, (True, 23): 101, (False, 2): 18, (False, 6): 34}.get((bottleneck, len(blocks)))
    if depth is None:
        raise InputError(f"not a reference CPN state_dict: no ResNet-18/34/50/101 backbone under 'resnet_lsbn.' or 'resnet.' "
                         f"(layer3 has {len(blocks)} blocks)")
    return f"resnet{depth}", lsbn


def convert_official_state_dict(state: dict[str, torch.Tensor], input_size: tuple[int, int] = (256, 192)) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Our CPN state_dict for the reference's, and what was found (``backbone``, ``variant``, ``tensors``).

    Raises:
        InputError: keys without a counterpart on either side, or shapes that differ (all listed).
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    # The plain ResNet of the reference's CPN50 may carry an ImageNet classifier it never uses.
    state = {k: v for k, v in state.items() if not re.match(r"resnet(?:_lsbn)?\.fc\.", k)}
    backbone, lsbn = _architecture(state)
    heatmap_size = (input_size[0] // 4, input_size[1] // 4)
    own = build_cpn(backbone, lsbn=lsbn, heatmap_size=heatmap_size).state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unmatched: list[str] = []
    for key, value in state.items():
        ours = official_to_ours(key)
        if ours is None or ours not in own:
            unmatched.append(key)
        elif tuple(value.shape) != tuple(own[ours].shape):
            unmatched.append(f"{key} (shape {tuple(value.shape)}, ours {tuple(own[ours].shape)})")
        else:
            mapped[ours] = value
    missing = sorted(set(own) - set(mapped))
    if unmatched or missing:
        parts = []
        if unmatched:
            parts.append(f"{len(unmatched)} reference key(s) without a counterpart: {', '.join(unmatched[:_SHOW])}"
                         + (", ..." if len(unmatched) > _SHOW else ""))
        if missing:
            parts.append(f"{len(missing)} of our key(s) not provided: {', '.join(missing[:_SHOW])}" + (", ..." if len(missing) > _SHOW else ""))
        raise InputError("; ".join(parts))
    variant = "lsbn-lupi" if lsbn else "baseline-all"
    return mapped, {"backbone": backbone, "variant": variant, "tensors": len(mapped), "lsbn": lsbn}


def import_official(path: str | os.PathLike, out: str | os.PathLike, *, input_size: tuple[int, int] = (256, 192)) -> dict[str, Any]:
    """Read the authors' checkpoint at ``path`` and write ours at ``out`` (atomically); returns what was found."""
    p = Path(path)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{p}: no such checkpoint") from None
    except Exception as exc:
        raise InputError(f"{p}: not a loadable torch checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{p}: expected a state_dict or {{'state_dict': ...}} of tensors")
    try:
        mapped, info = convert_official_state_dict(state, input_size)
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from None
    cfg = make_config({
        "variant": info["variant"], "backbone": info["backbone"], "input_size": list(input_size),
        "heatmap_size": [input_size[0] // 4, input_size[1] // 4], "heatmap_convention": "reference",
        "wl_normalisation": "reference", "padding": "mean", "global_mask": "visible",
    }, source=str(p))
    epoch = ckpt.get("epoch", 0) if isinstance(ckpt, dict) else 0
    save_checkpoint(out, model=mapped, config=cfg.to_dict(), epoch=int(epoch) if isinstance(epoch, int) else 0,
                    imported_from=str(p), origin="official")
    return info
