"""Faults of issue 14 that end a capture night on a real dart, each met on the stand-in dart (tests/standin_dart.py).

Real: the camera layer, the recorder, the writer, the HDF5 session and the CLI; the stand-in models the camera.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exlpose_data.session_format import SessionReader
from rig.cameras import Camera
from rig.capture import CaptureSession, SceneSpec
from rig.config import RigConfig
from rig.device import use_factory
from tests.standin_dart import DartBus, uniform_scene

LL, WL = "40535833", "40535834"
W, H = 64, 48


def rig_config(**kw: object) -> RigConfig:
    data: dict[str, object] = {"ll": {"serial": LL}, "wl": {"serial": WL}, "roi": {"width": W, "height": H, "offset_x": 8, "offset_y": 8}, "frame_rate_hz": 50.0}
    data.update(kw)
    return RigConfig.model_validate(data)


def spec(session: CaptureSession, frames: int = 2, ks: list[float] | None = None, exposure_us: float = 2000, scene: str = "s1") -> SceneSpec:
    plan = session.plan(base_exposure_us=exposure_us, base_gain_db=4.5, ks=ks or [1], frames=frames)
    return SceneSpec(scene, "1125", "3", 1, plan, session.config.frame_rate_hz)


# -- 1. colour phase after ReverseX -----------------------------------------------------------------------------


def test_mirrored_camera_records_its_delivered_phase_on_every_run(tmp_path: Path) -> None:
    bus = DartBus()
    for dart in bus.darts.values():
        dart.scene = uniform_scene((1.0, 0.0, 0.0))  # red light: only red sites are lit
    cfg = rig_config(wl={"serial": WL, "reverse_x": True}, pixel_format="BayerRG12")
    for run in ("first", "second"):  # ReverseX persists in the camera between runs
        out = tmp_path / f"{run}.h5"
        with use_factory(bus), CaptureSession(cfg, out) as session:
            session.record_scene(spec(session))
        with SessionReader(out) as r:
            ll_attrs, wl_attrs = r.frame_attrs("s1", "1")
            ll, wl = r.pair("s1", "1", 0)
        assert (ll_attrs.pixel_format, ll_attrs.bayer_pattern) == ("BayerRG12", "RGGB")
        assert (wl_attrs.pixel_format, wl_attrs.bayer_pattern, wl_attrs.mirrored_x) == ("BayerGR12", "GRBG", True)
        # The recorded pattern says where red is: LL (0, 0), WL (0, 1).
        assert [tuple(x) for x in np.argwhere(ll[:2, :2] > 0)] == [(0, 0)]
        assert [tuple(x) for x in np.argwhere(wl[:2, :2] > 0)] == [(0, 1)]


def test_configure_format_sets_flip_first_then_the_offered_phase() -> None:
    bus = DartBus()
    cam = Camera(LL, factory=bus)
    cam.set("ReverseX", True)  # left over from an earlier run
    fmt = cam.configure_format("BayerRG12", (W, H, 8, 8), reverse_x=False)
    assert (fmt.pixel_format, fmt.bayer_pattern) == ("BayerRG12", "RGGB")
    fmt = cam.configure_format("BayerRG12", (W, H, 8, 8), reverse_x=True)
    assert (fmt.pixel_format, fmt.bayer_pattern, fmt.mirrored_x) == ("BayerGR12", "GRBG", True)
    cam.close()
