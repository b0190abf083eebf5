"""Export an annotation file we have: CVAT COCO Keypoints 1.0, Label Studio tasks, or the authors' ``_trans.json``.

The input is read by the strict loader (:func:`exlpose_data.schema.load_document`), checked with the validator's
rules (:func:`annotation.checks.refuse_invalid`) and written atomically through :mod:`exlpose_data.jsonio`, so an
export never holds a value the validator or another JSON reader would refuse. The output may not be the input
(nor a folder holding it) and replaces an existing file only when it is of the same kind and ``overwrite`` is
given (:func:`exlpose_data.outputs.check_output`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from exlpose_data.atomic import write_json_atomic, write_text_atomic
from exlpose_data.errors import UsageError
from exlpose_data.jsonio import check_json_value
from exlpose_data.official import trans_entries, trans_json_text
from exlpose_data.outputs import check_output, what_is
from exlpose_data.schema import load_document

from .checks import refuse_invalid
from .formats.cvat import to_cvat_dict
from .formats.label_studio import DEFAULT_URL_PREFIX, to_label_studio_tasks

__all__ = ["EXPORT_FORMATS", "ExportResult", "export_annotations"]

# format -> (what it writes, in words; the kinds of exlpose_data.outputs.what_is an existing output may be)
EXPORT_FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cvat": ("CVAT COCO Keypoints file", ("annotation file",)),
    # Label Studio tasks carry data.image_id, which what_is takes for a predictions file; _same_kind tells them apart.
    "label-studio": ("Label Studio tasks file", ("JSON file", "predictions file")),
    "official-trans": ("_trans.json file", ("JSON file",)),
}


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the output, the document's images and people, and the people written."""

    out: Path
    images: int
    people: int
    written_people: int


def _refuse_other_json(out: Path, fmt: str) -> None:
    """A list file at ``out`` that is not what ``fmt`` writes (a model's predictions) is refused even with overwrite."""
    if what_is(out) != "predictions file":
        return
    with open(out, "rb") as fh:
        head = fh.read(1 << 16)
    if b'"annotations"' not in head or b'"data"' not in head:
        raise UsageError(f"--out {out}: already holds a predictions file, not a {EXPORT_FORMATS[fmt][0]}; refusing to replace it (choose another --out)")


def export_annotations(path: str | Path, fmt: str, out: str | Path, *, url_prefix: str | None = None, overwrite: bool = False) -> ExportResult:
    """Export the CrowdPose-style annotation file ``path`` in format ``fmt`` to ``out``.

    Args:
        path: an annotation file (ours or the release's).
        fmt: ``cvat``, ``label-studio`` or ``official-trans``.
        out: the file to write.
        url_prefix: Label Studio: prefix of ``data.image`` (default :data:`DEFAULT_URL_PREFIX`).
        overwrite: replace an existing output of the same kind.

    Raises:
        UsageError: ``out`` is the input or holds it, holds something of another kind, or exists without
            ``overwrite``; nothing was written.
        InputError: the input is unreadable, or holds something the validator refuses (one line naming the
            output, the first problem and how many); nothing was written.
    """
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    produces, kinds = EXPORT_FORMATS[fmt]
    target = check_output(out, inputs=[path], writes="file", produces=produces, replaces=kinds, overwrite=overwrite)
    if fmt == "label-studio":
        _refuse_other_json(target, fmt)
    doc = load_document(path)
    refuse_invalid(doc.to_json_dict(), out, source=path)
    if fmt == "official-trans":
        entries = trans_entries(doc, source=str(path))
        check_json_value(entries, source=str(out))
        write_text_atomic(out, trans_json_text(doc, source=str(path)))
        return ExportResult(Path(out), len(doc.images), len(doc.annotations), len(entries))
    payload = to_cvat_dict(doc) if fmt == "cvat" else to_label_studio_tasks(doc, url_prefix if url_prefix is not None else DEFAULT_URL_PREFIX)
    write_json_atomic(out, payload)
    return ExportResult(Path(out), len(doc.images), len(doc.annotations), len(doc.annotations))
