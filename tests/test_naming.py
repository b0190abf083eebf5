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


def test_name_part_checks_are_the_grammar_rules() -> None:
    from exlpose_data.naming import check_date, check_site, check_video

    assert check_date("0119") == "0119" and check_site("") == "" and check_site("bul-guksa3") == "bul-guksa3"
    assert check_video(0) == 0 and check_video(999_999) == 999_999
    for bad, check, message in (("1319", check_date, "'1319': expected a date MMDD like 0119"),
                                ("0132", check_date, "'0132': expected a date MMDD like 0119"),
                                ("119", check_date, "'119': expected a date MMDD like 0119"),
                                ("a_b", check_site, "'a_b': a site holds only letters, digits and '-'"),
                                (1_000_000, check_video, "1000000: expected a video number 0..999999"),
                                (-1, check_video, "-1: expected a video number 0..999999")):
        with pytest.raises(ValueError) as info:
            check(bad)
        assert str(info.value).startswith(message)


def test_annotation_file_names_round_trip_through_their_keys() -> None:
    from exlpose_data.naming import annotation_file_name, annotation_key

    assert annotation_file_name("test", "LL-A") == "ExLPose_test_LL-A.json"
    assert annotation_file_name(None, "LL-N", prefix="ExLPose_test") == "ExLPose_test_LL-N.json"
    assert annotation_file_name("val", "WL", prefix="Mine") == "Mine_val_WL.json"
    for part, cond in (("train", "LL"), ("train", "WL"), ("test", "LL-E"), ("all", "WL")):
        assert annotation_key(annotation_file_name(part, cond)) == f"{part}_{cond}"


def test_k_uses_the_release_nd_factor() -> None:
    from exlpose_data.exposure import DEFAULT_ND_FACTOR

    name = parse_name("bright/imgs_0119_3_vid000003_exp1200_bright_000051__gain_20.00_exposure_417.png")
    assert DEFAULT_ND_FACTOR == 100.0 and name.k == 12.0
