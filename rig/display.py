"""The live display while recording: pairs/s, dropped pairs, writer queue depth, free disk space.

On a terminal it is a rich live table on stderr; otherwise (a pipe, a log file, CI) one plain line every
few seconds, so logs stay readable.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .recorder import CaptureStats

__all__ = ["LiveDisplay"]


def _summary(stats: CaptureStats) -> dict[str, str]:
    free = f"{stats.free_bytes / (1 << 30):.1f} GB" if stats.free_bytes >= 0 else "?"
    drops = ", ".join(f"{n} {r}" for r, n in stats.dropped.most_common(3))
    return {
        "step": stats.step or "-",
        "pairs": str(stats.kept),
        "pairs/s": f"{stats.pairs_per_s():.1f}",
        "dropped": f"{stats.dropped_total}" + (f" ({drops})" if drops else ""),
        "queue": str(stats.queue_depth),
        "disk free": free,
    }


class LiveDisplay:
    """A progress callback for :class:`rig.recorder.Recorder` that shows the statistics.

    Args:
        console: where to draw (the CLI gives its stderr console, so stdout stays machine-readable).
        plain_interval_s: seconds between lines when the console is not a terminal.
    """

    def __init__(self, console: Console, plain_interval_s: float = 5.0) -> None:
        self.console = console
        self._live: Live | None = None
        self._plain_interval_s = plain_interval_s
        self._last_plain = 0.0

    def __enter__(self) -> "LiveDisplay":
        if self.console.is_terminal:
            self._live = Live(Table(), console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __call__(self, stats: CaptureStats) -> None:
        summary = _summary(stats)
        if self._live is not None:
            table = Table(*summary.keys(), title="recording")
            table.add_row(*summary.values())
            self._live.update(table)
            return
        now = time.monotonic()
        if now - self._last_plain >= self._plain_interval_s:
            self._last_plain = now
            self.console.print("  ".join(f"{k}: {v}" for k, v in summary.items()), markup=False, highlight=False, soft_wrap=True)
