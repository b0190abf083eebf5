import json

import pytest

from exlpose_data.errors import InputError
from exlpose_data.release import annotation_key, open_release
from exlpose_data.split import write_release_annotations
from exlpose_data.layout import verify_dataset
from exlpose_data.schema import AnnotationDocument
from tests.conftest import make_release


@pytest.mark.parametrize(
    "name,key",
    [("ExLPose_test_LL-A.json", "test_LL-A"), ("ExLPose_test_LL-All.json", "test_LL-A"), ("ExLPose_test_LL-Extreme.json", "test_LL-E"),
     ("ExLPose_train_WL.json", "train_WL"), ("ExLPose-OC_test_RICOH3.json", "OC_RICOH3"), ("notes.json", None)],
)
def test_annotation_keys(name, key):
    assert annotation_key(name) == key


def test_pairs_from_list_and_from_grammar_agree(tmp_path, official_ll_all):
    make_release(tmp_path / "a", official_ll_all, 8, pair_list=True)
    make_release(tmp_path / "b", official_ll_all, 8, pair_list=False)
    ra, rb = open_release(tmp_path / "a"), open_release(tmp_path / "b")
    assert ra.pairs_source == "pair-list" and rb.pairs_source == "grammar"
    assert [(p.bright, p.dark) for p in ra.pairs] == [(p.bright, p.dark) for p in rb.pairs]
    assert len(ra.pairs) == 8 and not ra.missing_images and not rb.unpaired
    p = ra.pairs[0]
    assert ra.pair_of(p.dark) == p and ra.pair_of(p.bright.split("/")[-1]) == p and ra.pair_of("bright/nothing.png") is None


def test_missing_and_unpaired_are_reported_not_fatal(tmp_path, official_ll_all):
    make_release(tmp_path, official_ll_all, 6)
    r = open_release(tmp_path)
    (tmp_path / r.pairs[0].dark).unlink()
    (tmp_path / "bright" / "holiday.png").write_bytes(b"")
    r = open_release(tmp_path)
    assert r.missing_images == [r.pairs[0].dark]
    assert r.unconforming == ["bright/holiday.png"]
    (tmp_path / "brightPath2darkPath.txt").unlink()
    r = open_release(tmp_path)
    assert len(r.pairs) == 5 and len(r.unpaired) == 1


def test_annotation_folder_beside_the_image_root(tmp_path, official_ll_all):
    make_release(tmp_path / "ExLPose", official_ll_all, 4)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "ExLPose_test_LL-All.json").write_text("{}")
    r = open_release(tmp_path / "ExLPose")
    assert r.annotation_dir == tmp_path / "Annotations"
    assert r.annotation_file("test_LL-All").name == "ExLPose_test_LL-All.json"
    with pytest.raises(InputError, match="train_WL"):
        r.annotation_file("train_WL")


def test_not_a_folder(tmp_path):
    with pytest.raises(InputError, match="no such dataset folder"):
        open_release(tmp_path / "nope")


def test_write_release_annotations_names_dark_twins_and_updates_manifest(tmp_path, official_ll_all):
    doc = AnnotationDocument.model_validate(make_release(tmp_path, official_ll_all, 40))
    release = open_release(tmp_path)
    written = write_release_annotations(tmp_path, doc, release.bright_to_dark(), test_fraction=0.5, seed=0)
    names = sorted(p.name for p in written)
    assert names == sorted(["ExLPose_train_LL.json", "ExLPose_train_WL.json", "ExLPose_test_LL-A.json", "ExLPose_test_LL-N.json",
                            "ExLPose_test_LL-H.json", "ExLPose_test_LL-E.json", "ExLPose_test_WL.json"])
    train_ll = json.loads((tmp_path / "annotations" / "ExLPose_train_LL.json").read_text())
    assert train_ll["images"] and all(i["file_name"].startswith("dark/") for i in train_ll["images"])
    assert [a["id"] for a in train_ll["annotations"]] == list(range(1, len(train_ll["annotations"]) + 1))
    test_a = json.loads((tmp_path / "annotations" / "ExLPose_test_LL-A.json").read_text())
    assert len(train_ll["images"]) + len(test_a["images"]) == 40
    diffs = verify_dataset(tmp_path)
    assert {d.kind for d in diffs} == {"unlisted"} and all(not d.path.startswith("annotations/") for d in diffs)


def test_write_release_annotations_in_the_mmpose_layout_is_found_again(tmp_path, official_ll_all):
    doc = AnnotationDocument.model_validate(make_release(tmp_path, official_ll_all, 40))
    written = write_release_annotations(tmp_path, doc, open_release(tmp_path).bright_to_dark(), test_fraction=0.5, seed=0, layout="mmpose")
    assert {p.parent for p in written} == {tmp_path / "annotations" / "ExLPose"}
    files = open_release(tmp_path).annotation_files()
    assert files["train_LL"] == tmp_path / "annotations" / "ExLPose" / "ExLPose_train_LL.json" and len(files) == 7
