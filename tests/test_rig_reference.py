"""Bright static references: `reference --ll-exposure auto` meters the LL exposure on the stand-in dart."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from exlpose_data.session_format import SessionReader
from rig.cli import app
from rig.factory import use_factory
from tests.standin_dart import SERIALS, DartBus, rig_config, uniform_scene

LL, WL = SERIALS
WL_LIGHT = (0.2, 0.3, 0.25)  # DN per us at 0 dB on the WL sensor
ND = 100.0


def bus_behind_nd() -> DartBus:
    bus = DartBus()
    bus.darts[WL].scene = uniform_scene(WL_LIGHT)
    bus.darts[LL].scene = uniform_scene(tuple(v / ND for v in WL_LIGHT))  # the 1% ND filter
    return bus


def test_auto_ll_exposure_matches_the_wl_level_and_is_recorded(tmp_path: Path) -> None:
    cfg = tmp_path / "rig.yaml"
    cfg.write_text(yaml.safe_dump(rig_config().model_dump(mode="json", exclude_none=True)))
    out = tmp_path / "s.h5"
    with use_factory(bus_behind_nd()):
        res = CliRunner().invoke(app, ["reference", "--config", str(cfg), "--name", "setup1", "--exposure-us", "2000", "--gain-db", "4.5",
                                       "--ll-gain-db", "27", "--ll-exposure", "auto", "--frames", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    with SessionReader(out) as r:
        ll, wl, _, _ = r.reference("setup1")
        attrs = dict(r._f["/reference/setup1"].attrs)
    # On paper: 2000 us x 100 (ND) x 10^((4.5 - 27) / 20) = 15,000 us; the sensor's row quantisation moves it a little.
    assert attrs["ll_exposure_mode"] == "auto" and attrs["ll_exposure_us"] == pytest.approx(15000, rel=0.01)
    assert abs(attrs["ll_to_wl_mean"] - 1.0) <= 0.02
    assert abs(ll.mean() / wl.mean() - 1.0) <= 0.02


def test_auto_stops_at_the_longest_exposure_and_says_so(tmp_path: Path) -> None:
    from rig.capture import CaptureSession

    bus = DartBus()
    bus.darts[WL].scene = uniform_scene(WL_LIGHT)
    bus.darts[LL].scene = uniform_scene((1e-9, 1e-9, 1e-9))  # lens capped: no exposure is long enough
    with use_factory(bus), CaptureSession(rig_config(), tmp_path / "s.h5") as session:
        from rig.metering import meter_ll_exposure

        m = meter_ll_exposure(session.rig, session.sync, wl_exposure_us=2000, wl_gain_db=4.5, ll_gain_db=0.0, nd_factor=ND, max_exposure_us=50_000)
    assert m.at_limit and m.ll_exposure_us == pytest.approx(50_000, rel=0.001) and m.ll_to_wl_mean == 0.0


def test_auto_refused_on_the_emulator_and_with_a_number(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["reference", "--name", "r", "--exposure-us", "2000", "--gain-db", "4.5", "--out", str(tmp_path / "s.h5")]
    res = runner.invoke(app, [*base, "--ll-exposure", "500"])
    assert res.exit_code == 2 and "--ll-exposure '500': only 'auto'; give a number with --ll-exposure-us" in res.output


def test_long_ll_exposure_reference_pairs_under_a_hardware_trigger(tmp_path: Path) -> None:
    from rig.capture import CaptureSession

    bus = bus_behind_nd()
    bus.wire(WL, "Line2", LL, "Line1")
    cfg = rig_config(frame_rate_hz=20.0, trigger={"topology": "master-slave", "master": "wl", "master_line": "Line2", "slave_line": "Line1"})
    with use_factory(bus), CaptureSession(cfg, tmp_path / "s.h5") as session:
        # LL frames arrive ~38 ms after the WL's of the same edge (40 ms against 2 ms exposures), more than half the
        # 50 ms period: only the expected latency difference tells that apart from a missed edge.
        outcome = session.record_reference("r", exposure_us=2000, ll_exposure_us=40_000, ll_gain_db=4.5, wl_gain_db=4.5, frames=3)
    assert (outcome.total, outcome.dropped) == (3, {})
    with SessionReader(tmp_path / "s.h5") as r:
        ll, wl, _, _ = r.reference("r")
    assert abs(ll.mean() / wl.mean() - 40_000 / 2000 / ND) < 0.01
