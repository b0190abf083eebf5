"""crowdIndex and crowd regions: kept from the input, computed without iscrowd regions (as CrowdPose)."""

from __future__ import annotations

import pytest

from exlpose_data.annotations import crowd_index, normalise_document
from exlpose_data.schema import AnnotationDocument


def _person(i: int, box: list[float], joints: list[tuple[float, float]], iscrowd: int = 0, **extra) -> dict:
    kp = [0] * 42
    for j, (x, y) in enumerate(joints):
        kp[3 * j : 3 * j + 3] = [x, y, 2]
    return {"id": i, "image_id": 1, "category_id": 1, "keypoints": kp, "bbox": box, "iscrowd": iscrowd, **extra}


def _doc(image: dict, people: list[dict]) -> AnnotationDocument:
    return AnnotationDocument.model_validate({"images": [{"id": 1, "file_name": "a.png", "width": 200, "height": 200, **image}], "annotations": people})


# A and B overlap: 1 of B's 4 joints lies in A's box, 2 of A's 4 in B's. The crowd region covers them both and
# carries joints as some CrowdPose crowd regions do.
A = _person(1, [0, 0, 100, 100], [(10, 10), (20, 20), (110, 50), (105, 60)])
B = _person(2, [100, 0, 100, 100], [(90, 10), (150, 20), (160, 30), (170, 40)])
CROWD = _person(3, [0, 0, 200, 200], [(50, 50), (150, 150), (60, 60)], iscrowd=1, num_keypoints=7)


def test_crowd_index_leaves_crowd_regions_out():
    expected = (2 / 4 + 1 / 4) / 2
    people = _doc({}, [A, B]).annotations
    assert crowd_index(people) == pytest.approx(expected)
    with_crowd = _doc({}, [A, B, CROWD]).annotations
    assert crowd_index(with_crowd) == pytest.approx(expected)  # counting the region would give (4/4 + 3/4 + ...) / 3


def test_normalise_keeps_a_given_crowd_index_and_a_crowd_regions_count():
    given = normalise_document(_doc({"crowdIndex": 0.9}, [A, B, CROWD]))
    assert given.images[0].crowdIndex == 0.9
    absent = normalise_document(_doc({}, [A, B, CROWD]))
    assert absent.images[0].crowdIndex == pytest.approx(0.375)
    assert normalise_document(_doc({"crowdIndex": 0.9}, [A, B, CROWD]), crowd="all").images[0].crowdIndex == pytest.approx(0.375)
    counts = [a.num_keypoints for a in absent.annotations]
    assert counts == [4, 4, 7]  # the crowd region keeps its 7 although 3 joints are labelled
    no_count = normalise_document(_doc({}, [A, {k: v for k, v in CROWD.items() if k != "num_keypoints"}]))
    assert no_count.annotations[1].num_keypoints == 3  # absent: computed, nothing to keep
