import json

import cv2
import numpy as np

from typer.testing import CliRunner

from exlpose.cli import app as umbrella
from exlpose_data.schema import AnnotationDocument, load_document
from exlpose_data.stats import dataset_stats, document_stats
from exlpose_data.split import write_release_annotations
from exlpose_data.release import open_release
from tests.conftest import OFFICIAL_LL_ALL, make_release

runner = CliRunner()


def test_document_stats_of_the_official_test_file():
    s = document_stats(load_document(OFFICIAL_LL_ALL))
    assert (s["scenes"], s["images"], s["instances"]) == (50, 491, 2810)
    assert s["per_gain_split"] == {"LL-N": 167, "LL-H": 169, "LL-E": 155}
    assert s["per_ratio"]["100"] == 107 and s["per_ratio"]["1600"] == 13
    assert sum(s["per_ratio"].values()) == 491


def test_dataset_stats_mean_intensities(tmp_path, official_ll_all):
    raw = make_release(tmp_path, official_ll_all, 20)
    # the records give the pixel size of the images written (stats skips an image of another size)
    raw["images"] = [{**img, "width": 48, "height": 30} for img in raw["images"]]
    doc = AnnotationDocument.model_validate(raw)
    write_release_annotations(tmp_path, doc, open_release(tmp_path).bright_to_dark(), test_fraction=0.5)
    s = dataset_stats(tmp_path)
    d = s["dataset"]
    assert d["pairs"] == 20 and d["paired"] and d["pairs_source"] == "pair-list"
    assert d["mean_intensity_wl"] == 90.0
    # The dark images are 1 + 2 * Bernoulli(0.5) noise: the mean of their per-image means, read back from the files.
    darks = [cv2.imread(str(tmp_path / p.dark)) for p in open_release(tmp_path).pairs]
    assert d["mean_intensity_ll"] == round(float(np.mean([img.mean() for img in darks])), 3)
    assert abs(d["mean_intensity_ll"] - 2.0) < 0.05
    assert set(s["annotation_files"]) >= {"train_LL", "test_LL-A", "test_WL"}
    assert s["annotation_files"]["test_WL"]["mean_intensity_wl"] == 90.0


def test_stats_cli_json(tmp_path, official_ll_all):
    make_release(tmp_path, official_ll_all, 5)
    res = runner.invoke(umbrella, ["stats", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["dataset"]["pairs"] == 5
    res = runner.invoke(umbrella, ["stats", str(OFFICIAL_LL_ALL)])
    assert res.exit_code == 0 and "LL-N 167" in res.output
    res = runner.invoke(umbrella, ["stats", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "nope" in res.output


def test_stats_on_a_folder_that_is_no_dataset(tmp_path):
    res = runner.invoke(umbrella, ["stats", str(tmp_path)])
    assert res.exit_code == 2 and "not a dataset" in res.output
