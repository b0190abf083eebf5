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
from rig.factory import use_factory
from tests.standin_dart import SERIALS, DartBus, rig_config, uniform_scene

LL, WL = SERIALS
W, H = 64, 48


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


# -- 2. defined camera state -------------------------------------------------------------------------------------


def test_field_state_is_replaced_by_a_defined_one_and_recorded(tmp_path: Path) -> None:
    bus = DartBus()
    for dart in bus.darts.values():
        dart.scene = uniform_scene((0.2, 0.3, 0.25))
    # The WL camera comes from another program: gamma, a test pattern's neighbour settings, a digital shift.
    wl = Camera(WL, factory=bus)
    wl.set("Gamma", 0.7)
    wl.set("DigitalShift", 1)
    wl.set("BlackLevel", 12.0)
    wl.close()
    out = tmp_path / "s.h5"
    with use_factory(bus), CaptureSession(rig_config(), out) as session:
        session.record_scene(spec(session, frames=2))
    with SessionReader(out) as r:
        ll, wl_frame = r.pair("s1", "1", 1)
        meta = r.step_meta("s1", "1")
    # Both cameras identical and linear: unit balance ratios (no auto white balance), gamma 1, no shift.
    effective = bus.darts[LL].effective_exposure_us()
    gain = 10 ** (4.5 / 20)
    assert effective == bus.darts[WL].effective_exposure_us()
    expected = {(0, 0): round(0.2 * effective * gain), (0, 1): round(0.3 * effective * gain), (1, 1): round(0.25 * effective * gain)}
    assert {k: int(ll[k]) for k in expected} == expected
    np.testing.assert_array_equal(ll, wl_frame)
    import json

    state = json.loads(meta["wl_camera_state"])
    assert state["UserSetLoad"] == "Default"
    assert {k: state[k] for k in ("BalanceWhiteAuto", "BslLightSourcePreset", "BalanceRatio[Red]", "BalanceRatio[Green]", "BalanceRatio[Blue]",
                                  "Gamma", "DigitalShift", "BlackLevel", "BslColorSpace", "BslDefectPixelCorrectionMode", "BslNoiseReduction",
                                  "BslSharpnessEnhancement", "TestPattern", "ExposureMode", "TriggerDelay[FrameStart]")} == {
        "BalanceWhiteAuto": "Off", "BslLightSourcePreset": "Off", "BalanceRatio[Red]": 1.0, "BalanceRatio[Green]": 1.0, "BalanceRatio[Blue]": 1.0,
        "Gamma": 1.0, "DigitalShift": 0, "BlackLevel": 0.0, "BslColorSpace": "Off", "BslDefectPixelCorrectionMode": "Off", "BslNoiseReduction": 0.0,
        "BslSharpnessEnhancement": 0.0, "TestPattern": "Off", "ExposureMode": "Timed", "TriggerDelay[FrameStart]": 0.0}
    assert json.loads(meta["ll_camera_state"]) == state


def test_configured_user_set_is_loaded_and_unknown_one_refused(tmp_path: Path) -> None:
    bus = DartBus()
    wl = Camera(WL, factory=bus)
    wl.set("BslAcquisitionStopMode", "CompleteExposure")
    wl.set("UserSetSelector", "UserSet1")
    wl.execute("UserSetSave")
    wl.set("BslAcquisitionStopMode", "AbortExposure")
    wl.close()
    with use_factory(bus), CaptureSession(rig_config(wl={"serial": WL, "user_set": "UserSet1"}), None) as session:
        assert session.rig.wl.get("BslAcquisitionStopMode") == "CompleteExposure"
        assert session.rig.ll.get("BslAcquisitionStopMode") == "AbortExposure"
    from exlpose_data.errors import UsageError

    with use_factory(bus), pytest.raises(UsageError, match=rf"camera {WL} \(WL\): user_set 'UserSet9' not offered; choose one of Default, UserSet1, UserSet2, UserSet3"):
        CaptureSession(rig_config(wl={"serial": WL, "user_set": "UserSet9"}), None)


def test_config_check_prints_differences_between_the_cameras(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from rig.cli import app

    pfs = tmp_path / "wl.pfs"
    pfs.write_text("BslAcquisitionStopMode\tCompleteExposure\n")
    cfg = tmp_path / "rig.yaml"
    data = rig_config(wl={"serial": WL, "reverse_x": True, "pfs": str(pfs)}).model_dump(mode="json", exclude_none=True)
    cfg.write_text(yaml.safe_dump(data))
    with use_factory(DartBus()):
        res = CliRunner().invoke(app, ["config", "check", str(cfg)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "settings differing between the cameras: 3 (1 not explained by the protocol)" in lines
    assert "  ReverseX: LL 0, WL 1 (expected: mirror)" in lines
    assert "  PixelFormat: LL BayerRG12, WL BayerGR12 (expected: mirror)" in lines
    assert "  DIFFERENT BslAcquisitionStopMode: LL AbortExposure, WL CompleteExposure" in lines


# -- 3. bandwidth and frame rate ---------------------------------------------------------------------------------

FULL = {"width": 1920, "height": 1200, "offset_x": 8, "offset_y": 8}


def test_link_limit_refuses_a_rate_it_cannot_carry_naming_the_highest() -> None:
    from exlpose_data.errors import UsageError

    bus = DartBus()
    with use_factory(bus), CaptureSession(rig_config(roi=FULL, pixel_format="BayerRG12", frame_rate_hz=40.0), None) as session:
        plan = session.plan(base_exposure_us=2000, base_gain_db=4.5, ks=[1], frames=1)
        with pytest.raises(UsageError) as err:
            session.check(plan, 0)
    assert str(err.value) == (
        f"camera {LL} (LL): BayerRG12 1920x1200 at 40 fps needs 184.3 MB/s; limit 160.0 MB/s carries at most 34.7 fps; "
        "lower frame_rate_hz/--fps to 34.7 or less, or raise link_limit_bytes_per_s (BayerRG12p carries 4/3 as many frames as BayerRG12)"
    )
    # A raised limit carries the unpacked format.
    with use_factory(bus), CaptureSession(rig_config(roi=FULL, pixel_format="BayerRG12", frame_rate_hz=40.0, link_limit_bytes_per_s=250_000_000), None) as session:
        session.check(plan, 0)
        assert session.rig.ll.get("DeviceLinkThroughputLimit") == 250_000_000 and session.rig.wl.get("DeviceLinkThroughputLimitMode") == "On"
        assert round(session.rig.ll.resulting_frame_rate(), 2) == 54.25


def test_resulting_frame_rate_recorded_and_max_num_buffer_set(tmp_path: Path) -> None:
    bus = DartBus()
    out = tmp_path / "s.h5"
    cfg = rig_config(buffers=7, trigger={"topology": "master-slave", "master": "wl", "master_line": "Line2", "slave_line": "Line1"}, frame_rate_hz=25.0)
    bus.wire(WL, "Line2", LL, "Line1")
    with use_factory(bus), CaptureSession(cfg, out) as session:
        session.record_scene(spec(session, frames=3))
    assert bus.darts[LL].max_num_buffer == 7 and bus.darts[WL].max_num_buffer == 7  # the InstantCamera's parameter, not a node
    with SessionReader(out) as r:
        meta = r.step_meta("s1", "1")
        t = r.frames_table("s1", "1")
    assert meta["wl_resulting_frame_rate_hz"] == 25.0  # the master free-runs at AcquisitionFrameRate
    assert meta["frame_rate_hz_used"] == 25.0
    assert meta["ll_resulting_frame_rate_hz"] == pytest.approx(1e6 / bus.darts[LL].effective_exposure_us())  # the slave's own ceiling
    np.testing.assert_allclose(np.diff(t["wl_timestamp_ns"]), 40_000_000, atol=1000)


def test_plan_cli_prints_the_link_budget(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from rig.cli import app

    cfg = tmp_path / "rig.yaml"
    cfg.write_text(yaml.safe_dump(rig_config(roi=FULL, frame_rate_hz=30.0).model_dump(mode="json", exclude_none=True)))
    with use_factory(DartBus()):
        res = CliRunner().invoke(app, ["plan", "--config", str(cfg), "--exposure-us", "5000", "--gain-db", "4.5", "--k", "1,2"])
    assert res.exit_code == 0, res.output
    assert f"link LL {LL}: BayerRG12 1920x1200 at 30 fps needs 138.2 MB/s; limit 160.0 MB/s carries at most 34.7 fps" in res.output


# -- 4. packed 12-bit ---------------------------------------------------------------------------------------------


def _textured(t_s: float, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """A static scene whose raw values cover 0..4095 (every bit pattern of both nibbles occurs)."""
    rng = np.random.default_rng(1)
    full = rng.random((48 + 16, 64 + 16, 3)) * 3.0
    return full[y0 - 8:y0 - 8 + h, x0 - 8:x0 - 8 + w]


def test_unpack_12p_matches_a_hand_packed_pair() -> None:
    from exlpose_data.packed12 import unpack_12p

    # pixels 0xABC and 0x123: bytes 0xBC, 0x3A (p1 low nibble 3, p0 high nibble A), 0x12
    assert unpack_12p(np.array([[0xBC, 0x3A, 0x12]], np.uint8)).tolist() == [[0xABC, 0x123]]


def test_packed_12_bit_stored_packed_and_read_bit_identical(tmp_path: Path) -> None:
    import h5py

    bus = DartBus()
    for dart in bus.darts.values():
        dart.scene = _textured
    sessions = {}
    for fmt in ("BayerRG12p", "BayerRG12"):
        out = tmp_path / f"{fmt}.h5"
        with use_factory(bus), CaptureSession(rig_config(pixel_format=fmt, wl={"serial": WL, "reverse_x": True}), out) as session:
            session.record_scene(spec(session, frames=2, exposure_us=1000))
        sessions[fmt] = out
    with h5py.File(sessions["BayerRG12p"]) as f:
        ds = f["/scenes/s1/steps/1/ll"]
        assert (ds.dtype, ds.shape, ds.attrs["pixel_format"]) == (np.uint8, (2, H, W * 3 // 2), "BayerRG12p")
        assert f["/scenes/s1/steps/1/wl"].attrs["pixel_format"] == "BayerGR12p" and f["/scenes/s1/steps/1/wl"].attrs["bayer_pattern"] == "GRBG"
    with SessionReader(sessions["BayerRG12p"]) as packed, SessionReader(sessions["BayerRG12"]) as plain:
        for i in range(2):
            for a, b in zip(packed.pair("s1", "1", i), plain.pair("s1", "1", i)):
                assert a.dtype == np.uint16 and a.shape == (H, W)
                np.testing.assert_array_equal(a, b)
        ll, _ = plain.pair("s1", "1", 0)
        assert ll.min() < 16 and ll.max() == 4095  # the data exercised both nibbles of every byte
        assert packed.frame_attrs("s1", "1")[0].bit_depth == 12


def test_packed_format_fits_the_link_at_40_fps() -> None:
    with use_factory(DartBus()), CaptureSession(rig_config(roi=FULL, pixel_format="BayerRG12p", frame_rate_hz=40.0), None) as session:
        session.check(session.plan(base_exposure_us=2000, base_gain_db=4.5, ks=[1], frames=1), 0)
        assert session.rig.formats["ll"].frame_bytes == 1920 * 1200 * 3 // 2


# -- 5. exposure actually used -----------------------------------------------------------------------------------


def test_effective_exposure_recorded_and_flagged_beyond_one_percent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import json

    bus = DartBus()
    out = tmp_path / "s.h5"
    with use_factory(bus), CaptureSession(rig_config(), out) as session:
        # 83 us (the release's shortest) is 16.3 sensor rows: the sensor exposes 16 rows, 2% less.
        outcomes = session.record_scene(spec(session, frames=1, ks=[1, 24], exposure_us=2000))
    with SessionReader(out) as r:
        m1, m24 = r.step_meta("s1", "1"), r.step_meta("s1", "24")
    row_us = 1e6 / (164 * 1200)
    assert m1["ll_effective_exposure_us"] == pytest.approx(394 * row_us) and json.loads(m1["warnings"]) == []
    assert m24["wl_effective_exposure_us"] == pytest.approx(16 * row_us)
    expected = f"camera {LL} (LL): effective exposure {16 * row_us:.2f} us differs from the 83.3333 us set by -2.4% (BslEffectiveExposureTime)"
    assert json.loads(m24["warnings"])[0] == expected
    assert outcomes[1].warnings[0] == expected and expected in caplog.text


# -- 7. temperature ----------------------------------------------------------------------------------------------


def test_temperature_warns_on_critical_and_stops_cleanly_on_error(tmp_path: Path) -> None:
    import json

    from rig.recorder import CaptureStopped

    bus = DartBus()
    bus.darts[WL].temperatures_c["Sensor"] = 61.5
    bus.darts[WL].temperature_status = "Critical"
    out = tmp_path / "s.h5"
    with use_factory(bus), CaptureSession(rig_config(), out) as session:
        outcome = session.record_scene(spec(session, frames=2))[0]
    assert outcome.warnings == (f"camera {WL} (WL): BslTemperatureStatus Critical (sensor 61.5 C), close to the allowed maximum; provide cooling",)
    with SessionReader(out) as r:
        assert r.step_meta("s1", "1")["wl_temperature_c"] == 61.5

    def overheat(stats: object) -> None:
        if getattr(stats, "kept") >= 3:
            bus.darts[LL].temperature_status = "Error"

    out = tmp_path / "t.h5"
    with use_factory(bus), pytest.raises(CaptureStopped, match=rf"camera {LL} \(LL\): BslTemperatureStatus Error \(sensor 45.0 C\), above the allowed maximum"):
        with CaptureSession(rig_config(frame_rate_hz=20.0), out, progress=overheat) as session:
            session.record_scene(spec(session, frames=200))
    with SessionReader(out) as r:
        kept = len(r.frames_table("s1", "1"))
        assert 3 <= kept < 200 and json.loads(r.step_meta("s1", "1").get("warnings", "[]")) == []


# -- 8. chunks ---------------------------------------------------------------------------------------------------


def test_chunks_enabled_and_their_per_frame_values_recorded(tmp_path: Path) -> None:
    import json

    bus = DartBus()
    out = tmp_path / "s.h5"
    changed: list[int] = []

    def change_exposure(stats: object) -> None:
        # Someone changes the LL exposure mid-step: only per-frame chunk data can show which frames saw it.
        if getattr(stats, "kept") >= 3 and not changed:
            changed.append(getattr(stats, "kept"))
            session.rig.ll.set("ExposureTime", 1500.0)

    with use_factory(bus), CaptureSession(rig_config(frame_rate_hz=20.0), out, progress=change_exposure) as session:
        session.record_scene(spec(session, frames=8))
    with SessionReader(out) as r:
        meta = r.step_meta("s1", "1")
        t = r.frames_table("s1", "1")
    assert json.loads(meta["ll_chunks"]) == ["FrameID", "Timestamp", "ExposureTime", "Gain", "CounterValue", "LineStatusAll"]
    exposures = list(t["ll_exposure_us"])
    first_new = exposures.index(1500.0)
    assert exposures == [2000.0] * first_new + [1500.0] * (8 - first_new) and 3 <= first_new < 8
    assert np.all(t["wl_exposure_us"] == 2000.0)
    np.testing.assert_allclose(t["wl_gain_db"], 4.5)
    # Timestamps are the chunks' (camera clock of each dart: offsets 7 s and 14 s after the bus epoch).
    assert np.all(t["ll_timestamp_ns"] > 7_000_000_000) and np.all(t["wl_timestamp_ns"] > 14_000_000_000)


def test_a_camera_slower_than_planned_is_a_step_warning_and_sets_the_pace(tmp_path: Path) -> None:
    import json

    out = tmp_path / "s.h5"
    bus = DartBus()
    cfg = rig_config(roi={"width": 640, "height": 400, "offset_x": 8, "offset_y": 8}, frame_rate_hz=60.0,
                     trigger={"topology": "master-slave", "master": "wl", "master_line": "Line2", "slave_line": "Line1"})
    bus.wire(WL, "Line2", LL, "Line1")
    with use_factory(bus), CaptureSession(cfg, out) as session:
        # After the plan was checked, someone lowers the master's link limit: it can no longer free-run at 60 fps.
        session.rig.wl.set("DeviceLinkThroughputLimit", 20_480_000)
        outcome = session.record_scene(spec(session, frames=3))[0]
    rate = 20_480_000 / (640 * 400 * 2)  # 40 fps
    assert outcome.total == 3 and outcome.dropped == {}
    assert outcome.warnings == (f"camera {WL} (WL) delivers at most {rate:.2f} fps at these settings (ResultingFrameRate), below the planned 60 fps; "
                                f"pacing and pairing use {rate:.2f} fps",)
    with SessionReader(out) as r:
        meta = r.step_meta("s1", "1")
        t = r.frames_table("s1", "1")
    assert meta["frame_rate_hz_used"] == pytest.approx(rate) and json.loads(meta["warnings"]) == list(outcome.warnings)
    np.testing.assert_allclose(np.diff(t["wl_timestamp_ns"]), 1e9 / rate, rtol=1e-6)  # the master's real period
