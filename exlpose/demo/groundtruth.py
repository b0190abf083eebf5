"""The simulator's ground truth as an annotation tool's export, for the demo's annotation stage.

The simulator gives each person's joints in its own aligned frame (the LL frame after *its* crop); the
aligned dataset is cropped by the estimated alignment instead. Both crops are in LL pixels and the LL image is
never resampled, so moving a label from one to the other is a shift by the difference of the crops' corners.
"""

from __future__ import annotations

from pathlib import Path

from exlpose_data.errors import UsageError
from exlpose_data.keypoints import crowdpose14
from exlpose_data.release import Release
from exlpose_data.schema import AnnotationDocument, AnnotationRecord, ImageRecord

__all__ = ["truth_document", "write_cvat"]


def _shift(person: dict, dx: float, dy: float, width: int, height: int) -> tuple[list[float], list[float]] | None:
    kps = list(person["keypoints"])
    for j in range(crowdpose14().num_keypoints):
        if kps[3 * j + 2] > 0:
            x, y = kps[3 * j] + dx, kps[3 * j + 1] + dy
            if 0 <= x <= width and 0 <= y <= height:
                kps[3 * j], kps[3 * j + 1] = round(x, 2), round(y, 2)
            else:  # the estimated crop cut this joint off
                kps[3 * j : 3 * j + 3] = [0.0, 0.0, 0.0]
    if not any(v > 0 for v in kps[2::3]):
        return None
    x, y, w, h = person["bbox"]
    x0, y0 = max(x + dx, 0.0), max(y + dy, 0.0)
    x1, y1 = min(x + dx + w, width), min(y + dy + h, height)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return kps, [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def truth_document(feeds: dict, crops: dict[str, list[int]], release: Release, session_scenes: dict[str, dict]) -> AnnotationDocument:
    """Labels of every exported pair, named by their bright images.

    Args:
        feeds: the simulator's ``feeds.json``.
        crops: scene -> the alignment's ``crop`` ([x0, y0, w, h] in LL pixels).
        release: the aligned dataset.
        session_scenes: scene -> its session attrs (date_mmdd, site, video_id).
    """
    scenes = {}
    for scene in feeds["scenes"]:
        name = scene["scene"]
        if name in crops and name in session_scenes:
            meta = session_scenes[name]
            scenes[(meta["date_mmdd"], meta["site"], int(meta["video_id"]))] = scene
    images, anns = [], []
    for pair in release.pairs:
        n = pair.name
        scene = scenes.get((n.date, n.site, n.video))
        if scene is None or n.ratio not in {s["ratio"] for s in scene["steps"]}:
            continue
        sim_x0, sim_y0 = scene["geometry"]["crop"][:2]
        x0, y0, width, height = crops[scene["scene"]]
        # the emulator plays a feed folder in name order, cycling: pair i of a step shows feed frame i mod n
        truth = scene["frames"][n.frame % len(scene["frames"])]
        image_id = len(images) + 1
        images.append(ImageRecord(id=image_id, file_name=pair.bright, width=width, height=height))
        for person in truth["people"]:
            shifted = _shift(person, sim_x0 - x0, sim_y0 - y0, width, height)
            if shifted is not None:
                kps, bbox = shifted
                anns.append(AnnotationRecord(id=len(anns) + 1, image_id=image_id, keypoints=kps, bbox=bbox,
                                             num_keypoints=sum(1 for v in kps[2::3] if v > 0)))
    if not images:
        raise UsageError("no exported pair matches the simulator's ground truth (scene names or frame numbers differ)")
    return AnnotationDocument(images=images, annotations=anns, categories=[crowdpose14().coco_category()])


def write_cvat(doc: AnnotationDocument, path: Path) -> Path:
    """Write ``doc`` as a CVAT 'COCO Keypoints 1.0' export (what annotators hand back)."""
    from annotation.formats.cvat import to_cvat_dict

    from exlpose_data.atomic import write_json_atomic

    return write_json_atomic(path, to_cvat_dict(doc), indent=None)
