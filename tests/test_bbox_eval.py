"""Tests of COCO box AP (exlpose_data.evaluation.bbox_eval) against pycocotools run directly."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest

from exlpose_data.evaluation import BoxMetrics, evaluate_boxes
from exlpose_data.errors import InputError


def _direct_cocoeval(doc: dict, detections: list[dict]) -> np.ndarray:
    """pycocotools' own box summary (``stats``) on a document given as it is, with ``area = w * h`` added."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = copy.deepcopy(doc)
    for ann in gt["annotations"]:
        ann["area"] = ann["bbox"][2] * ann["bbox"][3]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(detections)), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def _renumbered(doc: dict) -> dict:
    out = copy.deepcopy(doc)
    for n, ann in enumerate(out["annotations"], start=1):
        ann["id"] = n
    return out


def _perturbed(doc: dict, seed: int = 0) -> list[dict]:
    """Every GT box jittered by up to 15% of its size, with random scores, plus a false positive per image."""
    rng = np.random.default_rng(seed)
    dets = []
    for ann in doc["annotations"]:
        x, y, w, h = ann["bbox"]
        dx, dy, dw, dh = rng.uniform(-0.15, 0.15, 4)
        dets.append({"image_id": ann["image_id"], "category_id": 1, "bbox": [x + dx * w, y + dy * h, w * (1 + dw), h * (1 + dh)], "score": float(rng.uniform(0.05, 1))})
    for img in doc["images"]:
        dets.append({"image_id": img["id"], "category_id": 1, "bbox": [5.0, 5.0, 80.0, 160.0], "score": float(rng.uniform(0, 0.5))})
    return dets


@pytest.mark.slow
def test_ap_equals_direct_cocoeval_on_the_official_file(official_ll_all: dict, tmp_path: Path) -> None:
    dets = _perturbed(official_ll_all)
    ours = evaluate_boxes(official_ll_all, dets)
    direct = _direct_cocoeval(_renumbered(official_ll_all), dets)
    assert isinstance(ours, BoxMetrics) and ours.num_ground_truths == 2810 and ours.num_detections == 2810 + 491
    got = [ours.AP, ours.AP50, ours.AP75, ours.APm, ours.APl, ours.AR1, ours.AR10, ours.AR100]
    assert got == pytest.approx([direct[i] for i in (0, 1, 2, 4, 5, 6, 7, 8)], abs=1e-12)
    assert 0.3 < ours.AP < ours.AP50 < 1.0  # jitter costs the strict thresholds, not IoU 0.5
    assert ours.summary() == {"AP": ours.AP, "AP50": ours.AP50, "AP75": ours.AP75, "AR": ours.AR100}
    # Files on disk give the same numbers.
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    assert evaluate_boxes(Path("tests/data/ExLPose_test_LL-All.json"), tmp_path / "dets.json") == ours


@pytest.mark.slow
def test_ground_truth_boxes_score_one_despite_the_id_zero_annotation(official_ll_all: dict) -> None:
    gt_dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0} for a in official_ll_all["annotations"]]
    ours = evaluate_boxes(official_ll_all, gt_dets)
    assert (ours.AP, ours.AP50, ours.AP75, ours.AR100) == (1.0, 1.0, 1.0, 1.0)
    # pycocotools on the file's own ids never counts the person with annotation id 0 as found.
    assert min(a["id"] for a in official_ll_all["annotations"]) == 0
    assert _direct_cocoeval(official_ll_all, gt_dets)[8] < 1.0


def test_detection_checks(official_ll_all: dict) -> None:
    doc = {**official_ll_all, "images": official_ll_all["images"][:3]}
    ids = {img["id"] for img in doc["images"]}
    doc["annotations"] = [a for a in official_ll_all["annotations"] if a["image_id"] in ids]
    good = {"image_id": doc["images"][0]["id"], "category_id": 1, "bbox": [1.0, 2.0, 30.0, 40.0], "score": 0.5}
    with pytest.raises(InputError, match=r"detection 1: image_id 999999 is not an image of the ground-truth file"):
        evaluate_boxes(doc, [good, {**good, "image_id": 999999}])
    for bad, what in (({"bbox": [1, 2, 0, 4]}, "w, h > 0"), ({"bbox": [1, 2, 3]}, r"bbox must be \[x, y, w, h\]"),
                      ({"score": float("nan")}, "score must be a finite"), ({"image_id": "7"}, "image_id must be an integer")):
        with pytest.raises(InputError, match=f"detection 0: .*{what}"):
            evaluate_boxes(doc, [{**good, **bad}])
    empty = evaluate_boxes(doc, [])
    assert empty.AP == 0.0 and empty.AR100 == 0.0 and empty.num_detections == 0 and empty.num_ground_truths == len(doc["annotations"])


def test_crowd_regions_neither_count_nor_punish() -> None:
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "width": 400, "height": 300, "crowdIndex": 0}],
        "annotations": [
            {"id": 0, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 120], "keypoints": [0] * 42, "num_keypoints": 0, "iscrowd": 0},
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [200, 50, 150, 200], "keypoints": [0] * 42, "num_keypoints": 0, "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "person", "supercategory": "person", "keypoints": [], "skeleton": []}],
    }
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 120], "score": 0.6},
            {"image_id": 1, "category_id": 1, "bbox": [220, 60, 60, 120], "score": 0.9}]  # inside the crowd region
    m = evaluate_boxes(doc, dets)
    # The person without labelled joints counts (it has id 0, too); the higher-scored detection in the crowd
    # region is ignored, not a false positive (dropping the region would halve the precision).
    assert m.num_ground_truths == 1 and m.AP == pytest.approx(1.0) and m.AR100 == 1.0
    no_crowd = copy.deepcopy(doc)
    no_crowd["annotations"] = no_crowd["annotations"][:1]
    assert evaluate_boxes(no_crowd, dets).AP < 0.6
