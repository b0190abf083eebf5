"""Reading and checking COCO-format keypoint results (``[{image_id, category_id, keypoints, score}, ...]``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..jsonio import is_number, load_json
from ..keypoints import NUM_KEYPOINTS

__all__ = ["load_predictions", "validate_predictions"]


def load_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Read a results file (a JSON list); raise :class:`InputError` naming the file when it is unusable."""
    p = Path(path)
    raw = load_json(p)
    if not isinstance(raw, list):
        raise InputError(f"{p}: expected a JSON list of results, got {type(raw).__name__}")
    return raw


def validate_predictions(
    predictions: Iterable[Any], image_ids: set[int], *, source: str = "predictions", category_id: int = 1
) -> list[dict[str, Any]]:
    """Check every result and return clean copies (only the fields the evaluator reads).

    Args:
        predictions: the results, as loaded.
        image_ids: ids of the ground-truth images; a result on another image is an error.
        source: name used in error messages (the file name).
        category_id: category given to results that carry none.
    """
    clean = []
    n_values = 3 * NUM_KEYPOINTS
    for i, res in enumerate(predictions):
        where = f"{source}: result {i}"
        if not isinstance(res, dict):
            raise InputError(f"{where}: expected an object, got {type(res).__name__}")
        if "image_id" not in res and "image" in res:
            raise InputError(f"{where}: names its image by path ('image'), as exlpose-predict's keypoints.json does; "
                             "this needs COCO keypoint results, which name the ground-truth image by 'image_id' "
                             "(exlpose-eval model CKPT --dataset ROOT scores a checkpoint on a split directly)")
        for key in ("image_id", "keypoints", "score"):
            if key not in res:
                raise InputError(f"{where}: missing field '{key}' (COCO keypoint results: image_id, category_id, keypoints, score)")
        image_id = res["image_id"]
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            raise InputError(f"{where}: image_id must be an integer, got {image_id!r}")
        if image_id not in image_ids:
            raise InputError(f"{where}: image_id {image_id} is not an image of the ground-truth file")
        kps = res["keypoints"]
        if not isinstance(kps, list) or len(kps) != n_values or not all(is_number(v) for v in kps):
            got = len(kps) if isinstance(kps, list) else type(kps).__name__
            raise InputError(f"{where}: keypoints must be {n_values} finite numbers (14 x, y, score), got {got}")
        cat = res.get("category_id", category_id)
        if not (is_number(cat) and float(cat).is_integer()):
            raise InputError(f"{where}: category_id must be an integer, got {cat!r}")
        if not is_number(res["score"]):
            raise InputError(f"{where}: score must be a finite number, got {res['score']!r}")
        clean.append(
            {
                "image_id": image_id,
                "category_id": int(cat),
                "keypoints": [float(v) for v in kps],
                "score": float(res["score"]),
            }
        )
    return clean
