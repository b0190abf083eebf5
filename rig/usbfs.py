"""Linux ``usbfs_memory_mb``: the kernel's cap on USB buffer memory, too small by default for two cameras.

The default is 16 MB; two cameras streaming with a dozen buffers each need far more, and the symptom is
failed grabs, not a clear error. Checked before recording with real USB cameras.
"""

from __future__ import annotations

import sys
from pathlib import Path

from exlpose_data.errors import UsageError

__all__ = ["USBFS_PARAM", "usbfs_memory_mb", "required_mb", "check_usbfs"]

USBFS_PARAM = Path("/sys/module/usbcore/parameters/usbfs_memory_mb")


def usbfs_memory_mb(param: Path = USBFS_PARAM) -> int | None:
    """The current limit in MB (0 means unlimited), None when the machine has no such setting."""
    try:
        return int(param.read_text().strip())
    except (OSError, ValueError):
        return None


def required_mb(payload_bytes: int, buffers: int, cameras: int = 2) -> int:
    """USB memory the grab buffers need, with 25% headroom for the transfer layer."""
    return int(cameras * buffers * payload_bytes * 1.25 / (1 << 20)) + 1


def check_usbfs(payload_bytes: int, buffers: int, cameras: int = 2, param: Path = USBFS_PARAM) -> None:
    """Refuse to record when the kernel limit is below what the buffers need.

    Raises:
        UsageError: the limit is too small; the message says how to raise it.
    """
    if not sys.platform.startswith("linux"):
        return
    current = usbfs_memory_mb(param)
    if current is None or current == 0:
        return
    need = required_mb(payload_bytes, buffers, cameras)
    if current < need:
        raise UsageError(
            f"{param}: usbfs_memory_mb is {current} MB but {cameras} cameras x {buffers} buffers need about {need} MB; "
            f"raise it now with `sudo sh -c 'echo 1000 > {param}'` and for good with the kernel parameter "
            "usbcore.usbfs_memory_mb=1000 (or lower `buffers` in the rig config)"
        )
