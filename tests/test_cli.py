"""The umbrella CLI, the named tools and the README's promises."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exlpose.cli import SUBCOMMANDS, _available, app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_help_lists_core_and_mounted_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for name in ("validate", "stats", "verify", "schema", "split"):
        assert re.search(rf"^\s+{name}\s", res.output, re.M), name


def test_every_mounted_tool_loads_and_has_help():
    for name, (target, _) in SUBCOMMANDS.items():
        assert _available(target), f"{name}: {target} is registered but missing"
        res = runner.invoke(app, [name, "--help"])
        assert res.exit_code == 0, (name, res.output)


def test_schema_prints_a_json_schema():
    import json

    res = runner.invoke(app, ["schema", "annotations"])
    schema = json.loads(res.output)
    assert set(schema["required"]) == {"images", "annotations"}
    assert "AnnotationRecord" in schema["$defs"]


def test_unknown_command_is_a_usage_error():
    res = runner.invoke(app, ["frobnicate"])
    assert res.exit_code == 2


def test_help_does_not_import_heavy_layers():
    code = "import sys; from exlpose.cli import app; from typer.testing import CliRunner; CliRunner().invoke(app, ['--help']); print(sorted(m for m in ('torch', 'pypylon') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    setup = readme.split("## Set up and test", 1)[1].split("\n## ", 1)[0]
    commands = [line for block in re.findall(r"```bash\n(.*?)```", setup, re.S) for line in block.splitlines() if line.strip()]
    assert commands[0] == 'pip install torch==2.13.0 && pip install -e ".[all,dev]"'
    assert commands[1].startswith("pytest")
    # Every command the README gives for setting up and testing is a line of .ci/run, word for word.
    for command in commands:
        assert command in ci_lines, command


@pytest.mark.slow
def test_console_scripts_print_usage_errors_on_one_line(tmp_path):
    for argv, needle in ((["exlpose", "split", "by-gain"], "error: Missing argument 'annotations'."),
                         (["exlpose", "frobnicate"], "error: No such command 'frobnicate'."),
                         (["exlpose", "simulate", "release", "--out", str(tmp_path / "x"), "--scenes", "0"], "error: Invalid value for '--scenes'")):
        res = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True)
        assert res.returncode == 2, (argv, res.stderr)
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(needle), res.stderr
    res = subprocess.run([sys.executable, "-m", "exlpose", "split"], capture_output=True, text=True)
    assert "by-gain" in res.stdout and "error" not in res.stderr


@pytest.mark.slow
def test_baselines_console_scripts_share_one_module():
    """exlpose-train, exlpose-eval and exlpose-predict are the apps of baselines.cli (exlpose-detect of baselines.detect.cli),
    also under the umbrella."""
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {k: v for k, v in scripts.items() if v.startswith("baselines.")} == {
        "exlpose-train": "baselines.cli:train_main", "exlpose-eval": "baselines.cli:eval_main", "exlpose-predict": "baselines.cli:predict_main",
        "exlpose-detect": "baselines.detect.cli:main"}
    # the detector's trainer runs as a module under torchrun too
    res = subprocess.run([sys.executable, "-m", "baselines.detect.cli", "train", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0 and "exlpose-detect train" in res.stdout and "--resume" in res.stdout, res.stderr
    for tool in ("train", "eval", "predict"):
        res = subprocess.run([sys.executable, "-m", "baselines.cli", tool, "--help"], capture_output=True, text=True, cwd=ROOT)
        assert res.returncode == 0 and f"exlpose-{tool}" in res.stdout, res.stderr
    res = subprocess.run([sys.executable, "-m", "baselines.cli", "fit"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and res.stderr.strip() == "usage: python -m baselines.cli {train,eval,predict} [OPTIONS]"
    res = subprocess.run([sys.executable, "-m", "exlpose", "predict", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0 and "--boxes" in res.stdout
