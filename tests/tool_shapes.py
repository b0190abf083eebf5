"""Files as the outside tools write them, built from CrowdPose documents for tests.

Shaped on the tools' own exporters, not on our writers:

- CVAT "COCO Keypoints 1.0": Datumaro's COCO keypoints converter (``_KeypointsConverter`` /
  ``_InstancesConverter`` in datumaro's ``plugins/coco_format/converter.py``): categories numbered from 1 in
  label order with ``supercategory`` "" and a 1-based skeleton, images with ``license``/``flickr_url``/
  ``coco_url``/``date_captured``, annotations with ``segmentation`` [], ``area`` = w*h of the bbox, bbox
  rounded, ``attributes`` {"occluded": false, ...}; a skeleton grouped with a rectangle gets the rectangle's
  label as ``category_id`` and the rectangle as ``bbox``. CVAT exports every frame of the task, labelled or not.
- CVAT "CVAT for images 1.1" XML: CVAT's ``dump_as_cvat_annotation`` (``cvat/apps/dataset_manager/formats/cvat.py``):
  ``<annotations><version>1.1</version><meta>`` then one ``<image id name width height>`` per frame; a
  ``<box label source occluded xtl ytl xbr ybr z_order group_id>`` and a ``<skeleton label source z_order group_id>``
  whose ``<points label source outside occluded points="x,y">`` elements carry no z_order; numbers as "{:.2f}".
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr

from exlpose_data.keypoints import crowdpose14
from exlpose_data.schema import AnnotationDocument

__all__ = ["cvat_coco_keypoints", "cvat_images_xml"]


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


def _attrs(pairs: list[tuple[str, str]]) -> str:
    return " ".join(f"{k}={quoteattr(v)}" for k, v in pairs)


def cvat_images_xml(
    frames: list[tuple[str, int, int, list[dict]]], *, grouped: bool = True, skeleton_label: str = "person", box_label: str = "person_box"
) -> str:
    """A "CVAT for images 1.1" annotations.xml: ``frames`` are (name, width, height, people) with people as
    ``{"keypoints": [42 numbers], "bbox": [x, y, w, h]}`` (v = 1 written as occluded, v = 0 as outside)."""
    names = crowdpose14().keypoints
    out = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "  <version>1.1</version>",
           "  <meta>", "    <task>", "      <id>7</id>", "      <name>exlpose</name>", f"      <size>{len(frames)}</size>",
           "      <mode>annotation</mode>", "      <overlap>0</overlap>", "      <start_frame>0</start_frame>",
           f"      <stop_frame>{len(frames) - 1}</stop_frame>", "    </task>", "  </meta>"]
    for frame, (name, width, height, people) in enumerate(frames):
        out.append(f"  <image {_attrs([('id', str(frame)), ('name', name), ('width', str(width)), ('height', str(height))])}>")
        for group, person in enumerate(people, start=1):
            x, y, w, h = person["bbox"]
            group_attr = [("group_id", str(group))] if grouped else []
            if grouped:
                box = [("label", box_label), ("source", "manual"), ("occluded", "0"), ("xtl", f"{x:.2f}"), ("ytl", f"{y:.2f}"),
                       ("xbr", f"{x + w:.2f}"), ("ybr", f"{y + h:.2f}"), ("z_order", "0"), *group_attr]
                out.append(f"    <box {_attrs(box)}>")
                out.append("    </box>")
            out.append(f"    <skeleton {_attrs([('label', skeleton_label), ('source', 'manual'), ('z_order', '0'), *group_attr])}>")
            kp = person["keypoints"]
            for j, joint in enumerate(names):
                px, py, v = kp[3 * j : 3 * j + 3]
                point = [("label", joint), ("source", "manual"), ("outside", "1" if v == 0 else "0"),
                         ("occluded", "1" if v == 1 else "0"), ("points", f"{px:.2f},{py:.2f}")]
                out.append(f"      <points {_attrs(point)}>")
                out.append("      </points>")
            out.append("    </skeleton>")
        out.append("  </image>")
    out.append("</annotations>")
    return "\n".join(out) + "\n"
