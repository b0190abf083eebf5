"""A learned enhancer slot: any enhancement network exported to ONNX, run by onnxruntime (CPU unless asked).

The model's contract (ours, the common one of enhancement networks): one input, a float32 ``(1, 3, H, W)`` RGB
image on [0, 1], and its first output the enhanced image of the same shape on [0, 1] (values outside are
clipped). Networks whose input sides must be multiples of some stride are exported with that padding inside,
or fed images of a fitting size. LLFlow's weights cannot be bundled; export it (or any other) to ONNX and pass
``--enhancer onnx:MODEL.onnx``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from exlpose_data.errors import InputError, UsageError

__all__ = ["OnnxEnhancer"]


class OnnxEnhancer:
    """Enhance with an ONNX model (see the module docstring).

    Args:
        path: the ``.onnx`` file.
        providers: onnxruntime execution providers (default CPU).

    Raises:
        UsageError: the file does not exist, or onnxruntime is not installed.
        InputError: the file is not a loadable ONNX model or has more than one input.
    """

    name = "onnx"

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UsageError(f"{self.path}: no such ONNX model")
        if importlib.util.find_spec("onnxruntime") is None:
            raise UsageError("onnx enhancers need onnxruntime: pip install onnxruntime")
        self.sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()
        self.providers = providers or ["CPUExecutionProvider"]
        self._session: Any = None
        session = self._open()
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise InputError(f"{self.path}: the model has {len(inputs)} inputs; an enhancer takes one (1, 3, H, W) image")

    def _open(self) -> Any:
        if self._session is None:
            import onnxruntime as ort

            try:
                self._session = ort.InferenceSession(str(self.path), providers=self.providers)
            except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
                raise InputError(f"{self.path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        return self._session

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        session = self._open()
        x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)
        try:
            (out, *_) = session.run(None, {session.get_inputs()[0].name: x})
        except Exception as exc:
            raise InputError(f"{self.path}: inference failed on a {rgb.shape[1]}x{rgb.shape[0]} image ({str(exc).splitlines()[0]})") from None
        out = np.asarray(out)
        if out.shape != x.shape:
            raise InputError(f"{self.path}: output shape {out.shape} for input {x.shape}; an enhancer returns the image's shape")
        return out[0].transpose(1, 2, 0)

    def identity(self) -> dict[str, Any]:
        return {"enhancer": self.name, "sha256": self.sha256}

    def __getstate__(self) -> dict:
        # Sessions do not pickle; each DataLoader worker opens its own.
        return {**self.__dict__, "_session": None}
