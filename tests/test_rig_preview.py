"""Live preview: composition (no cameras), --snapshot and the web page on pylon's emulator over loopback,
and the page rendered and updating in headless Chromium."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from exlpose_data.align.model import AlignModel
from rig import emulate
from rig.cameras import FrameFormat
from rig.cli import app
from rig.preview import compose, half_rgb

W, H = 64, 48
RGGB = FrameFormat("BayerRG12", "RGGB", 12, 1, W, H, 0.0, False)


def test_half_rgb_takes_each_colour_from_its_bayer_site() -> None:
    raw = np.zeros((H, W), np.uint16)
    raw[0::2, 0::2], raw[0::2, 1::2], raw[1::2, 0::2], raw[1::2, 1::2] = 4095, 2048, 1024, 0  # R, G, G, B
    rgb = half_rgb(raw, RGGB)
    assert rgb.shape == (H // 2, W // 2, 3)
    np.testing.assert_allclose(rgb[0, 0], [1.0, (2048 + 1024) / 2 / 4095, 0.0], rtol=1e-6)
    grbg = FrameFormat("BayerGR12", "GRBG", 12, 1, W, H, 0.0, True)
    np.testing.assert_allclose(half_rgb(raw, grbg)[0, 0], [2048 / 4095, (4095 + 0) / 2 / 4095, 1024 / 4095], rtol=1e-6)


def test_compose_amplifies_ll_counts_clipping_and_measures_focus() -> None:
    rng = np.random.default_rng(0)
    wl = rng.integers(500, 3500, (H, W)).astype(np.uint16)
    wl[0, 0] = 4095
    ll = (wl // 100).astype(np.uint16)  # 1% of the light
    blurred = cv2.GaussianBlur(wl, (0, 0), 3)
    comp = compose(ll, wl, RGGB, RGGB)
    assert comp.image.shape == (H // 2, W, 3) and comp.panes == ("LL", "WL")
    assert comp.stats["wl"].clipped == 1 and comp.stats["ll"].clipped == 0
    assert comp.extra["ll_gain_shown"] == pytest.approx(comp.stats["wl"].mean / comp.stats["ll"].mean)
    # The amplified LL pane is about as bright as the WL pane.
    assert abs(float(comp.image[:, : W // 2].mean()) - float(comp.image[:, W // 2 :].mean())) < 3.0
    assert compose(ll, blurred, RGGB, RGGB).stats["wl"].focus < comp.stats["wl"].focus / 5


def test_compose_with_alignment_adds_a_difference_pane() -> None:
    rng = np.random.default_rng(1)
    wl = rng.integers(500, 3500, (H, W)).astype(np.uint16)
    identity = AlignModel.model_construct(homography=np.eye(3).tolist(), mirror="none")
    comp = compose(wl, wl, RGGB, RGGB, identity)
    assert comp.panes == ("LL", "WL", "|LL - WL warped| x4") and comp.image.shape == (H // 2, 3 * W // 2, 3)
    assert int(comp.image[:, W:].max()) <= 1  # identical frames, identity homography: no difference
    shifted = AlignModel.model_construct(homography=[[1, 0, 4], [0, 1, 0], [0, 0, 1]], mirror="none")
    assert float(compose(wl, wl, RGGB, RGGB, shifted).image[:, W:].mean()) > 40


def make_feeds(root: Path) -> Path:
    rng = np.random.default_rng(2)
    texture = rng.integers(200, 3800, (H, W)).astype(np.uint16)
    for role, scale in (("ll", 0.01), ("wl", 1.0)):
        emulate.write_raw_png(root / "s1" / "reference" / role / "000000.png", (texture * scale).astype(np.uint16))
    return root


@pytest.mark.slow
def test_snapshot_on_the_emulator(tmp_path: Path) -> None:
    feeds = make_feeds(tmp_path / "feeds")
    out = tmp_path / "snap.png"
    res = CliRunner().invoke(app, ["preview", "--emulate", "--feeds", str(feeds), "--feed-scene", "s1", "--exposure-us", "5000", "--gain-db", "4.5",
                                   "--snapshot", str(out)])
    assert res.exit_code == 0, res.output
    img = cv2.imread(str(out))
    assert img.shape == (H // 2, W, 3)
    assert f"{out}: LL | WL; focus LL" in " ".join(res.output.split())
    bad = CliRunner().invoke(app, ["preview", "--emulate", "--exposure-us", "5000", "--gain-db", "4.5", "--snapshot", str(tmp_path / "x.jpg")])
    assert bad.exit_code == 2 and "give a .png file name" in bad.output


@pytest.fixture
def served(tmp_path: Path):
    from rig.capture import CaptureSession
    from rig.config import emulated_config
    from rig.preview import PreviewServer, PreviewSource

    feeds = make_feeds(tmp_path / "feeds")
    with CaptureSession(emulated_config(roi={"width": W, "height": H}), None, emulated=True) as session:
        for role, cam in session.rig.cameras.items():
            emulate.play_feed(cam, emulate.feed_dir(feeds, "s1", "reference", role))
            cam.set_exposure_gain(5000, 4.5)
        source = PreviewSource(session.rig, session.sync, 1000.0, interval_s=0.05)
        server = PreviewServer(source, tmp_path / "snaps", port=0, poll_ms=100)
        source.start()
        server.start()
        try:
            yield f"http://127.0.0.1:{server.port}", tmp_path / "snaps"
        finally:
            server.stop()
            source.stop()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def wait_number(base: str, above: int) -> dict:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = json.loads(get(f"{base}/stats.json")[1])
        if stats["number"] > above:
            return stats
        time.sleep(0.05)
    raise AssertionError("the preview did not update")


@pytest.mark.slow
def test_page_serves_both_panes_updates_and_nothing_else(served: tuple[str, Path]) -> None:
    base, snaps = served
    first = wait_number(base, 0)
    second = wait_number(base, first["number"])
    assert second["panes"] == ["LL", "WL"] and second["wl"]["focus"] > 0 and second["ll"]["clipped"] == 0
    status, page = get(f"{base}/")
    assert status == 200 and b'<span class="pane">LL</span>' in page and b'<span class="pane">WL</span>' in page
    status, png = get(f"{base}/frame.png")
    assert status == 200 and cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).shape == (H // 2, W, 3)
    for path in ("/etc/passwd", "/../pyproject.toml", "/snapshot"):
        assert get(base + path)[0] == 404
    req = urllib.request.Request(f"{base}/snapshot", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        saved = json.loads(r.read())["file"]
    assert (snaps / saved).is_file() and saved.startswith("preview_") and saved.endswith(".png")


# Waits (in the page) until the frame number moved past ``after`` and the frame image shows it, then reports.
_PAGE_STATE = """(async (after) => {
  const deadline = Date.now() + 10000;
  const number = () => Number(document.getElementById('number').textContent);
  while (number() <= after && Date.now() < deadline) await new Promise(r => setTimeout(r, 50));
  const img = document.getElementById('frame');
  if (!img.complete) await new Promise(r => { img.addEventListener('load', r, {once: true}); img.addEventListener('error', r, {once: true}); });
  const cells = [...document.getElementById('row-wl').children].map(c => c.textContent);
  return {number: number(), panes: [...document.querySelectorAll('.pane')].map(p => p.textContent),
          img: [img.naturalWidth, img.naturalHeight], wl: cells};
})"""


@pytest.mark.slow
def test_page_renders_and_updates_in_headless_chromium(served: tuple[str, Path]) -> None:
    from tests.chromium import Browser, require_chromium

    base, _ = served
    with Browser(require_chromium()) as browser:
        browser.open(f"{base}/")
        first = browser.evaluate(f"{_PAGE_STATE}(0)")
        later = browser.evaluate(f"{_PAGE_STATE}({first['number']})")
        problems = browser.problems()
    assert first["panes"] == ["LL", "WL"] and first["img"] == [W, H // 2]
    assert later["number"] > first["number"] > 0  # the page updates by itself
    assert float(later["wl"][1]) > 0 and later["wl"][2] == "0"  # focus and clipped count filled in
    assert problems == []
