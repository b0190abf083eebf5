"""Every word a command's help was written with reaches the user: no text is eaten as markup.

Typer's rich markup mode reads ``[default: 1920x1200]`` and ``[[x, y, w, h]]`` as style tags and drops them;
the toolkit's apps render help as plain text. This walks every command of every tool and checks each option's and
argument's help, and each command's docstring, word for word in the rendered help.
"""

from __future__ import annotations

import re

import click
import pytest
import typer

from exlpose.cli import app


def _commands() -> list[tuple[str, click.Command, click.Context]]:
    root = typer.main.get_command(app)
    out = []
    stack = [(root, click.Context(root, info_name="exlpose", terminal_width=200, max_content_width=200))]
    while stack:
        group, ctx = stack.pop()
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            if cmd is None:
                continue
            sub = click.Context(cmd, info_name=name, parent=ctx, terminal_width=200, max_content_width=200)
            if hasattr(cmd, "list_commands"):
                stack.append((cmd, sub))
            out.append((sub.command_path, cmd, sub))
    return out


COMMANDS = _commands()


def _words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


def _squeezed(text: str) -> str:
    """The text without whitespace: help is rewrapped (and click breaks lines after a hyphen), words stay."""
    return re.sub(r"\s+", "", text)


def test_the_walk_finds_every_tool() -> None:
    paths = {path for path, _, _ in COMMANDS}
    for expected in ("exlpose simulate release", "exlpose predict", "exlpose align apply", "exlpose capture darks",
                     "exlpose annotate import", "exlpose train", "exlpose eval model", "exlpose enhance lime"):
        assert expected in paths
    assert len(COMMANDS) > 40


@pytest.mark.parametrize(("path", "cmd", "ctx"), COMMANDS, ids=[p for p, _, _ in COMMANDS])
def test_every_help_text_survives_rendering(path: str, cmd: click.Command, ctx: click.Context) -> None:
    rendered = _squeezed(cmd.get_help(ctx))
    for param in cmd.params:
        text = getattr(param, "help", None)
        if text:
            assert _squeezed(text) in rendered, f"{path} {param.name}: {text!r} not in its help"
    if cmd.help:
        first = cmd.help.split("\n\n")[0]
        assert _squeezed(first) in rendered, f"{path}: {first!r} not in its help"


def test_the_texts_the_issue_found_eaten() -> None:
    by_path = {p: (c, x) for p, c, x in COMMANDS}
    cmd, ctx = by_path["exlpose simulate release"]
    assert "(even numbers) [default: 1920x1200]." in " ".join(_words(cmd.get_help(ctx)))
    cmd, ctx = by_path["exlpose predict"]
    assert 'JSON {"image.png": [[x, y, w, h(, score)], ...]}' in " ".join(_words(cmd.get_help(ctx)))
