"""Opening a dataset's image source: the pack when one is given, else the image files, checked up front."""

from __future__ import annotations

import os

from .pack import PackSource
from .sources import FileSource, ImageSource, Size

__all__ = ["open_source"]


def open_source(
    image_root: str | os.PathLike,
    relpaths: list[str],
    *,
    pack: str | os.PathLike | None = None,
    cache_images: int = 4,
    sizes: dict[str, Size] | None = None,
    records: str = "",
) -> ImageSource:
    """The source of ``relpaths`` (the pack when given, else the files), checked now so that a missing image
    (or, with ``sizes``, an image whose size differs from its annotation record) is reported at construction
    rather than mid-epoch.

    Args:
        image_root: folder the paths start from.
        relpaths: the images the dataset reads.
        pack: a pack to read instead of the files.
        cache_images: decoded images kept per process on the file path.
        sizes: record ``(width, height)`` per path to check the images against (None: no check).
        records: the annotation file ``sizes`` come from, for messages.
    """
    source: ImageSource
    if pack is not None:
        packed = PackSource(pack)
        packed.check(relpaths)
        packed.check_fresh(image_root, relpaths)
        source = packed
    else:
        files = FileSource(image_root, cache_images=cache_images)
        files.check(relpaths)
        source = files
    if sizes is not None:
        source.check_sizes(sizes, records)
    return source
