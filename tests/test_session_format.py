import json

import h5py
import numpy as np
import pytest

from exlpose_data.errors import InputError
from exlpose_data.session_format import FRAME_DTYPE, SessionReader, normalise_bayer_pattern


@pytest.mark.parametrize("given,expected", [("RG", "RGGB"), ("gb", "GBRG"), ("RGGB", "RGGB"), ("", "")])
def test_bayer_pattern_names(given, expected):
    assert normalise_bayer_pattern(given) == expected


def _session(path):
    with h5py.File(path, "w") as f:
        f.attrs["rig_config"] = json.dumps({"nd_factor": 100})
        g = f.create_group("scenes/s1")
        g.attrs.update(date_mmdd="0119", site="3", video_id=7, k_list=json.dumps([1, 2]))
        for k in ("1", "2"):
            st = g.create_group(f"steps/{k}")
            st.attrs["ratio"] = 100 * int(k)
            for role in ("ll", "wl"):
                ds = st.create_dataset(role, data=np.full((3, 4, 6), int(k) * 10 + (role == "wl"), np.uint16))
                ds.attrs.update(pixel_format="BayerRG12", bayer_pattern="RG", bit_depth=12, black_level=240.0)
            table = np.zeros(2, FRAME_DTYPE)  # one pair fewer than frames: a row not yet flushed
            table["index"] = [0, 1]
            st.create_dataset("frames", data=table)


def test_reader_gives_scenes_steps_and_pairs(tmp_path):
    path = tmp_path / "s.h5"
    _session(path)
    with SessionReader(path) as r:
        assert r.rig_config == {"nd_factor": 100}
        assert r.scenes() == ["s1"] and r.steps("s1") == ["1", "2"]
        meta = r.scene_meta("s1")
        assert meta["k_list"] == [1, 2] and meta["video_id"] == 7 and meta["site"] == "3"
        assert len(r.frames_table("s1", "2")) == 2
        ll, wl = r.pair("s1", "2", 1)
        assert ll[0, 0] == 20 and wl[0, 0] == 21
        ll_attrs, _ = r.frame_attrs("s1", "1")
        assert ll_attrs.bayer_pattern == "RGGB" and ll_attrs.black_level == 240.0 and ll_attrs.bit_depth == 12
        with pytest.raises(InputError, match="no pair 2"):
            r.pair("s1", "1", 2)
        with pytest.raises(InputError, match="no scene 'nope'"):
            r.steps("nope")


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="no such session file"):
        SessionReader(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="junk.h5: not a readable HDF5"):
        SessionReader(tmp_path / "junk.h5")


def test_summarise_reads_back_per_step(tmp_path):
    import math

    from exlpose_data.session_format import summarise

    path = tmp_path / "s.h5"
    _session(path)
    with h5py.File(path, "a") as f:
        st = f["scenes/s1/steps/2"]
        st.attrs.update(nominal_exposure_us=2500, wl_gain_db=10.52, dropped_pairs=json.dumps({"wl timeout": 3}))
        table = st["frames"][()]
        table["ll_exposure_us"], table["ll_gain_db"], table["wl_gain_db"] = [2500.0, 2500.0], [4.5, 4.5], [10.5, 10.54]
        del st["frames"]
        st.create_dataset("frames", data=table)
        del f["scenes/s1/steps/1/frames"]
    summary = summarise(path)
    assert summary["created"] == "?" and summary["references"] == {}
    scene = summary["scenes"]["s1"]
    assert scene["video_id"] == 7 and scene["k_list"] == [1, 2]
    step = scene["steps"]["2"]
    assert step == {"pairs": 2, "exposure_us": 2500.0, "ll_gain_db": 4.5, "wl_gain_db": pytest.approx(10.52), "dropped": {"wl timeout": 3},
                    "ratio": 200, "nominal_exposure_us": 2500, "planned_wl_gain_db": 10.52}
    empty = scene["steps"]["1"]
    assert empty["pairs"] == 0 and math.isnan(empty["exposure_us"]) and empty["dropped"] == {}
