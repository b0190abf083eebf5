"""What a simulator feed folder's ``feeds.json`` says about a scene, and refusing settings that contradict it.

The emulator ignores exposure and gain, so a recording made with other settings than the feeds were simulated
for would store those settings as "read back" next to pixels that never saw them. Recording from feeds is
therefore refused unless exposure, gains, k list and the release name parts (date, site, video) agree with
``feeds.json`` (the core's feeds format, :class:`exlpose_data.feeds_format.FeedsDocument`).
"""

from __future__ import annotations

import math
from pathlib import Path

from exlpose_data.errors import InputError, UsageError
from exlpose_data.feeds_format import FEEDS_FILE, SceneTruth, read_feeds

__all__ = ["described_scene", "require_same"]


def described_scene(feeds: Path, scene: str) -> SceneTruth | None:
    """The ``feeds.json`` description of ``scene``; None when the folder has no ``feeds.json`` listing scenes.

    Raises:
        InputError: ``feeds.json`` is invalid, or lists scenes but not this one.
    """
    doc = read_feeds(feeds)
    if doc is None:
        return None
    for truth in doc.scenes:
        if truth.scene == scene:
            return truth
    raise InputError(f"{feeds / FEEDS_FILE}: describes no scene {scene!r}; scenes: {', '.join(s.scene for s in doc.scenes) or 'none'}")


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
    for option, given, field, described in checks:
        if not _same(given, described):
            raise UsageError(
                f"{option} {_text(given)} contradicts {feeds / FEEDS_FILE}: scene {scene!r} {field} is {_text(described)} "
                "(the emulator ignores exposure and gain, so the session would store settings its pixels never saw)"
            )
