import pytest

from exlpose_data.errors import NameGrammarError
from exlpose_data.exposure import ll_gain_from_wl
from exlpose_data.naming import parse_name


def test_every_official_name_round_trips(official_ll_all):
    names = [img["file_name"] for img in official_ll_all["images"]]
    assert len(names) == 491
    for n in names:
        rec = parse_name(n)
        assert rec.relpath == n
        assert rec.condition == "WL"
        assert parse_name(rec.twin().relpath).twin(gain_db=rec.gain_db).relpath == n


def test_fields_of_a_name_with_a_digit_site():
    rec = parse_name("bright/imgs_0119_3_vid000026_exp200_bright_000052__gain_6.02_exposure_500.png")
    assert (rec.date, rec.site, rec.video, rec.ratio, rec.frame) == ("0119", "3", 26, 200, 52)
    assert rec.gain_db == 6.02 and rec.exposure_us == 500 and rec.k == 2
    assert rec.scene == ("0119", "3", 26) and rec.scene_id == "0119_3_vid000026"


def test_name_without_site_and_dark_twin():
    rec = parse_name("bright/imgs_0205_vid000006_exp1600_bright_000002__gain_27.98_exposure_313.png")
    assert rec.site == "" and rec.scene_id == "0205_vid000006"
    dark = rec.twin()
    # G_LL = G_WL - 20 log10(R/100) = 27.98 - 24.08
    assert dark.gain_db == pytest.approx(3.90) == ll_gain_from_wl(27.98, 1600)
    assert dark.relpath == "dark/imgs_0205_vid000006_exp1600_dark_000002__gain_3.90_exposure_313.png"
    assert dark.pair_key == rec.pair_key


@pytest.mark.parametrize(
    "bad",
    [
        "bright/imgs_212_vid000005_exp800_bright_000052__gain_22.56_exposure_625.png",  # 3-digit date
        "bright/imgs_0212_vid5_exp800_bright_000052__gain_22.56_exposure_625.png",  # short video
        "bright/imgs_0212_vid000005_exp800_bright_000052__gain_22.5_exposure_625.png",  # one decimal
        "bright/imgs_0212_vid000005_exp800_bright_000052_gain_22.56_exposure_625.png",  # single underscore
        "bright/imgs_0212_vid000005_exp800_bright_000052__gain_22.56_exposure_625.jpg",
        "PID_A7M3/0829_DSC08058.JPG",
        "dark/imgs_0212_vid000005_exp800_bright_000052__gain_22.56_exposure_625.png",  # folder contradicts name
    ],
)
def test_nonconforming_names_are_clear_errors(bad):
    with pytest.raises(NameGrammarError) as exc:
        parse_name(bad)
    assert bad in str(exc.value)
