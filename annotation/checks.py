"""What the annotation layer writes obeys the validator: one check every writer of annotations calls.

A CrowdPose document is checked with :func:`exlpose_data.validate.validate_document` (the rules
``exlpose validate`` applies) before any file made from it is written; the serialisation itself goes through
:mod:`exlpose_data.jsonio` (``write_json_atomic`` / ``dumps_json``), which refuses non-finite numbers and integers
beyond 2^53. Tolerated are only the quirks the official release files hold, which the tools read and the
importer normalises (:data:`TOLERATED`): an export keeps a file as it is, it does not invent what the validator
refuses (45 keypoint values, a box reaching a million pixels out of its image, an unsafe path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exlpose_data.errors import InputError
from exlpose_data.validate import validate_document

__all__ = ["TOLERATED", "refuse_invalid"]

# The official files' quirks (annotation id 0, num_keypoints that disagree with the flags or read 15): kept as given.
TOLERATED = frozenset({"id-zero", "num-keypoints", "num-keypoints-range"})


def refuse_invalid(doc: Any, out: str | Path, *, source: str | Path | None = None) -> None:
    """Refuse to write ``out`` from the raw document ``doc`` when the validator finds a problem in it.

    Args:
        doc: the document as JSON values (``AnnotationDocument.to_json_dict()`` or a parsed file).
        out: the file that would be written, named first in the message.
        source: the input the document was read from (named so ``exlpose validate`` can list every problem);
            None when the document was made here (an import's output).

    Raises:
        InputError: one line naming ``out``, the first problem and how many there are; nothing was written.
    """
    problems = [p for p in validate_document(doc, source=str(source or out)) if p.code not in TOLERATED]
    if not problems:
        return
    n = len(problems)
    count = f"{n} problem{'' if n == 1 else 's'}"
    where = f"{source}: " if source is not None else ""
    hint = f"; 'exlpose validate {source}' lists them" if source is not None and n > 1 else ""
    raise InputError(f"{out}: not written: {where}{problems[0]} ({count}{hint})")
