"""The core of data safety: the strict JSON/YAML door, the output guard and provenance records."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import exlpose_data

from exlpose_data.atomic import write_json_atomic
from exlpose_data.errors import InputError, UsageError
from exlpose_data.jsonio import MAX_DEPTH, dumps_json, load_json, load_yaml, loads_json, loads_yaml
from exlpose_data.layout import rebuild_manifest, verify_dataset
from exlpose_data.outputs import building_folder, check_output, what_is
from exlpose_data.provenance import RECORD_FILE, incomplete_steps, read_record, recorded_run

# --- the strict door ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"images": [{"id": 1, "width": 319, "width": 9999}]}', "images[0]: key 'width' given more than once"),
        ('{"annotations": [{"keypoints": [1, 2, 2], "keypoints": []}]}', "annotations[0]: key 'keypoints' given more than once"),
        ('{"bbox": [1, NaN, 3, 4]}', "bbox[1]: NaN is not a number JSON allows"),
        ('{"bbox": [1, 2, -Infinity, 4]}', "bbox[2]: -Infinity is not a number JSON allows"),
        ('{"area": 1e400}', "area: number 1e400 is out of range"),
        ('{"id": 9007199254740993}', "id: integer 9007199254740993 is beyond 2^53"),
        ('{"id": ' + "7" * 400 + "}", "id: integer of 400 digits"),
        ('{"a": 1,}', "not valid JSON (Expecting property name enclosed in double quotes: line 1 column 9)"),
    ],
)
def test_strict_json_refuses_with_the_place(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "ann.json"
    f.write_text(text)
    with pytest.raises(InputError) as err:
        load_json(f)
    assert str(err.value).startswith(f"{f}: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_strict_json_refuses_deep_nesting_without_a_traceback(tmp_path: Path) -> None:
    f = tmp_path / "deep.json"
    f.write_text("[" * 100_000)
    with pytest.raises(InputError, match="nested deeper than 64 levels"):
        load_json(f)
    # within Python's parser's reach, but beyond the sane depth: named by where
    with pytest.raises(InputError, match=r"\[0\]\[0\]\[0\]\.\.\.\[0\]\[0\]: nested deeper than 64"):
        loads_json("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "x.json")
    assert loads_json("[" * MAX_DEPTH + "]" * MAX_DEPTH, "x.json") is not None


def test_strict_json_accepts_a_bom_and_the_largest_safe_integer(tmp_path: Path) -> None:
    f = tmp_path / "bom.json"
    f.write_bytes(b'\xef\xbb\xbf{"id": 9007199254740992, "x": [1.5, -0.0]}')
    assert load_json(f) == {"id": 2**53, "x": [1.5, -0.0]}
    assert type(load_json(f)) is dict  # no marker subclass leaks out


def test_not_utf8_is_named_with_its_line(tmp_path: Path) -> None:
    f = tmp_path / "latin.json"
    f.write_bytes(b'{\n"name": "caf\xe9"}')
    with pytest.raises(InputError, match=r"not UTF-8 text \(byte 14, line 2\)"):
        load_json(f)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ll:\n  serial: A\n  gain_db: 1\n  serial: B\n", "line 4 column 3: key 'serial' given more than once (first on line 2"),
        ("exposure_us: .nan\n", "exposure_us: nan is not a finite number"),
        ("x: [1, .inf]\n", "x[1]: inf is not a finite number"),
        ("id: 123456789012345678901\n", "id: integer 123456789012345678901 is beyond 2^53"),
    ],
)
def test_strict_yaml(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "rig.yaml"
    f.write_text(text)
    with pytest.raises(InputError) as err:
        load_yaml(f)
    assert str(err.value).startswith(f"{f}: ") and message in str(err.value)


def test_yaml_without_problems_and_with_bom() -> None:
    assert loads_yaml("\ufeffa: 1\nb: {c: [1, 2]}\n") == {"a": 1, "b": {"c": [1, 2]}}


def test_writers_obey_the_readers_rules(tmp_path: Path) -> None:
    out = tmp_path / "ann.json"
    for bad, where in (({"x": [1.0, float("inf")]}, "x[1]"), ({"id": 10**20}, "id"), ({"a": np.float32("nan")}, "a")):
        with pytest.raises(InputError) as err:
            write_json_atomic(out, bad)
        assert str(err.value).startswith(f"{out}: {where}: ")
        assert not out.exists()
    write_json_atomic(out, {"id": 2**53, "x": [0.5]})
    assert load_json(out) == {"id": 2**53, "x": [0.5]}
    assert dumps_json({"a": [1, 2]}) == '{"a":[1,2]}'


# --- what is there, and the guard -------------------------------------------------------------------------------


def _session(path: Path, *, darks: bool = False) -> Path:
    with h5py.File(path, "w") as f:
        f.attrs["rig_config"] = "{}"
        g = f.create_group("scenes/darks" if darks else "scenes/s0")
        if darks:
            g.attrs["kind"] = "darks"
        g.create_dataset("steps/1/ll", data=np.zeros((1, 4, 4), np.uint16))
    return path


def test_what_is_names_by_content(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"images": [], "annotations": [], "categories": []}')
    (tmp_path / "ALIGN.json").write_text('{"format": "exlpose-align/1", "homography": [[1,0,0],[0,1,0],[0,0,1]], "crop": [0,0,4,4]}')
    (tmp_path / "weird.txt").write_text('{"images": [], "annotations": []}')
    _session(tmp_path / "s.h5")
    _session(tmp_path / "d.h5", darks=True)
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f.attrs["format"] = "exlpose-pack"
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "manifest.json").write_text('{"version": 1, "files": {}}')
    (tmp_path / "empty").mkdir()
    assert what_is(tmp_path / "a.json") == "annotation file"
    assert what_is(tmp_path / "ALIGN.json") == "alignment model"
    assert what_is(tmp_path / "weird.txt") == "annotation file"  # by content, not by name
    assert what_is(tmp_path / "s.h5") == "capture session"
    assert what_is(tmp_path / "d.h5") == "dark-frame session"
    assert what_is(tmp_path / "p.h5") == "pack"
    assert what_is(tmp_path / "rel") == "release"
    assert what_is(tmp_path / "empty") is None
    assert what_is(tmp_path / "nothing") is None


def test_guard_refuses_input_as_output_and_other_kinds(tmp_path: Path) -> None:
    session = _session(tmp_path / "night.h5")
    before = session.read_bytes()
    with pytest.raises(UsageError, match=r"--out .*night\.h5: is also an input of this command"):
        check_output(session, inputs=[session], writes="file", produces="alignment model", replaces=["alignment model"], overwrite=True)
    # the same file under another spelling (a symlink, a relative path) is the same input
    (tmp_path / "link.h5").symlink_to(session)
    with pytest.raises(UsageError, match="is also an input"):
        check_output(tmp_path / "link.h5", inputs=[session], writes="file", produces="alignment model")
    with pytest.raises(UsageError, match=r"already holds a capture session, not an alignment model; refusing"):
        check_output(session, inputs=[], writes="file", produces="alignment model", replaces=["alignment model"], overwrite=True)
    assert session.read_bytes() == before


def test_guard_folder_rules(tmp_path: Path) -> None:
    ds = tmp_path / "DS"
    (ds / "annotations").mkdir(parents=True)
    ann = ds / "annotations" / "ExLPose_train_WL.json"
    ann.write_text('{"images": [], "annotations": []}')
    rebuild_manifest(ds)
    with pytest.raises(UsageError, match="lies inside the input"):
        check_output(ds / "annotations" / "pack.h5", inputs=[ds], writes="file", produces="pack")
    with pytest.raises(UsageError, match=r"would replace its input .* with the split's ExLPose_train_WL\.json"):
        check_output(ds / "annotations", inputs=[ann], writes="folder", produces="split", replaces=["folder"], resumes=True,
                     files=["ExLPose_train_WL.json", "ExLPose_test_WL.json"])
    # a folder that holds an input it does not write is fine (by-gain next to the file it reads)
    check_output(ds / "annotations", inputs=[ann], writes="folder", produces="split", replaces=["folder"], resumes=True,
                 files=["ExLPose_test_LL-N.json"])
    with pytest.raises(UsageError, match="holds the input"):
        check_output(tmp_path, inputs=[ann], writes="file", produces="pack")
    with pytest.raises(UsageError, match=r"already holds a release; pass --overwrite"):
        check_output(ds, inputs=[], writes="folder", produces="release", replaces=["release"])
    with pytest.raises(UsageError, match=r"is a file \(annotation file\), expected a folder"):
        check_output(ann, inputs=[], writes="folder", produces="release", replaces=["release"])


def test_building_folder_swaps_only_on_success(tmp_path: Path) -> None:
    out = tmp_path / "release"
    out.mkdir()
    (out / "old.png").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with building_folder(out, overwrite=True) as build:
            (build / "new.png").write_bytes(b"new")
            raise RuntimeError("disk full")
    assert sorted(p.name for p in out.iterdir()) == ["old.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release"]  # no building folder left
    with building_folder(out, overwrite=True) as build:
        assert build != out
        (build / "new.png").write_bytes(b"new")
    assert sorted(p.name for p in out.iterdir()) == ["new.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release"]


# --- provenance -----------------------------------------------------------------------------------------------------


def _split_run(folder: Path, src: Path, val: float | None, *, overwrite: bool = False) -> list[str]:
    with recorded_run(folder, "split by-scene", command="exlpose-split by-scene", settings={"val_fraction": val},
                      inputs={"annotations": src}, overwrite=overwrite) as run:
        names = ["ExLPose_train_WL.json", "ExLPose_test_WL.json"] + (["ExLPose_val_WL.json"] if val else [])
        for name in names:
            write_json_atomic(folder / name, {"images": []})
            run.own(name)
    return run.removed


def test_provenance_refuses_other_settings_and_overwrite_removes_what_is_no_longer_made(tmp_path: Path) -> None:
    src = tmp_path / "all.json"
    src.write_text('{"images": []}')
    out = tmp_path / "ann"
    assert _split_run(out, src, 0.1) == []
    record = read_record(out)["steps"]["split by-scene"]
    assert record["state"] == "complete" and record["settings"] == {"val_fraction": 0.1}
    assert record["inputs"]["annotations"]["sha256"] == hashlib.sha256(b'{"images": []}').hexdigest()
    assert record["command"] == "exlpose-split by-scene" and record["toolkit"] == exlpose_data.__version__
    assert _split_run(out, src, 0.1) == []  # same settings: a resume
    with pytest.raises(UsageError, match=r"split by-scene was written there with other settings or inputs \(val_fraction 0\.1 -> None\); pass --overwrite"):
        _split_run(out, src, None)
    assert (out / "ExLPose_val_WL.json").is_file()
    assert _split_run(out, src, None, overwrite=True) == ["ExLPose_val_WL.json"]
    assert sorted(p.name for p in out.iterdir()) == [RECORD_FILE, "ExLPose_test_WL.json", "ExLPose_train_WL.json"]
    src.write_text('{"images": [1]}')
    with pytest.raises(UsageError, match=r"input annotations changed"):
        _split_run(out, src, None)


def test_shared_settings_may_not_differ_between_steps(tmp_path: Path) -> None:
    for session, bits in (("a.h5", 8), ("b.h5", 8)):
        with recorded_run(tmp_path, f"align apply {session}", command="exlpose-align apply", settings={"bits": bits}, inputs={}, shared=["bits"]):
            pass
    with pytest.raises(UsageError, match=r"align apply a\.h5 wrote it with other settings \(bits 8 -> 16\); one folder must not mix them"):
        with recorded_run(tmp_path, "align apply c.h5", command="exlpose-align apply", settings={"bits": 16}, inputs={}, shared=["bits"], overwrite=True):
            pass


def test_a_failed_run_stays_incomplete_and_verify_reports_it(tmp_path: Path) -> None:
    root = tmp_path / "release"
    (root / "bright").mkdir(parents=True)
    (root / "bright" / "a.png").write_bytes(b"png")
    rebuild_manifest(root)
    with pytest.raises(OSError):
        with recorded_run(root, "align apply night.h5", command="exlpose-align apply", settings={}, inputs={}) as run:
            run.own("bright/a.png")
            raise OSError(28, "No space left on device")
    assert verify_dataset(root) == []  # the record is not a payload file
    lines = incomplete_steps(root)
    assert len(lines) == 1 and "align apply night.h5 did not finish" in lines[0]
    assert read_record(root)["steps"]["align apply night.h5"]["files"] == ["bright/a.png"]
    from typer.testing import CliRunner

    from exlpose.cli import app

    result = CliRunner().invoke(app, ["verify", str(root)])
    assert result.exit_code == 1
    assert "incomplete: " in result.output and "did not finish" in result.output


def test_a_broken_record_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / RECORD_FILE).write_text('{"format": "exlpose-provenance", "version": 1, "steps": {}, "steps": {}}')
    with pytest.raises(InputError, match=r"key 'steps' given more than once"):
        with recorded_run(tmp_path, "x", command="c", settings={}, inputs={}):
            (tmp_path / "written.txt").write_text("x")
    assert not (tmp_path / "written.txt").exists()


@pytest.mark.slow
def test_sigterm_runs_cleanup_and_exits_143(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from exlpose_data.cli.common import handle_errors
        from exlpose_data.provenance import recorded_run

        @handle_errors
        def main():
            with recorded_run({str(tmp_path)!r}, "long", command="c", settings={{}}, inputs={{}}):
                print("started", flush=True)
                time.sleep(60)

        try:
            main()
        except SystemExit as exc:
            raise
        except BaseException as exc:  # typer.Exit carries the code
            sys.exit(getattr(exc, "exit_code", 99))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert "interrupted (SIGTERM)" in err
    assert json.loads((tmp_path / RECORD_FILE).read_text())["steps"]["long"]["state"] == "incomplete"
    assert not any(p.name.startswith(".") and "tmp" in p.name for p in tmp_path.iterdir())
    assert os.path.exists(tmp_path / RECORD_FILE)


def test_demo_refuses_a_folder_of_another_kind_and_an_unfinished_demo_without_overwrite(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from exlpose.cli import app

    release = tmp_path / "release"
    (release / "bright").mkdir(parents=True)
    (release / "bright" / "a.png").write_bytes(b"png")
    rebuild_manifest(release)
    before = sorted(p.relative_to(release) for p in release.rglob("*"))
    result = CliRunner().invoke(app, ["demo", "--out", str(release), "--quick", "--overwrite"])
    assert result.exit_code == 2
    assert "already holds a release, not a demo folder; refusing to replace it" in result.output
    assert sorted(p.relative_to(release) for p in release.rglob("*")) == before
    # an interrupted demo has no report yet, but its record says what it is
    run = tmp_path / "demo-run"
    with pytest.raises(KeyboardInterrupt):
        with recorded_run(run, "demo", command="exlpose demo", settings={}, inputs={}):
            raise KeyboardInterrupt
    assert what_is(run) == "demo folder"
    result = CliRunner().invoke(app, ["demo", "--out", str(run), "--quick"])
    assert result.exit_code == 2 and "already holds a demo folder; pass --overwrite" in result.output


def test_new_beside_leaves_nothing_after_a_failed_first_run(tmp_path: Path) -> None:
    out = tmp_path / "review"
    with pytest.raises(RuntimeError):
        with building_folder(out, overwrite=False, new_beside=True) as build:
            (build / "index.html").write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    out.mkdir()  # an empty folder made by the user is taken over
    with building_folder(out, overwrite=False, new_beside=True) as build:
        assert build != out
        (build / "index.html").write_text("done")
    assert [p.name for p in tmp_path.iterdir()] == ["review"] and (out / "index.html").read_text() == "done"


WRITING_COMMANDS = [
    "align estimate", "align calibrate", "align apply", "annotate import", "annotate export", "annotate tasks",
    "annotate review", "split by-scene", "split by-gain", "pack", "export official", "simulate release",
    "simulate feeds", "train", "train import-official", "predict", "eval model", "eval gaps", "eval table",
    "enhance lime", "enhance onnx", "validate", "demo", "export onnx", "detect train", "detect eval", "detect predict",
]


@pytest.mark.parametrize("command", WRITING_COMMANDS)
def test_every_command_that_can_replace_an_output_says_so_in_its_help(command: str) -> None:
    from typer.testing import CliRunner

    from exlpose.cli import app

    result = CliRunner().invoke(app, [*command.split(), "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "--overwrite" in result.output


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["align", "check", "ALIGN.json", "--max-median-px", "nan"], "--max-median-px"),
        (["split", "by-gain", "a.json", "--out", "o", "--thresholds", "15", "inf"], "--thresholds"),
        (["annotate", "tasks", "ROOT", "--out", "o", "--ll-gain", "nan"], "--ll-gain"),
        (["capture", "plan", "--preset", "outdoor", "--exposure-us", "nan", "--gain-db", "4"], "--exposure-us"),
    ],
)
def test_number_options_of_every_tool_name_themselves(tmp_path: Path, capsys, args: list[str], option: str) -> None:
    from exlpose.cli import app

    with pytest.raises(SystemExit) as exc:
        app(args, prog_name="exlpose")
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.startswith(f"error: {option} ") and "expected a finite number" in err and len(err.splitlines()) == 1, err
