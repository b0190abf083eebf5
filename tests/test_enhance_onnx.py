"""The learned-enhancer slot: ``--enhancer onnx:MODEL.onnx`` with tiny ONNX models built by the test."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from baselines.enhance import enhance_bgr, parse_enhancer
from baselines.enhance.cli import app as enhance_app
from baselines.enhance.onnx import OnnxEnhancer
from exlpose_data.errors import InputError, UsageError

from .test_baselines_train import one_torch_thread  # noqa: F401 (autouse fixture)
from .test_comparisons import sim  # noqa: F401 (fixture)

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _model(path: Path, op: str = "Sqrt", inputs: int = 1, **attrs) -> Path:
    """A one-node ONNX graph ``enhanced = op(image)`` over a (1, 3, h, w) float image."""
    names = ["image"] + [f"extra{i}" for i in range(1, inputs)]
    graph = helper.make_graph(
        [helper.make_node(op, names[:1], ["enhanced"], **attrs)], "enhancer",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, "h", "w"]) for n in names],
        [helper.make_tensor_value_info("enhanced", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def sqrt_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _model(tmp_path_factory.mktemp("onnx") / "sqrt.onnx")


def test_onnx_enhancer_runs_the_model(sqrt_model, tmp_path):
    enhancer = parse_enhancer(f"onnx:{sqrt_model}")
    assert isinstance(enhancer, OnnxEnhancer)
    img = np.zeros((3, 4, 3), np.uint8)
    img[:] = (64, 0, 255)  # BGR
    out = enhance_bgr(enhancer, img)
    assert out.dtype == np.uint16
    assert np.array_equal(out[0, 0], np.round(np.sqrt(np.array([64, 0, 255]) / 255) * 65535).astype(np.uint16))
    clone = pickle.loads(pickle.dumps(enhancer))  # DataLoader workers get a copy without the session
    assert np.array_equal(enhance_bgr(clone, img), out)
    assert enhancer.identity()["sha256"] == clone.identity()["sha256"] and len(enhancer.identity()["sha256"]) == 64


def test_onnx_enhancer_errors(tmp_path):
    with pytest.raises(UsageError, match="none.onnx: no such ONNX model"):
        parse_enhancer(f"onnx:{tmp_path / 'none.onnx'}")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(InputError, match="junk.onnx: not a loadable ONNX model"):
        OnnxEnhancer(tmp_path / "junk.onnx")
    with pytest.raises(InputError, match="2 inputs"):
        OnnxEnhancer(_model(tmp_path / "two.onnx", inputs=2))
    shrink = OnnxEnhancer(_model(tmp_path / "pool.onnx", op="MaxPool", kernel_shape=[2, 2], strides=[2, 2]))
    with pytest.raises(InputError, match="output shape"):
        shrink(np.zeros((4, 4, 3), np.float32))


def test_enhance_onnx_cli(sqrt_model, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((5, 6, 3), 64, np.uint8))
    r = CliRunner().invoke(enhance_app, ["onnx", str(sqrt_model), str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--bits", "16"])
    assert r.exit_code == 0, r.output
    got = cv2.imread(str(tmp_path / "out" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert got.dtype == np.uint16 and np.all(got == round(np.sqrt(64 / 255) * 65535))


@pytest.mark.slow
def test_training_with_an_onnx_enhancer(sim, sqrt_model, tmp_path):  # noqa: F811
    from baselines.cli import train_app

    out = tmp_path / "run"
    r = CliRunner().invoke(train_app, ["--variant", "baseline-all", "--enhancer", f"onnx:{sqrt_model}", "--dataset", str(sim),
                                       "--output-dir", str(out), "--backbone", "resnet18", "--input-size", "64x48", "--heatmap-size", "16x12",
                                       "--batch-size", "2", "--epochs", "1", "--steps-per-epoch", "2", "--workers", "0", "--no-progress",
                                       "--from-scratch", "--val-splits", "LL-A"])
    assert r.exit_code == 0, r.output
    assert 0 <= json.loads(r.stdout.strip().splitlines()[-1])["AP/LL-A"] <= 1
    (key_dir,) = (out / "enhanced").iterdir()
    assert key_dir.name.startswith("onnx-")
    cached_file = next(key_dir.rglob("*.png"))
    source = cv2.imread(str(sim / str(cached_file.relative_to(key_dir))[: -len(".png")]), cv2.IMREAD_UNCHANGED)
    cached = cv2.imread(str(cached_file), cv2.IMREAD_UNCHANGED)
    assert cached.dtype == np.uint16 and np.array_equal(cached, np.round(np.sqrt(source / 255) * 65535).astype(np.uint16))
