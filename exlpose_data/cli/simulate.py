"""``exlpose simulate``: paired low-light / well-lit data with exact ground truth, from a physical camera model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import UsageError
from ..schema import load_document
from ..simulate.background import list_background_images
from ..simulate.config import SimulationConfig, load_config, parse_size
from ..feeds_format import FEEDS_FILE
from ..simulate.feeds import simulate_feeds
from ..simulate.poses import SourceScene, poses_from_document
from ..simulate.release import simulate_release
from ..simulate.runner import default_workers
from .common import finite_number, handle_errors, new_app, out_console, progress_callback

__all__ = ["app", "main"]

app = new_app("Simulate paired low-light / well-lit captures (release datasets or camera-emulator feeds).")

Out = Annotated[Path, typer.Option("--out", help="Output folder (must not exist or be empty, and lie outside --backgrounds).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", "--force", help="Replace an earlier output of this command at --out (built beside it, swapped in when complete).")]
Scenes = Annotated[int, typer.Option(min=1, help="Number of scenes.")]
Size = Annotated[Optional[str], typer.Option(help="Frame size WIDTHxHEIGHT (even numbers) [default: 1920x1200].")]
Seed = Annotated[int, typer.Option(help="Master seed: the same seed gives the same files.")]
PosesFrom = Annotated[Optional[Path], typer.Option(help="Take people positions and poses from this CrowdPose JSON.")]
Frames = Annotated[Optional[int], typer.Option(min=1, help="Video frames per scene [default: 2].")]
Workers = Annotated[int, typer.Option(min=0, help="Processes (0 = all cores).")]
Config = Annotated[Optional[Path], typer.Option(help="YAML/JSON file of SimulationConfig settings (docs/simulate.md).")]
Backgrounds = Annotated[Optional[Path], typer.Option(help="Folder of background photographs [default: procedural].")]
Preset = Annotated[Optional[str], typer.Option(help="Exposure ladder: auto, outdoor (k=1,2,4,8,12) or indoor (k=1,2,3,4,6).")]
Distortion = Annotated[Optional[float], typer.Option(help="Residual radial distortion k1 of the WL path [default: 0].", parser=finite_number)]
Mirror = Annotated[Optional[str], typer.Option(help="Camera mirrored by the beam splitter: none, ll or wl [default: none].")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Site = Annotated[Optional[str], typer.Option(help="Site word in the release names; '' for none (the authors' loaders spell only none, 3, bulguksa, hwangridan, manridang) [default: sim].")]


def _prepare(config_file: Path | None, size: str | None, frames: int | None, preset: str | None, distortion: float | None,
             mirror: str | None, poses_from: Path | None, backgrounds: Path | None, workers: int, site: str | None = None,
             ) -> tuple[SimulationConfig, list[SourceScene] | None, list[Path] | None, int]:
    overrides: dict[str, Any] = {"frames_per_scene": frames, "protocol": {"preset": preset}, "site": site,
                                 "geometry": {"k1": distortion, "mirror": mirror},
                                 "backgrounds": str(backgrounds) if backgrounds else None}
    if size is not None:
        overrides["width"], overrides["height"] = parse_size(size)
    config = load_config(config_file, **overrides)
    sources = None
    if poses_from is not None:
        sources = poses_from_document(load_document(poses_from), config.size, source=str(poses_from))
    bg_files = list_background_images(config.backgrounds) if config.backgrounds else None
    return config, sources, bg_files, workers or default_workers()


@app.command("release")
@handle_errors
def release(out: Out, scenes: Scenes = 10, size: Size = None, seed: Seed = 0, poses_from: PosesFrom = None,
            frames: Frames = None, workers: Workers = 0, config: Config = None, backgrounds: Backgrounds = None,
            preset: Preset = None, distortion: Distortion = None, mirror: Mirror = None,
            test_fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of scenes in the test split.", parser=finite_number)] = 0.2,
            val_fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of scenes in a validation split.", parser=finite_number)] = 0.0,
            site: Site = None, quiet: Quiet = False, overwrite: Overwrite = False) -> None:
    """Write a simulated dataset in the official release layout (bright/, dark/, pair list, annotations, manifest).

    Example: exlpose simulate release --out sim --scenes 20 --seed 1
    """
    if test_fraction + val_fraction >= 1.0:
        raise UsageError("--test-fraction plus --val-fraction must leave scenes for training (sum < 1)")
    cfg, sources, bg_files, n_workers = _prepare(config, size, frames, preset, distortion, mirror, poses_from, backgrounds, workers, site)
    with progress_callback("simulating scenes", disable=quiet) as progress:
        summary = simulate_release(cfg, out, scenes=scenes, seed=seed, workers=n_workers, sources=sources, backgrounds=bg_files,
                                   test_fraction=test_fraction, val_fraction=val_fraction, progress=progress,
                                   inputs={"config": config, "poses_from": poses_from}, overwrite=overwrite)
    out_console.print(f"wrote {summary.pairs} pairs ({summary.people} people) of {summary.scenes} scenes to {summary.root}",
                      markup=False, soft_wrap=True)


@app.command("feeds")
@handle_errors
def feeds(out: Out, scenes: Scenes = 2, size: Size = None, seed: Seed = 0, poses_from: PosesFrom = None,
          frames: Frames = None, workers: Workers = 0, config: Config = None, backgrounds: Backgrounds = None,
          preset: Preset = None, distortion: Distortion = None, mirror: Mirror = None, site: Site = None, quiet: Quiet = False,
          overwrite: Overwrite = False) -> None:
    """Write raw frames for the pylon camera emulator: OUT/<scene>/<k>/{ll,wl}/NNNNNN.png plus OUT/feeds.json.

    Example: exlpose simulate feeds --out feeds --scenes 2 --frames 3
    """
    cfg, sources, bg_files, n_workers = _prepare(config, size, frames, preset, distortion, mirror, poses_from, backgrounds, workers, site)
    with progress_callback("simulating feeds", disable=quiet) as progress:
        doc = simulate_feeds(cfg, out, scenes=scenes, seed=seed, workers=n_workers, sources=sources, backgrounds=bg_files,
                             progress=progress, inputs={"config": config, "poses_from": poses_from}, overwrite=overwrite)
    n_frames = sum(len(s.frames) * len(s.steps) for s in doc.scenes)
    out_console.print(f"wrote {n_frames} frame pairs of {len(doc.scenes)} scenes to {out} (described in {out / FEEDS_FILE})",
                      markup=False, soft_wrap=True)


def main() -> None:
    app(prog_name="exlpose-simulate")
