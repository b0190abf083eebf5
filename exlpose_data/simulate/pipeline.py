"""One scene from settings to raw frames: protocol, geometry, background, people, two cameras.

Every random choice of scene ``i`` comes from generators seeded with ``(seed, i, stream)``, so a scene is the same
whichever worker renders it and in whatever order: parallel output equals serial output.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..feeds_format import FrameTruthRecord, GeometryTruth, PersonTruth, SceneTruth, StepTruth
from ..isp import IspParams, mosaic, raw_to_rgb
from ..naming import scene_id
from .background import Background, photo_background, procedural_background
from .camera import capture_raw
from .config import SimulationConfig
from .figures import sample_appearance
from .geometry import BeamSplitter, sample_beam_splitter, valid_crop
from .poses import Pose, SourceScene, move_pose
from .protocol import SceneProtocol, electrons_per_unit, sample_protocol
from .render import FrameTruth, Person, render_frame, sample_people

__all__ = ["Capture", "SceneSimulator", "develop"]

# Streams of a scene's random generators.
_PLAN, _BACKGROUND, _PEOPLE, _APPEARANCE, _TEXTURE, _NOISE, _REFERENCE = range(7)


@dataclass(frozen=True)
class Capture:
    """One exposure step of one frame as both cameras record it (raw DN, mirrored where the splitter mirrors)."""

    frame_index: int
    step_index: int
    raw_ll: np.ndarray
    raw_wl: np.ndarray


def develop(raw: np.ndarray, isp: IspParams, *, mirrored: bool) -> np.ndarray:
    """Raw frame -> 8-bit sRGB through the one ISP path, flipped back when the splitter mirrored it."""
    rgb = raw_to_rgb(raw, isp)
    return cv2.flip(rgb, 1) if mirrored else rgb


class SceneSimulator:
    """Scene ``index`` of a simulation.

    Args:
        config: simulation settings.
        seed: master seed.
        index: scene number (0-based); the video number in names is ``index + 1``.
        source: people to reuse (``--poses-from``), else people are sampled.
        background_file: a photograph to use as background, else a procedural one.
    """

    def __init__(self, config: SimulationConfig, seed: int, index: int, *, source: SourceScene | None = None,
                 background_file: Path | None = None) -> None:
        self.config, self.seed, self.index = config, seed, index
        self.isp = config.isp_params()
        plan = self._rng(_PLAN)
        self.protocol: SceneProtocol = sample_protocol(plan, config.protocol)
        self.splitter: BeamSplitter = sample_beam_splitter(plan, config.size, config.geometry)
        self.crop = valid_crop(self.splitter)
        bg_rng = self._rng(_BACKGROUND)
        self.background: Background = (photo_background(bg_rng, background_file, config.size) if background_file
                                       else procedural_background(bg_rng, config.size))
        self.poses = self._people(source)
        people_rng = self._rng(_APPEARANCE)
        count = max((len(f) for f in self.poses), default=0)
        self.appearances = [sample_appearance(people_rng) for _ in range(count)]
        self.camera_from_srgb = self.isp.camera_from_srgb().astype(np.float32)
        mean_green = float(self.background.radiance.reshape(-1, 3).mean(0) @ self.camera_from_srgb[1])
        self.flux, self.electrons = electrons_per_unit(self.protocol, mean_green, config.sensor, config.protocol.nd_factor)

    def _rng(self, *stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.index, *stream])

    @property
    def video(self) -> int:
        return self.index + 1

    @property
    def scene_id(self) -> str:
        return scene_id(self.config.date, self.config.site, self.video)

    @property
    def frame_numbers(self) -> list[int]:
        """Frame numbers written in release names (frames of a video, 10 apart)."""
        return [10 * i for i in range(len(self.poses))]

    def _people(self, source: SourceScene | None) -> list[list[Pose]]:
        if source is not None:
            return [list(f) for f in source.frames]
        rng = self._rng(_PEOPLE)
        lo, hi = self.config.people
        focal = self.config.geometry.focal_px or 1.2 * self.config.width
        first = sample_people(rng, self.config.size, self.background.horizon_y, int(rng.integers(lo, hi + 1)), focal)
        velocity = [np.array([rng.normal(0, 0.06) * p.height_px, 0.0]) for p in first]
        frames = [first]
        for _ in range(1, self.config.frames_per_scene):
            frames.append([move_pose(rng, p, v) for p, v in zip(frames[-1], velocity)])
        return frames

    def camera_rgb(self, radiance: np.ndarray) -> np.ndarray:
        """Scene radiance (linear sRGB) -> camera RGB, the "unprocessing" inverse of the ISP's colour steps."""
        cam = cv2.transform(radiance, self.camera_from_srgb)
        return np.maximum(cam, 0, out=cam)

    def sensor_image(self, cam_rgb: np.ndarray, camera: str) -> np.ndarray:
        """What falls on one camera's sensor as a Bayer mosaic of camera RGB (scene units)."""
        image = cam_rgb if camera == "ll" else self.splitter.render_wl(cam_rgb)
        if self.config.geometry.mirror == camera:
            image = cv2.flip(image, 1)
        return mosaic(image, self.isp.pattern)

    def render(self, frame_index: int) -> tuple[np.ndarray, FrameTruth]:
        """Radiance (LL frame) and truth of one frame."""
        people = [Person(p, self.appearances[i]) for i, p in enumerate(self.poses[frame_index])]
        return render_frame(self.background, people, self.crop, self._rng(_TEXTURE, frame_index))

    def frames(self) -> Iterator[tuple[FrameTruthRecord, list[Capture]]]:
        """Each frame's truth and its captures at every exposure step."""
        sensor = self.config.sensor
        for f, number in enumerate(self.frame_numbers):
            radiance, truth = self.render(f)
            cam = self.camera_rgb(radiance)
            ll_signal, wl_signal = self.sensor_image(cam, "ll"), self.sensor_image(cam, "wl")
            captures = []
            for s, (step, (ll_e, wl_e)) in enumerate(zip(self.protocol.ladder, self.electrons)):
                raw_ll = capture_raw(ll_signal * np.float32(ll_e), step.ll_gain_db, sensor, self._rng(_NOISE, f, s, 0))
                raw_wl = capture_raw(wl_signal * np.float32(wl_e), step.wl_gain_db, sensor, self._rng(_NOISE, f, s, 1))
                captures.append(Capture(frame_index=f, step_index=s, raw_ll=raw_ll, raw_wl=raw_wl))
            people = [PersonTruth(keypoints=k, bbox=b) for k, b in zip(truth.keypoints, truth.boxes)]
            yield FrameTruthRecord(index=f, frame=number, file=f"{f:06d}.png", people=people), captures

    def reference(self) -> tuple[np.ndarray, np.ndarray]:
        """A static textured pair (background only) exposed well on both cameras: the LL exposure is ``nd_factor``
        times longer, the gains are the base gain."""
        cam = self.camera_rgb(self.background.radiance.copy())
        base_e = self.flux * self.protocol.base_exposure_us
        gain = self.protocol.base_gain_db
        sensor = self.config.sensor
        raw_ll = capture_raw(self.sensor_image(cam, "ll") * np.float32(base_e), gain, sensor, self._rng(_REFERENCE, 0))
        raw_wl = capture_raw(self.sensor_image(cam, "wl") * np.float32(base_e), gain, sensor, self._rng(_REFERENCE, 1))
        return raw_ll, raw_wl

    def develop_pair(self, capture: Capture) -> tuple[np.ndarray, np.ndarray]:
        """Release images of a capture: LL developed and cropped, WL developed, warped into the LL frame, cropped."""
        mirror = self.config.geometry.mirror
        x0, y0, x1, y1 = self.crop
        ll = develop(capture.raw_ll, self.isp, mirrored=mirror == "ll")
        wl = self.splitter.align_wl(develop(capture.raw_wl, self.isp, mirrored=mirror == "wl"))
        return ll[y0:y1, x0:x1], wl[y0:y1, x0:x1]

    def truth(self, frames: list[FrameTruthRecord]) -> SceneTruth:
        """The scene's truth record (steps without feed folders)."""
        sp = self.splitter
        geometry = GeometryTruth(homography=sp.homography.tolist(), k1=sp.k1, k2=sp.k2, centre=sp.centre,
                                 focal_px=sp.focal_px, mirror=self.config.geometry.mirror, size=self.config.size, crop=self.crop)
        steps = [StepTruth(k=s.k, ratio=s.ratio, exposure_us=s.exposure_us, nominal_exposure_us=s.nominal_exposure_us,
                           wl_gain_db=s.wl_gain_db, ll_gain_db=s.ll_gain_db) for s in self.protocol.ladder]
        return SceneTruth(scene=self.scene_id, date=self.config.date, site=self.config.site, video=self.video,
                          preset=self.protocol.preset, base_exposure_us=self.protocol.base_exposure_us,
                          base_gain_db=self.protocol.base_gain_db, nd_factor=self.config.protocol.nd_factor,
                          geometry=geometry, steps=steps, frames=frames)
