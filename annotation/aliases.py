"""Joint names as annotation tools spell them, mapped onto the 14 CrowdPose joints.

Annotators name skeleton points freely ("Left Shoulder", "l_shoulder", "shoulder_left", "head_top"); each
spelling is reduced to a key (lower case, no separators) and looked up in a table generated from
``exlpose_data.keypoints.crowdpose14()`` plus the few head/neck words other datasets use.
"""

from __future__ import annotations

import re
from functools import lru_cache

from exlpose_data.keypoints import crowdpose14

__all__ = ["joint_key", "joint_index", "alias_table"]

_SIDES = {"left": ("left", "l"), "right": ("right", "r")}
# Top of head is what CrowdPose labels as "head"; MPII/PoseTrack call it head_top, AI Challenger top_head.
_EXTRA = {
    "head": ("head_top", "top_head", "headtop", "top_of_head", "head"),
    "neck": ("neck", "upper_neck"),
}


def joint_key(name: str) -> str:
    """Comparison key of a joint name: lower case, separators and surrounding space removed."""
    return re.sub(r"[\s_\-.]+", "", name.strip().lower())


@lru_cache(maxsize=1)
def alias_table() -> dict[str, int]:
    """``{joint_key(alias): joint index}`` for every accepted spelling."""
    table: dict[str, int] = {}
    for idx, name in enumerate(crowdpose14().keypoints):
        spellings = {name, *_EXTRA.get(name, ())}
        side, _, part = name.partition("_")
        if side in _SIDES and part:
            for word in _SIDES[side]:
                spellings |= {f"{word}_{part}", f"{part}_{word}"}
        for s in spellings:
            table[joint_key(s)] = idx
    return table


def joint_index(name: str) -> int | None:
    """Index of ``name`` among the CrowdPose joints, or None when it is not a known spelling."""
    return alias_table().get(joint_key(name))
