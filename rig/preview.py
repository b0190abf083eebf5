"""Live preview: both cameras side by side as a local web page, to focus them and check the beam splitter.

A web page works over SSH on a rig laptop (``ssh -L 8765:127.0.0.1:8765 rig``) and needs no GUI build of OpenCV,
which is why the toolkit keeps ``opencv-contrib-python-headless``. Frames are shown at half resolution: each 2x2
Bayer cell becomes one RGB pixel (no demosaic), the LL pane amplified to the WL pane's mean, a plain 2.2 gamma.
Per camera the page shows a focus measure (variance of the Laplacian of the green plane, higher is sharper; compare
a camera with itself while turning the focus ring) and the count of clipped raw samples. With an ``ALIGN.json``
the WL is warped onto the LL (its homography, scaled to the half-resolution panes; lens calibration is not
applied) and their absolute difference is a third pane.

The server binds 127.0.0.1 unless told otherwise, is read-only (GET ``/``, ``/frame.png``, ``/stats.json``;
POST ``/snapshot`` writes the current composed frame into the snapshot folder chosen when starting it) and serves
no file paths.
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from exlpose_data.align.model import AlignModel
from exlpose_data.atomic import atomic_path
from exlpose_data.packed12 import unpack_12p

from .cameras import FrameFormat, Rig
from .device import Frame
from .sync import Sync

__all__ = ["PaneStats", "Composite", "half_rgb", "compose", "PreviewSource", "PreviewServer", "write_png"]

_CHANNEL = {"R": 0, "G": 1, "B": 2}


def half_rgb(raw: np.ndarray, fmt: FrameFormat) -> np.ndarray:
    """Linear float RGB at half resolution (one pixel per 2x2 Bayer cell), black level removed, in 0..1."""
    samples = (unpack_12p(raw) if fmt.packed else raw).astype(np.float32)
    white = float((1 << fmt.bit_depth) - 1)
    samples = np.clip((samples - fmt.black_level) / max(white - fmt.black_level, 1.0), 0.0, 1.0)
    if fmt.bayer_pattern is None:
        grey = samples if samples.ndim == 2 else samples.mean(axis=2)
        h, w = grey.shape[0] // 2 * 2, grey.shape[1] // 2 * 2
        small = grey[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        return np.repeat(small[..., None], 3, axis=2)
    h, w = samples.shape[0] // 2 * 2, samples.shape[1] // 2 * 2
    out = np.zeros((h // 2, w // 2, 3), np.float32)
    counts = np.zeros(3, np.float32)
    for i, letter in enumerate(fmt.bayer_pattern):
        dy, dx = divmod(i, 2)
        out[..., _CHANNEL[letter]] += samples[dy:h:2, dx:w:2]
        counts[_CHANNEL[letter]] += 1
    return out / counts


@dataclass(frozen=True)
class PaneStats:
    """What the page shows under one camera's pane."""

    focus: float
    clipped: int
    mean: float


@dataclass
class Composite:
    """One composed preview frame: the image (RGB uint8) and per-camera statistics."""

    image: np.ndarray
    stats: dict[str, PaneStats]
    panes: tuple[str, ...]
    number: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _focus(rgb: np.ndarray) -> float:
    green = rgb[..., 1].astype(np.float32)
    return float(cv2.Laplacian(green, cv2.CV_32F).var())


def _clipped(raw: np.ndarray, fmt: FrameFormat) -> int:
    samples = unpack_12p(raw) if fmt.packed else raw
    return int(np.count_nonzero(samples >= (1 << fmt.bit_depth) - 1))


def _display(linear: np.ndarray) -> np.ndarray:
    return (np.clip(linear, 0.0, 1.0) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)


def compose(ll: np.ndarray, wl: np.ndarray, ll_fmt: FrameFormat, wl_fmt: FrameFormat, align: AlignModel | None = None) -> Composite:
    """LL (amplified to the WL's mean) | WL [| |LL - WL warped onto LL|] at half resolution, with statistics."""
    ll_rgb, wl_rgb = half_rgb(ll, ll_fmt), half_rgb(wl, wl_fmt)
    ll_mean, wl_mean = float(ll_rgb.mean()), float(wl_rgb.mean())
    gain = wl_mean / ll_mean if ll_mean > 0 else 1.0
    ll_shown = ll_rgb * gain
    stats = {
        "ll": PaneStats(_focus(ll_shown), _clipped(ll, ll_fmt), ll_mean),
        "wl": PaneStats(_focus(wl_rgb), _clipped(wl, wl_fmt), wl_mean),
    }
    panes = [_display(ll_shown), _display(wl_rgb)]
    names = ["LL", "WL"]
    if align is not None:
        if align.mirror == "ll":
            ll_shown = ll_shown[:, ::-1]
            panes[0] = _display(ll_shown)
        wl_src = wl_rgb[:, ::-1] if align.mirror == "wl" else wl_rgb
        half = np.diag([0.5, 0.5, 1.0])
        h_half = half @ align.matrix @ np.linalg.inv(half)
        size = (ll_shown.shape[1], ll_shown.shape[0])
        warped = cv2.warpPerspective(np.ascontiguousarray(wl_src), h_half, size, flags=cv2.INTER_LINEAR)
        panes.append(_display(np.abs(ll_shown - warped) * 4.0))  # x4: a misalignment of a few DN must show
        names.append("|LL - WL warped| x4")
    height = max(p.shape[0] for p in panes)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0))) for p in panes]
    return Composite(np.hstack(padded), stats, tuple(names), extra={"ll_gain_shown": gain})


def write_png(path: str | Path, composite: Composite) -> Path:
    """Write a composed frame as an RGB PNG (atomically)."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(composite.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise OSError(f"{path}: cannot write PNG")
    return Path(path)


class PreviewSource:
    """Grabs pairs from a configured rig in a thread and keeps the latest composite.

    Args:
        rig / sync: the opened rig and its trigger topology (exposure and gain already applied).
        align: an alignment model for the difference pane, or None.
        interval_s: pause between composites (the page polls; the cameras need not stream at full rate).
    """

    def __init__(self, rig: Rig, sync: Sync, timeout_ms: float, align: AlignModel | None = None, interval_s: float = 0.2) -> None:
        self.rig, self.sync, self.timeout_ms, self.align, self.interval_s = rig, sync, timeout_ms, align, interval_s
        self.latest: Composite | None = None
        self.error = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="preview-grab", daemon=True)
        self._count = 0

    def grab(self) -> Composite:
        """One pair grabbed and composed (used by ``--snapshot`` and by the thread)."""
        frames = self._pair()
        comp = compose(frames["ll"].image, frames["wl"].image, self.rig.formats["ll"], self.rig.formats["wl"], self.align)  # type: ignore[arg-type]
        self._count += 1
        comp.number = self._count
        return comp

    def _pair(self) -> dict[str, Frame]:
        if self.sync.lockstep:
            for cam in self.rig.cameras.values():
                if cam.wait_ready(self.timeout_ms):
                    cam.trigger()
        frames: dict[str, Frame] = {}
        for role, cam in self.rig.cameras.items():
            deadline = time.monotonic() + self.timeout_ms / 1000.0
            while role not in frames:
                frame = cam.try_retrieve(max(0.0, deadline - time.monotonic()) * 1000.0)
                if frame is None:
                    raise TimeoutError(f"camera {cam.name} delivered no frame within {self.timeout_ms:g} ms; {self.sync.no_frame_hint(role)}")
                if frame.ok and frame.image is not None:
                    frames[role] = frame
        if not self.sync.lockstep:
            # Free-running cameras queue frames: drop what piled up so the preview stays live.
            for cam in self.rig.cameras.values():
                while cam.try_retrieve(0) is not None:
                    pass
        return frames

    def start(self) -> None:
        self.sync.start(self.rig, self.rig.config.buffers)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sync.stop(self.rig)

    def current(self) -> Composite | None:
        with self._lock:
            return self.latest

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                comp = self.grab()
                with self._lock:
                    self.latest, self.error = comp, ""
            except Exception as exc:  # shown on the page; the operator fixes the cable and the preview carries on
                with self._lock:
                    self.error = str(exc)
            self._stop.wait(self.interval_s)


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>exlpose-capture preview</title><link rel="icon" href="data:,">
<style>body{{font-family:sans-serif;background:#111;color:#ddd;margin:1em}} img{{max-width:100%;image-rendering:pixelated}}
table{{border-collapse:collapse}} td,th{{padding:2px 10px;text-align:right}} #error{{color:#f66}}</style></head>
<body><h1>exlpose-capture preview</h1>
<div id="panes">{panes}</div>
<img id="frame" alt="composed frame" src="/frame.png?n=0">
<table><tr><th>camera</th><th>focus (Laplacian variance)</th><th>clipped samples</th><th>mean</th></tr>
<tr id="row-ll"><td>LL</td><td></td><td></td><td></td></tr><tr id="row-wl"><td>WL</td><td></td><td></td><td></td></tr></table>
<p>frame <span id="number">0</span> <span id="error"></span></p>
<button id="snap">Save snapshot (s)</button> <span id="saved"></span>
<script>
async function tick() {{
  try {{
    const s = await (await fetch('/stats.json', {{cache: 'no-store'}})).json();
    document.getElementById('error').textContent = s.error || '';
    if (s.number) {{
      document.getElementById('number').textContent = s.number;
      document.getElementById('frame').src = '/frame.png?n=' + s.number;
      for (const r of ['ll', 'wl']) {{
        const c = document.getElementById('row-' + r).children;
        c[1].textContent = s[r].focus.toFixed(1); c[2].textContent = s[r].clipped; c[3].textContent = s[r].mean.toFixed(4);
      }}
    }}
  }} catch (e) {{ document.getElementById('error').textContent = String(e); }}
  setTimeout(tick, {poll_ms});
}}
async function snap() {{
  const r = await fetch('/snapshot', {{method: 'POST'}});
  document.getElementById('saved').textContent = r.ok ? 'saved ' + (await r.json()).file : 'snapshot failed';
}}
document.getElementById('snap').onclick = snap;
document.addEventListener('keydown', e => {{ if (e.key === 's') snap(); }});
tick();
</script></body></html>
"""


class PreviewServer:
    """The preview page over HTTP (stdlib ``ThreadingHTTPServer``).

    Args:
        source: the running :class:`PreviewSource`.
        snapshot_dir: where the snapshot button writes ``preview_<UTC time>_<n>.png``.
        host / port: where to listen (port 0: any free port, see :attr:`port`).
    """

    def __init__(self, source: PreviewSource, snapshot_dir: Path, host: str = "127.0.0.1", port: int = 8765, poll_ms: int = 300) -> None:
        self.source, self.snapshot_dir, self.poll_ms = source, Path(snapshot_dir), poll_ms
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="preview-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def snapshot(self) -> Path:
        comp = self.source.current()
        if comp is None:
            raise RuntimeError("no frame yet")
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        return write_png(self.snapshot_dir / f"preview_{stamp}_{comp.number:06d}.png", comp)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # the terminal shows the capture's own messages only
                pass

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                comp = server.source.current()
                if path == "/":
                    panes = "".join(f'<span class="pane">{name}</span> ' for name in (comp.panes if comp else ("LL", "WL")))
                    page = _PAGE.format(panes=panes, poll_ms=server.poll_ms)
                    self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
                elif path == "/stats.json":
                    stats: dict[str, Any] = {"error": server.source.error, "number": comp.number if comp else 0}
                    if comp is not None:
                        stats.update({role: s.__dict__ for role, s in comp.stats.items()})
                        stats["panes"] = list(comp.panes)
                    self._send(HTTPStatus.OK, json.dumps(stats).encode(), "application/json")
                elif path == "/frame.png" and comp is not None:
                    ok, png = cv2.imencode(".png", cv2.cvtColor(comp.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
                    self._send(HTTPStatus.OK, png.tobytes(), "image/png")
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

            def do_POST(self) -> None:  # noqa: N802
                if self.path != "/snapshot":
                    self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
                    return
                try:
                    saved = server.snapshot()
                except (RuntimeError, OSError) as exc:
                    self._send(HTTPStatus.SERVICE_UNAVAILABLE, json.dumps({"error": str(exc)}).encode(), "application/json")
                    return
                self._send(HTTPStatus.OK, json.dumps({"file": saved.name}).encode(), "application/json")

        return Handler
