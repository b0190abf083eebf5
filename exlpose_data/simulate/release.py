"""``exlpose simulate release``: a simulated dataset in the official release layout.

ROOT/bright and ROOT/dark hold aligned 8-bit images named by :class:`exlpose_data.naming.ImageName`,
ROOT/brightPath2darkPath.txt the pairs, ROOT/annotations the release's annotation files (split by scene, then the
test set by WL gain, through :func:`exlpose_data.split.write_release_annotations`), ROOT/simulation.json the truth
of every scene, ROOT/manifest.json the hashes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_image_atomic, write_json_atomic
from ..errors import InputError, UsageError
from ..feeds_format import ReleaseImage, SceneTruth
from ..layout import PAIRS_FILE, update_manifest, write_pairs
from ..naming import ImageName
from ..progress import ProgressCallback
from ..schema import AnnotationDocument, AnnotationRecord, ImageRecord
from ..split import split_by_scene, write_release_annotations
from .config import SimulationConfig
from .pipeline import SceneSimulator
from .poses import SourceScene
from .runner import run_scenes, simulation_output
from .truth import SimulationDocument

__all__ = ["SIMULATION_FILE", "ReleaseSummary", "check_scene_split", "simulate_release", "simulation_inputs"]

SIMULATION_FILE = "simulation.json"
# Noisy images gain nothing from zlib's string matching or adaptive filters: Huffman coding after the SUB filter is
# twice as fast as the defaults on simulated 1920x1200 frames and no larger. Encoding is still a large cost per pair.

@dataclass(frozen=True)
class ReleaseSummary:
    """What a release run wrote."""

    root: Path
    scenes: int
    pairs: int
    people: int


@dataclass(frozen=True)
class _SceneResult:
    truth: SceneTruth
    size: tuple[int, int]
    hashes: dict[str, str]


def _release_scene(config: SimulationConfig, seed: int, index: int, root: Path, source: SourceScene | None,
                   background: Path | None) -> _SceneResult:
    sim = SceneSimulator(config, seed, index, source=source, background_file=background)
    frames, images, hashes = [], [], {}
    for record, captures in sim.frames():
        frames.append(record)
        for cap in captures:
            step = sim.protocol.ladder[cap.step_index]
            bright = ImageName(date=config.date, site=config.site, video=sim.video, ratio=step.ratio, frame=record.frame,
                               gain_db=step.wl_gain_db, exposure_us=step.nominal_exposure_us, condition="WL")
            dark = bright.twin(gain_db=step.ll_gain_db)
            ll, wl = sim.develop_pair(cap)
            hashes[bright.relpath] = write_image_atomic(root / bright.relpath, wl, rgb=True, fast=True)
            hashes[dark.relpath] = write_image_atomic(root / dark.relpath, ll, rgb=True, fast=True)
            images.append(ReleaseImage(frame=record.frame, k=step.k, bright=bright.relpath, dark=dark.relpath))
    truth = sim.truth(frames)
    truth.images = images
    x0, y0, x1, y1 = sim.crop
    return _SceneResult(truth=truth, size=(x1 - x0, y1 - y0), hashes=hashes)


def _annotation_document(results: list[_SceneResult]) -> tuple[AnnotationDocument, dict[str, str]]:
    """All annotations with bright file names (one annotation serves both images of a pair)."""
    images, annotations, pairs = [], [], {}
    for res in results:
        people_of = {f.frame: f.people for f in res.truth.frames}
        for img in res.truth.images:
            image_id = len(images) + 1
            images.append(ImageRecord(id=image_id, file_name=img.bright, width=res.size[0], height=res.size[1]))
            pairs[img.bright] = img.dark
            for person in people_of[img.frame]:
                annotations.append(AnnotationRecord(id=len(annotations) + 1, image_id=image_id, keypoints=person.keypoints,
                                                    bbox=person.bbox, num_keypoints=sum(1 for v in person.keypoints[2::3] if v > 0)))
    return AnnotationDocument(images=images, annotations=annotations), pairs


def simulation_inputs(config: SimulationConfig, inputs: Mapping[str, Path | None] | None) -> dict[str, Path]:
    """The files and folders a simulation reads: ``inputs`` given (None entries dropped) and the backgrounds."""
    out = {role: Path(p) for role, p in (inputs or {}).items() if p is not None}
    if config.backgrounds:
        out["backgrounds"] = Path(config.backgrounds)
    return out


def check_scene_split(config: SimulationConfig, scenes: int, test_fraction: float, val_fraction: float) -> None:
    """Fail before any rendering when ``scenes`` scenes cannot be split by the fractions.

    The split itself decides: :func:`exlpose_data.split.split_by_scene` runs on one placeholder image per scene.

    Raises:
        UsageError: the scenes cannot fill the test and val parts and leave a training scene.
    """
    images = [ImageRecord(id=i + 1, file_name=ImageName(date=config.date, site=config.site, video=i + 1, ratio=100, frame=0,
                                                          gain_db=0.0, exposure_us=1000, condition="WL").relpath, width=2, height=2)
              for i in range(scenes)]
    try:
        split_by_scene(AnnotationDocument(images=images, annotations=[]), test_fraction=test_fraction,
                       val_fraction=val_fraction, source="--scenes")
    except InputError as exc:
        raise UsageError(f"--scenes {scenes}: cannot split by --test-fraction {test_fraction} and --val-fraction "
                         f"{val_fraction} ({exc})") from None


def simulate_release(config: SimulationConfig, out: Path, *, scenes: int, seed: int, workers: int,
                     sources: list[SourceScene] | None = None, backgrounds: list[Path] | None = None,
                     test_fraction: float = 0.2, val_fraction: float = 0.0, progress: ProgressCallback | None = None,
                     inputs: Mapping[str, Path] | None = None, overwrite: bool = False) -> ReleaseSummary:
    """Simulate ``scenes`` scenes into a new release folder ``out``, recording its provenance (the settings are
    the simulation config, the scene count, seed and split fractions).

    Args:
        config: simulation settings.
        out: dataset root (must not exist or be empty; with ``overwrite`` an earlier release is replaced when
            the new one is complete).
        scenes: number of scenes.
        seed: master seed.
        workers: processes.
        sources: people to reuse, scene ``i`` taking ``sources[i % len(sources)]``.
        backgrounds: photographs, scene ``i`` taking ``backgrounds[i % len(backgrounds)]``.
        test_fraction: share of scenes in the test split.
        val_fraction: share of scenes in a validation split.
        progress: called with ``(scenes done, scenes)`` as scenes finish.
        inputs: role -> file the settings came from (``config``, ``poses_from``), recorded with their digests;
            the backgrounds folder is added from the config.
        overwrite: replace an earlier release at ``out``.

    Raises:
        UsageError: the scenes cannot be split by the fractions (checked before rendering), or ``out`` is
            refused (:func:`exlpose_data.outputs.check_output`).
    """
    check_scene_split(config, scenes, test_fraction, val_fraction)
    settings = {"config": config.model_dump(mode="json"), "scenes": scenes, "seed": seed,
                "test_fraction": test_fraction, "val_fraction": val_fraction}
    with simulation_output(out, produces="release", command="exlpose-simulate release", settings=settings,
                           inputs=simulation_inputs(config, inputs), overwrite=overwrite) as (root, _):
        tasks = [functools.partial(_release_scene, config, seed, i, root,
                                   sources[i % len(sources)] if sources else None,
                                   backgrounds[i % len(backgrounds)] if backgrounds else None) for i in range(scenes)]
        results = run_scenes(tasks, workers=workers, progress=progress)
        doc, pairs = _annotation_document(results)
        hashes = {k: v for r in results for k, v in r.hashes.items()}
        write_pairs(root / PAIRS_FILE, pairs.items())
        sim_doc = SimulationDocument(seed=seed, config=config.model_dump(mode="json"), scenes=[r.truth for r in results])
        write_json_atomic(root / SIMULATION_FILE, sim_doc.model_dump(mode="json"), indent=1)
        update_manifest(root, [*hashes, PAIRS_FILE, SIMULATION_FILE], known_hashes=hashes)
        write_release_annotations(root, doc, pairs, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed)
    return ReleaseSummary(root=Path(out), scenes=scenes, pairs=len(pairs), people=len(doc.annotations))
