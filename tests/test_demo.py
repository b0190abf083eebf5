"""`exlpose demo --quick` end to end, as CI runs it: every stage, real artefacts, sane numbers."""

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.timeout(600, method="thread"), pytest.mark.slow]  # the whole pipeline in subprocesses


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    res = subprocess.run([sys.executable, "-m", "exlpose", "demo", "--out", str(out), "--quick"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def test_every_stage_ran(demo):
    out, _ = demo
    stages = json.loads((out / "stages.json").read_text())
    assert [s["stage"] for s in stages] == ["simulate", "capture", "align", "annotate", "split", "stats", "pack", "simulate training scenes",
                                            "train", "evaluate", "report"]
    assert {s["status"] for s in stages} == {"ok"}
    commands = (out / "commands.sh").read_text()
    assert commands.count("exlpose capture record") == 2
    # the models train on further simulated scenes and are tested on the captured ones
    assert commands.count(f"exlpose simulate release --out {out / 'training-scenes'} --scenes 4") == 1
    assert commands.count(f"exlpose train --variant baseline-all --dataset {out / 'training-scenes'}") == 1
    assert commands.count(f"exlpose eval model {out / 'train' / 'lsbn-lupi' / 'checkpoint.pth'} --dataset {out / 'dataset'}") == 1
    train_doc = json.loads((out / "training-scenes" / "annotations" / "ExLPose_train_WL.json").read_text())
    assert len({im["file_name"].split("_exp")[0] for im in train_doc["images"]}) == 4  # four scenes, all for training


def test_report_numbers_are_plausible(demo):
    out, res = demo
    report = json.loads((out / "report.json").read_text())
    sections = {s["title"]: s for s in report["sections"]}
    ladder = sections["Capture ladder as recorded"]["table"]
    assert len(ladder) == 10 and all(row["pairs kept"] == 2 and row["dropped"] == "none" for row in ladder)
    assert all(abs(row["WL gain read back"] - row["WL gain planned"]) < 0.01 for row in ladder)
    align = sections["Alignment against the simulator's true homography"]["table"]
    assert all(row["corner error vs truth (px)"] < 0.5 for row in align)
    stats = sections["Dataset statistics"]["table"][0]
    assert stats["pairs"] == 20 and 1.0 < stats["mean LL"] < 4.0 and 60 < stats["mean WL"] < 120  # paper: 2.0 / 90.5
    ap = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(ap) == {"baseline-all", "lsbn-lupi"}
    assert all(v is None or 0.0 <= v <= 1.0 for row in ap.values() for v in row.values())
    for name in ("report.html", "report.md", "training_loss.png", "sample_0.png"):
        assert (out / name).stat().st_size > 500
    assert "tiny synthetic run" in (out / "report.html").read_text()


def test_demo_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").write_text("keep me")
    res = subprocess.run([sys.executable, "-m", "exlpose", "demo", "--out", str(tmp_path), "--quick"], capture_output=True, text=True)
    assert res.returncode == 2 and "already holds a folder, not a demo folder; refusing to replace it" in res.stderr
    assert (tmp_path / "x").read_text() == "keep me"


def test_report_and_review_pages_in_headless_chromium(demo):
    """The demo's report and review index in a real browser: every image loads at its size, no console errors."""
    import cv2

    from tests.chromium import Browser, page_images, require_chromium

    out, _ = demo
    with Browser(require_chromium()) as browser:
        for page, expected in ((out / "report.html", 4), (out / "review" / "index.html", 20)):
            images = page_images(browser, page)
            assert len(images) == expected, page
            for img in images:
                h, w = cv2.imread(str(page.parent / img["src"])).shape[:2]
                assert (img["w"], img["h"]) == (w, h), (page, img)
            assert browser.problems() == [], page
