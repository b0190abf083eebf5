"""Files as the outside tools write them, built from CrowdPose documents for tests.

Shaped on the tools' own exporters, not on our writers:

- CVAT "COCO Keypoints 1.0": Datumaro's COCO keypoints converter (``_KeypointsConverter`` /
  ``_InstancesConverter`` in datumaro's ``plugins/coco_format/converter.py``): categories numbered from 1 in
  label order with ``supercategory`` "" and a 1-based skeleton, images with ``license``/``flickr_url``/
  ``coco_url``/``date_captured``, annotations with ``segmentation`` [], ``area`` = w*h of the bbox, bbox
  rounded, ``attributes`` {"occluded": false, ...}; a skeleton grouped with a rectangle gets the rectangle's
  label as ``category_id`` and the rectangle as ``bbox``. CVAT exports every frame of the task, labelled or not.
"""

from __future__ import annotations

from typing import Any

from exlpose_data.keypoints import crowdpose14
from exlpose_data.schema import AnnotationDocument

__all__ = ["cvat_coco_keypoints"]


def cvat_coco_keypoints(doc: AnnotationDocument, unlabelled_frames: list[tuple[str, int, int]] = ()) -> dict[str, Any]:
    """``doc`` as CVAT's COCO Keypoints 1.0 export of a task whose skeletons are grouped with ``person_box``
    rectangles, plus frames nobody labelled (name, width, height) as CVAT lists them: images without annotations."""
    spec = crowdpose14()
    images = [
        {"id": n, "width": im.width, "height": im.height, "file_name": im.file_name.rsplit("/", 1)[-1], "license": 0, "flickr_url": "", "coco_url": "", "date_captured": 0}
        for n, im in enumerate(doc.images, start=1)
    ]
    new_id = {im.id: n for n, im in enumerate(doc.images, start=1)}
    for name, w, h in unlabelled_frames:
        images.append({"id": len(images) + 1, "width": w, "height": h, "file_name": name, "license": 0, "flickr_url": "", "coco_url": "", "date_captured": 0})
    annotations = []
    for a in doc.annotations:
        x, y, w, h = a.bbox
        annotations.append(
            {
                "id": len(annotations) + 1, "image_id": new_id[a.image_id], "category_id": 2, "segmentation": [], "area": float(w * h),
                "bbox": [round(float(v), 2) for v in a.bbox], "iscrowd": 0, "attributes": {"occluded": False},
                "keypoints": [round(float(v), 2) if i % 3 != 2 else int(v) for i, v in enumerate(a.keypoints)],
                "num_keypoints": sum(1 for v in a.keypoints[2::3] if v > 0),
            }
        )
    return {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "", "year": ""},
        "categories": [
            {"id": 1, "name": "person", "supercategory": "", "keypoints": list(spec.keypoints), "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton]},
            {"id": 2, "name": "person_box", "supercategory": "", "keypoints": [], "skeleton": []},
        ],
        "images": images,
        "annotations": annotations,
    }
