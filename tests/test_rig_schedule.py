"""Capture plan, rig config, disk-space and usbfs checks (no cameras needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exlpose_data.errors import InputError, UsageError
from rig import diskspace, usbfs
from rig.cameras import Limits, pixel_format_info
from rig.cli import app
from rig.config import RigConfig, emulated_config, load_config
from rig.schedule import check_plan, make_plan, retrieve_timeout_ms

DART = Limits(exposure_min_us=19.0, exposure_max_us=10_000_000.0, gain_min_db=0.0, gain_max_db=48.0)


def test_outdoor_ladder_reproduces_release_scene() -> None:
    plan = make_plan(base_exposure_us=5000, base_gain_db=4.5, preset="outdoor", frames=3, pair_bytes=100)
    assert [p.step.nominal_exposure_us for p in plan.steps] == [5000, 2500, 1250, 625, 417]
    assert [p.step.wl_gain_db for p in plan.steps] == [4.5, 10.52, 16.54, 22.56, 26.08]
    assert {p.step.ll_gain_db for p in plan.steps} == {4.5}
    assert [p.step.ratio for p in plan.steps] == [100, 200, 400, 800, 1200]
    assert plan.expected_bytes == 5 * 3 * 100


def test_custom_k_list_and_rounding_half_up() -> None:
    plan = make_plan(base_exposure_us=5000, base_gain_db=0, ks=[1, 16], frames=1)
    assert [p.step.nominal_exposure_us for p in plan.steps] == [5000, 313]
    assert plan.steps[1].step.wl_gain_db == 24.08


def test_plan_cli_prints_the_ladder() -> None:
    res = CliRunner().invoke(app, ["plan", "--preset", "outdoor", "--exposure-us", "5000", "--gain-db", "4.5", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["exposure_us"] for r in rows] == [5000, 2500, 1250, 625, 417]
    assert [r["wl_gain_db"] for r in rows] == ["4.50", "10.52", "16.54", "22.56", "26.08"]
    assert [r["ll_gain_db"] for r in rows] == ["4.50"] * 5
    assert rows[0]["timeout_ms"] == 260
    table = CliRunner().invoke(app, ["plan", "--preset", "outdoor", "--exposure-us", "5000", "--gain-db", "4.5"])
    lines = [line.split() for line in table.output.splitlines()[2:7]]
    assert [(r[0], r[2], r[4]) for r in lines] == [("1", "5000", "4.50"), ("2", "2500", "10.52"), ("4", "1250", "16.54"), ("8", "625", "22.56"), ("12", "417", "26.08")]


def test_plan_cli_rejects_unknown_preset_with_exit_2() -> None:
    res = CliRunner().invoke(app, ["plan", "--preset", "moon", "--exposure-us", "5000", "--gain-db", "4.5"])
    assert res.exit_code == 2
    assert "unknown preset 'moon'" in res.output


def test_out_of_range_gain_and_exposure_refused_listing_every_step() -> None:
    plan = make_plan(base_exposure_us=5000, base_gain_db=30, preset="outdoor", frames=1)
    with pytest.raises(UsageError) as err:
        check_plan(plan, DART, DART)
    msg = str(err.value)
    assert "k=4: WL gain 42.04 dB outside 0.00..48.00" not in msg
    assert "k=8: WL gain 48.06 dB outside 0.00..48.00 dB" in msg and "k=12: WL gain 51.58 dB" in msg
    short = Limits(100.0, 1000.0, 0.0, 48.0)
    with pytest.raises(UsageError, match=r"k=1: LL exposure 5000 us outside 100..1000 us"):
        check_plan(make_plan(base_exposure_us=5000, base_gain_db=0, preset="indoor", frames=1), short, DART)


def test_exposure_longer_than_frame_period_refused() -> None:
    plan = make_plan(base_exposure_us=25000, base_gain_db=0, preset="indoor", frames=1)
    with pytest.raises(UsageError, match="does not fit the 20000 us frame period at 50 fps"):
        check_plan(plan, DART, DART, frame_rate_hz=50)
    check_plan(plan, DART, DART, frame_rate_hz=30)


def test_timeouts_derive_from_exposure_and_short_override_is_refused() -> None:
    assert retrieve_timeout_ms(25000) == pytest.approx(2 * 25 + 250)
    assert retrieve_timeout_ms(25000, 400) == 400
    with pytest.raises(UsageError, match="exposure 25000 us is longer than the retrieve timeout 30 ms"):
        retrieve_timeout_ms(25000, 30)


def test_config_yaml_relative_pfs_and_field_errors(tmp_path: Path) -> None:
    good = tmp_path / "rig.yaml"
    good.write_text("ll: {serial: '1', pfs: ll.pfs}\nwl: {serial: '2', reverse_x: true}\ntrigger: {topology: master-slave, master: wl}\n")
    cfg = load_config(good)
    assert cfg.ll.pfs == tmp_path / "ll.pfs" and cfg.wl.reverse_x and cfg.trigger.topology == "master-slave"
    assert cfg.pixel_format == "BayerRG12" and cfg.nd_factor == 100.0
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"ll": {"serial": "1"}, "wl": {"serial": "2"}, "trigger": {"topolgy": "external"}}))
    with pytest.raises(InputError, match=r"typo.json: trigger.topolgy: Extra inputs are not permitted"):
        load_config(typo)
    same = tmp_path / "same.yaml"
    same.write_text("ll: {serial: '1'}\nwl: {serial: '1'}\n")
    with pytest.raises(InputError, match="same camera serial '1'"):
        load_config(same)
    odd = tmp_path / "odd.yaml"
    odd.write_text("ll: {serial: '1'}\nwl: {serial: '2'}\nroi: {width: 64, height: 48, offset_x: 3}\n")
    with pytest.raises(InputError, match="roi offsets must be even"):
        load_config(odd)
    with pytest.raises(InputError, match="no such rig config"):
        load_config(tmp_path / "absent.yaml")


def test_emulated_config_roles() -> None:
    cfg = emulated_config()
    assert (cfg.ll.serial, cfg.wl.serial) == ("0815-0000", "0815-0001")
    assert RigConfig.model_validate_json(cfg.to_json()) == cfg


def test_pixel_format_info() -> None:
    assert pixel_format_info("BayerRG12") == ("RGGB", 12, 1)
    assert pixel_format_info("BayerGB8") == ("GBRG", 8, 1)
    assert pixel_format_info("RGB8Packed") == (None, 8, 3)
    assert pixel_format_info("Mono12") == (None, 12, 1)
    assert pixel_format_info("BayerGR12p") == ("GRBG", 12, 1)  # stored packed, unpacked on read
    assert pixel_format_info("Mono12p") == (None, 12, 1)
    with pytest.raises(UsageError, match="pixel format Mono10p: only packed 12-bit formats \\(...12p\\) are supported"):
        pixel_format_info("Mono10p")


def test_disk_room_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 500 * diskspace.MB)
    assert diskspace.check_room(tmp_path, 100 * diskspace.MB, 256 * diskspace.MB) == 500 * diskspace.MB
    with pytest.raises(UsageError, match="needs about 562 MB .* only 500 MB are free"):
        diskspace.check_room(tmp_path, 300 * diskspace.MB, 256 * diskspace.MB)


def test_usbfs_limit(tmp_path: Path) -> None:
    # This machine has no usbfs parameter worth testing against: a file stands in for /sys/module/usbcore/...
    param = tmp_path / "usbfs_memory_mb"
    payload = 1920 * 1200 * 2
    assert usbfs.required_mb(payload, 16) == 176
    param.write_text("16\n")
    with pytest.raises(UsageError, match=r"usbfs_memory_mb is 16 MB but 2 cameras x 16 buffers need about 176 MB; raise it now with `sudo sh -c 'echo 1000 >"):
        usbfs.check_usbfs(payload, 16, param=param)
    param.write_text("1000\n")
    usbfs.check_usbfs(payload, 16, param=param)
    param.write_text("0\n")  # 0 = unlimited
    usbfs.check_usbfs(payload, 16, param=param)
    assert usbfs.usbfs_memory_mb(tmp_path / "absent") is None


def test_live_display_plain_and_terminal() -> None:
    import io

    from rich.console import Console

    from rig.display import LiveDisplay
    from rig.recorder import CaptureStats

    stats = CaptureStats(kept=12, step="/scenes/a/steps/2", queue_depth=3, free_bytes=5 << 30)
    stats.dropped["wl timeout"] += 2
    plain = io.StringIO()
    with LiveDisplay(Console(file=plain, width=200), plain_interval_s=0.0) as display:
        display(stats)
    line = plain.getvalue()
    assert "step: /scenes/a/steps/2  pairs: 12" in line and "dropped: 2 (2 wl timeout)  queue: 3  disk free: 5.0 GB" in line
    tty = io.StringIO()
    with LiveDisplay(Console(file=tty, width=200, force_terminal=True)) as display:
        display(stats)
    assert "pairs/s" in tty.getvalue() and "5.0 GB" in tty.getvalue() and "\x1b[" in tty.getvalue()


def test_config_software_mirror_and_its_conflict_with_reverse_x(tmp_path: Path) -> None:
    path = tmp_path / "rig.yaml"
    path.write_text("ll: {serial: '1'}\nwl: {serial: '2'}\nmirror: ll\n")
    assert load_config(path).mirror == "ll"
    path.write_text("ll: {serial: '1'}\nwl: {serial: '2'}\n")
    assert load_config(path).mirror == "none"
    path.write_text("ll: {serial: '1'}\nwl: {serial: '2', reverse_x: true}\nmirror: wl\n")
    with pytest.raises(InputError, match=r"rig.yaml: \(top level\): Value error, mirror: wl \(software flip after demosaic\) and wl.reverse_x \(flip on the camera\) are alternatives"):
        load_config(path)
    path.write_text("ll: {serial: '1'}\nwl: {serial: '2'}\nmirror: up\n")
    with pytest.raises(InputError, match=r"rig.yaml: mirror: Input should be 'none', 'll' or 'wl'"):
        load_config(path)


def test_plan_without_camera_warns_per_step_outside_the_dart_range() -> None:
    res = CliRunner().invoke(app, ["plan", "--preset", "outdoor", "--exposure-us", "50000", "--gain-db", "30", "--json"])
    assert res.exit_code == 0, res.output
    assert [r["wl_gain_db"] for r in json.loads(res.stdout)] == ["30.00", "36.02", "42.04", "48.06", "51.58"]
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert [w.split(" (no camera")[0] for w in warnings] == [
        "warning: k=1: LL exposure 50000 us outside 83..25000 us; WL exposure 50000 us outside 83..25000 us",
        "warning: k=8: WL gain 48.06 dB outside 0.00..48.00 dB",
        "warning: k=12: WL gain 51.58 dB outside 0.00..48.00 dB",
    ]
    quiet = CliRunner().invoke(app, ["plan", "--preset", "outdoor", "--exposure-us", "5000", "--gain-db", "4.5"])
    assert quiet.exit_code == 0 and "warning" not in quiet.output
