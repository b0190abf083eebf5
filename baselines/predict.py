"""Keypoints of people in arbitrary images with a trained checkpoint, plus overlays (``exlpose predict``,
``exlpose-predict``: :mod:`baselines.cli`).

The pose model is a checkpoint or a ``.onnx`` model written by ``exlpose export onnx`` (run by onnxruntime with
the settings its embedded configuration and origin give, exactly as the checkpoint runs). Boxes come from a JSON
file mapping an image (its path as given, or its file name) to person boxes ``[[x, y, w, h], ...]`` or
``[[x, y, w, h, score], ...]``, or from a person detector (``--detector``, :func:`baselines.detect.api.detect_images`,
used exactly as such a file); without either each image is one person box. Crops are cut and scaled exactly as the
test-time dataset cuts them (same functions), so a model sees the input it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from exlpose_data.atomic import write_image_atomic, write_json_atomic
from exlpose_data.errors import InputError, UsageError
from exlpose_data.jsonio import load_json
from exlpose_data.keypoints import crowdpose14
from exlpose_data.lighting import Lighting

__all__ = ["predict", "predict_to_folder", "load_boxes", "draw_pose", "is_onnx_model", "DEFAULT_MIN_BOX_SCORE"]

DEFAULT_MIN_BOX_SCORE = 0.3  # detections scoring less are not people to pose (exlpose-predict --detector)


def is_onnx_model(path: Path) -> bool:
    """Whether the pose model ``path`` is an ONNX export (by its ``.onnx`` suffix) rather than a checkpoint."""
    return Path(path).suffix.lower() == ".onnx"


def _pose_model(checkpoint: Path, condition: Lighting, device: str) -> tuple[Any, Any, str, str | None]:
    """``(model, TrainConfig, origin, exported lighting or None)`` of a checkpoint or an ONNX pose model; an ONNX
    model whose LSBN branch is not ``condition``'s is refused."""
    if is_onnx_model(checkpoint):
        from .onnx_export import load_pose_onnx

        runner, cfg, origin, exported = load_pose_onnx(checkpoint, device)
        runner.check_condition(condition.key)
        return runner, cfg, origin, exported
    from .checkpoint import load_model_and_origin

    net, cfg, origin = load_model_and_origin(checkpoint, device)
    return net, cfg, origin, None


def _named_results(path: Path, results: list[Any]) -> dict[str, list[list[float]]]:
    """COCO detection results with ``file_name`` as ``{file_name: [[x, y, w, h, score], ...]}``."""
    out: dict[str, list[list[float]]] = {}
    for n, det in enumerate(results):
        if not isinstance(det, dict) or "file_name" not in det:
            raise InputError(f"{path}: detection {n} has no file_name, so its image is unknown here; COCO results keyed by image_id "
                             f"go to exlpose-eval model --boxes (with the annotation file), or write them with exlpose-detect predict IMAGES")
        bbox, score = det.get("bbox"), det.get("score", 1.0)
        if not isinstance(bbox, list) or not isinstance(score, (int, float)) or isinstance(score, bool):
            raise InputError(f"{path}: detection {n}: needs bbox [x, y, w, h] and a numeric score")
        out.setdefault(str(det["file_name"]), []).append([*bbox, score])
    return out


def load_boxes(path: Path) -> dict[str, list[list[float]]]:
    """Read ``{image: [[x, y, w, h(, score)], ...]}``; every box is checked.

    COCO detection results that name their images (``[{"file_name", "bbox", "score", ...}, ...]``, as
    ``exlpose-detect predict IMAGES`` writes them) are read too, grouped by ``file_name``."""
    raw = load_json(path)
    if isinstance(raw, list):
        raw = _named_results(path, raw)
    if not isinstance(raw, dict):
        raise InputError(f'{path}: expected {{"image.png": [[x, y, w, h], ...]}}, got {type(raw).__name__}')
    for name, boxes in raw.items():
        if not isinstance(boxes, list):
            raise InputError(f"{path}: {name}: expected a list of boxes")
        for i, box in enumerate(boxes):
            ok = isinstance(box, list) and len(box) in (4, 5) and all(isinstance(v, (int, float)) for v in box)
            if not ok or box[2] <= 0 or box[3] <= 0:
                raise InputError(f"{path}: {name}: box {i} must be [x, y, w, h] or [x, y, w, h, score] with w, h > 0, got {box}")
    return raw


def _crop(img_bgr: np.ndarray, means: np.ndarray, box: list[float], condition: str, options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    from exlpose_data.datasets.lowlight import LowLightScaling, bgr_to_input, input_affine, padding_value
    from exlpose_data.datasets.official_crop import official_crop, undivided_input
    from exlpose_data.datasets.transforms import CropSettings, crop_affine, crop_box, crop_roi, read_roi, warp_roi

    input_size = options["input_size"]
    if options.get("crop_mode") == "official":
        affine, crop = official_crop(img_bgr, img_bgr.shape[:2], means, box[:4], condition, input_size=input_size, ll_scaling=LowLightScaling(),
                                     wl_normalisation=options["wl_normalisation"], pad_rgb_255=options["pad"], divide=options["input_scale"])
        return np.ascontiguousarray(crop.transpose(2, 0, 1)), affine
    center, size = crop_box(box[:4], CropSettings(input_size=input_size), train=False)
    affine = crop_affine(center, size, input_size)
    roi = crop_roi(affine, input_size, img_bgr.shape[:2])
    gain, offset = input_affine(condition, means, LowLightScaling(), options["wl_normalisation"])
    border = padding_value(condition, options["pad"], gain, offset)
    raw = warp_roi(read_roi(img_bgr, roi), roi, affine, input_size, border)
    crop = bgr_to_input(raw, gain, offset)
    if options.get("input_scale") == "official":
        crop = undivided_input(crop, raw, gain * 255.0 if condition == "LL" else np.ones(3), offset)
    return np.ascontiguousarray(crop.transpose(2, 0, 1)), affine


def draw_pose(img_bgr: np.ndarray, keypoints: np.ndarray, *, min_score: float = 0.0) -> np.ndarray:
    """The image with each person's skeleton drawn (joints scoring below ``min_score`` left out)."""
    out = img_bgr.copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    for person in keypoints:
        for a, b in crowdpose14().skeleton:
            if person[a, 2] >= min_score and person[b, 2] >= min_score:
                pa = tuple(int(round(v)) for v in person[a, :2])
                pb = tuple(int(round(v)) for v in person[b, :2])
                cv2.line(out, pa, pb, (0, 200, 255), thickness, cv2.LINE_AA)
        for x, y, s in person:
            if s >= min_score:
                cv2.circle(out, (int(round(x)), int(round(y))), 2 * thickness, (0, 255, 0), -1, cv2.LINE_AA)
    return out


def _condition(condition: str) -> Lighting:
    try:
        return Lighting.parse(condition)
    except ValueError:
        raise UsageError(f"--condition must be LL or WL, got {condition!r}") from None


def predict(
    checkpoint: Path,
    images: list[Path],
    *,
    boxes: dict[str, list[list[float]]] | None = None,
    condition: str = "LL",
    flip_test: bool | str | None = None,
    crop: str | None = None,
    decode: str | None = None,
    input_scale: str | None = None,
    settings: Any = None,
    device: str = "cpu",
    detector: Any = None,
    min_box_score: float = 0.0,
) -> list[dict[str, Any]]:
    """One record per person: ``image``, ``bbox``, ``keypoints`` (14 x [x, y, score] flattened), ``score``.

    ``detector`` (a :class:`baselines.detect.api.Detector`, not with ``boxes``) finds each image's people on the
    image as decoded, before any enhancement, keeping boxes scoring at least ``min_box_score``.

    ``checkpoint`` is a training checkpoint or an ONNX pose model (:func:`is_onnx_model`). The test settings are
    ``settings`` (a :class:`baselines.inputs.InferenceSettings`) when given, otherwise the checkpoint's defaults
    (:func:`baselines.inputs.inference_settings`) changed by ``flip_test``, ``crop``, ``decode`` and ``input_scale``."""
    import torch

    from exlpose_data.datasets.lowlight import rgb_means
    from exlpose_data.datasets.sources import decode_image
    from exlpose_data.datasets.transforms import heatmap_to_image

    from .decode import decode_heatmaps
    from .engine import predict_heatmaps
    from .enhance import config_enhancer, enhance_bgr
    from .inputs import dataset_options, inference_settings
    from .options import check_device

    cond = _condition(condition)
    if detector is not None and boxes is not None:
        raise UsageError("--detector and --boxes exclude each other: give one")
    check_device(device)
    net, cfg, origin, _ = _pose_model(checkpoint, cond, device)
    if settings is None:
        flip_mode = ("ours" if flip_test else "none") if isinstance(flip_test, bool) else flip_test
        settings = inference_settings(cfg, origin, crop=crop, flip_test=flip_mode, decode=decode, input_scale=input_scale)
    options = dataset_options(cfg, settings)
    flip = settings.flip_test
    enhancer = config_enhancer(cfg) if cond == "LL" else None  # a model trained on enhanced LL images sees them
    records = []
    for path in images:
        img = decode_image(path)
        found = detector.detect(img, cond.value, min_score=min_box_score) if detector is not None else None  # one decode for both
        if enhancer is not None:
            img = enhance_bgr(enhancer, img)
        h, w = img.shape[:2]
        person_boxes = [[0.0, 0.0, float(w), float(h)]] if found is None else found
        if boxes is not None:
            person_boxes = boxes.get(str(path), boxes.get(path.name))  # type: ignore[assignment]
            if person_boxes is None:
                raise InputError(f"{path}: no entry in the boxes file (keys are image paths or file names)")
        if not person_boxes:
            continue
        means = rgb_means(img)
        crops, affines = zip(*(_crop(img, means, b, cond, options) for b in person_boxes))
        x = torch.from_numpy(np.stack(crops)).to(device)
        heatmaps = predict_heatmaps(net, x, cond.key, flip_test=flip, convention=cfg.heatmap_convention)
        coords, scores = decode_heatmaps(heatmaps, decode=settings.decode)
        for box, affine, c, s in zip(person_boxes, affines, coords, scores):
            xy = heatmap_to_image(c, affine, cfg.input_size, cfg.heatmap_size, cfg.heatmap_convention)
            box_score = float(box[4]) if len(box) == 5 else 1.0
            records.append({
                "image": str(path), "bbox": [float(v) for v in box[:4]],
                "keypoints": [round(float(v), 3) for v in np.column_stack([xy, s]).ravel()],
                "score": box_score * float(s.mean()),
            })
    return records


def _detector_settings(detector: str | None, min_box_score: float | None, *, has_boxes: bool) -> tuple[Path | None, dict[str, Any]]:
    """The detector's file and its recorded settings (``detector``, ``min_box_score``); none without a detector.

    Raises:
        UsageError: a detector with boxes, ``min_box_score`` without a detector or outside [0, 1].
        InputError: the detector's file does not exist.
    """
    if detector is None:
        if min_box_score is not None:
            raise UsageError("--min-box-score applies to --detector's boxes only")
        return None, {}
    if has_boxes:
        raise UsageError("--detector and --boxes exclude each other: give one")
    score = DEFAULT_MIN_BOX_SCORE if min_box_score is None else min_box_score
    if not 0.0 <= score <= 1.0:
        raise UsageError(f"--min-box-score {score:g}: must lie in [0, 1]")
    from .detect.api import detector_file

    path = detector_file(detector)
    if not path.is_file():
        raise InputError(f"--detector {detector}: no such file {path}")
    return path, {"detector": detector, "min_box_score": score}


def predict_to_folder(
    checkpoint: Path,
    images: list[Path],
    out: Path,
    *,
    boxes: dict[str, list[list[float]]] | None = None,
    boxes_file: Path | None = None,
    condition: str = "LL",
    flip_test: str | None = None,
    crop: str | None = None,
    decode: str | None = None,
    input_scale: str | None = None,
    overlays: bool = True,
    device: str = "cpu",
    overwrite: bool = False,
    notify: Callable[[str], None] | None = None,
    detector: str | None = None,
    min_box_score: float | None = None,
) -> list[dict[str, Any]]:
    """:func:`predict`, written to ``out``: ``keypoints.json`` (the records), ``settings.json`` (checkpoint,
    variant, condition, heatmap convention and the test settings: crop, flip test, decode, input scale, the
    checkpoint's origin) and, with ``overlays``, ``<image>_pose.png`` per image. ``notify`` gets one line naming
    the test settings before the run.

    ``out`` follows :func:`baselines.results.result_folder`: new or empty, or an earlier prediction folder with the
    same settings and images (rewritten), or replaced with ``overwrite``; never an input or an input's folder.
    ``boxes_file`` is the file ``boxes`` came from (digested into the folder's record).

    ``detector`` (``DET.pth`` or ``onnx:MODEL.onnx``, not with ``boxes``) finds the person boxes instead:
    :func:`baselines.detect.api.detect_images` keeping boxes scoring at least ``min_box_score`` (default
    :data:`DEFAULT_MIN_BOX_SCORE`); its boxes are used exactly as a boxes file's
    (the box score folds into each person's score). The detector's file and settings are recorded."""
    from exlpose_data.datasets.sources import decode_image

    from .checkpoint import checkpoint_config, checkpoint_origin, load_checkpoint
    from .config import make_config
    from .inputs import inference_settings
    from .results import result_folder

    lighting = _condition(condition)  # before anything is written
    missing = [p for p in images if not Path(p).is_file()]
    if missing:
        raise UsageError(f"{missing[0]}: no such image file" + (f" ({len(missing)} of the {len(images)} images given are missing)" if len(missing) > 1 else ""))
    detector_path, found_by = _detector_settings(detector, min_box_score, has_boxes=boxes is not None or boxes_file is not None)
    exported = None
    if is_onnx_model(checkpoint):
        _, cfg, origin, exported = _pose_model(checkpoint, lighting, "cpu")
    else:
        ckpt = load_checkpoint(checkpoint)
        cfg, origin = make_config(checkpoint_config(ckpt), source=str(checkpoint)), checkpoint_origin(ckpt)
        del ckpt
    chosen = inference_settings(cfg, origin, crop=crop, flip_test=flip_test, decode=decode, input_scale=input_scale)
    if notify is not None:
        model = f"ONNX model, {exported.upper()} branch" if exported is not None else "checkpoint"
        found = f"; boxes from {detector} (score >= {found_by['min_box_score']:g})" if found_by else ""
        notify(f"{checkpoint.name} ({chosen.origin} {model}): {chosen.describe()}{found}")
    finder = None
    if detector is not None:  # loaded and checked before the folder is claimed: a wrong model leaves nothing behind
        from .detect.api import load_detector_spec

        finder = load_detector_spec(detector, device)
        finder.check_condition(lighting.value)
    stems = [f"{path.stem}_pose.png" for path in images] if overlays else []
    settings = {"images": [str(p) for p in images], "condition": condition, **chosen.as_dict(), "overlays": overlays,
                "boxes": boxes_file is not None or boxes is not None, **found_by}
    with result_folder(out, command="exlpose-predict", produces="prediction folder", settings=settings,
                       inputs={"checkpoint": checkpoint, "boxes": boxes_file, "detector": detector_path}, read=images,
                       files=["keypoints.json", "settings.json", *stems], overwrite=overwrite) as (folder, recorded):
        records = predict(checkpoint, images, boxes=boxes, condition=condition, settings=chosen, device=device, detector=finder,
                          min_box_score=found_by.get("min_box_score", 0.0))
        write_json_atomic(folder / "keypoints.json", records, indent=1)
        onnx = {"onnx_lighting": exported} if exported is not None else {}
        write_json_atomic(folder / "settings.json", {"checkpoint": str(checkpoint), "variant": cfg.variant, "condition": lighting.value,
                                                       **chosen.as_dict(), "heatmap_convention": cfg.heatmap_convention, **onnx,
                                                       **found_by}, indent=1)
        recorded.own("keypoints.json", "settings.json")
        if overlays:
            for path in images:
                people = [np.asarray(r["keypoints"]).reshape(-1, 3) for r in records if r["image"] == str(path)]
                img = decode_image(path)
                if lighting is Lighting.LL:
                    # Brighten the dark image the way the network sees it, so the overlay is visible.
                    img = np.clip(img.astype(np.float32) * (0.4 * 255.0 / max(float(img.mean()), 1e-3)), 0, 255).astype(np.uint8)
                write_image_atomic(folder / f"{path.stem}_pose.png", draw_pose(img, np.asarray(people).reshape(-1, 14, 3)))
                recorded.own(f"{path.stem}_pose.png")
    return records
