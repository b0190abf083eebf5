"""A core install works without the [rig] and [train] extras: with pypylon, torch and tensorboard unimportable,
the core and the annotation layer import and the core commands run (each case in a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import OFFICIAL_LL_ALL, make_release

pytestmark = pytest.mark.slow  # fresh interpreters per case

REPO = Path(__file__).resolve().parents[1]

# A meta-path finder that makes the extras' packages unimportable, as on a core-only install.
BLOCK = """
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "pypylon", "tensorboard"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
"""

RUN_EXLPOSE = BLOCK + """
sys.argv = ["exlpose", *sys.argv[1:]]
from exlpose.cli import main
main()
"""

# The only modules of the core and the annotation layer that need torch (the [train] extra).
TORCH_MODULES = {"exlpose_data.datasets.images", "exlpose_data.datasets.topdown", "exlpose_data.datasets.ocn", "exlpose_data.datasets.detection"}

IMPORT_ALL = BLOCK + """
import importlib, pkgutil, json
import exlpose_data, annotation
needs = {}
for pkg in (exlpose_data, annotation):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            needs[info.name] = exc.name
print(json.dumps({"needs": needs, "version": exlpose_data.__version__}))
"""


def _python(code: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_core_and_annotation_import_without_torch_or_pypylon() -> None:
    run = _python(IMPORT_ALL)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["version"] == "0.1.0"
    assert result["needs"] == {m: "torch" for m in TORCH_MODULES}


def test_core_commands_run_without_torch_or_pypylon(tmp_path: Path) -> None:
    run = _python(RUN_EXLPOSE, "validate", str(OFFICIAL_LL_ALL))
    assert run.returncode == 1, run.stderr[-2000:]  # the official file's known problems
    assert run.stderr.rstrip().endswith(f"{OFFICIAL_LL_ALL}: 39 problem(s)"), run.stderr[-500:]
    assert run.stdout.count("\n") == 39 and "[num-keypoints-range]" in run.stdout

    run = _python(RUN_EXLPOSE, "split", "by-gain", str(OFFICIAL_LL_ALL), "--out", str(tmp_path / "split"))
    assert run.returncode == 0, run.stderr[-2000:]
    counts = {n: len(json.loads((tmp_path / "split" / f"ExLPose_test_{n}.json").read_text())["images"]) for n in ("LL-N", "LL-H", "LL-E")}
    assert counts == {"LL-N": 167, "LL-H": 169, "LL-E": 155}

    make_release(tmp_path / "rel", json.loads(OFFICIAL_LL_ALL.read_text()), n_images=3)
    run = _python(RUN_EXLPOSE, "pack", str(tmp_path / "rel"), "--out", str(tmp_path / "p.h5"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert "packed 6 images" in run.stderr


@pytest.mark.parametrize(("command", "message"), [
    (["train", "--variant", "lsbn", "--from-scratch", "--dataset", "data"], "error: needs torch, which is not installed: pip install 'exlpose-data[train]'"),
    (["eval", "model", "ckpt.pth", "--dataset", "data"], "error: needs torch, which is not installed: pip install 'exlpose-data[train]'"),
    (["capture", "devices", "--emulate"], "error: needs pypylon, which is not installed: pip install 'exlpose-data[rig]'"),
])
def test_a_command_of_a_missing_extra_names_the_extra(command: list[str], message: str) -> None:
    run = _python(RUN_EXLPOSE, *command)
    assert run.returncode == 1
    assert run.stderr.strip() == message and "Traceback" not in run.stderr
