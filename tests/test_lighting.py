"""One vocabulary for the two lighting conditions."""

from __future__ import annotations

import json

import pytest

from exlpose_data.lighting import Lighting
from exlpose_data.naming import parse_name


def test_every_spelling_of_a_condition() -> None:
    assert [(m.value, m.key, m.folder, m.display) for m in Lighting] == [
        ("LL", "ll", "dark", "low-light"), ("WL", "wl", "bright", "well-lit")]
    for spelling, member in (("LL", Lighting.LL), ("ll", Lighting.LL), ("dark", Lighting.LL), ("WL", Lighting.WL),
                             ("wl", Lighting.WL), ("bright", Lighting.WL), (Lighting.WL, Lighting.WL)):
        assert Lighting.parse(spelling) is member
    assert Lighting.LL.twin is Lighting.WL and Lighting.WL.twin is Lighting.LL
    # A member is its value wherever a string is expected: comparisons, dict keys, f-strings, JSON.
    assert Lighting.LL == "LL" and {"LL": 1}[Lighting.LL] == 1 and f"{Lighting.WL}.json" == "WL.json"
    assert json.dumps([Lighting.LL]) == '["LL"]'


@pytest.mark.parametrize("spelling", ["Ll", "night", "low", ""])
def test_other_spellings_are_refused_by_name(spelling: str) -> None:
    with pytest.raises(ValueError, match=f"unknown lighting condition {spelling!r}; choose one of LL, WL"):
        Lighting.parse(spelling)


def test_release_names_carry_the_condition() -> None:
    name = parse_name("dark/imgs_0119_3_vid000003_exp1200_dark_000051__gain_0.00_exposure_417.png")
    assert name.condition is Lighting.LL
    assert name.twin(gain_db=20.0).relpath.startswith("bright/") and name.twin(gain_db=20.0).condition is Lighting.WL
    with pytest.raises(ValueError):
        type(name)(date="0119", site="", video=1, ratio=100, frame=0, gain_db=0.0, exposure_us=1, condition="dark")  # type: ignore[arg-type]
