"""Recording on pylon's real camera emulator (PYLON_CAMEMU): pairing, ladder read-back, drops, resume, errors.

Feeds encode the frame number in the pixels: LL = base(k) + i, WL = 2000 + base(k) + i for feed image i, so a
mis-paired frame is visible in the data. Nothing is mocked except the physical trigger wire (the emulator's
GPIO is not connected) and the free-space probe in the low-space test.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from exlpose_data.errors import UsageError
from exlpose_data.session_format import SessionReader
from rig import diskspace, emulate
from rig.cameras import Camera, CameraRemovedError, Rig, list_devices
from rig.capture import CaptureSession, SceneSpec
from rig.cli import app
from rig.config import emulated_config
from rig.recorder import CaptureStats, CaptureStopped, DiskSpaceLow

emulate.enable(2)

# pytest-timeout's default SIGALRM method was seen to hang a free-running emulated camera's RetrieveResult inside
# pylon (not reproduced outside pytest); the thread method leaves signals alone.
pytestmark = [pytest.mark.timeout(300, method="thread"), pytest.mark.slow]  # drives the pylon camera emulator

W, H = 64, 48
N_FEED = 7
KS = (1, 2, 4, 8, 12)
WL_OFFSET = 2000


def kbase(k: float) -> int:
    return 200 * KS.index(k) + 100


def make_feeds(root: Path, scene: str = "s1", ks: tuple[int, ...] = KS, n: int = N_FEED) -> Path:
    for k in ks:
        for i in range(n):
            value = kbase(k) + i
            emulate.write_raw_png(root / scene / str(k) / "ll" / f"{i:06d}.png", np.full((H, W), value, np.uint16))
            emulate.write_raw_png(root / scene / str(k) / "wl" / f"{i:06d}.png", np.full((H, W), WL_OFFSET + value, np.uint16))
    for role, off in (("ll", 0), ("wl", WL_OFFSET)):
        emulate.write_raw_png(root / scene / "reference" / role / "000000.png", np.full((H, W), 50 + off, np.uint16))
    return root


def config(**kw: object):
    return emulated_config(roi={"width": W, "height": H}, frame_rate_hz=kw.pop("fps", 150.0), **kw)


def spec(session: CaptureSession, feeds: Path | None, frames: int, scene: str = "s1", ks: list[int] | None = None) -> SceneSpec:
    plan = session.plan(base_exposure_us=5000, base_gain_db=4.5, ks=ks or list(KS), frames=frames)
    return SceneSpec(scene, "1125", "3", 1, plan, session.config.frame_rate_hz, feeds)


def assert_pairs_exact(path: Path, scene: str = "s1", expect_same_ids: bool = True) -> int:
    """Every kept pair holds LL and WL frames of the same feed image, and the image its block IDs say."""
    total = 0
    with SessionReader(path) as r:
        for step in r.steps(scene):
            k = int(step)
            table = r.frames_table(scene, step)
            for i, row in enumerate(table):
                ll, wl = r.pair(scene, step, i)
                assert ll.shape == (H, W) and ll.dtype == np.uint16
                assert np.all(ll == ll[0, 0]) and np.all(wl == wl[0, 0])
                assert int(wl[0, 0]) - int(ll[0, 0]) == WL_OFFSET, f"step {step} pair {i}: mis-paired"
                assert int(ll[0, 0]) == kbase(k) + row["ll_block_id"] % N_FEED
                assert int(wl[0, 0]) == WL_OFFSET + kbase(k) + row["wl_block_id"] % N_FEED
                if expect_same_ids:
                    assert row["ll_block_id"] == row["wl_block_id"]
            assert list(table["index"]) == sorted(set(table["index"]))
            total += len(table)
    return total


def test_devices_and_absent_serial_lists_attached() -> None:
    found = list_devices(emulated=True)
    assert [(d.serial, d.model) for d in found] == [("0815-0000", "Emulation"), ("0815-0001", "Emulation")]
    with pytest.raises(UsageError, match=r"camera 1234-5678 \(LL\): not attached; attached: 0815-0000 \(Emulation\), 0815-0001 \(Emulation\)"):
        Camera("1234-5678", role="ll", emulated=True)
    res = CliRunner().invoke(app, ["devices", "--emulate"])
    assert res.exit_code == 0 and "0815-0001\tEmulation\tBaslerCamEmu" in res.output


def test_lockstep_pairs_exact_and_ladder_read_back_per_frame(tmp_path: Path) -> None:
    feeds = make_feeds(tmp_path / "feeds")
    out = tmp_path / "s.h5"
    with CaptureSession(config(), out, emulated=True) as session:
        outcomes = session.record_scene(spec(session, feeds, frames=9))
    assert [o.total for o in outcomes] == [9] * 5 and all(not o.dropped for o in outcomes)
    assert assert_pairs_exact(out) == 45
    with SessionReader(out) as r:
        meta = r.scene_meta("s1")
        assert (meta["date_mmdd"], meta["site"], meta["video_id"], meta["k_list"]) == ("1125", "3", 1, [1, 2, 4, 8, 12])
        assert (meta["base_exposure_us"], meta["base_gain_db"], meta["ll_gain_db"], meta["nd_factor"]) == (5000, 4.5, 4.5, 100.0)
        assert r.rig_config["ll"]["serial"] == "0815-0000" and r.attrs["emulated"]
        for step, exp_us, wl_gain in zip(("1", "2", "4", "8", "12"), (5000, 2500, 1250, 625, 417), (4.5, 10.52, 16.54, 22.56, 26.08)):
            t = r.frames_table("s1", step)
            assert np.all(t["ll_exposure_us"] == exp_us) and np.all(t["wl_exposure_us"] == exp_us)
            np.testing.assert_allclose(t["wl_gain_db"], wl_gain, atol=1e-3)
            np.testing.assert_allclose(t["ll_gain_db"], 4.5, atol=1e-3)
            assert np.all(t["ll_timestamp_ns"] == -1)  # the emulator gives no timestamps
            sm = r.step_meta("s1", step)
            assert (sm["nominal_exposure_us"], sm["wl_gain_db"], sm["ratio"]) == (exp_us, wl_gain, 100 * int(step))
        ll_attrs, wl_attrs = r.frame_attrs("s1", "1")
        assert (ll_attrs.pixel_format, ll_attrs.bayer_pattern, ll_attrs.bit_depth, ll_attrs.mirrored_x) == ("BayerRG12", "RGGB", 12, False)
    with h5py.File(out) as f:
        ds = f["/scenes/s1/steps/12/ll"]
        assert ds.chunks == (1, H, W) and ds.maxshape == (None, H, W)
        assert ds.attrs["bayer_pattern"] == "RGGB" and ds.attrs["bit_depth"] == 12 and ds.attrs["pixel_format"] == "BayerRG12"


def test_failed_buffers_drop_pairs_without_mispairing(tmp_path: Path) -> None:
    feeds = make_feeds(tmp_path / "feeds")
    out = tmp_path / "s.h5"
    injected: list[int] = []

    with CaptureSession(config(), out, emulated=True) as session:

        def inject(stats: CaptureStats) -> None:
            # Fail one LL grab after 3 pairs and two WL grabs after 7, while grabbing.
            if stats.kept == 3 and not injected:
                session.rig.ll.force_failed_buffers(1)
                injected.append(3)
            elif stats.kept == 7 and len(injected) == 1:
                session.rig.wl.force_failed_buffers(2)
                injected.append(7)

        session._progress = inject
        session._writer()._progress_interval_s = 0.0  # report after every pair
        outcomes = session.record_scene(spec(session, feeds, frames=12, ks=[1]))
    assert injected == [3, 7]
    dropped = outcomes[0].dropped
    assert sum(v for r, v in dropped.items() if r.startswith("ll failed")) == 1
    assert sum(v for r, v in dropped.items() if r.startswith("wl failed")) == 2
    assert "incompletely grabbed" in next(iter(dropped))
    assert assert_pairs_exact(out) == 12
    with SessionReader(out) as r:
        index = list(r.frames_table("s1", "1")["index"])
    assert set(range(15)) - set(index) == {3, 8, 9}


def test_pfs_round_trip(tmp_path: Path) -> None:
    with Camera(emulate.SERIALS[0], emulated=True) as cam:
        cam.set_exposure_gain(1234.0, 7.5)
        cam.set("Width", 96)
        saved = cam.save_pfs(tmp_path / "ll.pfs")
        cam.set_exposure_gain(50.0, 0.0)
        cam.set("Width", 64)
        cam.load_pfs(saved)
        exp, gain = cam.read_exposure_gain()
        assert exp == 1234.0 and gain == pytest.approx(7.5, abs=1e-3) and cam.get("Width") == 96
        with pytest.raises(UsageError, match="no such .pfs file"):
            cam.load_pfs(tmp_path / "absent.pfs")
        with pytest.raises(UsageError, match=r"PixelFormat='BayerXY12' not supported"):
            cam.set("PixelFormat", "BayerXY12")
        assert cam.temperature_c() is None  # the emulator reports none


def test_reverse_x_recorded_and_pattern_read_back(tmp_path: Path) -> None:
    cfg = emulated_config(roi={"width": W, "height": H}, wl={"serial": emulate.SERIALS[1], "reverse_x": True})
    with Rig(cfg, emulated=True) as rig:
        fmt = rig.configure()
        assert fmt["wl"].mirrored_x and not fmt["ll"].mirrored_x
        assert rig.wl.get("ReverseX") is True
        # The camera reports the pattern of its mirrored output; the emulator mirrors in 2-pixel groups (RGGB kept).
        assert fmt["wl"].bayer_pattern == "RGGB"


def test_resume_completes_interrupted_scene(tmp_path: Path) -> None:
    feeds = make_feeds(tmp_path / "feeds")
    out = tmp_path / "s.h5"
    session = CaptureSession(config(), out, emulated=True)

    def ctrl_c(stats: CaptureStats) -> None:
        if stats.kept == 5:
            raise KeyboardInterrupt

    session._progress = ctrl_c
    session._writer()._progress_interval_s = 0.0
    try:
        with pytest.raises(KeyboardInterrupt):
            session.record_scene(spec(session, feeds, frames=6, ks=[1, 2]))
    finally:
        session.close()
    # A crash between the two frames of a pair leaves one frame more in ll: resume trims it.
    with h5py.File(out, "a") as f:
        ll = f["/scenes/s1/steps/1/ll"]
        ll.resize(5, axis=0)
        f["/scenes/s1/steps/1/frames"].resize(4, axis=0)
    res = CliRunner().invoke(app, ["resume", str(out)])
    assert res.exit_code == 0, res.output
    assert "/scenes/s1/steps/1: 6 pairs (2 new)" in res.output and "/scenes/s1/steps/2: 6 pairs (6 new)" in res.output
    assert assert_pairs_exact(out) == 12
    with SessionReader(out) as r:
        assert list(r.frames_table("s1", "1")["index"]) == [0, 1, 2, 3, 4, 5]
    again = CliRunner().invoke(app, ["resume", str(out)])
    assert again.exit_code == 0 and "nothing to resume" in again.output


def test_master_slave_configured_and_unwired_slave_times_out_clearly(tmp_path: Path) -> None:
    cfg = config(fps=50.0, trigger={"topology": "master-slave", "master": "wl", "master_line": "Line2", "slave_line": "Line1"})
    out = tmp_path / "ms.h5"
    with CaptureSession(cfg, out, emulated=True) as session:
        wl, ll = session.rig.wl, session.rig.ll
        assert (ll.get("TriggerMode"), ll.get("TriggerSource"), ll.get("TriggerActivation")) == ("On", "Line1", "RisingEdge")
        wl.set("LineSelector", "Line2")
        assert (wl.get("TriggerMode"), wl.get("LineMode"), wl.get("LineSource")) == ("Off", "Output", "ExposureActive")
        with pytest.raises(CaptureStopped, match=r"camera 0815-0000 \(LL\) delivered no frame within 2.25\d* s of arming; check the wire from the master's Line2 to the slave's Line1"):
            session.record_scene(spec(session, None, frames=3, ks=[8]))
    with SessionReader(out) as r:
        assert len(r.frames_table("s1", "8")) == 0


def test_external_trigger_pairs_by_counter_and_drops_failed_frames(tmp_path: Path) -> None:
    # The emulated generator stands in for the physical one: one software "edge" per tick to both cameras.
    feeds = make_feeds(tmp_path / "feeds", ks=(1,))
    out = tmp_path / "ext.h5"
    injected: list[int] = []
    with CaptureSession(config(fps=60.0, trigger={"topology": "external", "input_line": "Line1"}), out, emulated=True) as session:
        assert session.rig.ll.get("TriggerSource") == "Line1"

        def inject(stats: CaptureStats) -> None:
            if stats.kept == 4 and not injected:
                session.rig.wl.force_failed_buffers(1)
                injected.append(4)

        session._progress = inject
        session._writer()._progress_interval_s = 0.0
        outcomes = session.record_scene(spec(session, feeds, frames=10, ks=[1]))
    assert injected == [4]
    assert outcomes[0].total == 10
    assert sum(n for reason, n in outcomes[0].dropped.items() if reason.startswith("wl failed")) == 1
    assert assert_pairs_exact(out) == 10
    with SessionReader(out) as r:
        assert len(set(range(11)) - set(r.frames_table("s1", "1")["index"])) == 1


def test_external_trigger_at_low_frame_rate_has_no_false_timeouts(tmp_path: Path) -> None:
    # At 2 fps edges come every 500 ms, longer than the 251 ms retrieve timeout of a 625 us exposure: waiting for
    # the next edge is neither a drop nor a stall.
    feeds = make_feeds(tmp_path / "feeds", ks=(8,))
    out = tmp_path / "slow.h5"
    with CaptureSession(config(fps=2.0, trigger={"topology": "external"}), out, emulated=True) as session:
        outcomes = session.record_scene(spec(session, feeds, frames=3, ks=[8]))
    assert (outcomes[0].total, outcomes[0].dropped, outcomes[0].stalls) == (3, {}, {})
    assert assert_pairs_exact(out) == 3
    with SessionReader(out) as r:
        assert list(r.frames_table("s1", "8")["index"]) == [0, 1, 2]
        assert r.step_meta("s1", "8")["stalls"] == "{}"


def test_emulated_generator_edge_count_catches_a_camera_armed_too_late(tmp_path: Path) -> None:
    import time

    from rig.emulate import TriggerGenerator

    feeds = make_feeds(tmp_path / "feeds", ks=(1,))
    out = tmp_path / "late.h5"
    fps = 20.0
    generators: list[TriggerGenerator] = []
    with CaptureSession(config(fps=fps, trigger={"topology": "external"}), out, emulated=True) as session:
        sync = session.sync

        def late_start(rig: Rig, buffers: int) -> None:
            # WL is armed only after the generator's first edge: it misses it (or more).
            rig.ll.start(buffers)
            sync._generator = TriggerGenerator([rig.ll, rig.wl], fps)
            generators.append(sync._generator)
            sync._generator.start()
            time.sleep(1.5 / fps)
            rig.wl.start(buffers)

        sync.start = late_start  # type: ignore[method-assign]
        outcomes = session.record_scene(spec(session, feeds, frames=4, ks=[1]))
    missed = generators[0].edge_of(1, 0) - generators[0].edge_of(0, 0)
    assert missed >= 1
    realigned = [r for r in outcomes[0].dropped if r.startswith("wl missed a trigger edge (emulated generator: LL frame of edge 0, WL frame of edge")]
    assert len(realigned) == 1 and sum(outcomes[0].dropped.values()) == missed
    with SessionReader(out) as r:
        table = r.frames_table("s1", "1")
        assert len(table) == 4 and list(table["ll_block_id"] - table["wl_block_id"]) == [missed] * 4
        for i, row in enumerate(table):
            ll, wl = r.pair("s1", "1", i)
            assert int(ll[0, 0]) == kbase(1) + row["ll_block_id"] % N_FEED and int(wl[0, 0]) == WL_OFFSET + kbase(1) + row["wl_block_id"] % N_FEED


def test_free_run_pairs_by_counter(tmp_path: Path) -> None:
    feeds = make_feeds(tmp_path / "feeds", ks=(1,))
    out = tmp_path / "free.h5"
    with CaptureSession(config(fps=50.0, trigger={"topology": "free-run"}), out, emulated=True) as session:
        session.record_scene(spec(session, feeds, frames=8, ks=[1]))
    assert assert_pairs_exact(out) == 8


def test_camera_removed_mid_session_keeps_pairs(tmp_path: Path) -> None:
    feeds = make_feeds(tmp_path / "feeds", ks=(1,))
    out = tmp_path / "rm.h5"
    session = CaptureSession(config(), out, emulated=True)

    def unplug(stats: CaptureStats) -> None:
        if stats.kept >= 5:
            session.rig.wl.emulate_removal()

    session._progress = unplug
    try:
        with pytest.raises(CameraRemovedError, match=r"camera 0815-0001 \(WL\): removed"):
            session.record_scene(spec(session, feeds, frames=50, ks=[1]))
    finally:
        session.close()
    kept = assert_pairs_exact(out)
    assert 5 <= kept < 50


def test_low_disk_space_stops_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feeds = make_feeds(tmp_path / "feeds", ks=(1,))
    out = tmp_path / "low.h5"
    free = {"bytes": 10 << 30}
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: free["bytes"])
    # Flushes are far apart: the stop must come from write_pair's own probe.
    cfg = config(flush_interval_s=30.0)
    session = CaptureSession(cfg, out, emulated=True)
    pair = 2 * W * H * 2
    assert session.stop_reserve_bytes == 256 * diskspace.MB + (64 + 150 * 30 + 1) * pair

    def shrink(stats: CaptureStats) -> None:
        if stats.kept >= 10:
            free["bytes"] = 1 << 20

    session._progress = shrink
    try:
        with pytest.raises(DiskSpaceLow, match=r"free disk space fell below the 309 MB reserve \(min_free_mb plus the pairs still queued\); recording stopped after"):
            session.record_scene(spec(session, feeds, frames=2000, ks=[1]))
    finally:
        session.close()
    kept = session.recorder.stats.kept
    assert 10 <= kept < 100  # stopped within the 0.1 s probe interval, not at a flush 30 s later (2000 pairs)
    # Pairs still queued when space ran out would have gone below min_free_mb: discarded and counted, not written.
    written = assert_pairs_exact(out)
    assert written + session.writer.stats.pairs_discarded == kept
    with SessionReader(out) as r:
        assert r._f["/scenes/s1/steps/1"].attrs.get("discarded_pairs", 0) == session.writer.stats.pairs_discarded


def test_writer_discards_queued_pairs_rather_than_write_past_the_floor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rig.cameras import FrameFormat
    from rig.writer import SessionWriter

    pair = 2 * W * H * 2
    floor = 100 * diskspace.MB
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: floor + int(2.5 * pair))
    writer = SessionWriter(tmp_path / "w.h5", flush_interval_s=60.0, min_free_bytes=floor + 10 * pair, floor_bytes=floor)
    assert writer.low_space.is_set()  # below the stop reserve from the start
    fmt = FrameFormat("BayerRG12", "RGGB", 12, 1, W, H, 0.0, False)
    writer.open_step("/scenes/s/steps/1", {}, fmt, fmt)
    for i in range(5):
        writer.write_pair("/scenes/s/steps/1", np.full((H, W), i, np.uint16), np.full((H, W), i, np.uint16), (i, 0, i, i, -1, -1, 1.0, 1.0, 0.0, 0.0))
    writer.close()
    assert (writer.stats.pairs_written, writer.stats.pairs_discarded) == (2, 3)
    with SessionReader(tmp_path / "w.h5") as r:
        assert list(r.frames_table("s", "1")["index"]) == [0, 1]


def test_start_refused_when_estimate_plus_full_queue_reserve_does_not_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 700 MB free holds one 1920x1200 pair plus 256 MB, but not the 70 pairs that may still be written after a stop.
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 700 * diskspace.MB)
    out = tmp_path / "q.h5"
    res = CliRunner().invoke(app, ["record", "--emulate", "--roi", "1920x1200", "--scene", "a", "--k", "1", "--exposure-us", "5000", "--gain-db", "4.5",
                                   "--frames", "1", "--out", str(out)])
    assert res.exit_code == 2
    assert "needs about 880 MB (recording 9 MB + reserve 871 MB) but only 700 MB are free" in " ".join(res.output.split())
    assert not out.exists()


def test_disk_space_refusal_before_anything_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 300 * diskspace.MB)
    out = tmp_path / "big.h5"
    res = CliRunner().invoke(
        app, ["record", "--emulate", "--roi", "1920x1200", "--scene", "a", "--preset", "outdoor", "--exposure-us", "5000", "--gain-db", "4.5", "--frames", "20", "--out", str(out)]
    )
    assert res.exit_code == 2
    assert "only 300 MB are free" in res.output
    assert not out.exists()


def test_cli_record_reference_inspect_darks(tmp_path: Path) -> None:
    feeds = make_feeds(tmp_path / "feeds")
    out = tmp_path / "cli.h5"
    runner = CliRunner()
    ref = runner.invoke(app, ["reference", "--emulate", "--feeds", str(feeds), "--feed-scene", "s1", "--name", "setup1", "--exposure-us", "5000", "--ll-exposure-us", "500000", "--gain-db", "4.5", "--frames", "3", "--out", str(out)])
    assert ref.exit_code == 0, ref.output
    base = ["record", "--emulate", "--feeds", str(feeds), "--scene", "s1", "--preset", "outdoor", "--exposure-us", "5000", "--gain-db", "4.5", "--frames", "4", "--out", str(out), "--date", "0119", "--fps", "150"]
    rec = runner.invoke(app, base)
    assert rec.exit_code == 0, rec.output
    assert "/scenes/s1/steps/12: 4 pairs (4 new), dropped: none" in rec.output
    assert assert_pairs_exact(out) == 20
    again = runner.invoke(app, base)
    assert again.exit_code == 2 and "scene 's1' exists already" in again.output
    other_rig = runner.invoke(app, ["record", "--emulate", "--roi", "32x24", "--scene", "s2", "--exposure-us", "5000", "--gain-db", "4.5", "--out", str(out)])
    assert other_rig.exit_code == 2 and "recorded with another rig config" in other_rig.output
    with SessionReader(out) as r:
        ll, wl, la, wa = r.reference("setup1")
        assert ll.shape == (3, H, W) and int(ll[0, 0, 0]) == 50 and int(wl[2, 0, 0]) == 50 + WL_OFFSET
        table = r._f["/reference/setup1/frames"][()]
        assert list(table["ll_exposure_us"]) == [500000.0] * 3 and list(table["wl_exposure_us"]) == [5000.0] * 3
        assert r.scene_meta("s1")["video_id"] == 1 and r.scene_meta("s1")["date_mmdd"] == "0119"
    text = runner.invoke(app, ["inspect", str(out)])
    assert text.exit_code == 0 and "reference setup1: 3 pairs [48, 64]" in text.output
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in text.output.splitlines() if line.startswith("│")]
    assert ["s1", "12", "4", "417", "4.50", "26.08", "0"] in rows
    insp = runner.invoke(app, ["inspect", str(out), "--json"])
    assert insp.exit_code == 0, insp.output
    summary = json.loads(insp.output)
    assert summary["references"]["setup1"] == {"pairs": 3, "shape": [H, W]}
    assert summary["scenes"]["s1"]["steps"]["8"]["pairs"] == 4
    assert summary["scenes"]["s1"]["steps"]["8"]["wl_gain_db"] == pytest.approx(22.56, abs=1e-3)
    darks = runner.invoke(app, ["darks", "--emulate", "--roi", "64x48", "--k", "1,4", "--exposure-us", "2000", "--gain-db", "0", "--frames", "3", "--out", str(tmp_path / "darks.h5")])
    assert darks.exit_code == 0, darks.output
    assert darks.output.count("LL") == 2 and darks.output.count("WL") == 2
    with SessionReader(tmp_path / "darks.h5") as r:
        assert r.scene_meta("darks")["kind"] == "darks" and r.steps("darks") == ["1", "4"]


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    no_rig = runner.invoke(app, ["record", "--scene", "a", "--exposure-us", "5000", "--gain-db", "4.5", "--out", str(tmp_path / "x.h5")])
    assert no_rig.exit_code == 2 and "give --config RIG.yaml, or --emulate" in no_rig.output
    rng = runner.invoke(app, ["record", "--emulate", "--roi", "64x48", "--scene", "a", "--preset", "outdoor", "--exposure-us", "5000", "--gain-db", "30", "--out", str(tmp_path / "x.h5")])
    assert rng.exit_code == 2 and "k=12: WL gain 51.58 dB outside 0.00..48.00 dB" in rng.output
    assert not (tmp_path / "x.h5").exists()
    cfg = tmp_path / "rig.yaml"
    cfg.write_text("ll: {serial: '0815-0000'}\nwl: {serial: '9999-0001'}\nroi: {width: 64, height: 48}\n")
    chk = runner.invoke(app, ["config", "check", str(cfg), "--emulate"])
    assert chk.exit_code == 2 and "camera 9999-0001 (WL): not attached; attached: 0815-0000 (Emulation)" in chk.output
    cfg.write_text("ll: {serial: '0815-0000'}\nwl: {serial: '0815-0001'}\nroi: {width: 64, height: 48}\ntrigger: {topology: external, input_line: Line7}\n")
    bad_line = runner.invoke(app, ["config", "check", str(cfg), "--emulate"])
    assert bad_line.exit_code == 2 and "has no I/O line Line7; lines: Line1, Line2, Line3" in bad_line.output
    cfg.write_text("ll: {serial: '0815-0000'}\nwl: {serial: '0815-0001'}\nroi: {width: 64, height: 48}\n")
    ok = runner.invoke(app, ["config", "check", str(cfg), "--emulate", "--save-pfs", str(tmp_path / "pfs")])
    assert ok.exit_code == 0 and "LL 0815-0000 (Emulation): BayerRG12 64x48" in ok.output and ": ok" in ok.output
    saved = (tmp_path / "pfs" / "wl_0815-0001.pfs").read_text()
    assert "PixelFormat\tBayerRG12" in saved and "Width\t64" in saved


def test_lockstep_recovers_after_a_camera_stalls(tmp_path: Path) -> None:
    # Stopping WL's grabbing mid-step stands in for a stalled camera: it is not trigger-ready, the pair is dropped,
    # grabbing restarts on both, and pairing stays exact afterwards.
    feeds = make_feeds(tmp_path / "feeds", ks=(1,))
    out = tmp_path / "stall.h5"
    stalled: list[int] = []
    with CaptureSession(config(), out, emulated=True) as session:

        def stall(stats: CaptureStats) -> None:
            if stats.kept == 4 and not stalled:
                session.rig.wl.stop()
                stalled.append(stats.kept)

        session._progress = stall
        session._writer()._progress_interval_s = 0.0
        outcomes = session.record_scene(spec(session, feeds, frames=10, ks=[1]))
    assert stalled == [4]
    assert outcomes[0].dropped == {"wl not ready for trigger": 1}
    assert assert_pairs_exact(out) == 10
    with SessionReader(out) as r:
        t = r.frames_table("s1", "1")
    assert list(t["index"]) == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10]
    assert list(t["ll_block_id"]) == [0, 1, 2, 3, 0, 1, 2, 3, 4, 5]  # counting restarted with grabbing


def test_frames_of_the_wrong_size_are_dropped_not_written(tmp_path: Path) -> None:
    # A feed smaller than the ROI makes the emulator deliver smaller frames: no pair may be written then.
    small = tmp_path / "small"
    for role in ("ll", "wl"):
        emulate.write_raw_png(small / "s1" / "1" / role / "000000.png", np.full((H // 2, W // 2), 7, np.uint16))
    out = tmp_path / "small.h5"
    with CaptureSession(config(), out, emulated=True) as session:
        with pytest.raises(CaptureStopped, match=r"last: ll frame size \(24, 32\) is not \(48, 64\)"):
            session.record_scene(spec(session, small, frames=3, ks=[1]))
    with SessionReader(out) as r:
        assert len(r.frames_table("s1", "1")) == 0
    res = CliRunner().invoke(app, ["record", "--emulate", "--feeds", str(small), "--roi", "64x48", "--scene", "s1", "--k", "1", "--exposure-us", "5000", "--gain-db", "0", "--out", str(tmp_path / "x.h5")])
    assert res.exit_code == 2 and "--roi 64x48 is larger than the feed images (32x24)" in res.output
    bad = CliRunner().invoke(app, ["record", "--emulate", "--roi", "0x10", "--scene", "s1", "--exposure-us", "5000", "--gain-db", "0", "--out", str(tmp_path / "x.h5")])
    assert bad.exit_code == 2 and "--roi: roi.width: Input should be greater than 0" in bad.output


def test_feeds_black_level_is_recorded_on_emulated_sessions(tmp_path: Path) -> None:
    """The emulator has no BlackLevel feature: the pedestal baked into the feeds must reach the session."""
    feeds = make_feeds(tmp_path / "feeds", ks=(1,))
    (feeds / "feeds.json").write_text(json.dumps({"black_level_dn": 240.0}))
    out = tmp_path / "bl.h5"
    res = CliRunner().invoke(app, ["record", "--emulate", "--feeds", str(feeds), "--scene", "s1", "--k", "1", "--exposure-us", "5000",
                                   "--gain-db", "0", "--frames", "2", "--out", str(out), "--date", "0119", "--fps", "150"])
    assert res.exit_code == 0, res.output
    with SessionReader(out) as r:
        ll_attrs, wl_attrs = r.frame_attrs("s1", "1")
    assert ll_attrs.black_level == 240.0 and wl_attrs.black_level == 240.0


def write_feeds_json(feeds: Path, scene: str = "s1", ks: tuple[int, ...] = (1, 2)) -> None:
    """A feeds.json as the simulator writes it, describing ``scene`` at 4000 us / 0.5 dB, date 0101, site sim, video 1."""
    from exlpose_data.exposure import build_ladder
    from exlpose_data.feeds_format import FeedsDocument

    ladder = build_ladder(4000.0, 0.5, ks, nd_factor=100.0)
    steps = [{"k": s.k, "ratio": s.ratio, "exposure_us": s.exposure_us, "nominal_exposure_us": s.nominal_exposure_us,
              "wl_gain_db": s.wl_gain_db, "ll_gain_db": s.ll_gain_db} for s in ladder]
    geometry = {"homography": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "centre": (W / 2, H / 2), "focal_px": 100.0, "size": (W, H), "crop": (0, 0, W, H)}
    reference = {"ll_dir": f"{scene}/reference/ll", "wl_dir": f"{scene}/reference/wl", "file": "000000.png",
                 "ll_exposure_us": 400000.0, "wl_exposure_us": 4000.0, "ll_gain_db": 0.5, "wl_gain_db": 0.5}
    doc = FeedsDocument(black_level_dn=0.0, seed=1, scenes=[{
        "scene": scene, "date": "0101", "site": "sim", "video": 1, "preset": "custom", "base_exposure_us": 4000.0,
        "base_gain_db": 0.5, "nd_factor": 100.0, "geometry": geometry, "steps": steps, "frames": [], "reference": reference}])
    (feeds / "feeds.json").write_text(doc.model_dump_json())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--exposure-us", "10000", "--gain-db", "10"], "--exposure-us 10000 contradicts {feeds}: scene 's1' base_exposure_us is 4000"),
        (["--exposure-us", "4000", "--gain-db", "10"], "--gain-db 10 contradicts {feeds}: scene 's1' base_gain_db is 0.5"),
        (["--exposure-us", "4000", "--gain-db", "0.5", "--preset", "outdoor"], "--k/--preset 1,2,4,8,12 contradicts {feeds}: scene 's1' steps[].k is 1,2"),
        (["--exposure-us", "4000", "--gain-db", "0.5", "--date", "0102"], "--date '0102' contradicts {feeds}: scene 's1' date is '0101'"),
        (["--exposure-us", "4000", "--gain-db", "0.5", "--site", "lab"], "--site 'lab' contradicts {feeds}: scene 's1' site is 'sim'"),
        (["--exposure-us", "4000", "--gain-db", "0.5", "--video-id", "7"], "--video-id 7 contradicts {feeds}: scene 's1' video is 1"),
        (["--exposure-us", "4000", "--gain-db", "0.5", "--ll-gain-db", "3"], "--ll-gain-db 3 contradicts {feeds}: scene 's1' steps[0].ll_gain_db is 0.5"),
    ],
)
def test_record_refuses_settings_contradicting_feeds_json(tmp_path: Path, extra: list[str], message: str) -> None:
    feeds = make_feeds(tmp_path / "feeds", ks=(1, 2))
    write_feeds_json(feeds)
    out = tmp_path / "f.h5"
    res = CliRunner().invoke(app, ["record", "--emulate", "--feeds", str(feeds), "--scene", "s1", "--frames", "2", "--out", str(out), "--fps", "150", *extra])
    assert res.exit_code == 2, res.output
    assert message.format(feeds=feeds / "feeds.json") in " ".join(res.output.split())
    assert not out.exists()


def test_record_and_reference_default_to_feeds_json(tmp_path: Path) -> None:
    feeds = make_feeds(tmp_path / "feeds", ks=(1, 2))
    write_feeds_json(feeds)
    out = tmp_path / "f.h5"
    runner = CliRunner()
    rec = runner.invoke(app, ["record", "--emulate", "--feeds", str(feeds), "--scene", "s1", "--exposure-us", "4000.0", "--gain-db", "0.5",
                              "--frames", "2", "--out", str(out), "--fps", "150"])
    assert rec.exit_code == 0, rec.output
    ref = runner.invoke(app, ["reference", "--emulate", "--feeds", str(feeds), "--feed-scene", "s1", "--name", "r", "--exposure-us", "4000",
                              "--gain-db", "0.5", "--frames", "1", "--out", str(out)])
    assert ref.exit_code == 0, ref.output
    with SessionReader(out) as r:
        meta = r.scene_meta("s1")
        assert (meta["date_mmdd"], meta["site"], meta["video_id"], meta["k_list"]) == ("0101", "sim", 1, [1, 2])
        assert (meta["base_exposure_us"], meta["base_gain_db"]) == (4000.0, 0.5)
        table = r._f["/reference/r/frames"][()]
        assert list(table["ll_exposure_us"]) == [400000.0] and list(table["wl_exposure_us"]) == [4000.0]
    bad = runner.invoke(app, ["reference", "--emulate", "--feeds", str(feeds), "--feed-scene", "s1", "--name", "r2", "--exposure-us", "4000",
                              "--ll-exposure-us", "4000", "--gain-db", "0.5", "--frames", "1", "--out", str(out)])
    assert bad.exit_code == 2
    assert "--ll-exposure-us 4000 contradicts" in bad.output and "reference.ll_exposure_us is 400000" in " ".join(bad.output.split())
    other = runner.invoke(app, ["record", "--emulate", "--feeds", str(feeds), "--scene", "s9", "--exposure-us", "4000", "--gain-db", "0.5", "--out", str(out)])
    assert other.exit_code == 2 and "describes no scene 's9'; scenes: s1" in " ".join(other.output.split())


def test_software_mirror_reaches_the_session_for_alignment(tmp_path: Path) -> None:
    from exlpose_data.align.prepare import session_mirror

    feeds = make_feeds(tmp_path / "feeds", ks=(1,))
    out = tmp_path / "m.h5"
    with CaptureSession(config(mirror="ll"), out, emulated=True) as session:
        session.record_scene(spec(session, feeds, frames=1, ks=[1]))
    with SessionReader(out) as r:
        assert session_mirror(r) == "ll"
        assert r.frame_attrs("s1", "1")[0].mirrored_x is False  # flipped later in software, not on the camera
    other = CliRunner().invoke(app, ["record", "--emulate", "--roi", f"{W}x{H}", "--scene", "s2", "--k", "1", "--exposure-us", "5000",
                                     "--gain-db", "4.5", "--frames", "1", "--out", str(out), "--fps", "150"])
    assert other.exit_code == 2 and "recorded with another rig config" in other.output


def test_resume_runs_the_pre_checks_for_every_scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feeds = make_feeds(tmp_path / "feeds", ks=(1,))
    make_feeds(feeds, scene="s2", ks=(1,))
    out = tmp_path / "r.h5"
    with CaptureSession(config(), out, emulated=True) as session:
        for scene in ("s1", "s2"):
            session.record_scene(spec(session, feeds, frames=3, scene=scene, ks=[1]))
    with h5py.File(out, "a") as f:  # both scenes interrupted after one pair
        for scene in ("s1", "s2"):
            for name in ("ll", "wl", "frames"):
                f[f"/scenes/{scene}/steps/1/{name}"].resize(1, axis=0)
        f["/scenes/s2"].attrs["base_gain_db"] = 60.0
    runner = CliRunner()
    rng = runner.invoke(app, ["resume", str(out)])
    assert rng.exit_code == 2 and "plan refused, nothing recorded: k=1: WL gain 60.00 dB outside 0.00..48.00 dB" in " ".join(rng.output.split())
    with h5py.File(out, "a") as f:
        f["/scenes/s2"].attrs["base_gain_db"] = 4.5
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 200 * diskspace.MB)
    disk = runner.invoke(app, ["resume", str(out)])
    assert disk.exit_code == 2 and "but only 200 MB are free" in " ".join(disk.output.split())
    with SessionReader(out) as r:
        assert [len(r.frames_table(s, "1")) for s in ("s1", "s2")] == [1, 1]  # nothing recorded by the refusals
    monkeypatch.undo()
    ok = runner.invoke(app, ["resume", str(out)])
    assert ok.exit_code == 0, ok.output
    assert "/scenes/s1/steps/1: 3 pairs (2 new)" in ok.output and "/scenes/s2/steps/1: 3 pairs (2 new)" in ok.output
    assert assert_pairs_exact(out, "s1") == 3 and assert_pairs_exact(out, "s2") == 3
