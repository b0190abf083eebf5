"""``exlpose simulate feeds``: raw frames for the pylon camera emulator, as each camera would record them.

Layout::

    DIR/<scene>/<k>/ll/NNNNNN.png        LL camera, frame NNNNNN of the video at exposure cut k
    DIR/<scene>/<k>/wl/NNNNNN.png        WL camera
    DIR/<scene>/reference/{ll,wl}/000000.png   a static textured pair for estimating the homography
    DIR/feeds.json                       :class:`exlpose_data.simulate.truth.FeedsDocument`

The emulator plays a folder in name order and fails on any non-image file, so those folders hold PNGs only.
Each PNG is 16-bit greyscale: the 12-bit raw mosaic shifted left by 4 (MSB-aligned). Fed with
``PixelFormat = BayerRG12`` the emulator returns exactly the raw values (measured with pypylon 26.9).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_json_atomic
from ..isp import IspParams
from .config import SimulationConfig
from .pipeline import SceneSimulator
from .poses import SourceScene
from .release import write_png
from .runner import run_scenes, staged_output
from .truth import FeedsDocument, ReferenceFeed, SceneTruth

__all__ = ["FEEDS_FILE", "REFERENCE_DIR", "feed_frame", "isp_colour_settings", "simulate_feeds"]

FEEDS_FILE = "feeds.json"
REFERENCE_DIR = "reference"


def isp_colour_settings(isp: IspParams) -> dict[str, Any]:
    """The colour steps of the ISP as feeds.json records them (the rest comes from the sensor fields)."""
    return {"wb_gains": list(isp.wb_gains), "ccm": [list(row) for row in isp.ccm], "demosaic": isp.demosaic}


def feed_frame(raw: np.ndarray, bit_depth: int) -> np.ndarray:
    """A raw frame as the emulator wants it: uint16, MSB-aligned."""
    return (raw.astype(np.uint16) << np.uint16(16 - bit_depth)).astype(np.uint16)


def _feeds_scene(config: SimulationConfig, seed: int, index: int, root: Path, source: SourceScene | None,
                 background: Path | None) -> SceneTruth:
    sim = SceneSimulator(config, seed, index, source=source, background_file=background)
    bits = config.sensor.bit_depth
    scene_dir = root / sim.scene_id
    frames = []
    for record, captures in sim.frames():
        frames.append(record)
        for cap in captures:
            step_dir = scene_dir / sim.protocol.ladder[cap.step_index].step_name
            write_png(step_dir / "ll" / record.file, feed_frame(cap.raw_ll, bits))
            write_png(step_dir / "wl" / record.file, feed_frame(cap.raw_wl, bits))
    truth = sim.truth(frames)
    for step, ladder_step in zip(truth.steps, sim.protocol.ladder):
        step.ll_dir = f"{sim.scene_id}/{ladder_step.step_name}/ll"
        step.wl_dir = f"{sim.scene_id}/{ladder_step.step_name}/wl"
    ref_ll, ref_wl = sim.reference()
    name = "000000.png"
    write_png(scene_dir / REFERENCE_DIR / "ll" / name, feed_frame(ref_ll, bits))
    write_png(scene_dir / REFERENCE_DIR / "wl" / name, feed_frame(ref_wl, bits))
    p = sim.protocol
    truth.reference = ReferenceFeed(
        ll_dir=f"{sim.scene_id}/{REFERENCE_DIR}/ll", wl_dir=f"{sim.scene_id}/{REFERENCE_DIR}/wl", file=name,
        ll_exposure_us=p.base_exposure_us * config.protocol.nd_factor, wl_exposure_us=p.base_exposure_us,
        ll_gain_db=p.base_gain_db, wl_gain_db=p.base_gain_db,
    )
    return truth


def simulate_feeds(config: SimulationConfig, out: Path, *, scenes: int, seed: int, workers: int,
                   sources: list[SourceScene] | None = None, backgrounds: list[Path] | None = None,
                   show_progress: bool = True) -> FeedsDocument:
    """Simulate ``scenes`` scenes as emulator feeds into a new folder ``out`` (arguments as ``simulate_release``)."""
    with staged_output(out) as root:
        tasks = [functools.partial(_feeds_scene, config, seed, i, root,
                                   sources[i % len(sources)] if sources else None,
                                   backgrounds[i % len(backgrounds)] if backgrounds else None) for i in range(scenes)]
        truths = run_scenes(tasks, workers=workers, description="simulating feeds", show_progress=show_progress)
        isp = config.isp_params()
        doc = FeedsDocument(pixel_format=f"Bayer{isp.pattern[:2]}{config.sensor.bit_depth}", bayer_pattern=isp.pattern,
                            bit_depth=config.sensor.bit_depth, bit_shift=16 - config.sensor.bit_depth,
                            black_level_dn=config.sensor.black_level_dn, isp=isp_colour_settings(isp), seed=seed,
                            scenes=truths)
        write_json_atomic(root / FEEDS_FILE, doc.model_dump(mode="json"), indent=1)
    return doc
