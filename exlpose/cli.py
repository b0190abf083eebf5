"""The umbrella ``exlpose`` CLI.

Each tool's app is mounted under a short name and imported only when used, so ``exlpose --help`` stays fast
and a layer's heavy imports (torch, pypylon) are paid only by the commands that need them. The core's own
commands (validate, stats, verify, schema) sit at the top level.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import typer
from typer.core import TyperGroup

from exlpose_data import __version__
from exlpose_data.cli.common import ToolApp

__all__ = ["app", "main", "SUBCOMMANDS", "EXTENSIONS"]

# name -> ("module:attribute", help). The module is imported only when the command runs.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "split": ("exlpose_data.cli.split:app", "Split annotation files by gain (LL-N/H/E) or by scene (exlpose-split)."),
    "capture": ("rig.cli:app", "Capture on the dual Basler rig or its emulator: plan, reference, record, resume, inspect (exlpose-capture)."),
    "align": ("exlpose_data.cli.align:app", "Homography from reference pairs, its validation, aligned release export (exlpose-align)."),
    "simulate": ("exlpose_data.cli.simulate:app", "Simulate paired low-light data: a release dataset or raw feeds for the camera emulator."),
    "demo": ("exlpose.demo.cli:app", "Run the whole pipeline end to end on the emulated rig and write a report."),
    "pack": ("exlpose_data.cli.pack:app", "Decode a dataset's images into an HDF5 pack for fast torch datasets (exlpose-pack)."),
    "train": ("baselines.cli:train_app", "Train the ExLPose reference (CPN + LSBN + LUPI) (exlpose-train)."),
    "eval": ("baselines.cli:eval_app", "Score keypoint predictions or a checkpoint on the test splits (exlpose-eval)."),
    "enhance": ("baselines.enhance.cli:app", "Enhance low-light images with LIME or an ONNX enhancer (Table 2's enhancement rows)."),
    "detect": ("baselines.detect.cli:app", "Train, evaluate and run the low-light person detector; boxes for Table 6 (exlpose-detect)."),
    "predict": ("baselines.cli:predict_app", "Predict keypoints in images with a checkpoint; JSON and overlay PNGs (exlpose-predict)."),
    "export": ("exlpose_data.cli.export:app", "Lay a dataset out for other code (official: the authors' test.py); export models to ONNX (onnx)."),
    "annotate": ("annotation.cli:app", "Annotation: tasks for annotators, import CVAT/Label Studio/COCO/CrowdPose labels, review sheets, export."),
}

_CORE = "exlpose_data.cli.core:app"

# name -> "module:attribute" of a layer's typer group whose commands join the core's group ``name`` (the core may
# not import the layers): ``exlpose export onnx`` comes from the baselines.
EXTENSIONS: dict[str, str] = {"export": "baselines.export_cli:app"}


def _load(target: str) -> Any:
    module, attr = target.split(":")
    return typer.main.get_command(getattr(importlib.import_module(module), attr))


def _available(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


class _LazyGroup(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        names = set(super().list_commands(ctx)) | set(_core_group().commands)
        names |= {n for n, (t, _) in SUBCOMMANDS.items() if _available(t)}
        return sorted(names)

    def get_command(self, ctx: Any, name: str) -> Any:
        if name in SUBCOMMANDS and _available(SUBCOMMANDS[name][0]):
            cmd = _load(SUBCOMMANDS[name][0])
            if name in EXTENSIONS and _available(EXTENSIONS[name]):
                extension = _load(EXTENSIONS[name])
                for sub_name, sub in extension.commands.items():
                    cmd.add_command(sub, sub_name)
                cmd.help = f"{cmd.help} {extension.help}"
            if not cmd.help:
                cmd.help = SUBCOMMANDS[name][1]
            return cmd
        core = _core_group()
        if name in core.commands:
            return core.commands[name]
        return super().get_command(ctx, name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        core = _core_group()
        for name in self.list_commands(ctx):
            if name in SUBCOMMANDS:
                rows.append((name, SUBCOMMANDS[name][1]))
            elif name in core.commands:
                rows.append((name, core.commands[name].get_short_help_str(80)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


_core_cache: list[Any] = []


def _core_group() -> Any:
    if not _core_cache:
        _core_cache.append(_load(_CORE))
    return _core_cache[0]


app = ToolApp(
    cls=_LazyGroup,
    help=f"exlpose-data {__version__}: build and use paired low-light / well-lit human-pose datasets.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """exlpose-data: build and use paired low-light / well-lit human-pose datasets."""


def main() -> None:
    """Console-script entry point."""
    app(prog_name="exlpose")
