"""The demo report's parts, without running the demo (issue 22: curves that hide each other, bare captions)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from exlpose.demo.cli import sample_caption
from exlpose.demo.report import _COLOURS, plot_curves, write_report


def _pixels_of(img: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int(np.all(np.abs(img.astype(int) - np.array(colour)) <= 10, axis=2).sum())


def test_two_identical_curves_both_stay_visible(tmp_path: Path) -> None:
    loss = [5.0, 4.0, 3.5, 3.2, 3.0]
    path = plot_curves({"baseline-all": loss, "lsbn-lupi": list(loss)}, tmp_path / "loss.png", title="loss")
    img = cv2.imread(str(path))
    first, second = _pixels_of(img, _COLOURS[0]), _pixels_of(img, _COLOURS[1])
    # the second curve lies exactly on the first: its markers are still drawn over it, and the legend says both
    assert first > 200 and second > 100, (first, second)
    # a single curve draws nothing in the second colour
    plain = plot_curves({"a": loss}, tmp_path / "one.png")
    assert _pixels_of(cv2.imread(str(plain)), _COLOURS[1]) == 0


def test_images_carry_captions_that_say_what_they_show(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "sample_0.png"), np.zeros((8, 8, 3), np.uint8))
    caption = sample_caption("imgs_0101_sim_vid000001_exp800_bright_000003__gain_18.06_exposure_500")
    assert caption.startswith("scene 0101 sim video 1, frame 3: R = 800 (exposure cut k = 8 behind the 1% ND filter), exposure 500 us, WL gain 18.06 dB.")
    html_path, md_path = write_report(tmp_path, {"title": "t", "sections": [
        {"title": "Samples", "images": [{"path": "sample_0.png", "caption": caption}, "plain.png"]}]})
    page = html_path.read_text()
    assert f"<figcaption>{caption}</figcaption>" in page and "<figcaption>plain.png</figcaption>" in page
    assert f"_{caption}_" in md_path.read_text()
    assert sample_caption("not a release name").startswith("not a release name: well-lit image (left)")
