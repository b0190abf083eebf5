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
    for i, (name, vals) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        pts = [
            (int(left + (j / max(n - 1, 1)) * (w - left - right)), int(h - bottom - (v - lo) / (hi - lo) * (h - top - bottom)))
            for j, v in enumerate(vals)
            if np.isfinite(v)
        ]
        if len(pts) > 1:
            cv2.polylines(img, [np.array(pts, np.int32)], False, colour, 2, cv2.LINE_AA)
        cv2.putText(img, name, (w - right - 170, top + 18 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    write_image_atomic(path, img)
    return Path(path)


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
    PNG paths]}`` in reading order, plus ``title`` and ``stages`` (name, seconds, status).
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
        for img in sec.get("images", []):
            md.append(f"\n![{img}]({img})\n")
            body.append(f"<figure><img src='{html.escape(img)}' alt='{html.escape(img)}'><figcaption>{html.escape(img)}</figcaption></figure>")
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
