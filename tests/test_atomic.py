import json
import os
import signal
import subprocess
import sys
import time

import pytest

from exlpose_data.atomic import atomic_path, write_image_atomic, write_json_atomic


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


def test_write_image_atomic_round_trips_pixels_and_returns_the_file_hash(tmp_path):
    import hashlib

    import cv2
    import numpy as np

    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red in RGB order
    digest = write_image_atomic(tmp_path / "a.png", rgb, rgb=True, fast=True)
    back = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED)
    assert back[0, 0].tolist() == [0, 0, 200]  # stored BGR: red last
    assert digest == hashlib.sha256((tmp_path / "a.png").read_bytes()).hexdigest()
    raw = np.arange(12, dtype=np.uint16).reshape(3, 4) << 4
    write_image_atomic(tmp_path / "raw.png", raw)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "raw.png"), cv2.IMREAD_UNCHANGED), raw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "raw.png"]


def test_write_image_atomic_names_the_file_it_cannot_encode(tmp_path):
    import numpy as np

    with pytest.raises(OSError) as info:
        write_image_atomic(tmp_path / "x.jpg", np.zeros((4, 4, 3), np.float64))
    assert info.value.filename == str(tmp_path / "x.jpg") and info.value.strerror.startswith("cannot store float64 pixels as .jpg")
    with pytest.raises(OSError, match="cannot store uint16 pixels as .jpg"):
        write_image_atomic(tmp_path / "y.jpg", np.zeros((4, 4), np.uint16))
    with pytest.raises(OSError, match="cannot encode uint8 4x4 pixels as .nope"):
        write_image_atomic(tmp_path / "z.nope", np.zeros((4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []
