"""Person boxes for arbitrary images: the detector behind ``exlpose-predict --detector`` and ``exlpose-detect predict``.

A detector is named by a spec: a checkpoint written by ``exlpose-detect train`` (``DET.pth``), or ``onnx:MODEL.onnx``,
any person detector exported to ONNX under this contract:

- one input, float32 ``(1, 3, H, W)`` (a dynamic batch axis is fine);
- outputs ``boxes`` ``(1, K, 4)`` (or ``(K, 4)``), x1, y1, x2, y2 in input pixels, and ``scores`` ``(1, K)`` (or
  ``(K,)``), in [0, 1]; person boxes only (one class). The first two outputs are read in that order.
- What the input holds: a model exported by ``exlpose export onnx`` from a detector checkpoint says so in its
  metadata (``exlpose.kind`` = ``detector``, with its configuration and lighting) and gets the toolkit's input (the
  image fitted into its input size, LL brightened to a mean of 0.4 per channel or WL normalised, as in training).
  Any other model gets the image fitted (aspect kept, centred, black borders) into its fixed ``H x W``, or as it
  is when those axes are dynamic, as RGB on [0, 1].

Boxes come back in image pixels as ``[x, y, w, h, score]``, by falling score, those below ``min_score`` left out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exlpose_data.errors import InputError, UsageError
from exlpose_data.lighting import Lighting

__all__ = ["Detector", "load_detector_spec", "detect_images", "detector_file", "ONNX_PREFIX"]

ONNX_PREFIX = "onnx:"


def detector_file(spec: str) -> Path:
    """The file a detector spec names (``DET.pth`` or the model of ``onnx:MODEL.onnx``)."""
    return Path(spec[len(ONNX_PREFIX):] if spec.startswith(ONNX_PREFIX) else spec)


@dataclass
class Detector:
    """A loaded detector: ``detect(bgr_image, condition) -> [[x, y, w, h, score], ...]`` in image pixels."""

    spec: str
    runner: Any
    kind: str  # "checkpoint", "onnx-exlpose" or "onnx"
    input_size: tuple[int, int] | None
    config: Any = None
    lighting: str | None = None
    device: str = "cpu"

    def check_condition(self, condition: str) -> str:
        """The condition (``LL``/``WL``) of ``condition``; refused for an ONNX export of an LSBN detector's other branch."""
        cond = Lighting.parse(condition)
        if self.lighting is not None and self.config is not None and self.config.spec.lsbn and cond.key != self.lighting:
            raise UsageError(f"{detector_file(self.spec)}: exported with the {self.lighting.upper()} branch of its LSBN backbone; "
                             f"images of condition {cond.value} need an export with --lighting {cond.key}")
        return cond.value

    def detect(self, bgr: np.ndarray, condition: str = "LL", *, min_score: float = 0.0) -> list[list[float]]:
        from exlpose_data.datasets.centre_targets import prepare_image

        from .decode import boxes_to_image

        cond = self.check_condition(condition)
        hw = (int(bgr.shape[0]), int(bgr.shape[1]))
        if self.kind == "onnx":  # a foreign model: RGB on [0, 1], fitted into its fixed size with black borders
            size = self.input_size or (hw[0], hw[1])
            x, affine = prepare_image(bgr, cond, size, ll_scaling=None, wl_normalisation=None, pad=None)
        else:
            from exlpose_data.datasets.lowlight import WL_NORMALISATIONS

            x, affine = prepare_image(bgr, cond, tuple(self.config.input_size), wl_normalisation=WL_NORMALISATIONS[self.config.wl_normalisation])
        boxes, scores = self._run(x[None], Lighting.parse(cond).key)
        return boxes_to_image(boxes, scores, affine, hw, min_score=min_score)

    def _run(self, x: np.ndarray, key: str) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "checkpoint":
            import torch

            from .evaluate import run_detector

            boxes, scores = run_detector(self.runner, torch.from_numpy(x).to(self.device), key, top_k=self.config.max_detections)
            return boxes[0].cpu().numpy(), scores[0].cpu().numpy()
        try:
            outputs = self.runner.run(None, {self.runner.get_inputs()[0].name: x.astype(np.float32)})
        except Exception as exc:  # onnxruntime's own exception types: a model that does not take the contract's input
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{detector_file(self.spec)}: failed on a float32 {tuple(x.shape)} input, which the ONNX detector contract "
                             f"gives it ({first})") from None
        if len(outputs) < 2:
            raise InputError(f"{detector_file(self.spec)}: has {len(outputs)} output(s); a person detector gives boxes and scores")
        boxes, scores = np.asarray(outputs[0], dtype=np.float64), np.asarray(outputs[1], dtype=np.float64)
        boxes = boxes.reshape(-1, 4) if boxes.ndim in (2, 3) and boxes.shape[-1] == 4 else None  # type: ignore[assignment]
        if boxes is None or scores.size != boxes.shape[0]:
            raise InputError(f"{detector_file(self.spec)}: outputs must be boxes (1, K, 4) and scores (1, K); got shapes "
                             f"{np.shape(outputs[0])} and {np.shape(outputs[1])}")
        scores = scores.reshape(-1)
        if scores.size and not (np.isfinite(scores).all() and scores.min() >= 0.0 and scores.max() <= 1.0):
            raise InputError(f"{detector_file(self.spec)}: scores must lie in [0, 1] (the ONNX detector contract), got "
                             f"{scores.min():.3g} to {scores.max():.3g}; export the probabilities, not logits")
        return boxes, scores


def _onnx_detector(spec: str, path: Path) -> Detector:
    if not path.is_file():
        raise UsageError(f"--detector {spec}: no such ONNX model {path}")
    try:
        import onnxruntime as ort
    except ModuleNotFoundError:
        raise UsageError("--detector onnx:...: onnxruntime is not installed (pip install 'exlpose-data[train]')") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
        raise InputError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] not in (3, "3"):
        raise InputError(f"{path}: a person detector takes one (N, 3, H, W) input; this model's inputs are "
                         f"{[(i.name, i.shape) for i in inputs]}")
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("exlpose.kind") == "detector":
        from .config import make_detect_config

        try:
            cfg = make_detect_config(json.loads(meta["exlpose.config"]), source=str(path))
            lighting = meta["exlpose.lighting"]
        except (KeyError, ValueError) as exc:
            raise InputError(f"{path}: its exlpose metadata is incomplete ({exc})") from None
        return Detector(spec, session, "onnx-exlpose", tuple(cfg.input_size), config=cfg, lighting=lighting)
    if meta.get("exlpose.kind") not in (None, "detector"):
        raise InputError(f"{path}: is an exlpose {meta['exlpose.kind']} model, not a person detector")
    h, w = inputs[0].shape[2:]
    size = (int(h), int(w)) if isinstance(h, int) and isinstance(w, int) else None
    return Detector(spec, session, "onnx", size)


def load_detector_spec(spec: str, device: str = "cpu") -> Detector:
    """Load ``DET.pth`` (a detector checkpoint) or ``onnx:MODEL.onnx``."""
    path = detector_file(spec)
    if spec.startswith(ONNX_PREFIX) or path.suffix.lower() == ".onnx":
        return _onnx_detector(spec, path)
    from .train import load_detector

    net, cfg = load_detector(path, device)
    return Detector(spec, net, "checkpoint", tuple(cfg.input_size), config=cfg, device=str(device))


def detect_images(spec: str | Detector, images: Sequence[str | os.PathLike], *, condition: str = "LL", device: str = "cpu",
                  min_score: float = 0.3) -> dict[str, list[list[float]]]:
    """``{str(path): [[x, y, w, h, score], ...]}`` for each image (the boxes file format of ``exlpose-predict``);
    ``spec`` names the detector (:func:`load_detector_spec`) or is one already loaded."""
    from exlpose_data.datasets.sources import decode_image

    detector = spec if isinstance(spec, Detector) else load_detector_spec(spec, device)
    return {str(p): detector.detect(decode_image(p), condition, min_score=min_score) for p in images}
