"""Mixed precision: autocast per device, and whether this CPU has bfloat16 units (one home for both trainers)."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["autocast", "cpu_bf16_flags"]


def cpu_bf16_flags() -> list[str] | None:
    """The processor's bfloat16 / AMX feature flags (from /proc/cpuinfo), [] when it has none, None when unknown.

    Without any, bfloat16 autocast on the CPU converts operands at every layer and a training step gets slower
    than in float32 (2-3x on this project's Xeon, benchmarks/bench_precision.py).
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), None)
    except OSError:
        return None
    return None if flags is None else sorted(f for f in flags if "bf16" in f or f.startswith("amx"))


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass: float16 on CUDA, bfloat16 on CPU; a no-op when not ``enabled``."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)
