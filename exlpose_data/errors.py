"""Error types shared by every layer.

A ``UsageError`` is something the user can fix (bad file, bad option, absent device); CLIs print its message
as one line and exit with code 2.
"""

from __future__ import annotations

__all__ = ["ExlposeError", "UsageError", "InputError", "NameGrammarError"]


class ExlposeError(Exception):
    """Base class of the toolkit's errors."""


class UsageError(ExlposeError):
    """An error the user caused and can fix; CLIs exit with code 2."""

    exit_code = 2


class InputError(UsageError):
    """An input file is missing, unreadable or malformed; the message names the file (and field)."""


class NameGrammarError(InputError, ValueError):
    """A file name does not follow the ExLPose release grammar."""
