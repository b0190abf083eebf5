"""Detections on a test split and their COCO box AP (pycocotools, :func:`exlpose_data.evaluation.evaluate_boxes`).

Each image of the split is fitted whole into the detector's input (the test path of
:class:`exlpose_data.datasets.ExLPoseDetection`), run once, decoded into the ``max_detections`` highest peaks
(:func:`.decode.decode_centres`) and mapped back to image pixels (:func:`.decode.boxes_to_image`). The results are
COCO detection results (``image_id``, ``category_id`` 1, ``bbox`` xywh, ``score``), the file ``exlpose-eval model
--boxes`` reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from exlpose_data.evaluation import BoxMetrics, evaluate_boxes
from exlpose_data.lighting import Lighting

from .config import STRIDE, DetectConfig
from .decode import boxes_to_image, decode_centres

__all__ = ["detect_split", "evaluate_split", "run_detector", "coco_detections"]


def coco_detections(image_id: int, rows: list[list[float]]) -> list[dict[str, Any]]:
    """COCO detection results of one image's ``[x, y, w, h, score]`` rows, coordinates kept to 0.01 px and scores
    to 1e-5; a box whose width or height rounds to 0 is left out (it is no box: the results' readers refuse it)."""
    out = []
    for x, y, w, h, score in rows:
        box = [round(float(x), 2), round(float(y), 2), round(float(w), 2), round(float(h), 2)]
        if box[2] > 0 and box[3] > 0:
            out.append({"image_id": int(image_id), "category_id": 1, "bbox": box, "score": round(float(score), 5)})
    return out


@torch.no_grad()
def run_detector(net: Any, images: torch.Tensor, condition: str, *, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(boxes (B, K, 4) xyxy input pixels, scores (B, K))`` of a batch of prepared inputs."""
    out = net(images, condition=condition)
    return decode_centres(out.heatmap.float(), out.size.float(), out.offset.float(), stride=STRIDE, top_k=top_k)


@torch.no_grad()
def detect_split(net: Any, cfg: DetectConfig, root: str | os.PathLike, ann_file: str | os.PathLike, condition: str, device: torch.device, *,
                 batch_size: int = 8, workers: int = 0, on_start: Callable[[int], None] | None = None,
                 on_batch: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """COCO detection results of ``net`` on every image of ``ann_file`` (``condition`` ``"LL"`` or ``"WL"``)."""
    from torch.utils.data import DataLoader

    from exlpose_data.datasets import ExLPoseDetection
    from exlpose_data.datasets.lowlight import WL_NORMALISATIONS

    ds = ExLPoseDetection(root, ann_file, condition=condition, input_size=tuple(cfg.input_size), train=False,  # type: ignore[arg-type]
                          wl_normalisation=WL_NORMALISATIONS[cfg.wl_normalisation])
    if on_start is not None:
        on_start(len(ds))
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=device.type == "cuda")
    key = Lighting.parse(condition).key
    net.eval()
    results: list[dict[str, Any]] = []
    for batch in loader:
        boxes, scores = run_detector(net, batch[key].to(device), key, top_k=cfg.max_detections)
        meta = batch["meta"]
        for i in range(boxes.shape[0]):
            rows = boxes_to_image(boxes[i].cpu().numpy(), scores[i].cpu().numpy(), np.asarray(meta["affine"][i], dtype=np.float64),
                                  tuple(int(v) for v in meta["image_hw"][i]))
            results.extend(coco_detections(int(meta["image_id"][i]), rows))
        if on_batch is not None:
            on_batch(boxes.shape[0])
    return results


def evaluate_split(net: Any, cfg: DetectConfig, root: str | os.PathLike, ann_file: str | os.PathLike, condition: str, device: torch.device,
                   **kwargs: Any) -> tuple[BoxMetrics, list[dict[str, Any]]]:
    """:func:`detect_split` scored against ``ann_file`` (COCO box AP, pycocotools)."""
    results = detect_split(net, cfg, root, ann_file, condition, device, **kwargs)
    return evaluate_boxes(ann_file, results), results
