"""Evaluate another model's keypoint predictions on the ExLPose test splits.

Your model wrote COCO-format keypoint results (``[{"image_id", "category_id": 1, "keypoints": [42 numbers],
"score"}, ...]``) for the images of ``ExLPose_test_LL-A.json`` (LL-A covers LL-N, LL-H and LL-E). This
script scores them per split the way the paper's numbers are scored (CrowdPose protocol: 14 OKS sigmas,
scale = bbox w*h*0.53, at most 20 people per image), and also under the ``fixed`` protocol that lets every
ground truth match.

    python examples/evaluate_predictions.py --annotations /data/ExLPose/Annotations --predictions results.json

The gain splits are derived from LL-A with the toolkit's splitter, so older releases that ship only
``ExLPose_test_LL-All.json`` work too. Without ``--predictions`` it scores the ground truth itself, which gives
about 0.985 AP on LL-A (two test images hold more than 20 people).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from exlpose_data.evaluation import evaluate_keypoints
from exlpose_data.naming import annotation_key
from exlpose_data.schema import load_document
from exlpose_data.split import split_by_gain

HERE = Path(__file__).resolve().parent


def find_ll_all(folder: Path) -> Path:
    for p in sorted(folder.glob("*.json")):
        if annotation_key(p.name) == "test_LL-A":
            return p
    raise SystemExit(f"error: {folder}: no ExLPose_test_LL-A.json (or LL-All) found")


def ground_truth_as_predictions(doc) -> list[dict]:
    return [{"image_id": a.image_id, "category_id": 1, "keypoints": a.keypoints, "score": 1.0} for a in doc.annotations]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=Path, default=HERE.parent / "tests" / "data", help="folder holding ExLPose_test_LL-A.json")
    parser.add_argument("--predictions", type=Path, help="COCO keypoint results; default: the ground truth itself")
    args = parser.parse_args()

    ll_all = load_document(find_ll_all(args.annotations))
    splits = split_by_gain(ll_all).documents
    predictions = json.loads(args.predictions.read_text()) if args.predictions else ground_truth_as_predictions(ll_all)
    print(f"{'split':6} {'images':>6} {'AP crowdpose':>13} {'AP fixed':>9} {'AP50':>6} {'AR':>6}")
    for name in ("LL-N", "LL-H", "LL-E", "LL-A"):
        gt = splits[name].to_json_dict()
        ids = {img["id"] for img in gt["images"]}
        preds = [p for p in predictions if p["image_id"] in ids]
        cp = evaluate_keypoints(gt, preds, protocol="crowdpose")
        fx = evaluate_keypoints(gt, preds, protocol="fixed")
        print(f"{name:6} {len(ids):6d} {cp.AP:13.3f} {fx.AP:9.3f} {cp.AP50:6.3f} {cp.AR:6.3f}")
    print("The paper's numbers are AP@0.5:0.95 under the crowdpose protocol. Split files written by the toolkit number")
    print("annotations from 1, so the official files' id-0 quirk does not arise and both protocols agree here.")


if __name__ == "__main__":
    main()
