import json
import os
import signal
import subprocess
import sys
import time

import pytest

from exlpose_data.atomic import atomic_path, write_json_atomic


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "half')
            raise RuntimeError("disk full")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_temp_keeps_suffix_for_format_sniffing_writers(tmp_path):
    with atomic_path(tmp_path / "img.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "img.png").read_bytes() == b"x"


def test_killed_writer_never_leaves_a_half_written_target(tmp_path):
    """A process killed in the middle of a large atomic write leaves the previous content intact."""
    target = tmp_path / "big.json"
    write_json_atomic(target, {"v": "old"})
    code = (
        "import sys; from exlpose_data.atomic import atomic_path\n"
        f"with atomic_path({str(target)!r}) as t:\n"
        "    f = open(t, 'w'); f.write('{\"v\": \"'); f.flush(); print('writing', flush=True)\n"
        "    import time; time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads(target.read_text()) == {"v": "old"}
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "big.json"]
    assert all(".tmp-" in n and n.startswith(".") for n in leftovers)  # hidden, ignored by readers and manifests


def test_result_has_umask_permissions_not_mkstemp_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "p.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "p.json").stat().st_mode & 0o777 == 0o644


def test_errors_name_the_target_not_the_temporary(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError) as exc:
        write_json_atomic(tmp_path / "folder", {})
    assert exc.value.filename == str(tmp_path / "folder")
    with pytest.raises(OSError) as exc:
        with atomic_path(tmp_path / "t.json") as tmp:
            raise OSError(28, "No space left on device", str(tmp))
    assert exc.value.filename == str(tmp_path / "t.json") and exc.value.errno == 28
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]
