"""What the trainers' commands share (``exlpose-train``, ``exlpose-detect train``): the default test splits, the
trainer's warnings as one-line warnings, a progress bar per epoch and ``HEIGHTxWIDTH`` options."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from exlpose_data.cli.common import progress_bar, warn
from exlpose_data.errors import UsageError

if TYPE_CHECKING:  # the loop module imports torch; scoring predictions does not need it
    from .loop import StepCallback

__all__ = ["DEFAULT_SPLITS"]

DEFAULT_SPLITS = "LL-N,LL-H,LL-E,LL-A,WL"


@contextlib.contextmanager
def _train_warnings() -> Iterator[None]:
    """Show the trainer's warnings (``baselines.loop.TrainWarning``) as the command's one-line warnings."""
    import warnings

    from .loop import TrainWarning

    with warnings.catch_warnings():
        previous = warnings.showwarning

        def show(message: Any, category: type, *args: Any, **kwargs: Any) -> None:
            if issubclass(category, TrainWarning):
                warn(str(message))
            else:
                previous(message, category, *args, **kwargs)

        warnings.showwarning = show
        warnings.simplefilter("always", TrainWarning)
        yield


@contextlib.contextmanager
def _epoch_progress(epochs: int, *, disable: bool) -> Iterator[StepCallback]:
    """A progress bar per epoch, showing the loss, as :func:`baselines.train.run`'s step callback."""
    with progress_bar(disable=disable) as bar:
        tasks: dict[int, Any] = {}

        def on_step(epoch: int, step: int, steps: int, losses: dict[str, float]) -> None:
            if epoch not in tasks:
                tasks[epoch] = bar.add_task(f"epoch {epoch}/{epochs}", total=steps)
            bar.update(tasks[epoch], completed=step, description=f"epoch {epoch}/{epochs} loss {losses['total']:.2f}")

        yield on_step


def _size(text: str | None, option: str) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"{option} must be HEIGHTxWIDTH, e.g. 256x192; got {text!r}") from None
    return h, w


