"""The authors' own code (sohyun-l/ExLPose, ``pytorch-cpn``): its ``*_trans.json`` files and its image names.

Their loaders (``dataloader/loader_eval_LL.py``, ``loader_eval_WL.py``) read a list of
``{"unit": {"num_keypoints", "keypoints", "GT_bbox": [x1, y1, x2, y2]}, "imgInfo": {"imgID", "img_paths"}, "score"}``
and rename each bright ``img_paths`` into an internal spelling before opening the image:
``imgs_<MMDD><site>_vid<6>_exp<R>_img_<frame>__exposure_<us>.png`` under ``bright/`` (WL) or ``dark/`` (LL), where
the site is glued to the date for ``manridang``, ``hwangridan`` and ``bulguksa``, dropped for site ``3`` and absent
otherwise; any other site falls into their site-less branch and gets a broken name, so it is refused here.

The rules of their ``_trans.json``, derived from the files they ship (``ExLPose_test_LL-All_trans.json`` is
reproduced byte for byte from ``ExLPose_test_LL-All.json``): one entry per annotation, in file order, leaving out
annotations whose ``num_keypoints`` is 0 (and crowd regions, which their files do not have); ``num_keypoints``
and ``keypoints`` as the file gives them (numbers keep their JSON spelling); ``GT_bbox`` = the box corners
truncated to integers, ``[int(x), int(y), int(x + w), int(y + h)]``; ``imgID`` the image id; ``img_paths`` the
bright path; ``score`` 1; written by Python's ``json.dumps`` with its default separators and a final newline.
"""

from __future__ import annotations

import json
from typing import Any

from .annotations import count_labelled
from .errors import InputError, NameGrammarError
from .jsonio import check_json_value
from .naming import parse_name
from .schema import AnnotationDocument

__all__ = ["gt_bbox", "trans_entries", "trans_json_text", "internal_name", "OFFICIAL_SITES", "OFFICIAL_SPLIT_NAMES"]

# Sites the authors' loaders know: glued to the date, or (site "3") dropped.
OFFICIAL_SITES = {"manridang": True, "hwangridan": True, "bulguksa": True, "3": False}
# Our annotation keys -> the file names the authors' configs point at (older long spellings).
OFFICIAL_SPLIT_NAMES = {"test_LL-A": "ExLPose_test_LL-All", "test_LL-N": "ExLPose_test_LL-Normal", "test_LL-H": "ExLPose_test_LL-Hard",
                        "test_LL-E": "ExLPose_test_LL-Extreme", "test_WL": "ExLPose_test_WL"}


def internal_name(bright_path: str) -> str:
    """The file name the authors' loaders open for the pair of ``bright_path`` (under ``bright/`` or ``dark/``).

    Raises:
        InputError: the name is outside the release grammar, or its site is one the loaders cannot spell.
    """
    try:
        name = parse_name(bright_path)
    except NameGrammarError as exc:
        raise InputError(f"{bright_path}: {exc}") from None
    if name.site and name.site not in OFFICIAL_SITES:
        known = ", ".join(sorted(OFFICIAL_SITES))
        raise InputError(f"{bright_path}: site {name.site!r}: the authors' loaders only spell sites {known} or none; their test.py "
                         "cannot open this image (record such scenes with --site '' or one of those; a simulated release: "
                         "exlpose simulate release --site '')")
    site = name.site if OFFICIAL_SITES.get(name.site) else ""
    return f"imgs_{name.date}{site}_vid{name.video:06d}_exp{name.ratio}_img_{name.frame:06d}__exposure_{name.exposure_us}.{name.ext}"


def gt_bbox(bbox: list[int | float]) -> list[int]:
    x, y, w, h = bbox
    return [int(x), int(y), int(x + w), int(y + h)]


def trans_entries(doc: AnnotationDocument, *, source: str = "annotations") -> list[dict[str, Any]]:
    """The authors' ``_trans.json`` entries of a CrowdPose document naming bright (or OC camera) images.

    Raises:
        InputError: an image is a dark (LL) path: their entries name the bright image of each pair (export the
            WL file, which holds the same labels).
    """
    names = {im.id: im.file_name for im in doc.images}
    dark = next((n for n in names.values() if n.startswith("dark/")), None)
    if dark is not None:
        raise InputError(f"{source}: names low-light images ({dark}); the authors' _trans.json names the bright image of each pair: export the WL file of the same labels")
    entries = []
    for a in doc.annotations:
        # the file's own count, as theirs keep it (some official counts disagree with the flags); computed if absent
        count = a.num_keypoints if "num_keypoints" in a.model_fields_set else count_labelled(a.keypoints)
        if count > 0 and not a.iscrowd:
            entries.append({"unit": {"num_keypoints": count, "keypoints": list(a.keypoints), "GT_bbox": gt_bbox(a.bbox)},
                            "imgInfo": {"imgID": a.image_id, "img_paths": names[a.image_id]}, "score": 1})
    return entries


def trans_json_text(doc: AnnotationDocument, *, source: str = "annotations") -> str:
    """The authors' ``_trans.json`` text of ``doc``, spelled as theirs (``json.dumps`` defaults, final newline)."""
    entries = trans_entries(doc, source=source)
    check_json_value(entries, source)  # what the strict loader would refuse is never written
    return json.dumps(entries, allow_nan=False) + "\n"
