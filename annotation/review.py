"""Review of labels by a person: suspicious-label flags, contact sheets (PNG) and a static HTML index.

Each pair is shown as its well-lit image and its low-light image brightened (x30 or to a target mean), the
skeletons drawn on both, since one label serves both images. Flags point at labels worth a second look:

- ``joint_outside_box``: a labelled joint lies beyond the person's box by more than a margin
  (default 5% of the box's longer side; the official test labels have 94 such people at that margin).
- ``left_right_crossing``: the shoulders and the hips point opposite ways (left/right swapped on one of them),
  both by more than a fraction of the box width (default 10%).
- ``near_duplicate``: two people of one image with keypoint similarity (OKS, CrowdPose sigmas) or box IoU of
  at least 0.9: usually a person labelled twice.
- ``ll_wl_mismatch``: the LL and the WL files give the pair different labels.
- ``joint_owner_by_geometry``: joints the import gave this person only because they lie in its box alone (the
  tool's file linked them to no person: Label Studio without ``parentID`` or relation); a joint of someone
  else that strayed into this box would look the same (the annotation's ``joints_by_geometry`` names them).

An image record that names no pair of the dataset (a ``file_name`` that is absolute, climbs out with ``..``, or
names an image the dataset does not have) is skipped, and each one is named with why: in the summary (the CLI
warns once per record) and at the top of the review page.

The review folder is written outside the dataset (the dataset root is an input of
:func:`exlpose_data.outputs.check_output`); an existing review folder is replaced only with ``overwrite``,
built beside it and swapped in when complete (:func:`exlpose_data.outputs.building_folder`).
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from exlpose_data.atomic import write_image_atomic, write_json_atomic, write_text_atomic
from exlpose_data.keypoints import crowdpose14
from exlpose_data.layout import safe_relpath
from exlpose_data.outputs import building_folder, check_output
from exlpose_data.progress import ProgressCallback, report
from exlpose_data.naming import annotation_key
from exlpose_data.release import Pair, Release, open_release
from exlpose_data.schema import AnnotationDocument, AnnotationRecord, load_document

from .labels import JOINTS_BY_GEOMETRY
from .visual import LL_GAIN, brighten, caption, draw_person, read_fitted

__all__ = ["FlagSettings", "Flag", "person_flags", "image_flags", "flag_document", "ReviewItem", "collect_items", "render_pair", "write_review", "ReviewSummary"]

FLAG_KINDS = ("joint_outside_box", "left_right_crossing", "near_duplicate", "ll_wl_mismatch", "joint_owner_by_geometry")
_L_SHOULDER, _R_SHOULDER, _L_HIP, _R_HIP = 0, 1, 6, 7


@dataclass(frozen=True)
class FlagSettings:
    """Thresholds of the flags (see module docstring)."""

    outside_margin: float = 0.05
    crossing_fraction: float = 0.1
    duplicate_oks: float = 0.9
    duplicate_iou: float = 0.9


@dataclass(frozen=True)
class Flag:
    """One suspicious label: its kind, image, annotation ids and a short explanation."""

    kind: str
    file_name: str
    annotation_ids: tuple[int, ...]
    detail: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "file_name": self.file_name, "annotation_ids": list(self.annotation_ids), "detail": self.detail}


def _kp(ann: AnnotationRecord) -> np.ndarray:
    return np.asarray(ann.keypoints, dtype=np.float64).reshape(-1, 3)


def person_flags(ann: AnnotationRecord, settings: FlagSettings = FlagSettings()) -> list[tuple[str, str]]:
    """(kind, detail) of the flags one person raises on its own."""
    names = crowdpose14().keypoints
    kp = _kp(ann)
    x, y, w, h = ann.bbox
    out = []
    m = settings.outside_margin * max(w, h)
    labelled = kp[:, 2] > 0
    outside = labelled & ((kp[:, 0] < x - m) | (kp[:, 0] > x + w + m) | (kp[:, 1] < y - m) | (kp[:, 1] > y + h + m))
    if outside.any():
        out.append(("joint_outside_box", "outside the box: " + ", ".join(names[j] for j in np.flatnonzero(outside))))
    if labelled[[_L_SHOULDER, _R_SHOULDER, _L_HIP, _R_HIP]].all():
        shoulders = kp[_L_SHOULDER, 0] - kp[_R_SHOULDER, 0]
        hips = kp[_L_HIP, 0] - kp[_R_HIP, 0]
        least = settings.crossing_fraction * w
        if shoulders * hips < 0 and abs(shoulders) > least and abs(hips) > least:
            out.append(("left_right_crossing", "shoulders and hips face opposite ways (left/right swapped?)"))
    guessed = (ann.model_extra or {}).get(JOINTS_BY_GEOMETRY)
    if isinstance(guessed, list) and guessed:
        out.append(("joint_owner_by_geometry", "given to this person by geometry only (no parentID or relation): " + ", ".join(map(str, guessed))))
    return out


def _oks(a: np.ndarray, b: np.ndarray, area: float) -> float:
    both = (a[:, 2] > 0) & (b[:, 2] > 0)
    if both.sum() < 3 or area <= 0:
        return 0.0
    sig = crowdpose14().sigmas_array()[both]
    d2 = ((a[both, :2] - b[both, :2]) ** 2).sum(axis=1)
    return float(np.mean(np.exp(-d2 / (2 * area * (2 * sig) ** 2))))


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def image_flags(anns: list[AnnotationRecord], settings: FlagSettings = FlagSettings()) -> list[tuple[str, tuple[int, ...], str]]:
    """(kind, annotation ids, detail) of flags raised by people of one image together (near duplicates)."""
    factor = crowdpose14().area_factor
    out = []
    for i in range(len(anns)):
        for j in range(i + 1, len(anns)):
            a, b = anns[i], anns[j]
            area = max(a.bbox[2] * a.bbox[3], b.bbox[2] * b.bbox[3]) * factor
            oks, iou = _oks(_kp(a), _kp(b), area), _iou(a.bbox, b.bbox)
            if oks >= settings.duplicate_oks or iou >= settings.duplicate_iou:
                out.append(("near_duplicate", (a.id, b.id), f"OKS {oks:.2f}, box IoU {iou:.2f}"))
    return out


def flag_document(doc: AnnotationDocument, settings: FlagSettings = FlagSettings()) -> list[Flag]:
    """Every flag of a document, image by image."""
    by_image: dict[int, list[AnnotationRecord]] = defaultdict(list)
    for a in doc.annotations:
        by_image[a.image_id].append(a)
    flags = []
    for img in doc.images:
        anns = by_image.get(img.id, [])
        for a in anns:
            flags.extend(Flag(kind, img.file_name, (a.id,), detail) for kind, detail in person_flags(a, settings))
        flags.extend(Flag(kind, img.file_name, ids, detail) for kind, ids, detail in image_flags(anns, settings))
    return flags


@dataclass
class ReviewItem:
    """One pair to show: its labels (from the first file that has it), split tags and flags."""

    pair: Pair
    size: tuple[int, int]
    annotations: list[AnnotationRecord]
    tags: set[str] = field(default_factory=set)
    flags: list[Flag] = field(default_factory=list)
    labelled: bool = True

    @property
    def stem(self) -> str:
        return self.pair.bright.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _tag(key: str) -> str:
    """Split tag of an annotation file key: ``train_WL`` -> ``train``, ``test_LL-N`` -> ``test LL-N``."""
    part, _, cond = key.partition("_")
    return f"{part} {cond}" if "-" in cond and not cond.endswith("-A") else part


def _file_order(path: Path) -> tuple[int, str]:
    key = annotation_key(path.name) or ""
    # WL files name the bright images the labels were made on; prefer them, then the full LL file.
    return (0 if key.endswith("_WL") else 1 if key.endswith(("_LL", "_LL-A")) else 2, path.name)


def _signature(anns: list[AnnotationRecord]) -> list[tuple]:
    return sorted((tuple(np.round(a.keypoints, 2)), tuple(np.round(a.bbox, 2))) for a in anns)


def _skip_reason(file_name: str, release: Release) -> str:
    why = safe_relpath(file_name)
    if why:
        return f"{why}, and no image of the dataset has its file name"
    return f"not an image of the dataset {release.image_root} (neither its bright nor its dark twin)"


def collect_items(
    release: Release, files: list[Path], settings: FlagSettings = FlagSettings(), skipped: list[str] | None = None
) -> list[ReviewItem]:
    """The pairs named by ``files`` with their labels, tags and flags (all pairs, unlabelled, when no file).

    An image record naming no pair of the dataset is left out; when ``skipped`` is given, a line naming the
    file, the record, its people and why is appended to it for each.
    """
    items: dict[str, ReviewItem] = {}
    for path in sorted(files, key=_file_order):
        doc = load_document(path)
        key = annotation_key(path.name)
        by_image: dict[int, list[AnnotationRecord]] = defaultdict(list)
        for a in doc.annotations:
            by_image[a.image_id].append(a)
        for n, img in enumerate(doc.images):
            pair = release.pair_of(img.file_name)
            anns = by_image.get(img.id, [])
            if pair is None:
                if skipped is not None:
                    people = f"{len(anns)} {'person' if len(anns) == 1 else 'people'}"
                    skipped.append(f"{path}: images[{n}] (id {img.id}, {people}): file_name {img.file_name!r}: {_skip_reason(img.file_name, release)}")
                continue
            item = items.get(pair.bright)
            if item is None:
                item = items[pair.bright] = ReviewItem(pair, (img.width, img.height), anns)
                for a in anns:
                    item.flags.extend(Flag(k, pair.bright, (a.id,), d) for k, d in person_flags(a, settings))
                item.flags.extend(Flag(k, pair.bright, ids, d) for k, ids, d in image_flags(anns, settings))
            elif _signature(anns) != _signature(item.annotations) and not any(f.kind == "ll_wl_mismatch" for f in item.flags):
                item.flags.append(Flag("ll_wl_mismatch", pair.bright, (), f"{path.name} labels this pair differently"))
            if key:
                item.tags.add(_tag(key))
    if not files:
        for pair in release.pairs:
            items[pair.bright] = ReviewItem(pair, (0, 0), [], labelled=False)
    return [items[k] for k in sorted(items)]


def render_pair(root: Path, item: ReviewItem, *, thumb_width: int = 480, ll_gain: float | None = LL_GAIN, ll_target_mean: float | None = None) -> np.ndarray:
    """The pair's tile: WL | LL brightened, skeletons on both, a caption with ratio and flags."""
    wl, scale, _ = read_fitted(root / item.pair.bright, thumb_width, item.size)
    ll_raw, _, _ = read_fitted(root / item.pair.dark, thumb_width, item.size)
    ll = brighten(ll_raw, gain=ll_gain, target_mean=ll_target_mean)
    if ll.shape[0] != wl.shape[0]:
        ll = cv2.resize(ll, (wl.shape[1], wl.shape[0]), interpolation=cv2.INTER_AREA)
    flagged = {i for f in item.flags for i in f.annotation_ids}
    for a in item.annotations:
        draw_person(wl, a.keypoints, a.bbox, scale, highlight=a.id in flagged)
        draw_person(ll, a.keypoints, a.bbox, scale, highlight=a.id in flagged)
    n = item.pair.name
    people = f"{len(item.annotations)} people" if item.labelled else "no annotation file"
    text = f"{n.scene_id} #{n.frame} R{n.ratio}: {people}" + (f"  FLAGS: {', '.join(sorted({f.kind for f in item.flags}))}" if item.flags else "")
    return caption(np.hstack([wl, ll]), text)


def _sheet(tiles: list[np.ndarray], cols: int) -> np.ndarray:
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    rows = -(-len(tiles) // cols)
    sheet = np.full((rows * h, cols * w, 3), 32, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * h : r * h + t.shape[0], c * w : c * w + t.shape[1]] = t
    return sheet


@dataclass(frozen=True)
class ReviewSummary:
    """What a review wrote."""

    index: Path
    pairs: int
    sheets: int
    flags: dict[str, int]
    skipped: tuple[str, ...] = ()


_HTML_HEAD = """<!doctype html>
<html><head><meta charset="utf-8"><title>exlpose-data label review</title>
<style>
body{font-family:sans-serif;background:#111;color:#ddd;margin:1em}
.card{display:inline-block;margin:6px;vertical-align:top;max-width:980px}
.card img{max-width:100%;display:block}
.flags,.skipped{color:#fc6;font-size:90%}
select,label{margin-right:1em}
a{color:#8cf}
</style></head><body>
<h1>Label review</h1>
"""

_HTML_SCRIPT = """<script>
function applyFilters(){
  var s=document.getElementById('split').value, r=document.getElementById('ratio').value,
      f=document.getElementById('flagged').checked, shown=0;
  document.querySelectorAll('.card').forEach(function(c){
    var ok=(s===''||c.dataset.splits.split('|').indexOf(s)>=0)&&(r===''||c.dataset.ratio===r)&&(!f||c.dataset.flags!=='');
    c.style.display=ok?'':'none'; if(ok)shown++;
  });
  document.getElementById('count').textContent=shown;
}
document.querySelectorAll('select,input').forEach(function(e){e.addEventListener('change',applyFilters)});
applyFilters();
</script></body></html>
"""


def _skipped_html(skipped: list[str]) -> str:
    if not skipped:
        return ""
    lines = "".join(f"<li>{html.escape(s)}</li>" for s in skipped)
    return f'<div class="skipped"><p>{len(skipped)} image record(s) skipped, not shown below:</p><ul>{lines}</ul></div>\n'


def _index_html(items: list[ReviewItem], sheet_of: dict[str, str], flag_counts: dict[str, int], skipped: list[str] = ()) -> str:
    splits = sorted({t for it in items for t in it.tags})
    ratios = sorted({it.pair.name.ratio for it in items})
    opts = lambda values: "".join(f'<option value="{html.escape(str(v))}">{html.escape(str(v))}</option>' for v in values)  # noqa: E731
    parts = [
        _HTML_HEAD,
        f'<p>{len(items)} pairs; flags: {html.escape(", ".join(f"{k} {v}" for k, v in flag_counts.items()) or "none")}. '
        'Each tile: well-lit | low-light brightened, with the labels drawn on both. <a href="flags.json">flags.json</a></p>',
        f'<p><label>split <select id="split"><option value="">all</option>{opts(splits)}</select></label>'
        f'<label>ratio <select id="ratio"><option value="">all</option>{opts(ratios)}</select></label>'
        '<label><input type="checkbox" id="flagged"> flagged only</label> shown: <span id="count"></span></p>',
        _skipped_html(list(skipped)),
    ]
    for it in items:
        kinds = sorted({f.kind for f in it.flags})
        details = "<br>".join(html.escape(f"{f.kind} {list(f.annotation_ids)}: {f.detail}") for f in it.flags)
        parts.append(
            f'<div class="card" data-splits="{html.escape("|".join(sorted(it.tags)))}" data-ratio="{it.pair.name.ratio}" '
            f'data-flags="{html.escape(" ".join(kinds))}">'
            f'<img loading="lazy" src="pairs/{html.escape(it.stem)}.png" alt="{html.escape(it.stem)}">'
            f'<div>{html.escape(it.pair.bright)} &middot; <a href="{html.escape(sheet_of[it.pair.bright])}">sheet</a></div>'
            f'<div class="flags">{details}</div></div>\n'
        )
    parts.append(_HTML_SCRIPT)
    return "".join(parts)


def write_review(
    root: str | Path,
    out: str | Path,
    *,
    annotation_files: list[Path] | None = None,
    thumb_width: int = 480,
    per_sheet: int = 8,
    columns: int = 2,
    ll_gain: float | None = LL_GAIN,
    ll_target_mean: float | None = None,
    settings: FlagSettings = FlagSettings(),
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> ReviewSummary:
    """Write pair tiles, contact sheets, ``flags.json`` and ``index.html`` under ``out``.

    Args:
        root: the dataset root.
        out: output folder.
        annotation_files: files to review; the dataset's annotation files (found as the release keeps them)
            when None.
        thumb_width: width of each image in a tile, pixels.
        per_sheet: pairs per contact sheet.
        columns: tiles per sheet row.
        ll_gain: brightening factor of the LL image (ignored when ``ll_target_mean`` is given).
        ll_target_mean: scale each LL image to this mean (0-255) instead.
        settings: flag thresholds.
        overwrite: replace an existing review folder (built beside it, swapped in when complete).
        progress: called with ``(pairs done, pairs)`` as tiles are written.

    Raises:
        UsageError: ``out`` lies inside the dataset or is one of the annotation files, holds something other
            than a review, or holds a review and ``overwrite`` is False; nothing was written.
    """
    release = open_release(root)
    files = annotation_files if annotation_files is not None else list(release.annotation_files().values())
    _check_review_folder(out, [release.image_root, *files], overwrite)
    skipped: list[str] = []
    items = collect_items(release, list(files), settings, skipped)
    with building_folder(out, overwrite=overwrite, new_beside=True) as out_dir:
        sheets, counts = _write_pages(release, items, out_dir, skipped, thumb_width, per_sheet, columns, ll_gain, ll_target_mean, progress)
    return ReviewSummary(Path(out) / "index.html", len(items), sheets, counts, tuple(skipped))


def _check_review_folder(out: str | Path, inputs: list, overwrite: bool) -> None:
    check_output(out, inputs=inputs, writes="folder", produces="review folder", replaces=["review folder"], overwrite=overwrite)


def _write_pages(
    release: Release, items: list[ReviewItem], out_dir: Path, skipped: list[str], thumb_width: int, per_sheet: int, columns: int,
    ll_gain: float | None, ll_target_mean: float | None, progress: ProgressCallback | None,
) -> tuple[int, dict[str, int]]:
    sheet_of: dict[str, str] = {}
    sheets = 0
    done = 0
    report(progress, done, len(items))
    for start in range(0, len(items), per_sheet):
        chunk = items[start : start + per_sheet]
        tiles = []
        for it in chunk:
            tile = render_pair(release.image_root, it, thumb_width=thumb_width, ll_gain=ll_gain, ll_target_mean=ll_target_mean)
            write_image_atomic(out_dir / "pairs" / f"{it.stem}.png", tile)
            tiles.append(tile)
            done += 1
            report(progress, done, len(items))
        sheets += 1
        name = f"sheets/sheet_{sheets:04d}.png"
        write_image_atomic(out_dir / name, _sheet(tiles, columns))
        for it in chunk:
            sheet_of[it.pair.bright] = name
    counts: dict[str, int] = {k: 0 for k in FLAG_KINDS}
    for it in items:
        for f in it.flags:
            counts[f.kind] += 1
    write_json_atomic(out_dir / "flags.json", [f.to_dict() for it in items for f in it.flags], indent=1)
    write_text_atomic(out_dir / "index.html", _index_html(items, sheet_of, {k: v for k, v in counts.items() if v}, skipped))
    return sheets, counts
