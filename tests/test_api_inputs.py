"""Python API inputs from a probe of the public functions: GPU names where specs are taken, an
empty frame, bundle metadata that would overwrite the model's state."""

from __future__ import annotations

import pandas as pd
import pytest
from predict_helpers import SMALL, xgemm_frame

import gemmperf as gp
from gemmperf.errors import InvalidConfigError
from gemmperf.predict.forest import Predictor
from gemmperf.predict.persist import load_model, save_model

ROW = pd.DataFrame({"m": [4096], "n": [4096], "k": [4096], "dtype": ["f16"], "gpu": ["a100"]})


def test_a_gpu_name_is_accepted_wherever_a_spec_is():
    spec = gp.get_gpu("h100")
    problem = gp.GemmProblem(4096, 4096, 4096, dtype="bf16")
    assert float(gp.roofline(problem, "h100").estimate_s) == float(
        gp.roofline(problem, spec).estimate_s)
    assert gp.roofline_frame(ROW, gpu="h100")["estimate_s"].iloc[0] == \
        gp.roofline_frame(ROW.assign(gpu="h100-sxm"))["estimate_s"].iloc[0]
    assert gp.occupancy("h100", 256, 64, 0).blocks_per_sm == \
        gp.occupancy(spec, 256, 64, 0).blocks_per_sm


def test_an_empty_frame_has_an_empty_roofline():
    out = gp.roofline_frame(ROW.iloc[:0], prefix="r_")
    assert len(out) == 0 and "r_estimate_s" in out.columns


def test_bundle_metadata_cannot_replace_the_models_state(tmp_path):
    model = Predictor(targets=("runtime",), **SMALL).fit(xgemm_frame(120))
    with pytest.raises(InvalidConfigError, match="interval_scale, targets are the bundle's own"):
        save_model(model, tmp_path / "m.npz", metadata={"interval_scale": {}, "targets": []})
    assert not (tmp_path / "m.npz").exists()
    path = save_model(model, tmp_path / "m.npz", metadata={"note": "mine"})
    assert load_model(path).metadata_["note"] == "mine"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, 64.5, 0, -32])
def test_a_kernel_config_holds_whole_positive_numbers(value):
    with pytest.raises(InvalidConfigError, match="tile_m must be an integer >= 1"):
        gp.KernelConfig.make("x", tile_m=value)
    assert gp.KernelConfig.make("x", tile_m=128.0, smem_bytes_per_block=0).tile_m == 128


@pytest.mark.parametrize(("changes", "message"), [
    ({"m": float("nan")}, "m must be a positive integer, got nan"),
    ({"m": 4096.5}, "m must be a positive integer, got 4096.5"),
    ({"batch": 2.5}, "batch must be a positive integer, got 2.5"),
    ({"k": "abc"}, "column k holds values that are not numbers, e.g. 'abc'"),
])
def test_roofline_frame_names_the_column_that_is_wrong(changes, message):
    from gemmperf.errors import InvalidProblemError

    with pytest.raises(InvalidProblemError, match=message):
        gp.roofline_frame(ROW.assign(**changes))


def test_recommend_arguments_are_checked():
    problem = gp.GemmProblem(4096, 4096, 4096, dtype="f32", layout="nt")
    for top in (2.5, True, "5", 0):
        with pytest.raises(InvalidConfigError, match="top must be an integer >= 1"):
            gp.recommend(problem, "rtx-3090", family="clblast_xgemm", top=top)
    with pytest.raises(InvalidConfigError, match="needs a predict"):
        gp.recommend(problem, "rtx-3090", family="clblast_xgemm", model=object())
    from gemmperf.errors import InvalidProblemError

    with pytest.raises(InvalidProblemError, match="problem is a GemmProblem"):
        gp.recommend((4096, 4096, 4096), "rtx-3090", family="clblast_xgemm")


def test_an_unknown_family_is_predicted_with_a_warning():
    model = Predictor(targets=("runtime",), **SMALL).fit(xgemm_frame(120))
    row = xgemm_frame(1).assign(family="clblast_xgem")
    with pytest.warns(UserWarning, match="'clblast_xgem' not in the model's training data"):
        model.predict(row)


def test_paths_and_records_of_the_wrong_type():
    from gemmperf.errors import DataFormatError, RecordsPathError
    from gemmperf.records import Record, RecordWriter

    with pytest.raises(DataFormatError, match="read_records takes paths"):
        gp.read_records(None)
    with pytest.raises(DataFormatError, match="a model path is a str or Path"):
        load_model(5)
    with pytest.raises(RecordsPathError, match="a records path is a str or Path"):
        RecordWriter(None)
    with pytest.raises(DataFormatError, match="params is a mapping"):
        Record(source="s", params=[1, 2])
