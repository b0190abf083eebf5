"""Label Studio: a joint's owner is its parentID, then its relation, then geometry; conflicts are reported."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from annotation.formats.label_studio import parse_label_studio
from annotation.problems import ProblemLog

FIXTURE = Path(__file__).parent / "data" / "tools" / "label_studio_parentid.json"
BOX_A, BOX_B = "hplPm0Szvc", "nB7cQ4uE0s"


@pytest.fixture()
def export() -> list:
    return json.loads(FIXTURE.read_text())


def _result(export: list) -> list:
    return export[0]["annotations"][0]["result"]


def test_parent_id_owns_joints_of_overlapping_people(export):
    log = ProblemLog("ls.json")
    (image,) = parse_label_studio(export, log).images
    assert not log.problems
    a, b = image.people
    assert a.bbox == pytest.approx([600, 300, 300, 700]) and b.bbox == pytest.approx([800, 310, 300, 690])
    # head, neck, right shoulder (in both boxes), left wrist (outside its own box, inside B's only) stay with A
    assert a.keypoints[12].tolist() == pytest.approx([750, 320, 2])
    assert a.keypoints[1].tolist() == pytest.approx([850, 430, 2])
    assert a.keypoints[4].tolist() == pytest.approx([1000, 640, 2])
    assert int((a.keypoints[:, 2] > 0).sum()) == 4
    assert b.keypoints[0].tolist() == pytest.approx([870, 440, 2])
    assert b.keypoints[4].tolist() == [0, 0, 0]  # the wrist in B's box was not handed to B
    assert int((b.keypoints[:, 2] > 0).sum()) == 3


def test_without_parent_id_the_overlap_is_refused_and_the_stray_wrist_not_reassigned(export):
    for r in _result(export):
        r.pop("parentID", None)
    log = ProblemLog("ls.json")
    assert parse_label_studio(export, log).images == []
    msgs = [str(p) for p in log.problems]
    # the head is related to A, so only geometry-owned joints are at stake
    assert any("result 'qwGtX1L1Nm'" in m and "2 person boxes" in m for m in msgs)
    assert any("result 'Vx1mN6tY3h'" in m and "2 person boxes" in m for m in msgs)
    assert not any("YuLAREYKpq" in m for m in msgs)


def test_relations_own_joints_without_parent_id(export):
    result = _result(export)
    for r in result:
        r.pop("parentID", None)
    for rid, box in (("gD9Q-39A_4", BOX_A), ("qwGtX1L1Nm", BOX_A), ("Tq3_xZ8aLm", BOX_A), ("Rk2pV9sW1e", BOX_B), ("o5Jf8LqP2d", BOX_B), ("Vx1mN6tY3h", BOX_B)):
        result.append({"type": "relation", "from_id": rid, "to_id": box, "direction": "right"})
    log = ProblemLog("ls.json")
    (image,) = parse_label_studio(export, log).images
    assert not log.problems
    a, b = image.people
    assert a.keypoints[4].tolist() == pytest.approx([1000, 640, 2])
    assert b.keypoints[4].tolist() == [0, 0, 0]


def test_a_parent_id_and_a_relation_that_disagree_are_reported_with_task_and_regions(export):
    _result(export).append({"type": "relation", "from_id": "Tq3_xZ8aLm", "to_id": BOX_B, "direction": "right"})
    log = ProblemLog("ls.json")
    assert parse_label_studio(export, log).images == []
    assert [str(p) for p in log.problems] == [
        f"ls.json: task 10764, result 'Tq3_xZ8aLm': parentID: conflict: left_wrist has parentID '{BOX_A}' but is related to person box(es) '{BOX_B}'; fix one of them"
    ]


def test_a_parent_id_that_is_not_a_box_is_reported(export):
    broken = copy.deepcopy(export)
    _result(broken)[0]["parentID"] = "gD9Q-39A_4"  # a joint, not a box
    log = ProblemLog("ls.json")
    assert parse_label_studio(broken, log).images == []
    assert [str(p) for p in log.problems] == [
        "ls.json: task 10764, result 'YuLAREYKpq': parentID: head's parent 'gD9Q-39A_4' is not a person box (rectanglelabels) of this annotation"
    ]
