"""Reading JSON inputs with errors that name the file: the one JSON loader every layer uses."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["load_json", "is_number"]


def load_json(path: str | Path) -> Any:
    """Parse a JSON file, raising :class:`InputError` naming the file when it is absent, a folder or not JSON."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{p}: is a folder, expected a JSON file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{p}: not valid JSON ({exc})") from None


def is_number(value: Any) -> bool:
    """A finite int or float (JSON booleans are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
