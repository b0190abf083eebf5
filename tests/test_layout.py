import json

import pytest
from typer.testing import CliRunner

from exlpose.cli import app as umbrella
from exlpose_data.errors import InputError
from exlpose_data.layout import load_manifest, read_pairs, rebuild_manifest, safe_relpath, update_manifest, verify_dataset, write_pairs

runner = CliRunner()


def test_pairs_file_round_trip_and_errors(tmp_path):
    p = write_pairs(tmp_path / "brightPath2darkPath.txt", [("bright/b.png", "dark/d.png"), ("bright/a.png", "dark/c.png")])
    assert p.read_text() == "bright/a.png dark/c.png\nbright/b.png dark/d.png\n"
    assert read_pairs(p) == [("bright/a.png", "dark/c.png"), ("bright/b.png", "dark/d.png")]
    (tmp_path / "bad.txt").write_text("bright/a.png\n")
    with pytest.raises(InputError, match=r"bad.txt:1"):
        read_pairs(tmp_path / "bad.txt")


@pytest.mark.parametrize("name,why", [("/abs.png", "absolute"), ("a/../../b.png", ".."), ("C:/x.png", "drive"), ("a\\b.png", "backslash")])
def test_unsafe_paths(name, why):
    assert why in safe_relpath(name)


def test_safe_path():
    assert safe_relpath("bright/imgs_x.png") is None


def test_manifest_update_and_verify_every_difference(tmp_path):
    (tmp_path / "bright").mkdir()
    for n in ("a", "b", "c"):
        (tmp_path / "bright" / f"{n}.png").write_bytes(n.encode() * 10)
    assert rebuild_manifest(tmp_path) == 3
    assert verify_dataset(tmp_path) == []
    (tmp_path / "bright" / "a.png").write_bytes(b"A" * 10)  # same size, other content
    (tmp_path / "bright" / "b.png").write_bytes(b"bb")  # other size
    (tmp_path / "bright" / "c.png").unlink()
    (tmp_path / "bright" / "d.png").write_bytes(b"new")
    (tmp_path / "bright" / ".d.tmp-xyz.png").write_bytes(b"temp of a killed writer")
    diffs = {(d.kind, d.path) for d in verify_dataset(tmp_path)}
    assert diffs == {("changed", "bright/a.png"), ("size", "bright/b.png"), ("missing", "bright/c.png"), ("unlisted", "bright/d.png")}
    res = runner.invoke(umbrella, ["verify", str(tmp_path)])
    assert res.exit_code == 1 and "missing: bright/c.png" in res.output
    update_manifest(tmp_path, ["bright/a.png", "bright/b.png", "bright/c.png", "bright/d.png"])
    assert verify_dataset(tmp_path) == []
    assert sorted(load_manifest(tmp_path)) == ["bright/a.png", "bright/b.png", "bright/d.png"]
    assert runner.invoke(umbrella, ["verify", str(tmp_path)]).exit_code == 0


def test_verify_without_manifest_is_a_usage_error(tmp_path):
    res = runner.invoke(umbrella, ["verify", str(tmp_path)])
    assert res.exit_code == 2 and "manifest.json" in res.output


def test_manifest_is_valid_json_with_hashes(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    update_manifest(tmp_path, ["x.txt"])
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["files"]["x.txt"] == {"sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", "size": 5}


@pytest.mark.parametrize("manifest,needle", [
    ('{"files": {"a.txt": 1}}', "expected"),
    ('{"files": {"../../etc/hostname": {"sha256": "x", "size": 1}}}', "'..' in path"),
    ('["not", "a", "manifest"]', "no 'files' table"),
    ("\udcff", "not UTF-8"),
])
def test_broken_manifests_are_clear_errors(tmp_path, manifest, needle):
    (tmp_path / "manifest.json").write_bytes(manifest.encode("utf-8", "surrogateescape"))
    res = runner.invoke(umbrella, ["verify", str(tmp_path)])
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output


def test_name_index_finds_paths_and_bare_names() -> None:
    from exlpose_data.layout import NameIndex, normalise_image_path

    index: NameIndex[int] = NameIndex()
    assert not index
    index.add("./ExLPose/bright/a.png", 1)
    index.add("dark/a.png", 2)
    assert normalise_image_path("C:\\data\\ExLPose\\dark\\a.png") == "dark/a.png"
    assert index.get("bright/a.png") == 1 and index.get("/x/ExLPose/dark/a.png") == 2
    # A bare name finds the last path indexed under it; the path itself always wins.
    assert index.get("a.png") == 2 and index.get("bright/a.png") == 1 and index.get("b.png") is None
    assert index
