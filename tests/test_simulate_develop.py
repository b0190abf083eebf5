"""A simulated release image is exactly what the capture path makes of the same raw frame: ``exlpose-align apply``
develops recorded frames with :func:`exlpose_data.isp.raw_to_rgb` at the session's black level (for emulated
captures, feeds.json ``black_level_dn``) and nothing else."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml

from exlpose_data.errors import UsageError
from exlpose_data.isp import IspParams, raw_to_rgb
from exlpose_data.layout import read_pairs
from exlpose_data.naming import parse_name
from exlpose_data.simulate.config import SimulationConfig, load_config
from exlpose_data.simulate.feeds import simulate_feeds
from exlpose_data.simulate.release import simulate_release


def test_release_images_equal_the_capture_path_development_of_the_feeds(tmp_path):
    config = SimulationConfig(width=320, height=200, frames_per_scene=1, protocol={"preset": "outdoor"})
    run = {"scenes": 1, "seed": 3, "workers": 1}
    simulate_release(config, tmp_path / "rel", test_fraction=0.0, **run)
    feeds = simulate_feeds(config, tmp_path / "feeds", **run)
    scene = feeds.scenes[0]
    # What the align side builds from a session frame's attributes (exlpose_data.align.prepare.isp_params).
    capture_isp = IspParams(black_level=feeds.black_level_dn, bit_depth=feeds.bit_depth, pattern=feeds.bayer_pattern)
    x0, y0, x1, y1 = scene.geometry.crop
    rel = tmp_path / "rel"
    release_images = {parse_name(dark).ratio: dark for _, dark in read_pairs(rel / "brightPath2darkPath.txt")}
    assert sorted(release_images) == [s.ratio for s in scene.steps] == [100, 200, 400, 800, 1200]
    for step in scene.steps:
        raw = cv2.imread(str(tmp_path / "feeds" / step.ll_dir / scene.frames[0].file), cv2.IMREAD_UNCHANGED) >> feeds.bit_shift
        captured = raw_to_rgb(raw, capture_isp)[y0:y1, x0:x1]
        simulated = cv2.cvtColor(cv2.imread(str(rel / release_images[step.ratio])), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(simulated, captured, err_msg=f"k={step.k}")
    assert feeds.black_level_dn == config.sensor.black_level_dn == 240
    # The colour steps align apply leaves at IspParams' defaults are the ones the default simulation records.
    assert IspParams(**feeds.isp) == IspParams()


def test_feeds_record_non_default_colour_steps_so_a_capture_can_develop_identically(tmp_path):
    config = SimulationConfig(width=64, height=48, frames_per_scene=1, isp={"demosaic": "ea", "wb_gains": [2.0, 1.0, 1.4]})
    calls: list[tuple[int, int]] = []
    feeds = simulate_feeds(config, tmp_path / "f", scenes=1, seed=0, workers=1, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 1), (1, 1)]
    recorded = IspParams(black_level=feeds.black_level_dn, bit_depth=feeds.bit_depth, pattern=feeds.bayer_pattern, **feeds.isp)
    assert recorded == config.isp_params() and recorded.demosaic == "ea" and recorded.wb_gains == (2.0, 1.0, 1.4)


def test_the_simulator_develops_at_the_sensors_black_level_only():
    config = SimulationConfig(sensor={"black_level_dn": 64}, isp={"demosaic": "ea"})
    assert config.isp_params().black_level == 64 and config.isp_params().demosaic == "ea"
    for bad in ("isp:\n  black_level: 241.25\n", "black_clamp_dn: 1.25\n"):
        with pytest.raises(UsageError, match="black"):
            load_config(None, **yaml.safe_load(bad))
