"""ONNX export of pose checkpoints (``exlpose export onnx``), ``.onnx`` pose models in ``exlpose-predict``, and the
``--detector`` wiring of ``exlpose-predict`` (the detector itself is faked here; its own tests are the detector's)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from baselines.checkpoint import save_checkpoint
from baselines.cli import predict_app
from baselines.config import make_config
from baselines.export_cli import app as export_app
from baselines.models import build_cpn
from baselines.onnx_export import export_pose_onnx, load_pose_onnx
from baselines.onnx_format import PARITY_TOLERANCE, metadata_bytes, onnx_session, read_metadata, write_onnx
from baselines.predict import predict
from exlpose.cli import app as umbrella
from exlpose_data.errors import InputError, UsageError
from exlpose_data.outputs import what_is
from exlpose_data.provenance import read_record

from .test_baselines_train import one_torch_thread  # noqa: F401 (autouse fixture)
from .test_comparisons import TINY

onnx = pytest.importorskip("onnx")


def make_pose_checkpoint(path: Path, variant: str, seed: int = 0) -> Path:
    """An untrained tiny CPN (resnet18, 64x48 crops); the WL branches of an LSBN network get other statistics and
    affine weights than the LL ones, so the two exported branches compute different heatmaps."""
    cfg = make_config({"variant": variant, **TINY})
    torch.manual_seed(seed)
    net = build_cpn("resnet18", lsbn=cfg.spec.lsbn, heatmap_size=(16, 12))
    state = net.state_dict()
    for name, value in state.items():
        if ".branches.wl." in name and value.is_floating_point():
            value.add_(0.3 * torch.rand_like(value) + 0.1)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, model=state, config=cfg.to_dict(), epoch=0)


def _image(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 60, (96, 80, 3), dtype=np.uint8), (5, 5), 0)
    cv2.imwrite(str(path), img)
    return path


def _one_line_exit_2(result) -> str:
    """The one error line of a refused command (exlpose-predict prints its thread settings before it)."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("threads: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


class _Square(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x + 1.0


# fast: the file format, the output guard, the CLI's refusals


def test_metadata_bytes_are_metadata_props_that_onnx_and_onnxruntime_read(tmp_path):
    long_value = json.dumps({"k": "x" * 300, "µ": "é"})  # a length over 127 needs a two-byte varint
    path = tmp_path / "square.onnx"
    result = write_onnx(_Square(), torch.ones(2, 3, 4, 5), path, output_names=["y"], metadata={"a": "1", "long": long_value}, opset=17)
    assert result["max_abs_diff"] == 0.0 and result["output_shapes"] == [[2, 3, 4, 5]] and result["bytes"] == path.stat().st_size
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert {p.key: p.value for p in model.metadata_props} == {"a": "1", "long": long_value}
    session = onnx_session(path)
    assert read_metadata(session) == {"a": "1", "long": long_value}
    # the batch axis is dynamic
    for batch in (1, 3):
        y = session.run(["y"], {"input": np.full((batch, 3, 4, 5), 2.0, np.float32)})[0]
        assert y.shape == (batch, 3, 4, 5) and np.all(y == 5.0)
    assert metadata_bytes({"k": "v"}) == b"\x72\x06\x0a\x01k\x12\x01v"  # field 14 (0x72), key field 1, value field 2


def test_a_failed_parity_check_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("baselines.onnx_format.PARITY_TOLERANCE", -1.0)
    with pytest.raises(InputError, match=r"bad\.onnx: onnxruntime's outputs differ from torch's by 0 \(relative to the output's scale\) > -1 on the same batch of 2"):
        write_onnx(_Square(), torch.ones(2, 3, 4, 5), tmp_path / "bad.onnx", output_names=["y"], metadata={}, opset=17)
    assert list(tmp_path.iterdir()) == []


def test_what_is_names_an_onnx_model_by_its_first_bytes_and_suffix(tmp_path):
    write_onnx(_Square(), torch.ones(1, 3, 2, 2), tmp_path / "m.onnx", output_names=["y"], metadata={}, opset=17)
    assert what_is(tmp_path / "m.onnx") == "ONNX model"
    (tmp_path / "m.bin").write_bytes((tmp_path / "m.onnx").read_bytes())
    (tmp_path / "text.onnx").write_text("not a model")
    assert what_is(tmp_path / "m.bin") == "file" and what_is(tmp_path / "text.onnx") == "file"


def test_foreign_or_detector_onnx_models_are_not_pose_models(tmp_path):
    write_onnx(_Square(), torch.ones(1, 3, 2, 2), tmp_path / "plain.onnx", output_names=["y"], metadata={}, opset=17)
    with pytest.raises(InputError, match=r"plain\.onnx: not an exlpose pose model exported by `exlpose export onnx` \(no exlpose metadata\)"):
        load_pose_onnx(tmp_path / "plain.onnx")
    write_onnx(_Square(), torch.ones(1, 3, 2, 2), tmp_path / "det.onnx", output_names=["y"], metadata={"exlpose.kind": "detector"}, opset=17)
    with pytest.raises(InputError, match="its exlpose.kind is 'detector'"):
        load_pose_onnx(tmp_path / "det.onnx")
    write_onnx(_Square(), torch.ones(1, 3, 2, 2), tmp_path / "broken.onnx", output_names=["y"],
               metadata={"exlpose.kind": "pose", "exlpose.config": "{not json", "exlpose.origin": "trained", "exlpose.lighting": "ll"}, opset=17)
    with pytest.raises(InputError, match=r"broken\.onnx: not an exlpose pose model .*missing or broken"):
        load_pose_onnx(tmp_path / "broken.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07junk")
    with pytest.raises(InputError, match=r"junk\.onnx: not an ONNX model onnxruntime can load"):
        load_pose_onnx(tmp_path / "junk.onnx")


def test_export_help_lists_the_core_command_and_onnx():
    r = CliRunner().invoke(umbrella, ["export", "--help"])
    assert r.exit_code == 0, r.output
    commands = r.output.split("Commands:")[1]
    assert "official" in commands and "onnx" in commands
    r = CliRunner().invoke(umbrella, ["export", "onnx", "--help"])
    assert r.exit_code == 0 and "--lighting" in r.output and "--opset" in r.output, r.output


def test_export_refuses_inputs_that_are_no_checkpoint_in_one_line(tmp_path):
    notes = tmp_path / "notes.json"
    notes.write_text('{"a": 1}')
    line = _one_line_exit_2(CliRunner().invoke(export_app, ["onnx", str(notes), "--out", str(tmp_path / "m.onnx")]))
    assert "notes.json: not a loadable checkpoint" in line
    other = tmp_path / "other.pth"
    torch.save({"format": "someone-else", "model": {}}, other)
    line = _one_line_exit_2(CliRunner().invoke(export_app, ["onnx", str(other), "--out", str(tmp_path / "m.onnx")]))
    assert "other.pth: not a pose (exlpose-cpn) or detector (exlpose-detector) checkpoint (format tag 'someone-else')" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.json", "other.pth"]


def test_export_never_writes_over_its_checkpoint_or_an_annotation_file(tmp_path):
    ckpt = make_pose_checkpoint(tmp_path / "ckpt.pth", "baseline-low")
    before = ckpt.read_bytes()
    line = _one_line_exit_2(CliRunner().invoke(export_app, ["onnx", str(ckpt), "--out", str(ckpt), "--overwrite"]))
    assert "is also an input of this command" in line
    ann = tmp_path / "ExLPose_test_WL.json"
    ann.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    line = _one_line_exit_2(CliRunner().invoke(export_app, ["onnx", str(ckpt), "--out", str(ann), "--overwrite"]))
    assert "already holds an annotation file, not an ONNX model; refusing to replace it" in line
    other = tmp_path / "older.pth"
    other.write_bytes(before)
    line = _one_line_exit_2(CliRunner().invoke(export_app, ["onnx", str(ckpt), "--out", str(other), "--overwrite"]))
    assert "already holds a checkpoint, not an ONNX model" in line
    assert ckpt.read_bytes() == before and json.loads(ann.read_text())["images"] == []
    args = ["onnx", str(ckpt), "--out", str(tmp_path / "m.onnx")]
    assert "--lighting must be ll or wl" in _one_line_exit_2(CliRunner().invoke(export_app, [*args, "--lighting", "dusk"]))
    assert "--opset 9: choose 11 to 20" in _one_line_exit_2(CliRunner().invoke(export_app, [*args, "--opset", "9"]))
    assert not (tmp_path / "m.onnx").exists()


def test_predict_refuses_detector_with_boxes_and_a_stray_min_box_score(tmp_path):
    photo = _image(tmp_path / "p.png")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"p.png": [[0, 0, 10, 10]]}))
    args = [str(tmp_path / "missing.pth"), str(photo), "--out", str(tmp_path / "pred")]
    line = _one_line_exit_2(CliRunner().invoke(predict_app, [*args, "--boxes", str(boxes), "--detector", "det.pth"]))
    assert line.endswith("--detector and --boxes exclude each other: give one")
    line = _one_line_exit_2(CliRunner().invoke(predict_app, [*args, "--min-box-score", "0.5"]))
    assert "--min-box-score applies to --detector's boxes only" in line
    r = CliRunner().invoke(predict_app, [*args, "--detector", "d.pth", "--min-box-score", "nan"])
    assert r.exit_code == 2 and "--min-box-score nan: expected a finite number" in r.output, r.output
    line = _one_line_exit_2(CliRunner().invoke(predict_app, [*args, "--detector", "d.pth", "--min-box-score", "1.5"]))
    assert "--min-box-score 1.5: must lie in [0, 1]" in line
    assert "--detector onnx:nowhere.onnx: no such file nowhere.onnx" in _one_line_exit_2(
        CliRunner().invoke(predict_app, [*args, "--detector", "onnx:nowhere.onnx"]))
    assert not (tmp_path / "pred").exists()


# slow: exports of the tiny CPN (about 3 s each on one thread) and predictions with them


@pytest.fixture(scope="module")
def lsbn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lsbn")
    ckpt = make_pose_checkpoint(root / "lsbn.pth", "lsbn")
    out = {"ckpt": ckpt}
    for key in ("ll", "wl"):
        out[key] = root / f"lsbn-{key}.onnx"
        result = export_pose_onnx(ckpt, out[key], lighting=key)
        assert result["max_abs_diff"] <= PARITY_TOLERANCE and result["lighting"] == key and result["lsbn"] is True
        assert result["input_size"] == [64, 48] and result["output_size"] == [16, 12]
    return out


@pytest.mark.slow
def test_lsbn_export_matches_torch_per_branch_at_any_batch_size(lsbn):
    from baselines.checkpoint import load_model

    net, _ = load_model(lsbn["ckpt"])
    outputs = {}
    for key in ("ll", "wl"):
        session = onnx_session(lsbn[key])
        for batch in (1, 3):
            x = torch.randn(batch, 3, 64, 48, generator=torch.Generator().manual_seed(batch))
            with torch.no_grad():
                expected = net(x, condition=key).heatmaps.numpy()
            got = session.run(["heatmaps"], {"input": x.numpy()})[0]
            assert got.shape == (batch, 14, 16, 12)
            assert np.abs(got - expected).max() <= PARITY_TOLERANCE
            outputs[key, batch] = got
    # the two branches really are two models
    assert np.abs(outputs["ll", 3] - outputs["wl", 3]).max() > 1e-2


@pytest.mark.slow
def test_metadata_round_trips_the_config_origin_lighting_and_input_size(lsbn):
    from baselines.checkpoint import load_model_and_origin

    _, cfg, origin = load_model_and_origin(lsbn["ckpt"])
    props = {p.key: p.value for p in onnx.load(str(lsbn["wl"])).metadata_props}
    assert props["exlpose.kind"] == "pose" and props["exlpose.origin"] == origin == "trained"
    assert props["exlpose.lighting"] == "wl" and json.loads(props["exlpose.input_size"]) == [64, 48]
    # the config travels without the exporting machine's paths (dataset, weights, run folder)
    portable = {k: v for k, v in json.loads(json.dumps(cfg.to_dict())).items() if k != "output_dir"}
    portable.update(dataset=None, annotations=None, train_ann=None, pack=None, pretrained=None, enhance_cache=None)
    assert json.loads(props["exlpose.config"]) == portable
    runner, loaded, loaded_origin, lighting = load_pose_onnx(lsbn["wl"])
    assert loaded == cfg and loaded_origin == "trained" and lighting == "wl" and runner.lsbn


@pytest.mark.slow
@pytest.mark.parametrize("flip_test", ["ours", "official", "none"])
def test_predict_with_the_onnx_model_gives_the_checkpoints_keypoints(lsbn, tmp_path, flip_test):
    photo = _image(tmp_path / "p.png")
    boxes = {"p.png": [[5.0, 4.0, 50.0, 70.0, 0.9], [20.0, 10.0, 40.0, 60.0]]}
    for condition in ("LL", "WL"):
        model = lsbn[condition.lower()]
        want = predict(lsbn["ckpt"], [photo], boxes=boxes, condition=condition, flip_test=flip_test)
        got = predict(model, [photo], boxes=boxes, condition=condition, flip_test=flip_test)
        assert len(got) == len(want) == 2
        for g, w in zip(got, want):
            assert g["bbox"] == w["bbox"]
            kg, kw = np.reshape(g["keypoints"], (14, 3)), np.reshape(w["keypoints"], (14, 3))
            assert np.abs(kg[:, :2] - kw[:, :2]).max() <= 1e-3
            assert np.abs(kg[:, 2] - kw[:, 2]).max() <= 1e-3 and g["score"] == pytest.approx(w["score"], abs=1e-3)


@pytest.mark.slow
def test_predict_cli_runs_an_onnx_model_and_refuses_the_other_lighting(lsbn, tmp_path):
    photo = _image(tmp_path / "p.png")
    r = CliRunner().invoke(predict_app, [str(lsbn["ll"]), str(photo), "--out", str(tmp_path / "pred"), "--no-overlays"])
    assert r.exit_code == 0, r.output
    assert "lsbn-ll.onnx (trained ONNX model, LL branch)" in r.output
    settings = json.loads((tmp_path / "pred" / "settings.json").read_text())
    assert settings["onnx_lighting"] == "ll" and settings["variant"] == "lsbn" and settings["flip_test"] == "ours"
    assert read_record(tmp_path / "pred")["steps"]["exlpose-predict"]["inputs"]["checkpoint"]["path"] == str(lsbn["ll"])
    want = predict(lsbn["ckpt"], [photo])
    got = json.loads((tmp_path / "pred" / "keypoints.json").read_text())
    assert np.abs(np.subtract(got[0]["keypoints"], want[0]["keypoints"])).max() <= 1e-3
    line = _one_line_exit_2(CliRunner().invoke(predict_app, [str(lsbn["ll"]), str(photo), "--out", str(tmp_path / "wl"), "--condition", "WL"]))
    assert "lsbn-ll.onnx: exported with the LL LSBN branch; it does not run WL images" in line and "--lighting wl" in line
    assert not (tmp_path / "wl").exists()
    with pytest.raises(UsageError, match="does not run LL images"):
        predict(lsbn["wl"], [photo], condition="LL")


@pytest.mark.slow
def test_overwrite_replaces_an_older_export_through_the_umbrella(lsbn, tmp_path):
    out = tmp_path / "model.onnx"
    out.write_bytes(lsbn["ll"].read_bytes())
    args = ["export", "onnx", str(lsbn["ckpt"]), "--out", str(out), "--lighting", "WL"]
    line = _one_line_exit_2(CliRunner().invoke(umbrella, args))
    assert "already holds an ONNX model; pass --overwrite to replace it" in line
    r = CliRunner().invoke(umbrella, [*args, "--overwrite"])
    assert r.exit_code == 0, r.output
    assert "pose model lsbn.pth (lsbn, WL branch, opset 17) ->" in r.output and "max abs diff" in r.output
    assert {p.key: p.value for p in onnx.load(str(out)).metadata_props}["exlpose.lighting"] == "wl"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary file left beside it


@pytest.mark.slow
def test_a_model_without_lsbn_records_the_lighting_and_runs_either_condition(tmp_path):
    ckpt = make_pose_checkpoint(tmp_path / "low.pth", "baseline-low")
    result = export_pose_onnx(ckpt, tmp_path / "low.onnx")
    assert result["lighting"] == "ll" and result["lsbn"] is False and result["max_abs_diff"] <= PARITY_TOLERANCE
    runner, _, _, lighting = load_pose_onnx(tmp_path / "low.onnx")
    assert lighting == "ll" and not runner.lsbn
    photo = _image(tmp_path / "p.png")
    got = predict(tmp_path / "low.onnx", [photo], condition="WL")
    want = predict(ckpt, [photo], condition="WL")
    assert np.abs(np.subtract(got[0]["keypoints"], want[0]["keypoints"])).max() <= 1e-3


@pytest.mark.slow
def test_detector_boxes_are_used_as_a_boxes_file_and_recorded(tmp_path):
    from baselines.checkpoint import DETECTOR_FORMAT
    from baselines.detect.api import detect_images
    from baselines.detect.config import make_detect_config
    from baselines.detect.model import build_detector

    ckpt = make_pose_checkpoint(tmp_path / "pose.pth", "baseline-low")
    photo = _image(tmp_path / "p.png")
    # a real (untrained) detector checkpoint whose heatmap head is pushed up, so its peaks score about 0.8
    torch.manual_seed(0)
    net = build_detector("resnet18")
    with torch.no_grad():
        net.heatmap[-1].bias.fill_(1.4)
    det = save_checkpoint(tmp_path / "det.pth", format=DETECTOR_FORMAT, model=net.state_dict(), epoch=0,
                          config=make_detect_config({"variant": "baseline-low", "backbone": "resnet18", "input_size": (64, 96), "from_scratch": True}).to_dict())
    found = detect_images(str(det), [photo], condition="LL", min_score=0.5)
    assert found[str(photo)], "the stand-in detector must find boxes above 0.5"
    r = CliRunner().invoke(predict_app, [str(ckpt), str(photo), "--detector", str(det), "--min-box-score", "0.5", "--out", str(tmp_path / "pred"),
                                         "--no-overlays"])
    assert r.exit_code == 0, r.output
    got = json.loads((tmp_path / "pred" / "keypoints.json").read_text())
    want = predict(ckpt, [photo], boxes={"p.png": found[str(photo)]})
    assert got == want and got[0]["bbox"] == pytest.approx(found[str(photo)][0][:4])
    assert got[0]["score"] == pytest.approx(found[str(photo)][0][4] * np.mean(np.reshape(got[0]["keypoints"], (14, 3))[:, 2]), abs=1e-4)
    step = read_record(tmp_path / "pred")["steps"]["exlpose-predict"]
    assert step["inputs"]["detector"]["path"] == str(det)
    assert step["settings"]["detector"] == str(det) and step["settings"]["min_box_score"] == 0.5
    settings = json.loads((tmp_path / "pred" / "settings.json").read_text())
    assert settings["detector"] == str(det) and settings["min_box_score"] == 0.5
