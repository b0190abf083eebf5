"""Review flags, contact sheets and HTML index; the annotators' task export."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from annotation.cli import app
from annotation.review import FlagSettings, flag_document, image_flags, person_flags, write_review
from annotation.tasks import export_tasks
from annotation.visual import brighten
from exlpose_data.atomic import write_json_atomic
from exlpose_data.keypoints import crowdpose14
from exlpose_data.layout import write_pairs
from exlpose_data.naming import parse_name
from exlpose_data.schema import AnnotationRecord, load_document

OFFICIAL = Path(__file__).parent / "data" / "ExLPose_test_LL-All.json"
W, H = 320, 200
WL_GREY = 90


def _person(ann_id: int, dx: float = 0.0, **changes: tuple[float, float]) -> AnnotationRecord:
    """A front-facing person (left joints on the image's right) in the box [100, 20, 80, 170], shifted by dx."""
    joints = {
        "left_shoulder": (155, 60), "right_shoulder": (125, 60), "left_elbow": (162, 90), "right_elbow": (118, 90),
        "left_wrist": (165, 115), "right_wrist": (115, 115), "left_hip": (150, 120), "right_hip": (130, 120),
        "left_knee": (152, 150), "right_knee": (128, 150), "left_ankle": (153, 180), "right_ankle": (127, 180),
        "head": (140, 25), "neck": (140, 45),
    }
    joints.update(changes)
    kp = []
    for name in crowdpose14().keypoints:
        x, y = joints[name]
        kp += [x + dx, y, 2]
    return AnnotationRecord(id=ann_id, image_id=0, keypoints=kp, bbox=[100 + dx, 20, 80, 170], num_keypoints=14)


def test_person_flags_fire_on_crafted_labels_only():
    assert person_flags(_person(1)) == []
    kinds = [k for k, _ in person_flags(_person(1, left_wrist=(260, 115)))]
    assert kinds == ["joint_outside_box"]
    assert "left_wrist" in person_flags(_person(1, left_wrist=(260, 115)))[0][1]
    # Within the 5% margin (of 170 px = 8.5 px) a joint just outside the box is fine.
    assert person_flags(_person(1, left_wrist=(185, 115))) == []
    crossed = _person(1, left_hip=(130, 120), right_hip=(150, 120))
    assert [k for k, _ in person_flags(crossed)] == ["left_right_crossing"]
    # A small opposite offset (< 10% of the box width) is not a crossing.
    assert person_flags(_person(1, left_hip=(139, 120), right_hip=(143, 120))) == []


def test_near_duplicates_are_flagged_in_pairs():
    a, b, c = _person(1), _person(2, dx=1.0), _person(3, dx=150.0)
    flags = image_flags([a, b, c])
    assert [(k, ids) for k, ids, _ in flags] == [("near_duplicate", (1, 2))]
    assert image_flags([a, c]) == []
    assert image_flags([a, _person(4, dx=1.0)], FlagSettings(duplicate_oks=1.01, duplicate_iou=1.01)) == []


def test_flags_on_the_official_test_labels():
    flags = flag_document(load_document(OFFICIAL))
    counts = {}
    for f in flags:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    assert counts == {"joint_outside_box": 94, "left_right_crossing": 20, "near_duplicate": 2}


def _name(frame: int, ratio: int) -> str:
    return f"bright/imgs_0301_lab_vid000001_exp{ratio}_bright_{frame:06d}__gain_10.00_exposure_5000.png"


@pytest.fixture()
def mini(tmp_path) -> Path:
    """Four pairs (320x200 images, LL = WL / 30) with train and test annotation files."""
    root = tmp_path / "ds"
    pairs = []
    for frame, ratio in ((1, 100), (2, 100), (3, 200), (4, 200)):
        bright = _name(frame, ratio)
        dark = parse_name(bright).twin().relpath
        pairs.append((bright, dark))
        for rel, value in ((bright, WL_GREY), (dark, WL_GREY / 30)):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(root / rel), np.full((H, W, 3), round(value), np.uint8))
    write_pairs(root / "brightPath2darkPath.txt", pairs)
    people = {
        1: [_person(1)],
        2: [_person(2, left_wrist=(260, 115))],
        3: [_person(3, left_hip=(130, 120), right_hip=(150, 120))],
        4: [_person(4), _person(5, dx=1.0)],
    }

    def doc(frames, dark=False, tweak=None):
        images, anns = [], []
        for f in frames:
            b, d = pairs[f - 1]
            images.append({"id": f, "file_name": d if dark else b, "width": W, "height": H, "crowdIndex": 0.0})
            for p in people[f]:
                rec = p.model_copy(update={"image_id": f}).model_dump(exclude_none=True)
                if tweak and f in tweak:
                    rec["keypoints"] = [v + 5 if i % 3 == 0 and v else v for i, v in enumerate(rec["keypoints"])]
                anns.append(rec)
        return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}

    ann = root / "annotations"
    write_json_atomic(ann / "ExLPose_train_WL.json", doc([1, 2]))
    write_json_atomic(ann / "ExLPose_train_LL.json", doc([1, 2], dark=True, tweak={1}))
    write_json_atomic(ann / "ExLPose_test_WL.json", doc([3, 4]))
    write_json_atomic(ann / "ExLPose_test_LL-A.json", doc([3, 4], dark=True))
    write_json_atomic(ann / "ExLPose_test_LL-N.json", doc([4], dark=True))
    return root


def test_review_writes_tiles_sheets_index_and_flags(tmp_path, mini):
    out = tmp_path / "review"
    summary = write_review(mini, out, thumb_width=160, per_sheet=2, columns=2)
    assert (summary.pairs, summary.sheets) == (4, 2)
    assert {k: v for k, v in summary.flags.items() if v} == {"ll_wl_mismatch": 1, "joint_outside_box": 1, "left_right_crossing": 1, "near_duplicate": 1}
    flags = json.loads((out / "flags.json").read_text())
    by_file = {(f["file_name"], f["kind"]) for f in flags}
    assert by_file == {(_name(1, 100), "ll_wl_mismatch"), (_name(2, 100), "joint_outside_box"), (_name(3, 200), "left_right_crossing"), (_name(4, 200), "near_duplicate")}

    tile = cv2.imread(str(out / "pairs" / (Path(_name(1, 100)).stem + ".png")))
    assert tile.shape == (100 + 22, 320, 3)  # WL | LL at 160x100 each, caption bar below
    wl, ll = tile[:100, :160].astype(int), tile[:100, 160:].astype(int)
    # The LL half is brightened x30 back to the WL grey away from the drawing.
    assert abs(int(ll[95, 5].mean()) - WL_GREY) <= 3 and abs(int(wl[95, 5].mean()) - WL_GREY) <= 1
    # The skeleton is on both halves: the head joint (140, 25) -> (70, 12) is drawn green (centre joints).
    for half in (wl, ll):
        b, g, r = half[12, 70]
        assert g > 120 and r < 100 and b < 100
    # Left limbs blue, right limbs red, at the wrists (165,115) -> (82, 57) and (115,115) -> (57, 57).
    assert wl[57, 82][0] > 150 and wl[57, 57][2] > 150
    sheet = cv2.imread(str(out / "sheets" / "sheet_0001.png"))
    assert sheet.shape == (122, 640, 3)
    np.testing.assert_array_equal(sheet[:, :320], tile)

    html = (out / "index.html").read_text()
    assert html.count('class="card"') == 4
    for option in ('<option value="train">', '<option value="test">', '<option value="test LL-N">', '<option value="100">', '<option value="200">'):
        assert option in html
    assert f'data-splits="test|test LL-N" data-ratio="200" data-flags="near_duplicate"' in html
    assert 'src="pairs/' in html and 'href="sheets/sheet_0002.png"' in html


def test_review_target_mean_and_cli(tmp_path, mini):
    img = np.full((10, 10, 3), 3, np.uint8)
    assert brighten(img).mean() == 90
    assert abs(brighten(img, target_mean=120).mean() - 120) < 1
    assert brighten(np.zeros((4, 4, 3), np.uint8), target_mean=100).max() == 0
    out = tmp_path / "review"
    files = [str(mini / "annotations" / "ExLPose_test_WL.json")]
    r = CliRunner().invoke(app, ["review", str(mini), "--out", str(out), "--annotations", files[0], "--thumb-width", "64", "--ll-target-mean", "45"])
    assert r.exit_code == 0, r.output
    assert "2 pairs on 1 sheet(s); left_right_crossing 1, near_duplicate 1" in r.stdout
    tile = cv2.imread(str(out / "pairs" / (Path(_name(3, 200)).stem + ".png")))
    assert tile.shape == (40 + 22, 128, 3)
    assert abs(int(tile[38, 66].mean()) - 45) <= 3


def test_task_export_copies_links_previews_and_configs(tmp_path, mini):
    out = tmp_path / "tasks"
    result = export_tasks(mini, out, ll_preview=True)
    assert (result.images, result.previews, result.missing) == (4, 4, [])
    bright = _name(1, 100)
    assert (out / "images" / bright).read_bytes() == (mini / bright).read_bytes()
    preview = cv2.imread(str(out / "images" / "ll_preview" / parse_name(bright).twin().basename))
    assert abs(preview.mean() - 90) < 3  # 3 x 30
    tasks = json.loads((out / "label_studio_tasks.json").read_text())
    assert tasks[0]["data"]["image"] == "/data/local-files/?d=images/" + bright
    assert tasks[0]["data"]["ll_preview"].endswith(parse_name(bright).twin().basename)
    assert json.loads((out / "cvat_labels.json").read_text())[0]["name"] == "person"
    assert "<KeyPointLabels" in (out / "label_studio_config.xml").read_text()

    linked = tmp_path / "linked"
    r = CliRunner().invoke(app, ["tasks", str(mini), "--out", str(linked), "--link"])
    assert r.exit_code == 0, r.output
    assert os.stat(linked / "images" / bright).st_ino == os.stat(mini / bright).st_ino
    assert not (linked / "images" / "ll_preview").exists()
    r = CliRunner().invoke(app, ["tasks", str(tmp_path / "empty"), "--out", str(linked)])
    assert r.exit_code == 2 and "no such dataset folder" in r.stderr


def test_labels_made_on_exported_tasks_import_back_onto_their_pairs(tmp_path, mini):
    from annotation.importer import import_annotations

    out = tmp_path / "tasks"
    export_tasks(mini, out)
    tasks = json.loads((out / "label_studio_tasks.json").read_text())
    common = {"original_width": W, "original_height": H}
    tasks[0]["annotations"] = [{"id": 1, "result": [
        {"id": "box", "type": "rectanglelabels", **common, "value": {"x": 25.0, "y": 10.0, "width": 50.0, "height": 80.0, "rectanglelabels": ["person"]}},
        {"id": "h", "type": "keypointlabels", **common, "value": {"x": 50.0, "y": 20.0, "keypointlabels": ["head"]}},
    ]}]
    for t in tasks[1:]:
        t["annotations"] = [{"id": 2, "result": []}]  # labelled: nobody in the image
    export = tmp_path / "ls.json"
    export.write_text(json.dumps(tasks))
    result = import_annotations(export, "label-studio", mini, tmp_path / "ann", split="all")
    wl = load_document(result.wl_path)
    assert [im.file_name for im in wl.images] == [_name(1, 100), _name(2, 100), _name(3, 200), _name(4, 200)]
    assert [(im.width, im.height) for im in wl.images] == [(W, H)] * 4  # sizes of empty tasks read from the PNGs
    (person,) = wl.annotations
    assert person.bbox == [80.0, 20.0, 160.0, 160.0]
    assert person.keypoints[36:39] == [160.0, 40.0, 2.0] and person.num_keypoints == 1


def test_review_without_annotation_files_shows_every_pair_unlabelled(tmp_path, mini):
    import shutil

    shutil.rmtree(mini / "annotations")
    summary = write_review(mini, tmp_path / "review", thumb_width=64, per_sheet=4)
    assert (summary.pairs, summary.sheets, sum(summary.flags.values())) == (4, 1, 0)
    tile = cv2.imread(str(tmp_path / "review" / "pairs" / (Path(_name(2, 100)).stem + ".png")))
    assert tile.shape == (40 + 22, 128, 3)
    # No skeleton drawn: both halves are plain grey above the caption.
    assert np.abs(tile[:40].astype(int) - WL_GREY).max() <= 2


_FLAG_BOXES = """[...document.querySelectorAll('.card')].map(c => {
  const f = c.querySelector('.flags'), r = f.getBoundingClientRect(), st = getComputedStyle(f);
  return {kinds: c.dataset.flags, text: f.textContent, visible: r.width > 0 && r.height > 0 && st.visibility === 'visible' && st.display !== 'none' && st.opacity !== '0', color: st.color};
})"""


@pytest.mark.slow
def test_review_page_in_headless_chromium(tmp_path, mini):
    """The index in a real browser: every tile loads at its size, every flag is visible, filters work, no console errors."""
    from tests.chromium import Browser, page_images, require_chromium

    chromium = require_chromium()
    out = tmp_path / "review"
    write_review(mini, out, thumb_width=160, per_sheet=2)
    with Browser(chromium) as browser:
        images = page_images(browser, out / "index.html")
        assert len(images) == 4
        for img in images:
            h, w = cv2.imread(str(out / img["src"])).shape[:2]
            assert (img["w"], img["h"]) == (w, h), img  # decoded by the browser at the tile's real size
        cards = browser.evaluate(_FLAG_BOXES)
        assert sorted(c["kinds"] for c in cards) == ["joint_outside_box", "left_right_crossing", "ll_wl_mismatch", "near_duplicate"]
        for c in cards:
            assert c["visible"] and c["kinds"] in c["text"], c
            assert c["color"] == "rgb(255, 204, 102)"  # the .flags colour, readable on the dark page
        assert browser.evaluate("document.getElementById('count').textContent") == "4"
        shown = browser.evaluate("""(() => { const s = document.getElementById('split'); s.value = 'test LL-N';
            s.dispatchEvent(new Event('change')); return [document.getElementById('count').textContent,
            [...document.querySelectorAll('.card')].filter(c => getComputedStyle(c).display !== 'none').map(c => c.dataset.flags)]; })()""")
        assert shown == ["1", ["near_duplicate"]]
        links = browser.evaluate("[...document.querySelectorAll('a')].map(a => a.getAttribute('href'))")
        assert links and all((out / href).is_file() for href in links)
        assert browser.problems() == []
