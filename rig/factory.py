"""Which device factory opens cameras: pypylon's (real darts, pylon's emulator) unless a test installed another.

Kept apart from :mod:`rig.device` (the interfaces) so that :mod:`rig.pylon_device`, which implements them, and
this chooser, which imports it, form no cycle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .device import DeviceFactory
__all__ = ["factory_for", "use_factory"]

_override: DeviceFactory | None = None


def factory_for(emulated: bool) -> DeviceFactory:
    """The factory in use: the one :func:`use_factory` installed, else pypylon's (its emulator when ``emulated``)."""
    if _override is not None:
        return _override
    from .pylon_device import PylonFactory  # pypylon loads only when a real or emulated camera is opened

    return PylonFactory(emulated)


@contextlib.contextmanager
def use_factory(factory: DeviceFactory) -> Iterator[DeviceFactory]:
    """Open every camera through ``factory`` inside the block (stand-in cameras in tests)."""
    global _override
    previous, _override = _override, factory
    try:
        yield factory
    finally:
        _override = previous
