"""Labels as read from a tool, before they are resolved against a dataset.

Every reader turns its format into a :class:`LabelSet`: images named as the tool named them, people with 14
CrowdPose joints in annotation order, each item carrying its place in the input for problem reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from exlpose_data.keypoints import NUM_KEYPOINTS

__all__ = [
    "PersonLabel", "ImageLabel", "UnlabelledImage", "LabelSet", "empty_keypoints", "keypoints_extent", "BOX_FROM_KEYPOINTS",
    "JOINTS_BY_GEOMETRY",
]

# Value of the extra ``bbox_source`` field on people whose box was derived from their joints.
BOX_FROM_KEYPOINTS = "keypoints"
# Extra annotation field: names of the joints a person was given only because they lie in its box alone.
JOINTS_BY_GEOMETRY = "joints_by_geometry"


def empty_keypoints() -> np.ndarray:
    """A (14, 3) array of unlabelled joints: v = 0 at (0, 0)."""
    return np.zeros((NUM_KEYPOINTS, 3), dtype=np.float64)


def keypoints_extent(keypoints: np.ndarray) -> list[float] | None:
    """``[x, y, w, h]`` spanned by the labelled joints, or None when fewer than one is labelled."""
    pts = keypoints[keypoints[:, 2] > 0, :2]
    if len(pts) == 0:
        return None
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


@dataclass
class PersonLabel:
    """One person.

    Attributes:
        keypoints: (14, 3) array of x, y, v in CrowdPose order; unlabelled joints are v = 0 at (0, 0).
        bbox: ``[x, y, w, h]`` in pixels, or None when the tool gave no person box.
        place: where the person is in the input (for problem reports).
        iscrowd: the COCO crowd flag.
        box_from_keypoints: the input marks the box as derived from the joints by an earlier import
            (``"bbox_source": "keypoints"``); the mark is kept.
        num_keypoints: the input's ``num_keypoints`` of a crowd region (kept, never recomputed), else None.
        joints_by_geometry: indices of the joints the input did not link to this person (no ``parentID``, no
            relation) and that were given to it because its box is the only one containing them.
    """

    keypoints: np.ndarray
    bbox: list[float] | None
    place: str
    iscrowd: int = 0
    box_from_keypoints: bool = False
    num_keypoints: int | None = None
    joints_by_geometry: tuple[int, ...] = ()


@dataclass
class ImageLabel:
    """One labelled image.

    Attributes:
        file_name: the image as the tool named it (a release path, a bare file name).
        width: image width in pixels, or None when the input does not say.
        height: image height in pixels, or None when the input does not say.
        place: where the image is in the input.
        people: its people.
        image_id: the input's image id, when it has one.
        crowd_index: the input's ``crowdIndex``, when it gives one (kept, not recomputed).
    """

    file_name: str
    width: int | None
    height: int | None
    place: str
    people: list[PersonLabel] = field(default_factory=list)
    image_id: int | None = None
    crowd_index: float | None = None


@dataclass(frozen=True)
class UnlabelledImage:
    """An image the input names but gives no usable labels for (a task nobody labelled, or one that was skipped).

    Attributes:
        place: where it is in the input (``task 19``).
        file_name: the image as the tool named it.
        why: ``skipped`` (every annotation was cancelled) or ``not labelled`` (no annotation).
    """

    place: str
    file_name: str
    why: str

    def __str__(self) -> str:
        return f"{self.place} ({self.file_name}): {self.why}"


@dataclass
class LabelSet:
    """Everything read from one input file.

    Attributes:
        source: the input file.
        images: the labelled images.
        unlabelled: images the input names without usable labels (not labels: never written as "nobody here").
        warnings: things read as the input says that may not be what the labeller meant (one line each).
    """

    source: str
    images: list[ImageLabel] = field(default_factory=list)
    unlabelled: list[UnlabelledImage] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def num_people(self) -> int:
        return sum(len(im.people) for im in self.images)
