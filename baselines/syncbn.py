"""BatchNorm over the global batch of a ``torchrun`` job, on CPU (gloo) and CUDA (NCCL) alike.

``exlpose-train --sync-bn`` replaces every ``nn.BatchNorm2d`` of the network, the branches of each
:class:`~baselines.lsbn.LSBN2d` included, by :class:`GlobalBatchNorm2d`. In training under several processes it
normalises with the mean and variance of the whole batch (all processes' crops of the condition being run),
computed in two all-reduces (sum and count, then the centred sum of squares, which stays accurate in float32);
gradients flow through both reductions (each process's gradient of a sum is the sum of every process's), so a
step equals the single-process step on the concatenated batch. Outside a distributed run, or in eval mode, it is an ordinary BatchNorm2d.

torch's own ``nn.SyncBatchNorm`` refuses CPU tensors, which would leave the option untestable here and unusable
on CPU clusters; this layer is the one implementation used everywhere.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["GlobalBatchNorm2d", "convert_global_bn"]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of every process's share is the sum of all processes' gradients."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = grad.contiguous().clone()
        dist.all_reduce(out)
        return out


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(tensor)  # type: ignore[no-any-return]


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d whose training statistics span every process of the default group."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _distributed()):
            return super().forward(x)
        all_reduce = _all_reduce
        c = x.shape[1]
        local = torch.cat([x.sum(dim=(0, 2, 3)), x.new_tensor([x.numel() / c])])
        total = all_reduce(local)
        count = total[c]
        mean = total[:c] / count
        centred = x - mean.view(1, c, 1, 1)
        var = all_reduce(centred.pow(2).sum(dim=(0, 2, 3))) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (count / (count - 1).clamp(min=1))
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased.detach(), alpha=momentum)
        out = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return out


def convert_global_bn(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` inside ``module`` (LSBN branches too) by a :class:`GlobalBatchNorm2d`
    holding the same parameters and running statistics; returns the (possibly new) module."""
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlobalBatchNorm2d):
        new = GlobalBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.to(next(iter(module.state_dict().values())).device)
        new.train(module.training)
        return new
    for name, child in module.named_children():
        replaced = convert_global_bn(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module
