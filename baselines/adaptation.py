"""Domain adaptation competitors of Table 2: DANN and AdvEnt, with well-lit images as the source domain and
low-light ones as the target, pose labels on both (as the paper trains them on ExLPose's pairs).

DANN (Ganin and Lempitsky, ICML 2015; Ganin et al., JMLR 2016): a domain classifier on the backbone's last
stage (R4, global-average-pooled) behind a gradient-reversal layer; its factor follows Ganin's schedule
``lambda_p = 2 / (1 + exp(-10 p)) - 1`` over training progress ``p`` in [0, 1]. The classifier (ours, after
Ganin's: two hidden layers of 1024 with ReLU and dropout 0.5) learns WL = 0 vs LL = 1 with binary cross-entropy;
the reversed gradient pushes the backbone towards features that do not tell the two apart.

AdvEnt (Vu et al., CVPR 2019): a fully convolutional discriminator on entropy maps of the predicted heatmaps.
Each joint's RefineNet heatmap is turned into a distribution over positions (softmax over the ``h*w`` cells)
and its self-information map ``-p log p`` is scaled by ``h*w / log(h*w)`` (ours: a uniform map is 1 everywhere,
a confident one near 0), giving K channels as AdvEnt's class channels. The discriminator learns WL = 0 vs LL = 1;
the pose network is trained to make LL maps pass as WL (``advent_weight`` times the BCE of its LL maps against
label 0; AdvEnt's 1e-3). Discriminator (ours, adapted to 64x48 maps): AdvEnt's 4x4 stride-2 convolutions with
leaky ReLU 0.2, three of them (64, 128, 256 channels) and a 3x3 convolution to one logit per location, trained
by Adam at 1e-4, betas (0.9, 0.99) as AdvEnt's.

Both run in one process (``torchrun`` is refused for them): their extra modules live outside the DDP wrapper.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ADAPTATIONS",
    "GradientReversal",
    "grad_reverse",
    "ganin_lambda",
    "DomainClassifier",
    "entropy_maps",
    "EntropyDiscriminator",
    "Adaptation",
    "Dann",
    "AdvEnt",
    "build_adaptation",
    "variant_adaptation",
    "optimised_modules",
]

ADAPTATIONS = ("dann", "advent")
WL_LABEL, LL_LABEL = 0.0, 1.0


class GradientReversal(torch.autograd.Function):
    """Identity forward; the gradient multiplied by ``-lambda`` backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lambd: float) -> torch.Tensor:  # noqa: D102
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return -ctx.lambd * grad, None


def grad_reverse(x: torch.Tensor, lambd: float) -> torch.Tensor:
    """Gradient reversal with factor ``lambd``."""
    return GradientReversal.apply(x, lambd)  # type: ignore[no-any-return]


def ganin_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin's schedule ``2 / (1 + exp(-gamma p)) - 1``: 0 at the start, near 1 at the end."""
    p = min(max(progress, 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


class DomainClassifier(nn.Module):
    """Global-average-pooled features -> one domain logit (LL vs WL)."""

    def __init__(self, in_channels: int, hidden: int = 1024, dropout: float = 0.5) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features.mean(dim=(2, 3))).squeeze(1)


def entropy_maps(heatmaps: torch.Tensor) -> torch.Tensor:
    """``(B, K, h, w)`` heatmaps -> scaled self-information maps ``-p log p * hw / log(hw)`` of the per-joint
    softmax over positions (1 everywhere for a uniform map)."""
    b, k, h, w = heatmaps.shape
    n = h * w
    logp = F.log_softmax(heatmaps.float().reshape(b, k, n), dim=2)
    info = -(logp.exp() * logp) * (n / math.log(n))
    return info.reshape(b, k, h, w)


class EntropyDiscriminator(nn.Module):
    """Fully convolutional discriminator: one logit per location of ``(B, K, h, w)`` entropy maps."""

    def __init__(self, in_channels: int, widths: tuple[int, ...] = (64, 128, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for width in widths:
            layers += [nn.Conv2d(c, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            c = width
        layers.append(nn.Conv2d(c, 1, 3, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.layers(maps)


def _bce(logits: torch.Tensor, label: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


class Adaptation(nn.Module):
    """What a domain-adaptation variant adds to a training step.

    ``losses(outputs)`` returns extra terms of the pose network's loss (computed before its backward);
    ``after_step(outputs)`` runs after the optimiser step (a discriminator's own update) and returns its losses.
    ``total_steps`` is the run's length, for schedules; ``step`` counts the steps taken (saved with the state).
    """

    def __init__(self, total_steps: int) -> None:
        super().__init__()
        self.total_steps = max(int(total_steps), 1)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def trained_with_pose_network(self) -> nn.Module | None:
        """The part the pose network's optimiser updates with it (none by default)."""
        return None

    def losses(self, outputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def after_step(self, outputs: dict[str, Any]) -> dict[str, float]:
        self.step += 1
        return {}


class Dann(Adaptation):
    """DANN on the backbone's R4 features (see the module docstring).

    Args:
        in_channels: R4 channels of the backbone.
        total_steps: training steps of the run (the schedule's progress is ``step / total_steps``).
        weight: multiplier of the domain loss (ours: 1).
    """

    def __init__(self, in_channels: int, total_steps: int, weight: float = 1.0) -> None:
        super().__init__(total_steps)
        self.classifier = DomainClassifier(in_channels)
        self.weight = weight

    def trained_with_pose_network(self) -> nn.Module | None:
        return self.classifier

    def lambd(self) -> float:
        return ganin_lambda(float(self.step) / self.total_steps)

    def losses(self, outputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        self.classifier.train()
        lambd = self.lambd()
        terms = [_bce(self.classifier(grad_reverse(outputs[cond].features[-1].float(), lambd)), label)
                 for cond, label in (("wl", WL_LABEL), ("ll", LL_LABEL))]
        return {"domain": self.weight * 0.5 * (terms[0] + terms[1])}


class AdvEnt(Adaptation):
    """AdvEnt on the entropy maps of the RefineNet heatmaps (see the module docstring).

    Args:
        num_keypoints: heatmap channels.
        total_steps: training steps of the run.
        weight: multiplier of the adversarial term in the pose loss (AdvEnt's 1e-3).
        lr: the discriminator's Adam learning rate (AdvEnt's 1e-4).
    """

    def __init__(self, num_keypoints: int, total_steps: int, weight: float = 1e-3, lr: float = 1e-4) -> None:
        super().__init__(total_steps)
        self.discriminator = EntropyDiscriminator(num_keypoints)
        self.weight = weight
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.9, 0.99))

    def losses(self, outputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        self.discriminator.requires_grad_(False)  # the pose network's term must not train the discriminator
        try:
            fool = _bce(self.discriminator(entropy_maps(outputs["ll"].heatmaps)), WL_LABEL)
        finally:
            self.discriminator.requires_grad_(True)
        return {"adversarial": self.weight * fool}

    def after_step(self, outputs: dict[str, Any]) -> dict[str, float]:
        self.discriminator.train()
        wl = self.discriminator(entropy_maps(outputs["wl"].heatmaps.detach()))
        ll = self.discriminator(entropy_maps(outputs["ll"].heatmaps.detach()))
        loss = 0.5 * (_bce(wl, WL_LABEL) + _bce(ll, LL_LABEL))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        super().after_step(outputs)
        return {"discriminator": float(loss.detach())}

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        state = super().state_dict(*args, **kwargs)
        state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        state = dict(state)
        self.optimizer.load_state_dict(state.pop("optimizer"))
        return super().load_state_dict(state, strict=strict, assign=assign)


def build_adaptation(kind: str, net: Any, cfg: Any, total_steps: int = 1) -> Adaptation:
    """The adaptation module ``kind`` for ``net`` (a CPN), on ``net``'s device; ``cfg.adapt_weight`` overrides
    the method's default weight."""
    device = next(net.parameters()).device
    weight = getattr(cfg, "adapt_weight", None)
    if kind == "dann":
        module: Adaptation = Dann(net.backbone.stage_channels[-1], total_steps, weight=1.0 if weight is None else weight)
    elif kind == "advent":
        module = AdvEnt(net.num_keypoints, total_steps, weight=1e-3 if weight is None else weight)
    else:
        raise ValueError(f"unknown adaptation {kind!r}; choose {', '.join(ADAPTATIONS)}")
    return module.to(device)


def variant_adaptation(cfg: Any, net: Any, world_size: int = 1) -> Adaptation | None:
    """The adaptation of ``cfg``'s variant (None for variants without one).

    Raises:
        UsageError: the variant has one and the run has several processes.
    """
    kind = cfg.spec.adaptation
    if kind is None:
        return None
    if world_size > 1:
        from exlpose_data.errors import UsageError

        raise UsageError(f"variant {cfg.variant}: runs in one process only (its {kind} modules are outside DDP); drop torchrun")
    return build_adaptation(kind, net, cfg)


def optimised_modules(net: nn.Module, adaptation: Adaptation | None) -> nn.Module:
    """What the pose network's optimiser updates: the network, with the adaptation's part when it has one."""
    extra = adaptation.trained_with_pose_network() if adaptation is not None else None
    return net if extra is None else nn.ModuleDict({"net": net, "adaptation": extra})
