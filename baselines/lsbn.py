"""Lighting-specific batch normalisation (LSBN, ExLPose CVPR 2023).

``LSBN2d`` holds one BatchNorm per lighting condition (own affine parameters and running statistics); every
forward call uses exactly one of them, so inference costs the same as a plain BatchNorm. The condition comes
from the ``lighting(...)`` context (a context variable, so no flag has to be threaded through the blocks of a
network) or from the layer's own ``condition`` override. A context variable does not cross into new threads:
under ``nn.DataParallel`` (replicas run in worker threads) pass ``condition=`` to the CPN, which enters the
context inside each replica's forward, or use DistributedDataParallel. ``convert_lsbn`` swaps the BatchNorms of any module
for LSBN layers whose branches start as copies of the original, the way timm's ``convert_splitbn_model`` does.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from exlpose_data.lighting import Lighting

__all__ = ["CONDITIONS", "LSBN2d", "convert_lsbn", "lighting", "current_lighting"]

CONDITIONS: tuple[str, ...] = tuple(member.key for member in Lighting)

_LIGHTING: contextvars.ContextVar[str | None] = contextvars.ContextVar("exlpose_lighting", default=None)


@contextlib.contextmanager
def lighting(condition: str) -> Iterator[str]:
    """Select the branch of every :class:`LSBN2d` run inside the block (``"ll"`` or ``"wl"``; any spelling
    :meth:`exlpose_data.lighting.Lighting.parse` reads, else ``ValueError``).

    Example:
        >>> with lighting("ll"):
        ...     heatmaps = model(low_light_batch)
    """
    token = _LIGHTING.set(Lighting.parse(condition).key)
    try:
        yield _LIGHTING.get()  # type: ignore[misc]
    finally:
        _LIGHTING.reset(token)


def current_lighting() -> str | None:
    """The condition set by the innermost :func:`lighting` block, or None outside one."""
    return _LIGHTING.get()


class LSBN2d(nn.Module):
    """A BatchNorm2d with one branch per lighting condition, chosen per forward call.

    Args:
        num_features: channels.
        conditions: branch names (default ``("ll", "wl")``).
        eps: as BatchNorm2d.
        momentum: as BatchNorm2d.
        affine: as BatchNorm2d.
        track_running_stats: as BatchNorm2d.

    Attributes:
        condition: when set, overrides the :func:`lighting` context for this layer.
    """

    def __init__(
        self,
        num_features: int,
        conditions: Sequence[str] = CONDITIONS,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__()
        if len(set(conditions)) != len(conditions) or not conditions:
            raise ValueError(f"conditions must be distinct and non-empty, got {conditions}")
        self.num_features = num_features
        self.conditions = tuple(conditions)
        self.condition: str | None = None
        self.branches = nn.ModuleDict(
            {c: nn.BatchNorm2d(num_features, eps, momentum, affine, track_running_stats) for c in self.conditions}
        )

    def _active(self) -> str:
        name = self.condition or _LIGHTING.get()
        if name is None:
            # A new thread starts with an empty context, so a lighting() block of the caller never reaches the
            # replicas nn.DataParallel runs in its worker threads; CPN(condition=...) enters the block in each.
            hint = (
                " (this runs in another thread than the lighting() block, as nn.DataParallel's replicas do: pass "
                "condition= to the CPN, or use DistributedDataParallel)"
                if threading.current_thread() is not threading.main_thread()
                else ""
            )
            raise RuntimeError(
                "LSBN2d needs a lighting condition: run the model inside `with baselines.lsbn.lighting('ll'):` "
                f"(or 'wl'), or pass condition= to the CPN{hint}"
            )
        if name not in self.branches:
            raise ValueError(f"LSBN2d has no branch {name!r} (branches: {', '.join(self.conditions)})")
        return name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branches[self._active()](x)

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, conditions: Sequence[str] = CONDITIONS) -> "LSBN2d":
        """An LSBN layer whose every branch is a copy of ``bn`` (parameters, running statistics, settings)."""
        layer = cls(bn.num_features, conditions, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        layer.to(device=_device_of(bn))
        for branch in layer.branches.values():
            branch.load_state_dict(bn.state_dict())
            branch.train(bn.training)
        layer.train(bn.training)
        return layer

    def extra_repr(self) -> str:
        return f"{self.num_features}, conditions={self.conditions}"


def _device_of(module: nn.Module) -> torch.device:
    for t in module.state_dict().values():
        return t.device
    return torch.device("cpu")


def convert_lsbn(module: nn.Module, conditions: Sequence[str] = CONDITIONS) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` inside ``module`` by an :class:`LSBN2d` copying it into each branch.

    Children are replaced in place; the (possibly new) module is returned, which matters only when ``module``
    itself is a BatchNorm2d. LSBN layers already present are left alone, so converting twice changes nothing.
    """
    if isinstance(module, nn.BatchNorm2d):
        return LSBN2d.from_batchnorm(module, conditions)
    for name, child in module.named_children():
        if isinstance(child, LSBN2d):
            continue
        new = convert_lsbn(child, conditions)
        if new is not child:
            setattr(module, name, new)
    return module
