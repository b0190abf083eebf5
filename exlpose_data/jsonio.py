"""The one strict door for JSON and YAML: every input file of the toolkit is parsed here, every JSON output is
serialised here.

Python's ``json`` and PyYAML accept things that silently change what a file says: a duplicated key keeps the last
value, ``NaN``/``Infinity`` and ``1e999`` become non-finite floats, an integer of 400 digits parses exactly but no
other JSON reader (JavaScript, mmpose's tooling, pycocotools' C code) keeps it, and a file nested 100k levels deep
raises ``RecursionError``. Here each is refused with one line naming the file and where in it (a JSON path such as
``annotations[3].keypoints[7]``, or a YAML line and column). A UTF-8 byte-order mark (Windows editors write one) is
accepted and ignored; it changes no value.

Writers use :func:`dumps_json`, which applies the same rules to what is written, so a file this toolkit writes is
always one it reads back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["load_json", "loads_json", "load_yaml", "loads_yaml", "load_config_file", "dumps_json", "check_json_value",
           "is_number", "MAX_DEPTH", "MAX_SAFE_INTEGER"]

# Annotation files nest 4 levels, configs 3; 64 leaves room for any honest file and stops pathological ones.
MAX_DEPTH = 64
# Largest integer every JSON reader keeps exactly (IEEE double: JavaScript, and C readers that parse into doubles).
MAX_SAFE_INTEGER = 2**53
_BOM = "\ufeff"


class _Bad:
    """A value the parser met and the rules refuse; found again by the walk, which knows where it is."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


class _Object(dict):
    """A JSON object that also remembers the keys given more than once (the dict holds the last value)."""

    __slots__ = ("duplicates",)


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj  # the usual case: a plain dict, no marker left in the result
    marked = _Object(pairs)
    seen: set[str] = set()
    marked.duplicates = sorted({k for k, _ in pairs if k in seen or seen.add(k)})  # type: ignore[func-returns-value]
    return marked


def _parse_int(text: str) -> Any:
    # Judge by the digit count first: int() of a huge literal is slow and limited (sys.int_info) in Python itself.
    digits = len(text.lstrip("-"))
    if digits >= 16:
        if digits > 32:
            return _Bad(f"integer of {digits} digits (beyond 2^53, no other JSON reader keeps it exactly)")
        value = int(text)
        if abs(value) > MAX_SAFE_INTEGER:
            return _Bad(f"integer {text} is beyond 2^53 (other JSON readers round it)")
        return value
    return int(text)


def _parse_float(text: str) -> Any:
    value = float(text)
    if not math.isfinite(value):
        return _Bad(f"number {text[:40]} is out of range (not finite)")
    return value


def _parse_constant(name: str) -> Any:
    return _Bad(f"{name} is not a number JSON allows")


def _path(parts: tuple) -> str:
    if len(parts) > 8:  # a pathologically deep place: its start and end say enough
        return f"{_path(parts[:3])}...{_path(parts[-2:])}"
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _walk(root: Any) -> Iterator[tuple[tuple, Any, int]]:
    """(path, value, depth) of every value, without recursion."""
    stack: list[tuple[tuple, Any, int]] = [((), root, 1)]
    while stack:
        path, value, depth = stack.pop()
        yield path, value, depth
        if isinstance(value, dict):
            stack.extend((path + (k,), v, depth + 1) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((path + (i,), v, depth + 1) for i, v in reversed(list(enumerate(value))))


def _problem(value: Any) -> str | None:
    """Why a parsed ``value`` (with no children considered) breaks the rules, or None."""
    if isinstance(value, _Bad):
        return value.why
    if isinstance(value, _Object) and getattr(value, "duplicates", None):
        keys = ", ".join(repr(k) for k in value.duplicates)
        return f"key {keys} given more than once (only the last would be kept)"
    return None


def _check_tree(doc: Any, source: str) -> None:
    # Only containers are pushed; scalars were judged by the parse hooks and are checked for their marker inline,
    # so a file of a million keypoint numbers costs one pass over its lists.
    stack: list[tuple[tuple, Any, int]] = [((), doc, 1)]
    while stack:
        path, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError(f"{source}: {_path(path)}: nested deeper than {MAX_DEPTH} levels")
        why = _problem(value)
        if why:
            raise InputError(f"{source}: {_path(path)}: {why}")
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, child in reversed(list(items)):
            if isinstance(child, (dict, list)):
                stack.append((path + (key,), child, depth + 1))
            elif isinstance(child, _Bad):
                stack.append((path + (key,), child, depth + 1))


def loads_json(text: str, source: str = "<json>") -> Any:
    """Parse JSON text strictly (see the module's rules); ``source`` names it in errors."""
    if text.startswith(_BOM):
        text = text[1:]
    try:
        doc = json.loads(text, object_pairs_hook=_pairs_hook, parse_int=_parse_int, parse_float=_parse_float,
                         parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise InputError(f"{source}: nested deeper than {MAX_DEPTH} levels (too deep to parse)") from None
    _check_tree(doc, source)
    return doc


def _read_text(path: Path, what: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a {what} file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}, line {line})") from None


def load_json(path: str | Path) -> Any:
    """Parse a JSON file strictly, raising :class:`InputError` naming the file (and where in it) when it is absent,
    a folder, not UTF-8, not JSON, or breaks a rule of this module."""
    p = Path(path)
    return loads_json(_read_text(p, "JSON"), str(p))


def _yaml_loader() -> type:
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """PyYAML's safe loader that refuses duplicate keys (PyYAML keeps the last silently)."""

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # an unhashable key: the base class reports it
                if first is not None:
                    m = key_node.start_mark
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given more than once (first on line {first.line + 1}; only the last would be kept)", m)
                seen[key] = key_node.start_mark
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def loads_yaml(text: str, source: str = "<yaml>") -> Any:
    """Parse YAML text strictly: duplicate keys, ``.nan``/``.inf``, integers beyond 2^53 and deep nesting are
    refused with the line and column or the path."""
    import yaml

    if text.startswith(_BOM):
        text = text[1:]
    try:
        doc = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
        raise InputError(f"{source}: {where}{exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise InputError(f"{source}: nested deeper than {MAX_DEPTH} levels (too deep to parse)") from None
    for path, value, depth in _walk(doc):
        if depth > MAX_DEPTH:
            raise InputError(f"{source}: {_path(path)}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{source}: {_path(path)}: {value} is not a finite number")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INTEGER:
            raise InputError(f"{source}: {_path(path)}: integer {value} is beyond 2^53")
    return doc


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file strictly (see :func:`loads_yaml`); errors name the file."""
    p = Path(path)
    return loads_yaml(_read_text(p, "YAML"), str(p))


def load_config_file(path: str | Path) -> Any:
    """A settings file: JSON when its suffix is ``.json``, YAML otherwise; both strict."""
    p = Path(path)
    return load_json(p) if p.suffix.lower() == ".json" else load_yaml(p)


def check_json_value(obj: Any, source: str = "output") -> None:
    """Refuse what :func:`load_json` would refuse in ``obj`` before it is written: non-finite floats, integers
    beyond 2^53, nesting beyond :data:`MAX_DEPTH`, keys that are not strings."""
    for path, value, depth in _walk(obj):
        if depth > MAX_DEPTH:
            raise InputError(f"{source}: {_path(path)}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise InputError(f"{source}: {_path(path)}: {value} is not a finite number; JSON has none")
        elif isinstance(value, int):
            if abs(value) > MAX_SAFE_INTEGER:
                raise InputError(f"{source}: {_path(path)}: integer {value} is beyond 2^53")
        elif isinstance(value, dict):
            bad = next((k for k in value if not isinstance(k, str)), None)
            if bad is not None:
                raise InputError(f"{source}: {_path(path)}: key {bad!r} is not a string")
        elif not isinstance(value, (list, tuple)):
            import numbers  # numpy scalars: json.dumps decides whether it can write them, the value must be finite

            if isinstance(value, numbers.Real) and not math.isfinite(float(value)):
                raise InputError(f"{source}: {_path(path)}: {float(value)} is not a finite number; JSON has none")


def dumps_json(obj: Any, *, indent: int | None = None, source: str = "output") -> str:
    """Serialise ``obj`` as JSON after :func:`check_json_value` (compact unless ``indent`` is given)."""
    check_json_value(obj, source)
    separators = (",", ":") if indent is None else None
    return json.dumps(obj, indent=indent, separators=separators, allow_nan=False)


def is_number(value: Any) -> bool:
    """A finite int or float (JSON booleans are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
