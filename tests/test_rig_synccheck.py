"""Fault 6 of issue 14: the master-slave wire, proven by `exlpose-capture sync-check` on the stand-in dart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rig.cli import app
from rig.factory import use_factory
from tests.standin_dart import SERIALS, DartBus, rig_config

LL, WL = SERIALS
TRIGGER = {"topology": "master-slave", "master": "wl", "master_line": "Line2", "slave_line": "Line1"}


def write_config(tmp_path: Path, **trigger: object) -> Path:
    cfg = rig_config(trigger={**TRIGGER, **trigger})
    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True)))
    return path


def run(bus: DartBus, cfg: Path, *extra: str) -> tuple[int, list[str]]:
    with use_factory(bus):
        res = CliRunner().invoke(app, ["sync-check", "--config", str(cfg), "--frames", "10", "--exposure-us", "2000", *extra])
    return res.exit_code, res.output.splitlines()


def test_wired_rig_passes_with_edge_counts_and_zero_offset(tmp_path: Path) -> None:
    bus = DartBus()
    bus.wire(WL, "Line2", LL, "Line1")
    code, lines = run(bus, write_config(tmp_path))
    assert code == 0, lines
    assert lines[0] == "pairs: 10 (master frames 10, slave frames 10)"
    assert lines[1] == "slave counted 10 edges on its input line for 10 frames"
    m = re.fullmatch(r"exposure offset slave - master: ([-+][\d.]+) us mean, ([\d.]+) us spread \(clock offset known to \+/-([\d.]+) us\); exposure 2000 us", lines[2])
    assert m is not None, lines[2]
    mean, spread, precision = (float(g) for g in m.groups())
    # The stand-in's slave exposes on the master's edge: zero offset, up to the latch round trip of the clock offset.
    assert abs(mean) <= precision + 0.1 and spread <= 0.1
    assert lines[-1] == "sync-check passed"


def test_missing_wire_fails_naming_the_lines(tmp_path: Path) -> None:
    code, lines = run(DartBus(), write_config(tmp_path))
    assert code == 1
    assert lines[-2] == (f"PROBLEM: the slave ({LL} (LL)) received no trigger edge: check the wire from the WL camera's Line2 (output) to the "
                         "LL camera's Line1 (input), the pull-up on the output, the common ground, and that both lines are GPIO lines")
    assert lines[-1] == "sync-check FAILED"


def test_inverted_polarity_shows_as_an_offset_of_one_exposure(tmp_path: Path) -> None:
    bus = DartBus()
    bus.wire(WL, "Line2", LL, "Line1")
    code, lines = run(bus, write_config(tmp_path, master_line_inverter=True))
    assert code == 1
    effective_us = bus.darts[WL].effective_exposure_us()
    assert any(line.startswith(f"PROBLEM: the slave starts {effective_us:.0f} us after the master, about one exposure") for line in lines), lines


def test_user_output_as_master_source_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump({"ll": {"serial": LL}, "wl": {"serial": WL}, "trigger": {**TRIGGER, "master_line_source": "UserOutput1"}}))
    code, lines = run(DartBus(), path)
    assert code == 2
    assert "trigger.master_line_source: Value error, 'UserOutput1' is not supported: only ExposureActive toggles" in " ".join(lines)


@pytest.mark.slow
def test_sync_check_refuses_a_software_rig(tmp_path: Path) -> None:
    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump({"ll": {"serial": LL}, "wl": {"serial": WL}}))
    code, lines = run(DartBus(), path)
    assert code == 2 and "sync-check proves a master-slave wire; the rig config's trigger topology is software" in " ".join(lines)


def test_software_trigger_gap_printed_for_a_moving_scene(tmp_path: Path) -> None:
    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump({"ll": {"serial": LL}, "wl": {"serial": WL}, "roi": {"width": 64, "height": 48, "offset_x": 8, "offset_y": 8}}))
    out = tmp_path / "s.h5"
    with use_factory(DartBus()):
        res = CliRunner().invoke(app, ["record", "--config", str(path), "--scene", "walk", "--k", "1", "--exposure-us", "2000", "--gain-db", "4.5",
                                       "--frames", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    m = re.search(r"software trigger: the two exposures started (\d+) us apart \(camera clocks\) against a 2000 us exposure \(([\d.]+)%\)", res.output)
    assert m is not None, res.output
    from exlpose_data.session_format import SessionReader

    with SessionReader(out) as r:
        gap = r.step_meta("walk", "1")["trigger_gap_us"]
    # WL is triggered after LL returns: the gap is the host's time between the two triggers, well under the exposure.
    assert 0 < gap < 2000 and int(m.group(1)) == round(gap)


def test_session_recorded_with_user_output_source_gives_one_line_on_resume(tmp_path: Path) -> None:
    import h5py

    out = tmp_path / "old.h5"
    with h5py.File(out, "w") as f:
        f.attrs["rig_config"] = '{"ll": {"serial": "a"}, "wl": {"serial": "b"}, "trigger": {"topology": "master-slave", "master_line_source": "UserOutput1"}}'
    res = CliRunner().invoke(app, ["resume", str(out)])
    assert res.exit_code == 2
    assert f"{out}: stored rig_config: trigger.master_line_source: Value error, 'UserOutput1' is not supported" in " ".join(res.output.split())
