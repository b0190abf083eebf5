"""The demo's report: markdown and a static HTML page over the artefacts the stages left.

The report is built from one results dictionary (``report.json`` beside it), so it can be regenerated and
tested without re-running the pipeline.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from exlpose_data.atomic import write_image_atomic, write_json_atomic, write_text_atomic

__all__ = ["plot_curves", "write_report", "DISCLAIMER"]

DISCLAIMER = (
    "These numbers come from a tiny synthetic run (simulated scenes recorded on pylon's camera emulator, "
    "a few training steps from scratch). They show that the pipeline works end to end; they say nothing "
    "about the accuracy of the method on real ExLPose data."
)

_COLOURS = [(200, 80, 30), (40, 140, 230), (60, 170, 60), (180, 60, 180), (30, 30, 200)]


def plot_curves(series: dict[str, list[float]], path: str | Path, *, title: str = "", x_label: str = "step",
                size: tuple[int, int] = (640, 360)) -> Path:
    """Draw line plots of ``series`` (name -> values per step) into a PNG with axes and a legend."""
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 60, 20, 30, 40
    values = [v for s in series.values() for v in s if np.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-12:
        hi = lo + 1.0
    n = max((len(s) for s in series.values()), default=1)
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    for frac in (0.0, 0.5, 1.0):
        y = int(h - bottom - frac * (h - top - bottom))
        cv2.putText(img, f"{lo + frac * (hi - lo):.3g}", (4, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"{x_label} (1..{n})", (w // 2 - 40, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, title, (left, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    # Curves that run on top of each other (two models from one seed, early in training) must all stay visible:
    # the first is drawn thick and solid, each later one thinner, dashed and with its own marker on every point.
    for i, (name, vals) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        pts = [
            (int(left + (j / max(n - 1, 1)) * (w - left - right)), int(h - bottom - (v - lo) / (hi - lo) * (h - top - bottom)))
            for j, v in enumerate(vals)
            if np.isfinite(v)
        ]
        if len(pts) > 1:
            if i == 0:
                cv2.polylines(img, [np.array(pts, np.int32)], False, colour, 4, cv2.LINE_AA)
            else:
                _dashed(img, pts, colour)
        for p in pts:
            _marker(img, p, i, colour)
        last = next((v for v in reversed(vals) if np.isfinite(v)), None)
        label = name if last is None else f"{name} (last {last:.4g})"
        y = top + 18 + 16 * i
        _marker(img, (w - right - 230, y - 4), i, colour)
        cv2.putText(img, label, (w - right - 220, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    write_image_atomic(path, img)
    return Path(path)


def _dashed(img: np.ndarray, pts: list[tuple[int, int]], colour: tuple[int, int, int], dash: int = 8) -> None:
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        length = max(1.0, float(np.hypot(x1 - x0, y1 - y0)))
        for start in np.arange(0.0, length, 2 * dash):
            a, b = start / length, min(start + dash, length) / length
            cv2.line(img, (int(x0 + a * (x1 - x0)), int(y0 + a * (y1 - y0))), (int(x0 + b * (x1 - x0)), int(y0 + b * (y1 - y0))),
                     colour, 2, cv2.LINE_AA)


def _marker(img: np.ndarray, p: tuple[int, int], index: int, colour: tuple[int, int, int]) -> None:
    x, y = p
    shape = index % 3
    if shape == 0:
        cv2.circle(img, (x, y), 4, colour, -1, cv2.LINE_AA)
    elif shape == 1:
        cv2.rectangle(img, (x - 4, y - 4), (x + 4, y + 4), colour, 2)
    else:
        cv2.drawMarker(img, (x, y), colour, cv2.MARKER_TILTED_CROSS, 10, 2)


def _md_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_none_\n"
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    out += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _html_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_report(out: str | Path, results: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and ``report.json`` into ``out``.

    ``results`` holds ``sections``: a list of ``{"title", "text"?, "table"?: [row dicts], "images"?: [relative
    PNG paths, or {"path", "caption"}]}`` in reading order, plus ``title`` and ``stages`` (name, seconds, status).
    """
    out = Path(out)
    title = results.get("title", "exlpose demo")
    md = [f"# {title}\n", f"> {DISCLAIMER}\n"]
    body = [f"<h1>{html.escape(title)}</h1>", f"<p class='note'>{html.escape(DISCLAIMER)}</p>"]
    for sec in results.get("sections", []):
        md.append(f"\n## {sec['title']}\n")
        body.append(f"<h2>{html.escape(sec['title'])}</h2>")
        if sec.get("text"):
            md.append(sec["text"] + "\n")
            body.append(f"<p>{html.escape(sec['text'])}</p>")
        if "table" in sec:
            md.append(_md_table(sec["table"]))
            body.append(_html_table(sec["table"]))
        for item in sec.get("images", []):
            # an image is a path, or {"path", "caption"}: what the reader is looking at, not only its file name
            img, caption = (item, item) if isinstance(item, str) else (item["path"], item.get("caption") or item["path"])
            md.append(f"\n![{caption}]({img})\n\n_{caption}_\n")
            body.append(f"<figure><img src='{html.escape(img)}' alt='{html.escape(caption)}'><figcaption>{html.escape(caption)}</figcaption></figure>")
    stages = results.get("stages", [])
    md.append("\n## Stages\n")
    md.append(_md_table(stages))
    body.append("<h2>Stages</h2>" + _html_table(stages))
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}"
        "th{background:#eee}.note{background:#fff4d6;padding:.8em;border-left:4px solid #e0a800}"
        "img{max-width:100%;border:1px solid #ccc}figure{margin:1em 0}"
    )
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    md_path = write_text_atomic(out / "report.md", "\n".join(md))
    html_path = write_text_atomic(out / "report.html", page)
    write_json_atomic(out / "report.json", results, indent=1)
    return html_path, md_path
