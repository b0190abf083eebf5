"""What a simulator feed folder's ``feeds.json`` says about a scene, and refusing settings that contradict it.

The emulator ignores exposure and gain, so a recording made with other settings than the feeds were simulated
for would store those settings as "read back" next to pixels that never saw them. Recording from feeds is
therefore refused unless exposure, gains, k list and the release name parts (date, site, video) agree with
``feeds.json`` (:class:`exlpose_data.simulate.truth.FeedsDocument`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from exlpose_data.errors import InputError, UsageError
from exlpose_data.jsonio import load_json

if TYPE_CHECKING:  # the simulator package is imported only when feeds are played
    from exlpose_data.simulate.truth import SceneTruth

__all__ = ["described_scene", "require_same"]


def described_scene(feeds: Path, scene: str) -> SceneTruth | None:
    """The ``feeds.json`` description of ``scene``; None when the folder has no ``feeds.json`` listing scenes.

    Raises:
        InputError: ``feeds.json`` is invalid, or lists scenes but not this one.
    """
    from exlpose_data.simulate.feeds import FEEDS_FILE
    from exlpose_data.simulate.truth import FeedsDocument

    path = feeds / FEEDS_FILE
    if not path.is_file():
        return None
    data = load_json(path)
    if not isinstance(data, dict) or "scenes" not in data:
        return None
    try:
        doc = FeedsDocument.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"{path}: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None
    for truth in doc.scenes:
        if truth.scene == scene:
            return truth
    raise InputError(f"{path}: describes no scene {scene!r}; scenes: {', '.join(s.scene for s in doc.scenes) or 'none'}")


def _same(a: object, b: object) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        # Values reach the CLI as printed decimals: equal to well within a camera's own resolution.
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-3)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _text(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def require_same(feeds: Path, scene: str, checks: list[tuple[str, object, str, object]]) -> None:
    """Refuse the first setting that differs from the feeds.

    Args:
        feeds: the feed folder (its feeds.json is named in the message).
        scene: the feed scene.
        checks: ``(option, value given, feeds.json field, value in feeds.json)`` tuples.

    Raises:
        UsageError: one line naming the option, its value, the feeds.json field and its value.
    """
    from exlpose_data.simulate.feeds import FEEDS_FILE

    for option, given, field, described in checks:
        if not _same(given, described):
            raise UsageError(
                f"{option} {_text(given)} contradicts {feeds / FEEDS_FILE}: scene {scene!r} {field} is {_text(described)} "
                "(the emulator ignores exposure and gain, so the session would store settings its pixels never saw)"
            )
