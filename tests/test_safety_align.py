"""exlpose-align never loses or mixes what a user has (issue 21): guarded outputs, provenance of a release's
pairs, strict reading of ALIGN.json and of the release before writing, interrupted and failed runs.

Sessions are HDF5 files in the documented session format (``tests/test_align_cli.make_session``); releases are
written by ``exlpose-align apply`` itself.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from exlpose_data.align import apply as apply_module
from exlpose_data.align.model import AlignModel
from exlpose_data.cli.align import app
from exlpose_data.cli.core import app as core_app
from exlpose_data.layout import MANIFEST_FILE, PAIRS_FILE, read_pairs, sha256_file, verify_dataset
from exlpose_data.outputs import Interrupted
from exlpose_data.provenance import RECORD_FILE, read_record

# The session, its true homography and its ALIGN.json are the align CLI tests' own fixtures (module-scoped here too).
from .test_align_cli import align_json, make_session, session, truth  # noqa: F401

runner = CliRunner()


@pytest.fixture(scope="module")
def other_align_json(tmp_path_factory, align_json) -> Path:
    """The same alignment moved by 0.2 px: another ALIGN.json whose crop is still valid."""
    model = AlignModel.load(align_json)
    h = model.matrix.copy()
    h[0, 2] += 0.2
    out = tmp_path_factory.mktemp("b") / "ALIGN2.json"
    model.model_copy(update={"homography": h.tolist()}).save(out)
    return out


def _apply(session: Path, align: Path, root: Path, *extra: str):
    return runner.invoke(app, ["apply", str(session), str(align), "--out", str(root), "--workers", "1", "-q", *extra])


def _pngs(root: Path) -> list[Path]:
    return sorted(root.rglob("*.png"))


def _one_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


# -- estimate / calibrate ----------------------------------------------------------------------------------------


def test_estimate_refuses_to_replace_its_own_session(tmp_path, truth) -> None:
    s = make_session(tmp_path / "night.h5", h_true=truth, ks=(1,), n_frames=1)
    before = sha256_file(s)
    r = runner.invoke(app, ["estimate", str(s), "--out", str(s)])
    assert r.exit_code == 2
    assert "is also an input of this command" in _one_line(r.output) and str(s) in r.output
    assert sha256_file(s) == before
    # Another session at --out is refused even with --overwrite: only an ALIGN.json may be replaced.
    other = tmp_path / "other.h5"
    shutil.copyfile(s, other)
    r = runner.invoke(app, ["estimate", str(s), "--out", str(other), "--overwrite"])
    assert r.exit_code == 2 and "already holds a capture session" in _one_line(r.output)
    assert sha256_file(other) == before


def test_estimate_over_an_existing_align_json_needs_overwrite(tmp_path, session, align_json) -> None:
    out = tmp_path / "ALIGN.json"
    out.write_bytes(b'{"note": "hand-kept", ' + align_json.read_bytes().lstrip()[1:])
    before = out.read_bytes()
    r = runner.invoke(app, ["estimate", str(session), "--out", str(out)])
    assert r.exit_code == 2
    line = _one_line(r.output)
    assert f"--out {out}: already holds a" in line and "pass --overwrite to replace it" in line
    assert out.read_bytes() == before
    r = runner.invoke(app, ["estimate", str(session), "--out", str(out), "--force"])  # the old name still works
    assert r.exit_code == 0, r.output
    assert out.read_bytes() != before and AlignModel.load(out).mirror == "wl"


def test_calibrate_refuses_a_file_of_another_kind(tmp_path, session) -> None:
    before = sha256_file(session)
    r = runner.invoke(app, ["calibrate", "--ll", str(tmp_path / "a.png"), "--wl", str(tmp_path / "b.png"), "--out", str(session), "--overwrite"])
    assert r.exit_code == 2 and "already holds a capture session, not a lens calibration" in _one_line(r.output)
    assert sha256_file(session) == before


def test_duplicate_key_in_align_json_is_refused_with_file_and_place(tmp_path, session, align_json) -> None:
    text = align_json.read_text()
    data = json.loads(text)
    dup = tmp_path / "ALIGN.json"
    # A hand edit that leaves the old mirror behind: the last one would silently win.
    dup.write_text(text.replace('"mirror": "wl"', '"mirror": "none", "mirror": "wl"', 1))
    assert data["mirror"] == "wl" and dup.read_text() != text
    r = runner.invoke(app, ["check", str(dup)])
    assert r.exit_code == 2
    assert f"{dup}: (top level): key 'mirror' given more than once" in _one_line(r.output)
    root = tmp_path / "rel"
    r = _apply(session, dup, root)
    assert r.exit_code == 2 and "key 'mirror' given more than once" in r.output and not root.exists()


def test_duplicate_key_in_calib_json_is_refused(tmp_path) -> None:
    from exlpose_data.align.calibrate import load_calibration
    from exlpose_data.errors import InputError

    p = tmp_path / "CALIB.json"
    p.write_text('{"ll": {}, "ll": {}, "wl": {}}')
    with pytest.raises(InputError, match=r"CALIB.json: \(top level\): key 'll' given more than once"):
        load_calibration(p)


# -- apply: settings, inputs, other outputs ---------------------------------------------------------------------


def test_apply_rerun_with_other_bits_and_alignment_is_refused_then_overwritten(tmp_path, session, align_json, other_align_json) -> None:
    root = tmp_path / "rel"
    assert _apply(session, align_json, root).exit_code == 0
    pairs = read_pairs(root / PAIRS_FILE)
    digests = {p: sha256_file(p) for p in _pngs(root)}
    assert len(pairs) == 2 and len(digests) == 4

    r = _apply(session, other_align_json, root, "--bits", "16")
    assert r.exit_code == 2
    line = _one_line(r.output)
    assert "bits 8 -> 16" in line and "input alignment changed" in line and "pass --overwrite" in line
    assert {p: sha256_file(p) for p in _pngs(root)} == digests  # nothing written, nothing mixed

    # --overwrite rewrites every pair of this session (none skipped) and removes what it no longer writes.
    r = _apply(session, other_align_json, root, "--bits", "16", "--frames", "2", "--overwrite")
    assert r.exit_code == 0, r.output
    assert "4 pairs written, 0 already there, 4 files of the earlier run removed" in r.output
    new_pairs = read_pairs(root / PAIRS_FILE)
    assert len(new_pairs) == 4 and not set(new_pairs) & set(pairs)
    assert len(_pngs(root)) == 8
    for b, d in new_pairs:
        assert cv2.imread(str(root / b), cv2.IMREAD_UNCHANGED).dtype == np.uint16
        assert cv2.imread(str(root / d), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    manifest = json.loads((root / MANIFEST_FILE).read_text())["files"]
    assert not any(rel in manifest for pair in pairs for rel in pair)
    assert verify_dataset(root) == []
    entry = read_record(root)["steps"]["align apply session.h5"]
    assert entry["state"] == "complete" and entry["settings"]["bits"] == 16
    assert sorted(entry["files"]) == sorted(rel for pair in new_pairs for rel in pair)

    # Same settings again: resumes, skipping every pair.
    r = _apply(session, other_align_json, root, "--bits", "16", "--frames", "2")
    assert r.exit_code == 0 and "0 pairs written, 4 already there" in r.output


def test_a_release_never_mixes_bit_depths_across_sessions(tmp_path, truth, session, align_json) -> None:
    root = tmp_path / "rel"
    assert _apply(session, align_json, root).exit_code == 0
    second = make_session(tmp_path / "second.h5", h_true=truth, ks=(1,), n_frames=1)
    with h5py.File(second, "a") as f:
        f["scenes/s01"].attrs["video_id"] = 8
    before = sorted(p.name for p in _pngs(root))
    for extra in ((), ("--overwrite",)):
        r = _apply(second, align_json, root, "--bits", "16", *extra)
        assert r.exit_code == 2
        assert "align apply session.h5 wrote it with other settings (bits 8 -> 16)" in _one_line(r.output)
    assert sorted(p.name for p in _pngs(root)) == before
    r = _apply(second, align_json, root)
    assert r.exit_code == 0 and "1 pairs written" in r.output
    assert len(read_pairs(root / PAIRS_FILE)) == 3 and verify_dataset(root) == []


def test_apply_refuses_a_folder_or_file_of_another_kind(tmp_path, session, align_json) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8 not ours")
    for extra in ((), ("--overwrite",)):
        r = _apply(session, align_json, folder, *extra)
        assert r.exit_code == 2 and "already holds a folder, not a release" in _one_line(r.output)
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]
    before = sha256_file(session)
    r = _apply(session, align_json, session)
    assert r.exit_code == 2 and "is also an input of this command" in _one_line(r.output)
    assert sha256_file(session) == before


@pytest.mark.parametrize("broken", [MANIFEST_FILE, PAIRS_FILE, RECORD_FILE])
def test_broken_release_files_are_refused_before_any_image_is_written(tmp_path, session, align_json, broken) -> None:
    root = tmp_path / "rel"
    assert _apply(session, align_json, root).exit_code == 0
    for p in _pngs(root):  # make the next run write every pair again
        p.unlink()
    text = {MANIFEST_FILE: '{"version": 1, "files": {}, "files": {}}', PAIRS_FILE: "one-word-line\n", RECORD_FILE: "{"}[broken]
    (root / broken).write_text(text)
    record = (root / RECORD_FILE).read_bytes() if (root / RECORD_FILE).exists() else None
    r = _apply(session, align_json, root)
    assert _pngs(root) == []  # refused before the first pair, not found after five
    assert r.exit_code == 2
    assert str(root / broken) in _one_line(r.output)
    assert (root / broken).read_text() == text
    assert (root / RECORD_FILE).read_bytes() == record


# -- apply: interrupted and failed runs -------------------------------------------------------------------------


def _failing_writes(monkeypatch, at_call: int, exc: BaseException) -> None:
    real = apply_module.write_image_atomic
    calls = {"n": 0}

    def write(path, image, **kw):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise exc
        return real(path, image, **kw)

    monkeypatch.setattr(apply_module, "write_image_atomic", write)


@pytest.mark.parametrize(("exc", "code"), [(KeyboardInterrupt(), 130), (Interrupted(), 143)])
def test_interrupted_apply_is_marked_incomplete_and_verify_reports_it(tmp_path, monkeypatch, session, align_json, exc, code) -> None:
    root = tmp_path / "rel"
    _failing_writes(monkeypatch, 3, exc)  # the first image of the second pair
    r = _apply(session, align_json, root)
    assert r.exit_code == code and "interrupted" in r.output
    assert len(read_pairs(root / PAIRS_FILE)) == 1 and len(_pngs(root)) == 2
    assert read_record(root)["steps"]["align apply session.h5"]["state"] == "incomplete"
    v = runner.invoke(core_app, ["verify", str(root)])
    assert v.exit_code == 1
    assert "incomplete: " in v.output and "align apply session.h5 did not finish" in v.output
    assert "missing" not in v.output and "unlisted" not in v.output  # the finished pair is in the manifest
    monkeypatch.undo()
    r = _apply(session, align_json, root)  # the same command completes it
    assert r.exit_code == 0 and "1 pairs written, 1 already there" in r.output
    assert runner.invoke(core_app, ["verify", str(root)]).exit_code == 0


def test_disk_full_on_the_second_image_leaves_no_orphan(tmp_path, monkeypatch, session, align_json) -> None:
    root = tmp_path / "rel"
    _failing_writes(monkeypatch, 4, OSError(errno.ENOSPC, "No space left on device", str(root / "bright" / "x.png")))
    r = _apply(session, align_json, root)
    assert r.exit_code == 1 and "no space left on device; nothing half-written was kept" in _one_line(r.output)
    pairs = read_pairs(root / PAIRS_FILE)
    assert len(pairs) == 1
    assert sorted(p.relative_to(root).as_posix() for p in _pngs(root)) == sorted(pairs[0])
    assert not [p for p in root.rglob("*") if ".tmp-" in p.name]
    assert verify_dataset(root) == []
    assert read_record(root)["steps"]["align apply session.h5"]["state"] == "incomplete"


def test_check_plots_never_go_into_a_release(tmp_path, session, align_json) -> None:
    root = tmp_path / "rel"
    assert _apply(session, align_json, root).exit_code == 0
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    r = runner.invoke(app, ["check", str(align_json), "--plots", str(root)])
    assert r.exit_code == 2 and "--plots" in r.output and "already holds a release" in _one_line(r.output)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before
    r = runner.invoke(app, ["check", str(align_json), "--plots", str(tmp_path / "plots")])
    assert r.exit_code == 0 and (tmp_path / "plots" / "residuals.png").is_file()
