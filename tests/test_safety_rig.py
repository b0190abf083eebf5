"""Capture never mixes or loses a session (issue 21): darks apart from data, sessions in use named, numeric options
that are no finite number named, duplicate keys in a rig config refused.

Sessions are written by the real recorder on pylon's camera emulator (PYLON_CAMEMU); a session held open by
another process is held by a real second process.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import pytest
from typer.testing import CliRunner

from exlpose_data.errors import InputError, UsageError
from exlpose_data.outputs import what_is
from exlpose_data.session_format import SessionReader
from rig import emulate
from rig.cli import app
from rig.config import load_config

emulate.enable(2)

# As in test_rig_capture: the thread method leaves pylon's signals alone.
pytestmark = pytest.mark.timeout(300, method="thread")

OFFICIAL_LL_ALL = Path(__file__).parent / "data" / "ExLPose_test_LL-All.json"
EMU = ["--emulate", "--roi", "64x48"]
runner = CliRunner()


def flat(output: str) -> str:
    """CLI output with typer's error box and line wrapping taken out, for matching whole messages."""
    return " ".join(output.replace("│", " ").replace("╭", " ").replace("╰", " ").replace("─", " ").split())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A data session (reference 'setup1' + scene 's1') and a dark-frame session, both written by the recorder."""
    root = tmp_path_factory.mktemp("sessions")
    data, darks = root / "data.h5", root / "darks.h5"
    ref = invoke("reference", *EMU, "--name", "setup1", "--exposure-us", "5000", "--gain-db", "4.5", "--frames", "2", "--out", str(data))
    assert ref.exit_code == 0, ref.output
    rec = invoke("record", *EMU, "--scene", "s1", "--k", "1,2", "--exposure-us", "5000", "--gain-db", "4.5", "--frames", "2",
                 "--date", "0119", "--fps", "100", "--out", str(data))
    assert rec.exit_code == 0, rec.output
    drk = invoke("darks", *EMU, "--k", "1", "--exposure-us", "2000", "--gain-db", "0", "--frames", "2", "--out", str(darks))
    assert drk.exit_code == 0, drk.output
    return {"data": data, "darks": darks}


def copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


# --- darks and data apart ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_darks_into_a_data_session_refused_and_the_session_unchanged(recorded: dict[str, Path], tmp_path: Path) -> None:
    session = copy(recorded["data"], tmp_path / "night.h5")
    before = digest(session)
    res = invoke("darks", *EMU, "--k", "1", "--exposure-us", "2000", "--gain-db", "0", "--frames", "2", "--out", str(session))
    assert res.exit_code == 2, res.output
    assert (f"--out {session}: a data session holding scene 's1' and reference 'setup1'; dark frames go into a session file "
            "of their own (choose another --out)") in flat(res.output)
    assert digest(session) == before
    with SessionReader(session) as r:
        assert r.scenes() == ["s1"] and r.references() == ["setup1"]


@pytest.mark.slow
def test_darks_session_is_marked_from_its_first_frame_and_accepts_nothing_else(recorded: dict[str, Path], tmp_path: Path) -> None:
    darks = copy(recorded["darks"], tmp_path / "darks.h5")
    assert what_is(darks) == "dark-frame session"
    with SessionReader(darks) as r:
        assert r.scenes() == ["darks"] and r.scene_meta("darks")["kind"] == "darks" and r.references() == []
    before = digest(darks)
    scene = invoke("record", *EMU, "--scene", "s2", "--k", "1", "--exposure-us", "5000", "--gain-db", "4.5", "--frames", "2", "--out", str(darks))
    assert scene.exit_code == 2, scene.output
    assert (f"--out {darks}: holds dark frames (a dark-frame session); scenes and references go into a session file apart "
            "from the darks (choose another --out)") in flat(scene.output)
    ref = invoke("reference", *EMU, "--name", "r", "--exposure-us", "5000", "--gain-db", "4.5", "--frames", "2", "--out", str(darks))
    assert ref.exit_code == 2 and "holds dark frames (a dark-frame session)" in flat(ref.output)
    assert digest(darks) == before
    with SessionReader(darks) as r:
        assert r.scenes() == ["darks"] and r.references() == []


@pytest.mark.slow
def test_interrupted_darks_stay_a_dark_frame_session_and_resume_as_one(tmp_path: Path) -> None:
    from rig.capture import DARKS_KIND, CaptureSession, SceneSpec
    from rig.config import emulated_config
    from rig.recorder import CaptureStats

    darks = tmp_path / "darks.h5"
    session = CaptureSession(emulated_config(roi={"width": 64, "height": 48}, frame_rate_hz=100.0), darks, emulated=True)

    def ctrl_c(stats: CaptureStats) -> None:
        if stats.kept == 1:
            raise KeyboardInterrupt

    session._progress = ctrl_c
    session._writer()._progress_interval_s = 0.0
    try:
        plan = session.plan(base_exposure_us=2000, base_gain_db=0.0, ks=[1, 2], frames=3)
        with pytest.raises(KeyboardInterrupt):
            session.record_scene(SceneSpec("darks", "0119", "", 0, plan, 100.0, kind=DARKS_KIND))
    finally:
        session.close()
    assert what_is(darks) == "dark-frame session"  # before: a data session with a scene "darks", exported as pairs
    scene = invoke("record", *EMU, "--scene", "s1", "--k", "1", "--exposure-us", "5000", "--gain-db", "4.5", "--frames", "2", "--out", str(darks))
    assert scene.exit_code == 2 and "holds dark frames" in flat(scene.output)
    res = invoke("resume", str(darks))
    assert res.exit_code == 0, res.output
    assert "/scenes/darks/steps/2: 3 pairs (3 new)" in res.output
    with SessionReader(darks) as r:
        assert r.scene_meta("darks")["kind"] == "darks" and [len(r.frames_table("darks", k)) for k in ("1", "2")] == [3, 3]
    assert what_is(darks) == "dark-frame session"


@pytest.mark.slow
def test_library_refuses_a_darks_scene_into_a_data_session(recorded: dict[str, Path], tmp_path: Path) -> None:
    from rig.capture import DARKS_KIND, CaptureSession, SceneSpec
    from rig.config import emulated_config

    session_file = copy(recorded["data"], tmp_path / "night.h5")
    before = digest(session_file)
    with CaptureSession(emulated_config(roi={"width": 64, "height": 48}, frame_rate_hz=100.0), session_file, emulated=True) as session:
        plan = session.plan(base_exposure_us=2000, base_gain_db=0.0, ks=[1], frames=2)
        with pytest.raises(UsageError, match="a data session holding scene 's1' and reference 'setup1'"):
            session.record_scene(SceneSpec("darks", "0119", "", 0, plan, 100.0, kind=DARKS_KIND))
    assert digest(session_file) == before


@pytest.mark.slow
def test_capture_out_a_file_of_another_kind_refused(tmp_path: Path) -> None:
    annotations = copy(OFFICIAL_LL_ALL, tmp_path / "ExLPose_test_LL.json")
    before = digest(annotations)
    for command in (
        ["record", *EMU, "--scene", "s1", "--k", "1", "--exposure-us", "5000", "--gain-db", "4.5", "--frames", "2"],
        ["reference", *EMU, "--name", "r", "--exposure-us", "5000", "--gain-db", "4.5", "--frames", "2"],
    ):
        res = invoke(*command, "--out", str(annotations))
        assert res.exit_code == 2, res.output
        assert (f"--out {annotations}: already holds an annotation file, not a capture session; refusing to replace it "
                "(choose another --out)") in flat(res.output)
    drk = invoke("darks", *EMU, "--k", "1", "--exposure-us", "2000", "--gain-db", "0", "--frames", "2", "--out", str(annotations))
    assert drk.exit_code == 2 and f"--out {annotations}: already holds an annotation file, not a dark-frame session" in flat(drk.output)
    assert digest(annotations) == before
    plain = tmp_path / "other.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = [1, 2, 3]
    res = invoke("record", *EMU, "--scene", "s1", "--k", "1", "--exposure-us", "5000", "--gain-db", "4.5", "--frames", "2", "--out", str(plain))
    assert res.exit_code == 2 and "already holds an HDF5 file, not a capture session" in flat(res.output)


# --- a session another process holds open ------------------------------------------------------------------------

HOLD = textwrap.dedent("""
    import sys, time, h5py
    f = h5py.File(sys.argv[1], sys.argv[2])
    print("ready", flush=True)
    sys.stdin.read()
""")


class Holder:
    """A second Python process holding a file open with h5py until it is told to stop."""

    def __init__(self, path: Path, mode: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        self.name = Path(f"/proc/{self.proc.pid}/comm").read_text().strip()

    def __enter__(self) -> "Holder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.communicate(timeout=30)


@pytest.mark.slow
def test_locked_session_names_the_process_holding_it(recorded: dict[str, Path], tmp_path: Path) -> None:
    from rig.writer import SessionWriter

    session = copy(recorded["data"], tmp_path / "night.h5")
    with Holder(session, "r+") as holder:
        in_use = f"{session}: in use by process {holder.proc.pid} ({holder.name})"
        with pytest.raises(InputError) as read:
            SessionReader(session)
        assert str(read.value).startswith(in_use), read.value
        assert "unable to lock" not in str(read.value)
        with pytest.raises(UsageError) as append:
            SessionWriter(session)
        assert str(append.value).startswith(in_use), append.value
        inspect = invoke("inspect", str(session))
        assert inspect.exit_code == 2 and in_use in flat(inspect.output)
        rec = invoke("record", *EMU, "--scene", "s2", "--k", "1", "--exposure-us", "5000", "--gain-db", "4.5", "--frames", "2", "--out", str(session))
        assert rec.exit_code == 2 and in_use in flat(rec.output), rec.output
    with Holder(session, "r") as reader:  # a reader's shared lock keeps the recorder out too
        with pytest.raises(UsageError, match=rf"night.h5: in use by process {reader.proc.pid} \("):
            SessionWriter(session)
    with SessionReader(session) as r:  # and once they are gone the session opens as before
        assert r.scenes() == ["s1"]


@pytest.mark.slow
def test_locked_session_without_a_known_holder_says_another_process(recorded: dict[str, Path], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from exlpose_data import session_format

    session = copy(recorded["data"], tmp_path / "night.h5")
    # As for another user's process: neither its file descriptors nor /proc/locks tell who it is.
    monkeypatch.setattr(session_format, "_pids_with_open", lambda path: [])
    monkeypatch.setattr(session_format, "_pids_locking", lambda path: [])
    with Holder(session, "r+"), pytest.raises(InputError, match=r"night.h5: in use by another process; "):
        SessionReader(session)


# --- numeric options --------------------------------------------------------------------------------------------

RECORD = ["record", "--emulate", "--scene", "s1", "--exposure-us", "5000", "--gain-db", "4.5"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["record", "--emulate", "--scene", "s1", "--exposure-us", "nan", "--gain-db", "4.5"], "--exposure-us nan: expected a finite number"),
        (["record", "--emulate", "--scene", "s1", "--exposure-us", "inf", "--gain-db", "4.5"], "--exposure-us inf: expected a finite number"),
        (["record", "--emulate", "--scene", "s1", "--exposure-us", "5000", "--gain-db", "-inf"], "--gain-db -inf: expected a finite number"),
        ([*RECORD, "--ll-gain-db", "abc"], "--ll-gain-db abc: expected a finite number"),
        ([*RECORD, "--fps", "nan"], "--fps nan: expected a finite number"),
        ([*RECORD, "--frames", "nan"], "--frames nan: expected a whole number"),
        ([*RECORD, "--frames", "2.5"], "--frames 2.5: expected a whole number"),
        ([*RECORD, "--video-id", "inf"], "--video-id inf: expected a whole number"),
        ([*RECORD, "--k", "1,nan"], "--k 1,nan: expected comma-separated finite numbers like 1,2,4,8,12"),
        (["plan", "--exposure-us", "1e999", "--gain-db", "4.5"], "--exposure-us 1e999: expected a finite number"),
        (["reference", "--emulate", "--name", "r", "--exposure-us", "5000", "--ll-exposure-us", "nan", "--gain-db", "4.5"],
         "--ll-exposure-us nan: expected a finite number"),
        (["darks", "--emulate", "--exposure-us", "NaN", "--gain-db", "0"], "--exposure-us NaN: expected a finite number"),
        (["sync-check", "--config", "rig.yaml", "--exposure-us", "inf"], "--exposure-us inf: expected a finite number"),
        (["preview", "--emulate", "--exposure-us", "5000", "--gain-db", "0", "--port", "x"], "--port x: expected a whole number"),
    ],
)
def test_numeric_option_that_is_no_finite_number_is_named(tmp_path: Path, args: list[str], message: str) -> None:
    res = runner.invoke(app, [*args, *(["--out", str(tmp_path / "s.h5")] if args[0] in ("record", "reference", "darks") else [])])
    assert res.exit_code == 2, res.output
    assert message in flat(res.output)
    assert "Fraction" not in res.output and "Invalid value" not in res.output
    assert not (tmp_path / "s.h5").exists()


def test_numeric_option_error_is_one_line_from_the_console_script(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        app(["plan", "--exposure-us", "nan", "--gain-db", "4.5"], prog_name="exlpose-capture")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: --exposure-us nan: expected a finite number (see 'exlpose-capture plan --help')\n"


# --- the rig config through the strict loader -------------------------------------------------------------------


def test_duplicate_yaml_key_in_a_rig_config_is_refused_with_line_and_column(tmp_path: Path) -> None:
    cfg = tmp_path / "rig.yaml"
    cfg.write_text("ll: {serial: '0815-0000'}\nwl: {serial: '0815-0001'}\nframe_rate_hz: 10\nroi: {width: 64, height: 48}\nframe_rate_hz: 100\n")
    with pytest.raises(InputError) as exc:
        load_config(cfg)
    assert str(exc.value) == f"{cfg}: line 5 column 1: key 'frame_rate_hz' given more than once (first on line 3; only the last would be kept)"
    res = invoke("config", "check", str(cfg), "--emulate")
    assert res.exit_code == 2 and f"{cfg}: line 5 column 1: key 'frame_rate_hz' given more than once" in flat(res.output)
    nested = tmp_path / "nested.yaml"
    nested.write_text("ll: {serial: '0815-0000', serial: '0815-0002'}\nwl: {serial: '0815-0001'}\n")
    with pytest.raises(InputError, match=r"nested.yaml: line 1 column 27: key 'serial' given more than once"):
        load_config(nested)
    as_json = tmp_path / "rig.json"
    as_json.write_text('{"ll": {"serial": "0815-0000"}, "wl": {"serial": "0815-0001"}, "nd_factor": 100, "nd_factor": 10}')
    with pytest.raises(InputError, match=r"rig.json: .*nd_factor"):
        load_config(as_json)
    nan = tmp_path / "nan.yaml"
    nan.write_text("ll: {serial: '0815-0000'}\nwl: {serial: '0815-0001'}\nframe_rate_hz: .nan\n")
    with pytest.raises(InputError, match=r"nan.yaml: frame_rate_hz: nan is not a finite number"):
        load_config(nan)


@pytest.mark.slow
def test_save_pfs_never_writes_over_a_pfs_the_config_loads(tmp_path: Path) -> None:
    cfg = tmp_path / "rig.yaml"
    cfg.write_text("ll: {serial: '0815-0000'}\nwl: {serial: '0815-0001'}\nroi: {width: 64, height: 48}\n")
    first = invoke("config", "check", str(cfg), "--emulate", "--save-pfs", str(tmp_path / "pfs"))
    assert first.exit_code == 0, first.output
    # the saved LL settings become the config's own .pfs: saving again into that folder would replace an input
    cfg.write_text("ll: {serial: '0815-0000', pfs: pfs/ll_0815-0000.pfs}\nwl: {serial: '0815-0001'}\nroi: {width: 64, height: 48}\n")
    before = digest(tmp_path / "pfs" / "ll_0815-0000.pfs")
    again = invoke("config", "check", str(cfg), "--emulate", "--save-pfs", str(tmp_path / "pfs"))
    assert again.exit_code == 2, again.output
    assert "--save-pfs" in again.output and "would replace its input" in flat(again.output)
    assert digest(tmp_path / "pfs" / "ll_0815-0000.pfs") == before
    elsewhere = invoke("config", "check", str(cfg), "--emulate", "--save-pfs", str(tmp_path / "pfs2"))
    assert elsewhere.exit_code == 0 and (tmp_path / "pfs2" / "ll_0815-0000.pfs").is_file()
