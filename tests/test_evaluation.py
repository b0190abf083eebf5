"""The CrowdPose-configured keypoint evaluator: hand computations, both protocols, the official test file."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from exlpose_data.errors import InputError, UsageError
from exlpose_data.evaluation import evaluate_keypoints, prepare_ground_truth
from exlpose_data.keypoints import crowdpose14

DATA = Path(__file__).parent / "data"
LL_ALL = DATA / "ExLPose_test_LL-All.json"
SIGMAS = np.array(crowdpose14().sigmas)


def _person(rng: np.random.Generator, ann_id: int, image_id: int, labelled: int = 14, num_keypoints: int | None = None) -> dict:
    x, y = rng.uniform(0, 200, size=2)
    w, h = rng.uniform(30, 80), rng.uniform(60, 160)
    kps = []
    vis = np.zeros(14, int)
    vis[rng.choice(14, size=labelled, replace=False)] = 2
    for j in range(14):
        if vis[j]:
            kps += [float(x + rng.uniform(0, w)), float(y + rng.uniform(0, h)), 2]
        else:
            kps += [0.0, 0.0, 0]
    return {
        "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": [float(x), float(y), float(w), float(h)],
        "keypoints": kps, "num_keypoints": labelled if num_keypoints is None else num_keypoints,
    }


def _document(people_per_image: list[int], seed: int = 0, first_id: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    images, anns = [], []
    next_id = first_id
    for image_id, n in enumerate(people_per_image, start=1):
        images.append({"id": image_id, "file_name": f"dark/img{image_id}.png", "width": 320, "height": 320})
        for _ in range(n):
            anns.append(_person(rng, next_id, image_id, labelled=int(rng.integers(1, 15))))
            next_id += 1
    return {"images": images, "annotations": anns, "categories": [crowdpose14().coco_category()]}


def _gt_as_predictions(doc: dict, labelled_only: bool = False) -> list[dict]:
    return [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in doc["annotations"]
        if not labelled_only or any(v > 0 for v in a["keypoints"][2::3])
    ]


def test_gt_as_prediction_scores_one_under_fixed_with_at_most_20_people():
    doc = _document([3, 20, 1, 7])  # ids start at 0, as in the official test files
    doc["annotations"][5]["num_keypoints"] = 0  # a stale field: joints are labelled, the field says none
    m = evaluate_keypoints(doc, _gt_as_predictions(doc), protocol="fixed")
    assert (m.AP, m.AP50, m.AP75, m.AR) == pytest.approx((1.0, 1.0, 1.0, 1.0), abs=1e-12)
    assert m.num_ground_truths == 31 and m.num_predictions == 31
    # The crowdpose protocol loses the id-0 person (matched but counted as a miss) and ignores the stale one.
    c = evaluate_keypoints(doc, _gt_as_predictions(doc), protocol="crowdpose")
    assert c.num_ground_truths == 30
    assert c.AR == pytest.approx(29 / 30)
    assert c.AP < 1.0


def test_official_ll_all_gt_as_prediction():
    # Two images hold 21 and 22 people, so with maxDets 20 three ground truths cannot be matched, and the
    # 21 people without labelled joints, predicted at (0, 0), become false positives. With every result at the
    # same score, recall tops out below 1, so the 101-point AP also loses its last point (AP <= 100/101).
    # The crowdpose protocol also loses the person with annotation id 0 (matched, then read as "no match").
    doc = json.loads(LL_ALL.read_text())
    preds = _gt_as_predictions(doc)
    fixed = evaluate_keypoints(LL_ALL, preds, protocol="fixed")
    crowd = evaluate_keypoints(LL_ALL, preds, protocol="crowdpose")
    assert fixed.num_ground_truths == crowd.num_ground_truths == 2789
    assert round(fixed.AP, 3) == 0.985
    assert round(crowd.AP, 3) == 0.984
    assert fixed.AR == pytest.approx(1 - 3 / 2789)
    assert crowd.AR == pytest.approx(1 - 4 / 2789)
    # Only the labelled people as predictions: no false positives, AP is exactly the 100 reachable recall points.
    labelled = evaluate_keypoints(LL_ALL, _gt_as_predictions(doc, labelled_only=True), protocol="fixed")
    assert labelled.AP == pytest.approx(100 / 101)


def _one_joint_case(oks: float, bbox_wh: tuple[float, float] = (40.0, 100.0)) -> tuple[dict, list[dict]]:
    w, h = bbox_wh
    kps = [0.0, 0.0, 0] * 14
    kps[12 * 3 : 12 * 3 + 3] = [50.0, 50.0, 2]  # head only
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "width": 200, "height": 200}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 1,
                         "bbox": [30.0, 10.0, w, h], "keypoints": kps}],
    }
    # OKS of one joint: exp(-d^2 / (2 s^2 k^2)), s^2 = w*h*0.53, k = 2*sigma.
    s2 = w * h * 0.53
    k = 2 * SIGMAS[12]
    d = math.sqrt(-math.log(oks) * 2 * s2 * k * k)
    pred = list(kps)
    pred[12 * 3] += d
    return doc, [{"image_id": 1, "keypoints": pred, "score": 0.9}]


def test_oks_uses_crowdpose_scale_and_sigmas():
    doc, preds = _one_joint_case(0.72)
    m = evaluate_keypoints(doc, preds, protocol="fixed")
    # Matched at thresholds 0.50 ... 0.70 (5 of 10): AP = 0.5; AP50 = 1, AP75 = 0.
    # (With the scale w*h instead of w*h*0.53 the OKS would be 0.72**0.53 = 0.84 and AP 0.7.)
    assert (m.AP, m.AP50, m.AP75, m.AR) == pytest.approx((0.5, 1.0, 0.0, 0.5), abs=1e-12)
    doc, preds = _one_joint_case(0.93)
    assert evaluate_keypoints(doc, preds, protocol="crowdpose").AP == pytest.approx(0.9)


# ---- an independent re-implementation of crowdposetools' evaluation, for the crafted cases below ----

def _ref_oks(gt: dict, dt: dict) -> float:
    g = np.array(gt["keypoints"], float)
    d = np.array(dt["keypoints"], float)
    xg, yg, vg = g[0::3], g[1::3], g[2::3]
    xd, yd = d[0::3], d[1::3]
    x, y, w, h = gt["bbox"]
    if np.count_nonzero(vg > 0):
        dx, dy = xd - xg, yd - yg
    else:  # distance to the box doubled on every side
        dx = np.maximum(0, x - w - xd) + np.maximum(0, xd - (x + 2 * w))
        dy = np.maximum(0, y - h - yd) + np.maximum(0, yd - (y + 2 * h))
    e = (dx**2 + dy**2) / (2 * SIGMAS) ** 2 / (w * h * 0.53 + np.spacing(1)) / 2
    if np.count_nonzero(vg > 0):
        e = e[vg > 0]
    return float(np.sum(np.exp(-e)) / e.shape[0])


def _reference_crowdpose(doc: dict, results: list[dict]) -> tuple[float, float]:
    thresholds = np.linspace(0.5, 0.95, 10)
    rec_thrs = np.linspace(0.0, 1.0, 101)
    dts_all = [dict(r, id=i + 1) for i, r in enumerate(results)]
    per_image = []
    for img in sorted(im["id"] for im in doc["images"]):
        gts = [g for g in doc["annotations"] if g["image_id"] == img]
        dts = [d for d in dts_all if d["image_id"] == img]
        if not gts and not dts:
            continue
        ignore = [int(bool(g.get("iscrowd", 0)) or g["num_keypoints"] == 0) for g in gts]
        gorder = np.argsort(ignore, kind="mergesort")
        gts = [gts[i] for i in gorder]
        gig = np.array([ignore[i] for i in gorder])
        dts = [dts[i] for i in np.argsort([-d["score"] for d in dts], kind="mergesort")][:20]
        gtm = np.zeros((10, len(gts)))
        dtm = np.zeros((10, len(dts)))
        dtig = np.zeros((10, len(dts)))
        for t, thr in enumerate(thresholds):
            for di, d in enumerate(dts):
                best, m = min(thr, 1 - 1e-10), -1
                for gi, g in enumerate(gts):
                    if gtm[t, gi] > 0 and not g.get("iscrowd", 0):
                        continue
                    if m > -1 and gig[m] == 0 and gig[gi] == 1:
                        break
                    o = _ref_oks(g, d)
                    if o < best:
                        continue
                    best, m = o, gi
                if m == -1:
                    continue
                dtig[t, di] = gig[m]
                dtm[t, di] = gts[m]["id"]  # an id of 0 reads as "no match" below: the quirk kept on purpose
                gtm[t, m] = d["id"]
        per_image.append(([d["score"] for d in dts], dtm, dtig, gig))
    scores = np.concatenate([p[0] for p in per_image])
    order = np.argsort(-scores, kind="mergesort")
    dtm = np.concatenate([p[1] for p in per_image], axis=1)[:, order]
    dtig = np.concatenate([p[2] for p in per_image], axis=1)[:, order]
    npig = int(np.count_nonzero(np.concatenate([p[3] for p in per_image]) == 0))
    tps = np.cumsum(np.logical_and(dtm, ~dtig.astype(bool)), axis=1).astype(float)
    fps = np.cumsum(np.logical_and(~dtm.astype(bool), ~dtig.astype(bool)), axis=1).astype(float)
    aps, ars = [], []
    for tp, fp in zip(tps, fps):
        rc = tp / npig
        pr = list(tp / (tp + fp + np.spacing(1)))
        for i in range(len(pr) - 1, 0, -1):
            pr[i - 1] = max(pr[i - 1], pr[i])
        idx = np.searchsorted(rc, rec_thrs, side="left")
        q = [pr[i] if i < len(pr) else 0.0 for i in idx]
        aps.append(np.mean(q))
        ars.append(rc[-1] if len(rc) else 0.0)
    return float(np.mean(aps)), float(np.mean(ars))


def _noisy_predictions(doc: dict, rng: np.random.Generator, extra: int) -> list[dict]:
    preds = []
    for a in doc["annotations"]:
        kp = np.array(a["keypoints"], float).reshape(14, 3)
        kp[:, :2] += rng.normal(0, rng.uniform(0.5, 12), size=(14, 2))
        preds.append({"image_id": a["image_id"], "keypoints": kp.ravel().tolist(), "score": float(rng.uniform())})
    for _ in range(extra):  # spurious detections
        img = int(rng.integers(1, len(doc["images"]) + 1))
        kp = np.c_[rng.uniform(0, 300, (14, 2)), np.ones(14)]
        preds.append({"image_id": img, "keypoints": kp.ravel().tolist(), "score": float(rng.uniform())})
    return preds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crowdpose_protocol_matches_reference_reimplementation(seed):
    rng = np.random.default_rng(seed)
    doc = _document([2, 5, 23, 1, 0, 8], seed=seed, first_id=0)  # id 0 present, one image over maxDets
    anns = doc["annotations"]
    anns[1]["num_keypoints"] = 0  # labelled joints but the field says 0: ignored by crowdposetools
    anns[2]["keypoints"] = [0.0, 0.0, 0] * 14  # no labelled joints but the field says 3: scored by box distance
    anns[2]["num_keypoints"] = 3
    anns[3]["iscrowd"] = 1
    anns[4]["num_keypoints"] = 15  # an official-file oddity; only "== 0" matters
    preds = _noisy_predictions(doc, rng, extra=6)
    preds[0]["score"] = preds[1]["score"]  # a tie: both sort stably
    ref_ap, ref_ar = _reference_crowdpose(copy.deepcopy(doc), copy.deepcopy(preds))
    m = evaluate_keypoints(doc, preds, protocol="crowdpose")
    assert m.AP == pytest.approx(ref_ap, abs=1e-12)
    assert m.AR == pytest.approx(ref_ar, abs=1e-12)
    assert 0.05 < m.AP < 0.99  # a case that exercises the matching, not a trivial 0 or 1


def test_id_zero_is_never_a_true_positive_under_crowdpose():
    doc = _document([1], first_id=0)
    preds = _gt_as_predictions(doc)
    assert evaluate_keypoints(doc, preds, protocol="crowdpose").AP == 0.0
    assert evaluate_keypoints(doc, preds, protocol="fixed").AP == pytest.approx(1.0, abs=1e-12)
    doc["annotations"][0]["id"] = 7
    assert evaluate_keypoints(doc, preds, protocol="crowdpose").AP == pytest.approx(1.0, abs=1e-12)


def test_prepare_ground_truth_protocols():
    doc = _document([2], first_id=0)
    doc["annotations"][0]["num_keypoints"] = 0
    crowd = prepare_ground_truth(doc, "crowdpose")
    fixed = prepare_ground_truth(doc, "fixed")
    assert [a["id"] for a in crowd["annotations"]] == [0, 1]
    assert [a["id"] for a in fixed["annotations"]] == [1, 2]
    assert crowd["annotations"][0]["num_keypoints"] == 0
    assert fixed["annotations"][0]["num_keypoints"] == sum(1 for v in doc["annotations"][0]["keypoints"][2::3] if v > 0)
    w, h = doc["annotations"][1]["bbox"][2:]
    assert crowd["annotations"][1]["area"] == pytest.approx(w * h * 0.53)
    assert doc["annotations"][0]["id"] == 0  # input untouched


def test_errors_name_file_and_field(tmp_path):
    doc = _document([1], first_id=1)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"result 0: image_id 99 is not an image"):
        evaluate_keypoints(gt, [{"image_id": 99, "keypoints": [0] * 42, "score": 1}])
    with pytest.raises(InputError, match=r"keypoints must be 42"):
        evaluate_keypoints(gt, [{"image_id": 1, "keypoints": [0] * 51, "score": 1}])
    with pytest.raises(InputError, match=r"missing field 'score'"):
        evaluate_keypoints(gt, [{"image_id": 1, "keypoints": [0] * 42}])
    bad = tmp_path / "p.json"
    bad.write_text("{")
    with pytest.raises(InputError, match=r"p.json: not valid JSON"):
        evaluate_keypoints(gt, bad)
    with pytest.raises(UsageError, match="unknown protocol"):
        evaluate_keypoints(gt, [], protocol="coco")  # type: ignore[arg-type]
    del doc["annotations"][0]["num_keypoints"]
    with pytest.raises(InputError, match=r"annotations/0: no 'num_keypoints'"):
        evaluate_keypoints(doc, [], protocol="crowdpose")
    assert evaluate_keypoints(doc, [], protocol="fixed").AP == 0.0
