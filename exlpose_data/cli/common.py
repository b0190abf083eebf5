"""What every CLI of the toolkit shares: one-line errors with the right exit code, consoles, progress."""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import ExlposeError, UsageError
from ..outputs import terminate_as_interrupt
from ..progress import ProgressCallback

__all__ = ["NotANumber", "finite_number", "whole_number", "ToolApp", "choose", "handle_errors", "new_app", "err_console", "out_console", "progress_bar", "progress_callback", "fail", "warn",
           "EXTRA_OF", "missing_extra"]

F = TypeVar("F", bound=Callable[..., Any])

# Packages only some commands need -> the extra installing them (pyproject.toml [project.optional-dependencies]).
EXTRA_OF = {"torch": "train", "tensorboard": "train", "pyamg": "train", "pypylon": "rig"}

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


class ToolApp(typer.Typer):
    """A typer app whose command-line usage errors (bad option value, missing argument) print one line.

    Calling the app (what console scripts do) runs it non-standalone and reports click's usage errors as
    ``error: <message> (see '<command> --help')`` with their exit code 2, instead of click's usage block and
    panel. ``typer.testing.CliRunner`` goes through the click command directly and is unaffected.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("standalone_mode") is False:
            return super().__call__(*args, **kwargs)
        try:
            code = super().__call__(*args, standalone_mode=False, **kwargs)
        except Exception as exc:  # click's exceptions come from typer's vendored click or click itself
            if type(exc).__name__ == "Abort":
                err_console.print("aborted", markup=False)
                sys.exit(1)
            if type(exc).__name__ == "NoArgsIsHelpError":  # a group or command called bare: its help, on stdout
                out_console.print(exc.format_message(), markup=False, highlight=False, soft_wrap=True)
                sys.exit(exc.exit_code)
            if hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int):
                if not exc.format_message().strip():  # no arguments: click printed the help already
                    sys.exit(exc.exit_code)
                ctx = getattr(exc, "ctx", None)
                where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
                err_console.print(f"error: {exc.format_message()}{where}", markup=False, soft_wrap=True)
                sys.exit(exc.exit_code)
            raise
        sys.exit(code if isinstance(code, int) else 0)


def new_app(help_text: str, *, name: str | None = None) -> typer.Typer:
    """A typer app with the toolkit's settings (no shell-completion options, one-line usage errors)."""
    return ToolApp(name=name, help=help_text, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                   rich_markup_mode=None)


class NotANumber(typer.BadParameter):
    """A numeric option whose value is not a finite (or whole) number; the message names the option (click would
    say only "Invalid value", and ``float('nan')`` would pass click's FLOAT type into the arithmetic)."""

    def format_message(self) -> str:
        opts = list(getattr(self.param, "opts", None) or [])
        return f"{max(opts, key=len) if opts else 'value'} {self.message}"


def finite_number(value: Any) -> float | None:
    """Parser for float options (``typer.Option(parser=finite_number)``): a finite number, else
    :class:`NotANumber` (exit 2): ``--exposure-us nan: expected a finite number``."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or isinstance(value, bool):
        raise NotANumber(f"{value}: expected a finite number")
    return number


def whole_number(value: Any) -> int | None:
    """Parser for integer options: a whole number, else :class:`NotANumber` (exit 2)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise NotANumber(f"{value}: expected a whole number") from None


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise."""
    err_console.print(f"error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


def choose(value: str, allowed: tuple[str, ...] | list[str], option: str) -> str:
    """``value`` if it is one of ``allowed``, else a :class:`UsageError` naming ``option`` and the choices."""
    if value not in allowed:
        raise UsageError(f"{option} {value!r}: choose one of {', '.join(allowed)}")
    return value


def warn(message: str) -> None:
    """Print ``warning: message`` on stderr as one line."""
    err_console.print(f"warning: {message}", markup=False, soft_wrap=True)


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """What to install when ``exc`` is a missing optional package of the toolkit (None for any other module)."""
    package = (exc.name or "").split(".")[0]
    if package not in EXTRA_OF:
        return None
    return f"needs {package}, which is not installed: pip install 'exlpose-data[{EXTRA_OF[package]}]'"


def handle_errors(func: F) -> F:
    """Turn the toolkit's errors into one line on stderr: usage errors exit 2, I/O failures and a missing
    optional package (``[rig]``, ``[train]``) exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with terminate_as_interrupt():
                return func(*args, **kwargs)
        except KeyboardInterrupt as exc:
            # Outputs under a provenance record stay marked incomplete; `exlpose verify` reports them.
            code = getattr(exc, "exit_code", 130)
            raise fail(f"interrupted ({'SIGTERM' if code == 143 else 'Ctrl-C'}); what was finished is kept, "
                       "unfinished outputs stay marked incomplete (exlpose verify lists them); re-run to complete", code) from None
        except UsageError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except ExlposeError as exc:
            raise fail(str(exc), 1) from None
        except ModuleNotFoundError as exc:
            message = missing_extra(exc)
            if message is None:
                raise
            raise fail(message, 1) from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise fail(f"{exc.filename or 'output'}: no space left on device; nothing half-written was kept", 1) from None
            if exc.filename is not None:
                usage = exc.errno in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.EROFS)
                raise fail(f"{exc.filename}: {exc.strerror}", 2 if usage else 1) from None
            raise

    return wrapper  # type: ignore[return-value]


def progress_bar(*, transient: bool = False, disable: bool = False) -> Progress:
    """A rich progress bar on stderr (stdout stays machine-readable)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
        disable=disable,
    )


@contextlib.contextmanager
def progress_callback(description: str, *, disable: bool = False) -> Iterator[ProgressCallback]:
    """A progress bar on stderr, given to library code as the ``(done, total)`` callback it takes."""
    with progress_bar(disable=disable) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
