"""``exlpose simulate feeds``: raw frames for the pylon camera emulator, as each camera would record them.

The folder layout, the MSB alignment and ``feeds.json`` are the core's feeds format
(:mod:`exlpose_data.feeds_format`), which the rig reads too.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..atomic import write_image_atomic, write_json_atomic
from ..feeds_format import FEEDS_FILE, REFERENCE_DIR, FeedsDocument, ReferenceFeed, SceneTruth, feed_folder, msb_align
from ..isp import IspParams
from ..progress import ProgressCallback
from .config import SimulationConfig
from .pipeline import SceneSimulator
from .poses import SourceScene
from .release import simulation_inputs
from .runner import run_scenes, simulation_output

__all__ = ["isp_colour_settings", "simulate_feeds"]


def isp_colour_settings(isp: IspParams) -> dict[str, Any]:
    """The colour steps of the ISP as feeds.json records them (the rest comes from the sensor fields)."""
    return {"wb_gains": list(isp.wb_gains), "ccm": [list(row) for row in isp.ccm], "demosaic": isp.demosaic}


def _feeds_scene(config: SimulationConfig, seed: int, index: int, root: Path, source: SourceScene | None,
                 background: Path | None) -> SceneTruth:
    sim = SceneSimulator(config, seed, index, source=source, background_file=background)
    bits = config.sensor.bit_depth
    frames = []
    for record, captures in sim.frames():
        frames.append(record)
        for cap in captures:
            step = sim.protocol.ladder[cap.step_index].step_name
            write_image_atomic(feed_folder(root, sim.scene_id, step, "ll") / record.file, msb_align(cap.raw_ll, bits), fast=True)
            write_image_atomic(feed_folder(root, sim.scene_id, step, "wl") / record.file, msb_align(cap.raw_wl, bits), fast=True)
    truth = sim.truth(frames)
    for step_truth, ladder_step in zip(truth.steps, sim.protocol.ladder):
        step_truth.ll_dir = feed_folder("", sim.scene_id, ladder_step.step_name, "ll").as_posix()
        step_truth.wl_dir = feed_folder("", sim.scene_id, ladder_step.step_name, "wl").as_posix()
    ref_ll, ref_wl = sim.reference()
    name = "000000.png"
    write_image_atomic(feed_folder(root, sim.scene_id, REFERENCE_DIR, "ll") / name, msb_align(ref_ll, bits), fast=True)
    write_image_atomic(feed_folder(root, sim.scene_id, REFERENCE_DIR, "wl") / name, msb_align(ref_wl, bits), fast=True)
    p = sim.protocol
    truth.reference = ReferenceFeed(
        ll_dir=feed_folder("", sim.scene_id, REFERENCE_DIR, "ll").as_posix(),
        wl_dir=feed_folder("", sim.scene_id, REFERENCE_DIR, "wl").as_posix(), file=name,
        ll_exposure_us=p.base_exposure_us * config.protocol.nd_factor, wl_exposure_us=p.base_exposure_us,
        ll_gain_db=p.base_gain_db, wl_gain_db=p.base_gain_db,
    )
    return truth


def simulate_feeds(config: SimulationConfig, out: Path, *, scenes: int, seed: int, workers: int,
                   sources: list[SourceScene] | None = None, backgrounds: list[Path] | None = None,
                   progress: ProgressCallback | None = None, inputs: Mapping[str, Path] | None = None,
                   overwrite: bool = False) -> FeedsDocument:
    """Simulate ``scenes`` scenes as emulator feeds into a new folder ``out`` (arguments as ``simulate_release``),
    recording its provenance."""
    settings = {"config": config.model_dump(mode="json"), "scenes": scenes, "seed": seed}
    with simulation_output(out, produces="feeds folder", command="exlpose-simulate feeds", settings=settings,
                           inputs=simulation_inputs(config, inputs), overwrite=overwrite) as (root, _):
        tasks = [functools.partial(_feeds_scene, config, seed, i, root,
                                   sources[i % len(sources)] if sources else None,
                                   backgrounds[i % len(backgrounds)] if backgrounds else None) for i in range(scenes)]
        truths = run_scenes(tasks, workers=workers, progress=progress)
        isp = config.isp_params()
        doc = FeedsDocument(pixel_format=f"Bayer{isp.pattern[:2]}{config.sensor.bit_depth}", bayer_pattern=isp.pattern,
                            bit_depth=config.sensor.bit_depth, bit_shift=16 - config.sensor.bit_depth,
                            black_level_dn=config.sensor.black_level_dn, isp=isp_colour_settings(isp), seed=seed,
                            scenes=truths)
        write_json_atomic(root / FEEDS_FILE, doc.model_dump(mode="json"), indent=1)
    return doc
