"""Option values the baselines' commands check before torch or a long run sees them: ``--device`` and numbers.

Which device a ``--device`` option names is checked before torch is asked to use it.
torch accepts or rejects device strings in its own words, deep inside the first tensor moved (``tpu`` is a
``RuntimeError`` about backends, ``''`` an index error, ``cuda:7`` on a one-GPU machine an "invalid device
ordinal" in the middle of a run). Every baselines command with ``--device`` (train, eval model/gaps/table,
predict) passes its value through :func:`check_device` first, so a wrong one ends in one line naming the
option and the accepted forms. (Number options given as ``nan`` or ``inf`` are refused by their parser,
``exlpose_data.cli.common.finite_number``, naming the option.)
"""

from __future__ import annotations

import re

from exlpose_data.errors import UsageError

__all__ = ["check_device", "DEVICE_HELP"]

DEVICE_HELP = "cpu | cuda | cuda:N (mps on Apple silicon)"

_CUDA = re.compile(r"cuda(?::(\d{1,3}))?")


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def check_device(device: str, option: str = "--device") -> str:
    """``device`` when this machine has it; a :class:`UsageError` naming ``option`` otherwise.

    Accepted: ``cpu``, ``cuda`` (the current GPU), ``cuda:N`` (GPU N, from 0), and ``mps`` where torch's Metal
    backend is available.
    """
    text = device.strip()
    if text == "cpu":
        return "cpu"
    if text == "mps":
        if _mps_available():
            return "mps"
        raise UsageError(f"{option} 'mps': torch's Metal backend is not available on this machine; use cpu, cuda or cuda:N")
    match = _CUDA.fullmatch(text)
    if match is None:
        forms = "cpu, cuda, cuda:N or mps" if _mps_available() else "cpu, cuda or cuda:N"
        raise UsageError(f"{option} {device!r}: expected {forms} (cuda:N numbers the GPUs from 0)")
    import torch

    if not torch.cuda.is_available():
        build = "a torch built without CUDA" if torch.version.cuda is None else "no CUDA GPU visible"
        raise UsageError(f"{option} {device!r}: CUDA is not available on this machine ({build}); use --device cpu")
    index = match.group(1)
    count = torch.cuda.device_count()
    if index is not None and int(index) >= count:
        raise UsageError(f"{option} {device!r}: this machine has {count} CUDA device{'s' if count != 1 else ''} (cuda:0"
                         f"{f' to cuda:{count - 1}' if count > 1 else ''})")
    return text
