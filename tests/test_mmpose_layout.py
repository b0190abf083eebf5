"""mmpose's ExLPose layout: ROOT/annotations/ExLPose/ExLPose_*.json, written on request, found everywhere we look.

The check applies mmpose's own rules, read from its sources (no mmcv here): the ExLPose config
(``configs/body_2d_keypoint/topdown_heatmap/exlpose/td-hm_hrnet-w32_8xb64-210e_exlpose-256x192.py``:
``data_root='data/ExLPose/'``, ``ann_file='annotations/ExLPose/ExLPose_test_LL-A.json'`` and
``ExLPose_train_LL.json``, ``data_prefix=dict(img='')``), its metainfo (``configs/_base_/datasets/exlpose.py``)
and ``BaseCocoStyleDataset._load_annotations`` / ``parse_data_info`` / ``_is_valid_instance``, run with the real
pycocotools ``COCO`` that mmpose uses.
"""

from __future__ import annotations

import json
import os.path as osp
from pathlib import Path

import cv2
import numpy as np
from pycocotools.coco import COCO
from typer.testing import CliRunner

from annotation.cli import app
from exlpose_data.layout import write_pairs
from exlpose_data.naming import parse_name
from exlpose_data.release import open_release
from exlpose_data.schema import AnnotationDocument, load_document
from exlpose_data.stats import dataset_stats
from tests.tool_shapes import cvat_coco_keypoints

OFFICIAL = Path(__file__).parent / "data" / "ExLPose_test_LL-All.json"
# mmpose configs/_base_/datasets/exlpose.py, keypoint_info in id order
MMPOSE_EXLPOSE_KEYPOINTS = [
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck",
]


def mmpose_topdown_instances(data_root: Path, ann_file: str, img_prefix: str = "") -> list[dict]:
    """The instances mmpose's BaseCocoStyleDataset (data_mode='topdown') builds from ``data_root/ann_file``."""
    coco = COCO(str(data_root / ann_file))
    out = []
    for img_id in coco.getImgIds():
        img = coco.loadImgs(img_id)[0]
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=False)):
            if "bbox" not in ann or "keypoints" not in ann or max(ann["keypoints"]) == 0:
                continue
            w, h = img["width"], img["height"]
            x, y, bw, bh = ann["bbox"]
            bbox = np.array([np.clip(x, 0, w - 1), np.clip(y, 0, h - 1), np.clip(x + bw, 0, w - 1), np.clip(y + bh, 0, h - 1)], np.float32)
            kp = np.array(ann["keypoints"], np.float32).reshape(-1, 3)
            num = ann["num_keypoints"] if "num_keypoints" in ann else np.count_nonzero(kp[:, :2].max(axis=1))
            info = {"img_path": osp.join(str(data_root), img_prefix, img["file_name"]), "bbox": bbox, "keypoints": kp[:, :2],
                    "visible": np.minimum(1, kp[:, 2]), "num_keypoints": num, "iscrowd": ann.get("iscrowd", 0), "id": ann["id"]}
            if info["iscrowd"] or info["num_keypoints"] == 0 or bbox[2] - bbox[0] <= 0 or bbox[3] - bbox[1] <= 0:
                continue  # _is_valid_instance
            out.append(info)
    return out


def test_import_writes_the_mmpose_layout_and_mmpose_reads_it(tmp_path):
    doc = load_document(OFFICIAL)
    images = doc.images[:3]
    small = AnnotationDocument(info=doc.info, categories=doc.categories, images=images, annotations=[a for a in doc.annotations if a.image_id in {i.id for i in images}])
    root = tmp_path / "data" / "ExLPose"  # mmpose's data_root
    root.mkdir(parents=True)
    pairs = [(im.file_name, parse_name(im.file_name).twin().relpath) for im in images]
    write_pairs(root / "brightPath2darkPath.txt", pairs)
    for im, pair in zip(images, pairs):
        for rel in pair:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(root / rel), np.zeros((im.height, im.width), np.uint8))
    export = tmp_path / "person_keypoints_default.json"
    export.write_text(json.dumps(cvat_coco_keypoints(small)))
    r = CliRunner().invoke(app, ["import", str(export), "--format", "cvat", "--dataset", str(root), "--split-name", "test", "--layout", "mmpose"])
    assert r.exit_code == 0, r.output
    ann_dir = root / "annotations" / "ExLPose"
    assert sorted(p.name for p in ann_dir.iterdir()) == [".exlpose-provenance.json", "ExLPose_test_LL-A.json", "ExLPose_test_WL.json"]

    ll = mmpose_topdown_instances(root, "annotations/ExLPose/ExLPose_test_LL-A.json")
    expected = [a for a in small.annotations if a.iscrowd == 0 and any(v > 0 for v in a.keypoints[2::3])]
    assert len(ll) == len(expected) > 0
    assert all(Path(i["img_path"]).is_file() and "/dark/" in i["img_path"] for i in ll)
    assert all(i["id"] > 0 for i in ll)  # CocoMetric would never match an id 0
    assert np.allclose(ll[0]["keypoints"], np.asarray(expected[0].keypoints, np.float32).reshape(14, 3)[:, :2])
    wl = mmpose_topdown_instances(root, "annotations/ExLPose/ExLPose_test_WL.json")
    assert len(wl) == len(ll) and all("/bright/" in i["img_path"] and Path(i["img_path"]).is_file() for i in wl)
    cats = COCO(str(ann_dir / "ExLPose_test_LL-A.json")).loadCats([1])
    assert cats[0]["keypoints"] == MMPOSE_EXLPOSE_KEYPOINTS

    # Found where we look for annotations: the release index (review, training), stats
    assert sorted(open_release(root).annotation_files()) == ["test_LL-A", "test_WL"]
    files = dataset_stats(root, intensity=False)["annotation_files"]
    assert {k: v["file"] for k, v in files.items()} == {"test_LL-A": "ExLPose_test_LL-A.json", "test_WL": "ExLPose_test_WL.json"}
