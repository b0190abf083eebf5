"""The stand-in dart (tests/standin_dart.py) against the real camera's data, and the rig running on it.

The stand-in is the one model here (physical cameras cannot exist in CI); these tests pin it to the shared data
of a real daA1920-160uc, so what the rig does on it is what it would meet on a real dart. Real: the camera
layer, the recorder, the session writer, the HDF5 file and the CLI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from exlpose_data.session_format import SessionReader
from rig.cameras import Camera
from rig.capture import CaptureSession, SceneSpec
from rig.cli import app
from rig.factory import use_factory
from tests.standin_dart import DATA, SERIALS, DartBus, read_feature_list, read_pfs, rig_config, uniform_scene

LL, WL = SERIALS
W, H = 64, 48


def open_dart(bus: DartBus, serial: str = LL) -> Camera:
    return Camera(serial, role="ll", factory=bus)


def test_node_map_is_the_real_feature_list() -> None:
    types, entries = read_feature_list(DATA / "daA1920-160uc_features.txt")
    bus = DartBus()
    dev = bus.open(LL)
    assert len(types) == 1546 - 2 - 396  # listing lines minus its two header lines and the enumeration entries
    assert all(dev.node(name) is not None for name in types)
    # Emulator names and pylon InstantCamera parameters are not device features of a dart.
    for absent in ("TestImageSelector", "ResultingFrameRateAbs", "ImageFilename", "MaxNumBuffer", "GainAbs", "ExposureTimeAbs"):
        assert dev.node(absent) is None
    assert dev.node("TriggerSource").GetSymbolics() == entries["TriggerSource"]
    assert {"Software", "Line1", "Line2", "Line3", "Line4"} <= set(entries["TriggerSource"])
    assert dev.node("LineSource").GetSymbolics()[:5] == ("Off", "UserOutput1", "UserOutput2", "UserOutput3", "UserOutput4")
    assert dev.node("DeviceTemperatureSelector").GetSymbolics() == ("FpgaCore", "Sensor")
    assert dev.node("BslTemperatureStatus").GetSymbolics() == ("Ok", "Critical", "Error")
    assert dev.node("ChunkSelector").GetSymbolics() == ("AutoBrightnessStatus", "CounterValue", "ExposureTime", "FrameID", "Gain", "LineStatusAll", "PayloadCRC16", "Timestamp")


def test_settings_file_defaults() -> None:
    cam = open_dart(DartBus())
    expected = {
        "BalanceWhiteAuto": "Continuous", "BslLightSourcePreset": "Daylight6500K", "DeviceLinkThroughputLimitMode": "On",
        "DeviceLinkThroughputLimit": 160_000_000, "ChunkModeActive": False, "BlackLevel": 0.0, "Gamma": 1.0, "AutoGainUpperLimit": 24.0,
        "TriggerMode": "Off", "OffsetX": 8, "OffsetY": 8, "Width": 1920, "Height": 1200, "PixelFormat": "BayerRG8", "ExposureTime": 15000.0,
        "BslColorSpace": "sRgb", "DigitalShift": 0,
    }
    assert {name: cam.get(name) for name in expected} == expected
    ratios = {}
    for colour in ("Red", "Green", "Blue"):
        cam.set("BalanceRatioSelector", colour)
        ratios[colour] = cam.get("BalanceRatio")
    assert ratios == {"Red": 1.0, "Green": 1.3157, "Blue": 1.6536}
    cam.close()


def test_state_persists_across_opens_until_user_set_default() -> None:
    bus = DartBus()
    cam = open_dart(bus)
    cam.set("ReverseX", True)
    cam.set("Gamma", 0.7)
    cam.close()
    cam = open_dart(bus)
    assert cam.get("ReverseX") is True and cam.get("Gamma") == 0.7 and cam.get("PixelFormat") == "BayerGR8"
    cam.set("UserSetSelector", "Default")
    cam.execute("UserSetLoad")
    assert cam.get("ReverseX") is False and cam.get("Gamma") == 1.0 and cam.get("PixelFormat") == "BayerRG8"
    cam.close()


@pytest.mark.parametrize(("reverse_x", "reverse_y", "phase"), [(False, False, "RG"), (True, False, "GR"), (False, True, "GB"), (True, True, "BG")])
def test_flip_moves_the_bayer_phase_pixel_format_offers(reverse_x: bool, reverse_y: bool, phase: str) -> None:
    bus = DartBus()
    bus.darts[LL].scene = uniform_scene((1.0, 0.0, 0.0))  # red light only: only red pixels see it
    cam = open_dart(bus)
    cam.set("PixelFormat", "BayerRG12")
    cam.set("ReverseX", reverse_x)
    cam.set("ReverseY", reverse_y)
    assert cam.get("PixelFormat") == f"Bayer{phase}12"
    assert [f for f in cam.symbolics("PixelFormat") if f.startswith("Bayer")] == [f"Bayer{phase}8", f"Bayer{phase}12", f"Bayer{phase}12p"]
    cam.set("Width", W)
    cam.set("Height", H)
    cam.set("ExposureTime", 1000.0)
    cam.set("BalanceWhiteAuto", "Off")
    cam.start(4)
    frame = cam.try_retrieve(1000)
    cam.close()
    red_at = {"RG": (0, 0), "GR": (0, 1), "GB": (1, 0), "BG": (1, 1)}[phase]
    lit = np.argwhere(frame.image[:2, :2] > 0)
    assert [tuple(x) for x in lit] == [red_at]


def test_frame_rate_capped_by_link_limit_and_exposure() -> None:
    cam = open_dart(DartBus())
    cam.set("ExposureTime", 1000.0)
    rates = {}
    for fmt in ("BayerRG8", "BayerRG12", "BayerRG12p"):
        cam.set("PixelFormat", fmt)
        rates[fmt] = round(cam.get("ResultingFrameRate"), 2)
    # 160 MB/s over 1920 x 1200 x (1, 2, 1.5) bytes; DOMAIN.md: ~34 fps (12-bit), ~46 fps (12p).
    assert rates == {"BayerRG8": 69.44, "BayerRG12": 34.72, "BayerRG12p": 46.3}
    cam.set("PixelFormat", "BayerRG8")
    cam.set("DeviceLinkThroughputLimitMode", "Off")
    assert round(cam.get("ResultingFrameRate"), 2) == 156.25  # the assumed 360 MB/s link, below the sensor's 164 fps
    cam.set("ExposureTime", 20000.0)
    assert round(cam.get("ResultingFrameRate"), 2) == 50.0  # the exposure now sets the period
    cam.close()


def test_free_run_timestamps_and_chunks() -> None:
    bus = DartBus()
    cam = open_dart(bus)
    cam.set("Width", W)
    cam.set("Height", H)
    cam.set("ExposureTime", 10000.0)
    cam.set("ChunkModeActive", True)
    for name in ("FrameID", "Timestamp", "ExposureTime", "Gain"):
        cam.set("ChunkSelector", name)
        cam.set("ChunkEnable", True)
    cam._chunks = ("FrameID", "Timestamp", "ExposureTime", "Gain")
    cam.start(8)
    frames = [cam.try_retrieve(500) for _ in range(4)]
    cam.close()
    assert [f.block_id for f in frames] == [0, 1, 2, 3]
    assert [f.chunks["FrameID"] for f in frames] == [0, 1, 2, 3]
    period_ns = 1e9 / 100.0  # 10 ms exposure sets the period (the link allows 69 fps... at 64x48 far more)
    steps = np.diff([f.timestamp_ns for f in frames])
    np.testing.assert_allclose(steps, round(10000.0 / (1e6 / (164 * 1200))) * (1e6 / (164 * 1200)) * 1000, rtol=1e-6)
    assert frames[0].chunks["Timestamp"] == frames[0].timestamp_ns and frames[0].exposure_us == 10000.0 and frames[0].gain_db == 0.0
    assert abs(steps[0] - period_ns) < 0.01 * period_ns


def _master_slave(bus: DartBus, source: str) -> tuple[Camera, Camera]:
    bus.wire(WL, "Line2", LL, "Line1")
    slave, master = Camera(LL, factory=bus), Camera(WL, factory=bus)
    for cam in (slave, master):
        cam.set("Width", W)
        cam.set("Height", H)
        cam.set("ExposureTime", 2000.0)
    slave.set("LineSelector", "Line1")
    slave.set("LineMode", "Input")
    slave.set("TriggerSelector", "FrameStart")
    slave.set("TriggerMode", "On")
    slave.set("TriggerSource", "Line1")
    slave.set("TriggerActivation", "RisingEdge")
    master.set("LineSelector", "Line2")
    master.set("LineMode", "Output")
    master.set("LineSource", source)
    master.set("AcquisitionFrameRateEnable", True)
    master.set("AcquisitionFrameRate", 100.0)
    slave.start(8)
    master.start(8)
    return master, slave


def test_wired_master_drives_slave_with_exposure_active() -> None:
    bus = DartBus()
    master, slave = _master_slave(bus, "ExposureActive")
    m = [master.try_retrieve(500) for _ in range(5)]
    s = [slave.try_retrieve(500) for _ in range(5)]
    clock_gap = bus.darts[LL].clock_offset_ns - bus.darts[WL].clock_offset_ns
    assert [f.block_id for f in s] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose([b.timestamp_ns - a.timestamp_ns - clock_gap for a, b in zip(m, s)], 0, atol=1000)
    master.close()
    slave.close()


def test_user_output_line_never_toggles_by_itself() -> None:
    bus = DartBus()
    master, slave = _master_slave(bus, "UserOutput1")
    assert master.try_retrieve(500) is not None
    assert slave.try_retrieve(100) is None
    master.set("UserOutputSelector", "UserOutput1")
    master.set("UserOutputValue", True)  # the host drives it: one rising edge, one slave frame
    assert slave.try_retrieve(200).block_id == 0
    master.close()
    slave.close()


def _spec(session: CaptureSession, frames: int) -> SceneSpec:
    plan = session.plan(base_exposure_us=2000, base_gain_db=4.5, ks=[1, 2], frames=frames)
    return SceneSpec("s1", "1125", "3", 1, plan, session.config.frame_rate_hz)


def test_recorder_pairs_on_standin_with_software_trigger(tmp_path: Path) -> None:
    bus = DartBus()
    out = tmp_path / "s.h5"
    with use_factory(bus), CaptureSession(rig_config(), out) as session:
        outcomes = session.record_scene(_spec(session, 4))
    assert [o.total for o in outcomes] == [4, 4] and all(not o.dropped for o in outcomes)
    with SessionReader(out) as r:
        t = r.frames_table("s1", "1")
        assert list(t["ll_block_id"]) == [0, 1, 2, 3] and list(t["wl_block_id"]) == [0, 1, 2, 3]
        assert np.all(t["ll_timestamp_ns"] > 0) and np.all(t["wl_timestamp_ns"] > 0)
        ll, wl = r.pair("s1", "2", 0)
        assert ll.shape == (H, W) and ll.dtype == np.uint16 and ll.max() > 0


@pytest.mark.slow
def test_cli_config_check_and_record_on_standin(tmp_path: Path) -> None:
    cfg = tmp_path / "rig.yaml"
    cfg.write_text(yaml.safe_dump(rig_config().model_dump(mode="json", exclude_none=True)))
    out = tmp_path / "s.h5"
    runner = CliRunner()
    with use_factory(DartBus()):
        check = runner.invoke(app, ["config", "check", str(cfg)])
        rec = runner.invoke(app, ["record", "--config", str(cfg), "--scene", "a", "--k", "1", "--exposure-us", "2000", "--gain-db", "4.5", "--frames", "3", "--out", str(out)])
    assert check.exit_code == 0, check.output
    assert f"LL {LL} (daA1920-160uc): BayerRG12 {W}x{H}" in check.output
    assert rec.exit_code == 0, rec.output
    with SessionReader(out) as r:
        assert len(r.frames_table("a", "1")) == 3


def test_pfs_round_trip_keeps_selected_values(tmp_path: Path) -> None:
    bus = DartBus()
    cam = open_dart(bus)
    cam.set("BalanceRatioSelector", "Blue")
    cam.set("BalanceRatio", 2.5)
    cam.set("LineSelector", "Line3")
    cam.set("LineInverter", True)
    cam.save_pfs(tmp_path / "a.pfs")
    cam.set("UserSetSelector", "Default")
    cam.execute("UserSetLoad")
    cam.load_pfs(tmp_path / "a.pfs")
    cam.set("BalanceRatioSelector", "Blue")
    cam.set("LineSelector", "Line3")
    assert cam.get("BalanceRatio") == 2.5 and cam.get("LineInverter") is True
    assert [n for n, _ in read_pfs(tmp_path / "a.pfs")][:4] == ["ReverseX", "ReverseY", "Width", "Height"]
    cam.close()



def test_master_slave_recording_realigns_a_slave_that_missed_an_edge(tmp_path: Path) -> None:
    bus = DartBus()

    def edge_clock(t_s: float, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        # The light level encodes the exposure's start (ms), so a pair's two frames show whether they saw one edge.
        level = (int(round(t_s * 1000)) % 997 + 10) * 1e-3
        return np.full((h, w, 3), level)

    for dart in bus.darts.values():
        dart.scene = edge_clock
    bus.darts[LL].lost_edges = {4}  # the slave (LL) misses the master's fifth edge
    bus.wire(WL, "Line2", LL, "Line1")
    cfg = rig_config(frame_rate_hz=25.0, trigger={"topology": "master-slave", "master": "wl", "master_line": "Line2", "slave_line": "Line1"})
    out = tmp_path / "s.h5"
    with use_factory(bus), CaptureSession(cfg, out) as session:
        outcome = session.record_scene(_spec(session, 8))[0]
    assert outcome.total == 8 and outcome.dropped == {"ll missed a trigger edge": 1}
    with SessionReader(out) as r:
        t = r.frames_table("s1", "1")
        pairs = [r.pair("s1", "1", i) for i in range(len(t))]
    assert list(t["index"]) == [0, 1, 2, 3, 5, 6, 7, 8]  # edge 4 has no LL frame: its pair is dropped, visibly
    assert list(t["wl_block_id"] - t["ll_block_id"]) == [0, 0, 0, 0, 1, 1, 1, 1]
    for ll, wl in pairs:
        np.testing.assert_array_equal(ll, wl)  # the same edge, pixel for pixel
    assert len({int(ll[0, 0]) for ll, _ in pairs}) == 8


def test_power_cycle_loads_the_startup_user_set() -> None:
    bus = DartBus()
    cam = open_dart(bus)
    cam.set("Gamma", 0.5)
    cam.set("UserSetSelector", "UserSet2")
    cam.execute("UserSetSave")
    cam.set("UserSetDefault", "UserSet2")
    cam.set("Gamma", 0.8)
    cam.close()
    bus.darts[LL].power_cycle()
    cam = open_dart(bus)
    assert cam.get("Gamma") == 0.5 and cam.get("UserSetDefault") == "UserSet2"
    with pytest.raises(Exception, match="the Default user set is read-only"):
        cam.set("UserSetSelector", "Default")
        cam.execute("UserSetSave")
    cam.close()
