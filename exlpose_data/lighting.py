"""The two lighting conditions and every spelling the toolkit uses for them.

One member per condition: its value (``"LL"``/``"WL"``, annotation files, split names, dataset conditions), its key
(``"ll"``/``"wl"``: torch sample keys, LSBN branches, camera roles, feed folders), its folder and file-name word
(``"dark"``/``"bright"``, the release layout) and its display name. :meth:`Lighting.parse` is the one place a
spelling turns into a condition.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Lighting"]


class Lighting(str, Enum):
    """Low light (behind the ND filter) or well lit. Members compare equal to their value (``Lighting.LL == "LL"``)."""

    LL = "LL"
    WL = "WL"

    # str() and format() give the value ("LL"), as for a plain string, on every Python version.
    __str__ = str.__str__
    __format__ = str.__format__

    @property
    def key(self) -> str:
        """``"ll"`` or ``"wl"``."""
        return self.value.lower()

    @property
    def folder(self) -> str:
        """The release folder and file-name word: ``"dark"`` or ``"bright"``."""
        return "dark" if self is Lighting.LL else "bright"

    @property
    def display(self) -> str:
        """``"low-light"`` or ``"well-lit"``."""
        return "low-light" if self is Lighting.LL else "well-lit"

    @property
    def twin(self) -> Lighting:
        """The other condition."""
        return Lighting.WL if self is Lighting.LL else Lighting.LL

    @classmethod
    def parse(cls, spelling: str) -> Lighting:
        """The condition of ``"LL"``/``"WL"``, ``"ll"``/``"wl"`` or ``"dark"``/``"bright"`` (exactly these spellings).

        Raises:
            ValueError: any other spelling, naming it and the choices.
        """
        for member in cls:
            if spelling in (member.value, member.key, member.folder):
                return member
        raise ValueError(f"unknown lighting condition {spelling!r}; choose one of LL, WL (or ll, wl, dark, bright)")
