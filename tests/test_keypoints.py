import json

import numpy as np

from exlpose_data.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS, crowdpose14
from tests.conftest import OFFICIAL_LL_ALL


def test_names_and_skeleton_match_the_official_file():
    cat = json.loads(OFFICIAL_LL_ALL.read_text())["categories"][0]
    spec = crowdpose14()
    assert list(spec.keypoints) == cat["keypoints"] == list(KEYPOINT_NAMES)
    assert [list(p) for p in spec.skeleton] == cat["skeleton"]
    assert NUM_KEYPOINTS == 14


def test_flip_index_swaps_left_and_right_only():
    spec = crowdpose14()
    perm = spec.flip_index()
    for j, name in enumerate(spec.keypoints):
        partner = spec.keypoints[perm[j]]
        if name.startswith("left_"):
            assert partner == "right_" + name[5:]
        elif name.startswith("right_"):
            assert partner == "left_" + name[6:]
        else:
            assert partner == name  # head and neck stay
    assert np.array_equal(perm[perm], np.arange(14))


def test_sigmas_are_crowdpose_values():
    s = crowdpose14().sigmas_array()
    assert s.shape == (14,)
    np.testing.assert_allclose(s * 10, [.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79, .79])
    assert crowdpose14().area_factor == 0.53 and crowdpose14().max_dets == 20
