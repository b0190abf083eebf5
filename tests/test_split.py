import json

from typer.testing import CliRunner

from exlpose_data.cli.split import app
from exlpose_data.naming import parse_name
from exlpose_data.schema import AnnotationDocument, load_document
from exlpose_data.split import PairMap, gain_split, split_by_gain, split_by_scene, well_lit_gain
from tests.conftest import OFFICIAL_LL_ALL

runner = CliRunner()


def test_gain_split_thresholds():
    assert gain_split(14.99) == "LL-N"
    assert gain_split(15.0) == "LL-H"
    assert gain_split(23.99) == "LL-H"
    assert gain_split(24.0) == "LL-E"
    assert gain_split(20.0, (10.0, 20.0)) == "LL-E"


def test_official_file_splits_into_167_169_155():
    result = split_by_gain(load_document(OFFICIAL_LL_ALL))
    docs = result.documents
    assert [len(docs[k].images) for k in ("LL-N", "LL-H", "LL-E", "LL-A", "WL")] == [167, 169, 155, 491, 491]
    assert sum(len(docs[k].annotations) for k in ("LL-N", "LL-H", "LL-E")) == 2810
    # no pairing given: LL files keep the bright names, with a warning
    assert result.warnings and "491" in result.warnings[0]


def test_split_files_have_ids_from_1_num_keypoints_and_area_and_nothing_else_changes(official_ll_all):
    docs = split_by_gain(load_document(OFFICIAL_LL_ALL)).documents
    for doc in docs.values():
        ids = [a.id for a in doc.annotations]
        assert ids == list(range(1, len(ids) + 1))
        for a in doc.annotations:
            assert a.num_keypoints == sum(1 for v in a.keypoints[2::3] if v > 0)
            assert a.area == round(a.bbox[2] * a.bbox[3] * 0.53, 4)
    original = {(a["image_id"], tuple(a["keypoints"]), tuple(a["bbox"])) for a in official_ll_all["annotations"]}
    assert {(a.image_id, tuple(a.keypoints), tuple(a.bbox)) for a in docs["LL-A"].annotations} == original
    assert {i.id: i.file_name for i in docs["WL"].images} == {i["id"]: i["file_name"] for i in official_ll_all["images"]}


def test_ll_files_name_dark_twins_when_pairing_is_known():
    doc = load_document(OFFICIAL_LL_ALL)
    pairs = PairMap({img.file_name: parse_name(img.file_name).twin().relpath for img in doc.images})
    result = split_by_gain(doc, pairs=pairs, recompute_crowd_index=True)
    assert not result.warnings
    assert all(img.file_name.startswith("dark/") for img in result.documents["LL-E"].images)
    assert all(img.file_name.startswith("bright/") for img in result.documents["WL"].images)
    # the split goes by the WL gain even for dark names
    assert [len(result.documents[k].images) for k in ("LL-N", "LL-H", "LL-E")] == [167, 169, 155]


def test_well_lit_gain_of_a_dark_name_is_inferred_without_pairs():
    dark = "dark/imgs_0212_hwangridan_vid000005_exp800_dark_000052__gain_4.50_exposure_625.png"
    assert well_lit_gain(dark) == 22.56


def test_by_scene_keeps_scenes_whole_and_is_seeded():
    doc = load_document(OFFICIAL_LL_ALL)
    r1 = split_by_scene(doc, test_fraction=0.2, val_fraction=0.1, seed=3)
    r2 = split_by_scene(doc, test_fraction=0.2, val_fraction=0.1, seed=3)
    scenes = {p: {parse_name(i.file_name).scene for i in d.images} for p, d in r1.documents.items()}
    assert not (scenes["train"] & scenes["test"]) and not (scenes["train"] & scenes["val"]) and not (scenes["val"] & scenes["test"])
    assert (len(scenes["test"]), len(scenes["val"]), len(scenes["train"])) == (10, 5, 35)
    assert sum(len(d.images) for d in r1.documents.values()) == 491
    assert [i.file_name for i in r1.documents["test"].images] == [i.file_name for i in r2.documents["test"].images]
    r3 = split_by_scene(doc, test_fraction=0.2, seed=4)
    assert {i.file_name for i in r3.documents["test"].images} != {i.file_name for i in r1.documents["test"].images}


def test_cli_by_gain_writes_the_five_files(tmp_path):
    res = runner.invoke(app, ["by-gain", str(OFFICIAL_LL_ALL), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    counts = {p.name: len(json.loads(p.read_text())["images"]) for p in tmp_path.glob("[!.]*.json")}
    assert counts == {"ExLPose_test_LL-N.json": 167, "ExLPose_test_LL-H.json": 169, "ExLPose_test_LL-E.json": 155,
                      "ExLPose_test_LL-A.json": 491, "ExLPose_test_WL.json": 491}
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_cli_by_gain_with_pairs_and_custom_thresholds(tmp_path):
    doc = json.loads(OFFICIAL_LL_ALL.read_text())
    pairs = tmp_path / "brightPath2darkPath.txt"
    pairs.write_text("".join(f"{i['file_name']} {parse_name(i['file_name']).twin().relpath}\n" for i in doc["images"]))
    res = runner.invoke(app, ["by-gain", str(OFFICIAL_LL_ALL), "--out", str(tmp_path / "o"), "--thresholds", "10", "30",
                              "--prefix", "X", "--pairs", str(pairs)])
    assert res.exit_code == 0, res.output
    ll_n = AnnotationDocument.model_validate_json((tmp_path / "o" / "X_LL-N.json").read_text())
    assert ll_n.images and all(i.file_name.startswith("dark/") for i in ll_n.images)
    assert all(well_lit_gain(i.file_name, PairMap({})) < 10 for i in ll_n.images)


def test_cli_errors_are_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    res = runner.invoke(app, ["by-gain", str(bad), "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "bad.json" in res.output and "not valid JSON" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["by-gain", str(OFFICIAL_LL_ALL), "--out", str(tmp_path), "--thresholds", "24", "15"])
    assert res.exit_code == 2 and "increase" in res.output


def test_cli_by_scene_prints_counts(tmp_path):
    res = runner.invoke(app, ["by-scene", str(OFFICIAL_LL_ALL), "--out", str(tmp_path), "--test-fraction", "0.2", "--val-fraction", "0.1", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert "test: 10 scenes" in res.output and "val: 5 scenes" in res.output and "train: 35 scenes" in res.output
    assert sorted(p.name for p in tmp_path.glob("[!.]*.json")) == sorted(
        f"ExLPose_{p}_{c}.json" for p in ("train", "val", "test") for c in ("LL", "WL"))


def _official_with(tmp_path, mutate):
    doc = json.loads(OFFICIAL_LL_ALL.read_text())
    mutate(doc)
    path = tmp_path / "in.json"
    path.write_text(json.dumps(doc))
    return path


def test_structural_problems_are_one_line_errors_not_tracebacks(tmp_path):
    def short_keypoints(d): d["annotations"][5]["keypoints"] = d["annotations"][5]["keypoints"][:41]
    def bad_box(d): d["annotations"][7]["bbox"] = [1, 2, 3]
    def orphan(d): d["annotations"][9]["image_id"] = 10 ** 9
    def dup_image(d): d["images"][1]["id"] = d["images"][0]["id"]
    for mutate, where in ((short_keypoints, "annotations[5].keypoints"), (bad_box, "annotations[7].bbox"),
                          (orphan, "annotations[9].image_id"), (dup_image, "images[1].id")):
        path = _official_with(tmp_path, mutate)
        for args in (["by-gain", str(path), "--out", str(tmp_path / "o")],
                     ["by-scene", str(path), "--out", str(tmp_path / "o"), "--test-fraction", "0.2", "--seed", "0"]):
            res = runner.invoke(app, args)
            assert res.exit_code == 2, res.output
            assert where in res.output and "in.json" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_by_gain_keeps_the_files_crowd_index_and_says_when_it_looks_like_a_placeholder():
    kept = split_by_gain(load_document(OFFICIAL_LL_ALL), source="in.json")
    assert {i.crowdIndex for i in kept.documents["LL-A"].images} == {0}  # the official files carry 0 everywhere
    assert kept.warnings[1:] == [
        "in.json: crowdIndex is 0 on every image, kept as given, although 347 image(s) have people inside others' boxes; "
        "--recompute-crowd-index computes it (CrowdPose's easy/medium/hard subsets are cut on it)"
    ]
    docs = split_by_gain(load_document(OFFICIAL_LL_ALL), recompute_crowd_index=True).documents
    crowded = [i for i in docs["LL-A"].images if i.crowdIndex > 0]
    assert len(crowded) == 347
    # A file with real values keeps them, with no warning
    doc = load_document(OFFICIAL_LL_ALL)
    doc.images[0].crowdIndex = 0.37
    result = split_by_gain(doc)
    assert result.documents["LL-A"].images[0].crowdIndex == 0.37 and {i.crowdIndex for i in result.documents["LL-A"].images[1:]} == {0}
    assert not any("crowdIndex" in w for w in result.warnings)


def test_by_scene_warns_when_wl_files_would_name_dark_images(tmp_path):
    doc = json.loads(OFFICIAL_LL_ALL.read_text())
    for img in doc["images"]:
        img["file_name"] = parse_name(img["file_name"]).twin().relpath
    path = tmp_path / "dark.json"
    path.write_text(json.dumps(doc))
    res = runner.invoke(app, ["by-scene", str(path), "--out", str(tmp_path / "o"), "--test-fraction", "0.2", "--seed", "0"])
    assert res.exit_code == 0
    assert "491 image(s) kept their dark names in the WL file" in res.output
    assert "kept their bright names" not in res.output


def test_split_into_a_dataset_updates_its_manifest(tmp_path):
    from exlpose_data.layout import rebuild_manifest, verify_dataset

    (tmp_path / "bright").mkdir()
    (tmp_path / "annotations").mkdir()
    rebuild_manifest(tmp_path)
    res = runner.invoke(app, ["by-gain", str(OFFICIAL_LL_ALL), "--out", str(tmp_path / "annotations")])
    assert res.exit_code == 0
    assert verify_dataset(tmp_path) == []
    assert len(json.loads((tmp_path / "manifest.json").read_text())["files"]) == 5


def test_numbers_keep_their_json_types(tmp_path):
    res = runner.invoke(app, ["by-gain", str(OFFICIAL_LL_ALL), "--out", str(tmp_path)])  # crowdIndex kept by default
    assert res.exit_code == 0
    wl = json.loads((tmp_path / "ExLPose_test_WL.json").read_text())
    original = json.loads(OFFICIAL_LL_ALL.read_text())
    assert wl["images"] == original["images"]
    assert [a["keypoints"] for a in wl["annotations"]] == [a["keypoints"] for a in original["annotations"]]
    assert all(type(v) is type(w) for a, b in zip(wl["annotations"], original["annotations"]) for v, w in zip(a["keypoints"], b["keypoints"]))


def test_write_scene_split_names_each_conditions_twins(tmp_path):
    import json

    from exlpose_data.split import write_scene_split

    doc = load_document(OFFICIAL_LL_ALL)
    result = split_by_scene(doc, test_fraction=0.2, seed=3)
    half = {img.file_name: parse_name(img.file_name).twin().relpath for img in doc.images[::2]}
    written, unpaired = write_scene_split(result, tmp_path, PairMap(half), prefix="Mine", skip=("test",))
    assert sorted(p.name for p in written) == ["Mine_train_LL.json", "Mine_train_WL.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Mine_train_LL.json", "Mine_train_WL.json"]
    train_ll = json.loads((tmp_path / "Mine_train_LL.json").read_text())
    dark = [i["file_name"] for i in train_ll["images"] if i["file_name"].startswith("dark/")]
    # Every other image has a known dark twin; the rest keep their (bright) names and are counted.
    assert len(dark) + unpaired["LL"] == len(train_ll["images"]) == len(result.documents["train"].images)
    assert set(dark) <= set(half.values()) and unpaired["LL"] > 0 and unpaired["WL"] == 0


def test_a_string_keypoint_and_thirteen_joint_names_are_refused_with_their_location(tmp_path):
    """One strict model: split refuses what validate flags, at the same JSON location, instead of coercing."""
    from exlpose.cli import app as umbrella

    def string_keypoint(d): d["annotations"][3]["keypoints"][3] = "12.5"
    def thirteen_names(d): d["categories"][0]["keypoints"] = d["categories"][0]["keypoints"][:13]
    for mutate, where, what in ((string_keypoint, "annotations[3].keypoints[3]", "Input should be a number (got '12.5')"),
                                (thirteen_names, "categories[0].keypoints", "names 13 joints, a CrowdPose file has 14")):
        path = _official_with(tmp_path, mutate)
        res = runner.invoke(app, ["by-gain", str(path), "--out", str(tmp_path / "o")])
        assert res.exit_code == 2, res.output
        assert f"in.json: {where}: {what}" in res.output and "Traceback" not in res.output
        res = runner.invoke(umbrella, ["validate", str(path)])
        assert res.exit_code == 1 and where in res.output
    assert not (tmp_path / "o").exists()
