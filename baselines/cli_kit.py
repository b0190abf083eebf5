"""What the trainers' commands share (``exlpose-train``, ``exlpose-detect train``): the default test splits, the
trainer's warnings as one-line warnings, a progress bar per epoch and ``HEIGHTxWIDTH`` options."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from exlpose_data.cli.common import progress_bar, warn
from exlpose_data.errors import UsageError
from exlpose_data.threads import THREADS_HELP

from .options import DEVICE_HELP

if TYPE_CHECKING:  # the loop module imports torch; scoring predictions does not need it
    from .loop import StepCallback

__all__ = ["DEFAULT_SPLITS"]

DEFAULT_SPLITS = "LL-N,LL-H,LL-E,LL-A,WL"

# The options both training commands take (exlpose-train, exlpose-detect train), declared once.
ConfigOption = Annotated[Path | None, typer.Option(help="YAML/JSON config; flags given here override it")]
DatasetOption = Annotated[Path | None, typer.Option(help="image root holding bright/ and dark/")]
AnnotationsOption = Annotated[Path | None, typer.Option(help="annotation folder (found beside the dataset when omitted)")]
TrainAnnOption = Annotated[Path | None, typer.Option(help="training annotation file (default: the release's train_LL)")]
PackOption = Annotated[Path | None, typer.Option(help="training image pack from 'exlpose pack'")]
PretrainedOption = Annotated[Path | None, typer.Option(help="local torchvision ImageNet checkpoint of the backbone")]
SyncBnOption = Annotated[bool | None, typer.Option("--sync-bn/--no-sync-bn", help="BatchNorm statistics over the global batch under torchrun")]
AmpOption = Annotated[bool | None, typer.Option("--amp/--no-amp", help="mixed precision (float16 on CUDA, bfloat16 on CPU)")]
ChannelsLastOption = Annotated[bool | None, typer.Option("--channels-last/--no-channels-last", help="channels_last memory format")]
WorkersOption = Annotated[int | None, typer.Option(help="data loader processes per training process (default 4)")]
SeedOption = Annotated[int | None, typer.Option(help="random seed (default 0)")]
DeviceOption = Annotated[str | None, typer.Option(help=DEVICE_HELP)]
ThreadsOption = Annotated[int | None, typer.Option(help=THREADS_HELP)]
DeterministicOption = Annotated[bool | None, typer.Option("--deterministic/--no-deterministic", help="deterministic algorithms")]
StepsPerEpochOption = Annotated[int | None, typer.Option(help="cap on steps per epoch (smoke runs)")]
TestOnlyOption = Annotated[bool, typer.Option("--test-only", help="only evaluate the --resume checkpoint")]
BenchmarkStepsOption = Annotated[int | None, typer.Option(help="measure data pipeline and model rates over N steps, print JSON, train nothing")]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar")]


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


