"""The demo's stages: each runs one of the toolkit's own commands, as a user would, in a child process.

Running the real commands (``python -m exlpose <tool> ...``) keeps the demo honest (it exercises the CLIs,
their files and their exit codes) and isolates the emulated cameras (``PYLON_CAMEMU`` must be set before pylon
starts). A stage that fails stops the demo with its name; what earlier stages wrote stays in place.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exlpose_data.atomic import write_text_atomic
from exlpose_data.jsonio import load_json
from exlpose_data.errors import ExlposeError

__all__ = ["DemoSettings", "QUICK", "FULL", "StageFailed", "Runner"]


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run.

    Attributes:
        scenes: simulated scenes (each recorded as its own session, with its own reference pair).
        size: frame size WIDTHxHEIGHT.
        frames: video frames per exposure step.
        backbone: CPN backbone.
        input_size: crop HEIGHTxWIDTH; heatmap_size its quarter.
        epochs, steps_per_epoch, batch_size: training length.
        test_fraction: share of the scenes held out for testing.
        train_scenes: when > 0, the models train on this many further scenes that the simulator writes straight
            into the release layout (one frame each, the same sensor model and ISP as the captured path) instead
            of on the captured training scenes, and are tested on the captured held-out scenes: a network trained
            from scratch needs hundreds of scenes to generalise, far more than the demo can record on the emulator.
        lr: Adam's learning rate.
        channels_last: channels-last memory format (float32 throughout: bfloat16 autocast made a step 2-3x slower on
            CPUs without bfloat16 units, benchmarks/bench_precision.py).
    """

    scenes: int
    size: str
    frames: int
    backbone: str
    input_size: str
    heatmap_size: str
    epochs: int
    steps_per_epoch: int
    batch_size: int
    test_fraction: float = 0.5
    train_scenes: int = 0
    lr: float = 5e-4
    channels_last: bool = False
    seed: int = 0


QUICK = DemoSettings(scenes=2, size="320x200", frames=2, backbone="resnet18", input_size="64x48", heatmap_size="16x12",
                     epochs=3, steps_per_epoch=4, batch_size=8, train_scenes=4)
# The full run trains each model 320 steps of 8 pairs (lr 1e-3, the settings that learnt most per minute in
# bench_learning) on 400 further simulated scenes (from scratch, 5 captured training scenes are memorised, not
# learnt from) and tests on the 5 held-out captured scenes, inside about 15 minutes on 2 cores; the quick run is a
# smoke run.
FULL = DemoSettings(scenes=10, size="640x400", frames=2, backbone="resnet18", input_size="128x96", heatmap_size="32x24",
                    epochs=10, steps_per_epoch=32, batch_size=8, test_fraction=0.5, train_scenes=400, lr=1e-3, channels_last=True)


class StageFailed(ExlposeError):
    """A demo stage failed; the message names the stage."""


@dataclass
class Runner:
    """Runs the demo's commands and records what each stage took."""

    out: Path
    log: list[str] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    echo: Callable[[str], None] = print

    def command(self, stage: str, args: list[str], *, env: dict[str, str] | None = None, capture: bool = False) -> str:
        """Run ``python -m exlpose ARGS``; return its stdout when ``capture``. Raises StageFailed on failure."""
        argv = [sys.executable, "-m", "exlpose", *args]
        self.log.append(shlex.join(["exlpose", *args]))
        write_text_atomic(self.out / "commands.sh", "#!/usr/bin/env bash\n# the commands the demo ran, in order\n" + "\n".join(self.log) + "\n")
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run(argv, env=full_env, stdout=subprocess.PIPE if capture else None, stderr=None, text=True)
        if proc.returncode != 0:
            raise StageFailed(f"stage '{stage}' failed: 'exlpose {' '.join(args[:2])} ...' exited {proc.returncode} "
                              f"(its error is above; earlier stages' output is kept in {self.out})")
        return proc.stdout if capture else ""

    def stage(self, name: str, func: Callable[[], Any]) -> Any:
        """Run one stage with a header line and timing."""
        self.echo(f"== {name}")
        start = time.perf_counter()
        try:
            result = func()
        except StageFailed:
            self.stages.append({"stage": name, "seconds": round(time.perf_counter() - start, 1), "status": "failed"})
            raise
        except ExlposeError as exc:
            self.stages.append({"stage": name, "seconds": round(time.perf_counter() - start, 1), "status": "failed"})
            raise StageFailed(f"stage '{name}' failed: {exc}") from None
        self.stages.append({"stage": name, "seconds": round(time.perf_counter() - start, 1), "status": "ok"})
        return result


def read_json(path: Path) -> Any:
    return load_json(path)
