"""pydantic models of CrowdPose/COCO keypoint annotation documents.

They accept the official ExLPose files as they are (annotation ids from 0, no ``area``, ``num_keypoints``
that disagree with the visibility flags, ``crowdIndex`` 0): loading is lenient, strict checking is the job of
:mod:`exlpose_data.validate`. Unknown fields are kept so a load/dump round trip loses nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InputError
from .jsonio import load_json

__all__ = ["Info", "Category", "ImageRecord", "AnnotationRecord", "AnnotationDocument", "load_document", "annotation_json_schema"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


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


def load_document(path: str | Path) -> AnnotationDocument:
    """Load an annotation file, raising :class:`InputError` naming the file and field when it is unusable."""
    p = Path(path)
    raw = load_json(p)
    try:
        return AnnotationDocument.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "/".join(str(x) for x in err["loc"]) or "top level"
        raise InputError(f"{p}: {where}: {err['msg']} ({len(exc.errors())} problem(s); run 'exlpose validate' for all)") from None


def annotation_json_schema() -> dict[str, Any]:
    """JSON Schema of an annotation document."""
    return AnnotationDocument.model_json_schema()
