"""pydantic models of CrowdPose/COCO keypoint annotation documents: the one model every reader uses.

Types are strict: a number given as a string ("12.5"), a bool for an integer or a float image id is refused
with its JSON location, never coerced; a category that names keypoints must name the 14 CrowdPose joints in
their order (a CrowdPose file is positional: 13 names would shift every joint). Everything else the official
ExLPose files hold is accepted as it is (annotation ids from 0, no ``area``, ``num_keypoints`` that disagree
with the visibility flags, ``crowdIndex`` 0): those are for :mod:`exlpose_data.validate` to report. Unknown
fields are kept so a load/dump round trip loses nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InputError
from .jsonio import load_json
from .keypoints import crowdpose14

__all__ = [
    "Info", "Category", "ImageRecord", "AnnotationRecord", "AnnotationDocument", "load_document", "document_errors",
    "json_location", "category_keypoints_problem", "annotation_json_schema",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


def category_keypoints_problem(names: list[str]) -> str | None:
    """Why a category's keypoint names do not fit a CrowdPose file, or None (empty: names not given)."""
    expected = list(crowdpose14().keypoints)
    if not names or names == expected:
        return None
    if len(names) != len(expected):
        return f"names {len(names)} joints, a CrowdPose file has {len(expected)} ({', '.join(expected)})"
    wrong = next(i for i, (a, b) in enumerate(zip(names, expected)) if a != b)
    return f"joint {wrong} is {names[wrong]!r}, CrowdPose order has {expected[wrong]!r} there ({', '.join(expected)})"


class Info(_Model):
    """Free-form description of the file."""

    description: str | None = None
    year: int | None = None
    date_created: str | None = None


class Category(_Model):
    """The person category with its keypoint names and 0-based skeleton."""

    id: int
    name: str = "person"
    supercategory: str = "person"
    keypoints: list[str] = Field(default_factory=list)
    skeleton: list[list[int]] = Field(default_factory=list)

    @field_validator("keypoints")
    @classmethod
    def _crowdpose_names(cls, names: list[str]) -> list[str]:
        problem = category_keypoints_problem(names)
        if problem:
            raise ValueError(problem)
        return names


class ImageRecord(_Model):
    """One image. ``file_name`` is relative to the image root (``bright/...``, ``dark/...``, ``PID_A7M3/...``)."""

    id: int
    file_name: str
    width: int
    height: int
    crowdIndex: int | float = Field(0, description="CrowdPose crowd index of the image (see annotations.crowd_index)")


class AnnotationRecord(_Model):
    """One person instance: 14 (x, y, v) triplets flattened, bbox as [x, y, w, h]."""

    id: int
    image_id: int
    category_id: int = 1
    # int | float keeps the numbers as the file wrote them (a visibility 2 stays 2, not 2.0)
    keypoints: list[int | float]
    bbox: list[int | float]
    num_keypoints: int = 0
    iscrowd: int = 0
    area: int | float | None = Field(None, description="bbox w*h*0.53 in files we write; absent in the official files")


class AnnotationDocument(_Model):
    """A CrowdPose-style keypoint annotation file."""

    info: Info | None = None
    categories: list[Category] = Field(default_factory=list)
    images: list[ImageRecord]
    annotations: list[AnnotationRecord]

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def json_location(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a JSON location: ``annotations[3].keypoints[5]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith(("function-", "int", "float")):  # union-member tags, not places
            out += f".{part}" if out else str(part)
    return out or "top level"


def document_errors(raw: Any) -> list[tuple[str, str]]:
    """``(JSON location, message)`` of everything the strict model refuses in a parsed document, or []."""
    try:
        AnnotationDocument.model_validate(raw)
    except ValidationError as exc:
        kinds: dict[str, set[str]] = {}
        seen: dict[str, str] = {}
        for err in exc.errors():
            where = json_location(err["loc"])
            kinds.setdefault(where, set()).add(err["type"])
            got = f" (got {err['input']!r})" if err["type"] not in ("missing", "value_error") and not isinstance(err["input"], (dict, list)) else ""
            # an int | float field reports both members; say what it wants once
            msg = "Input should be a number" if kinds[where] >= {"int_type", "float_type"} else err["msg"].removeprefix("Value error, ")
            seen[where] = msg + got if where not in seen or msg.endswith("number") else seen[where]
        return list(seen.items())
    return []


def load_document(path: str | Path) -> AnnotationDocument:
    """Load an annotation file, raising :class:`InputError` naming the file and JSON location when it is unusable."""
    p = Path(path)
    raw = load_json(p)
    try:
        return AnnotationDocument.model_validate(raw)
    except ValidationError:
        errors = document_errors(raw)
        where, msg = errors[0]
        raise InputError(f"{p}: {where}: {msg} ({len(errors)} problem(s); run 'exlpose validate {p}' for all)") from None


def annotation_json_schema() -> dict[str, Any]:
    """JSON Schema of an annotation document."""
    return AnnotationDocument.model_json_schema()
