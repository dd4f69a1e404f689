"""Predictor contract: scikit-learn conventions, partial targets, experts, physical limits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from predict_helpers import SMALL, xgemm_frame
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from gemmperf.errors import DataFormatError, InvalidConfigError, InvalidProblemError
from gemmperf.hardware.specs import get_gpu
from gemmperf.predict.baseline import GPPerfBaseline
from gemmperf.predict.forest import Predictor
from gemmperf.predict.physical_limits import cap_at_power_limit


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return xgemm_frame(300)


@pytest.fixture(scope="module")
def fitted(frame: pd.DataFrame) -> Predictor:
    return Predictor(**SMALL).fit(frame)


def test_init_stores_params_untouched_and_clone_works():
    model = Predictor(targets=("runtime",), learner="bogus", n_estimators=3)
    assert model.learner == "bogus" and model.n_estimators == 3   # no validation in __init__
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "forests_")
    with pytest.raises(InvalidConfigError, match="learner"):
        model.fit(xgemm_frame(20))


def test_predict_before_fit_raises_not_fitted(frame):
    with pytest.raises(NotFittedError):
        Predictor().predict(frame)


def test_fit_returns_self_and_learned_state_ends_in_underscore(frame):
    model = Predictor(**SMALL)
    assert model.fit(frame) is model
    for name in ("forests_", "interval_scale_", "n_train_", "categories_", "feature_names_",
                 "training_data_"):
        assert hasattr(model, name)
    # Power and energy exist on half the rows: each target trains on its own rows.
    assert model.n_train_ == {"runtime": 300, "power": 150, "energy": 150}


def test_predict_columns_intervals_and_index(fitted, frame):
    part = frame.iloc[::7]
    pred = fitted.predict(part)
    assert list(pred.index) == list(part.index)
    for col in ("runtime_s", "power_w", "energy_j"):
        assert (pred[col + "_lo"] <= pred[col]).all() and (pred[col] <= pred[col + "_hi"]).all()
        assert (pred[col] > 0).all()
    # In-sample the structure is learnt closely.
    ape = np.abs(pred["runtime_s"] / part["runtime_s"] - 1)
    assert ape.median() < 0.1


def test_rows_without_power_still_get_power_predictions(fitted, frame):
    no_power = frame[frame["power_w"].isna()].head(5).drop(columns=["power_w", "energy_j"])
    pred = fitted.predict(no_power)
    assert pred["power_w"].notna().all()


def test_runtime_only_model_derives_no_energy_and_product_when_power_exists(frame):
    only_runtime = Predictor(targets=("runtime",), **SMALL).fit(frame)
    assert list(only_runtime.predict(frame.head(3)).columns) == [
        "runtime_s", "runtime_s_lo", "runtime_s_hi"]
    two = Predictor(targets=("runtime", "power"), **SMALL).fit(frame)
    pred = two.predict(frame.head(3))
    assert np.allclose(pred["energy_j"], pred["runtime_s"] * pred["power_w"])


def test_no_trainable_target_is_a_clear_error(frame):
    with pytest.raises(DataFormatError, match="nothing to train on"):
        Predictor(**SMALL).fit(frame.drop(columns=["runtime_s", "power_w", "energy_j"]))


def test_unseen_category_is_encoded_as_missing(fitted, frame):
    row = frame.head(1).copy()
    row["family"] = "some_new_family"
    with pytest.warns(UserWarning, match="'some_new_family' not in the model's training data"):
        assert np.isfinite(fitted.predict(row)["runtime_s"]).all()


def test_gpperf_baseline_trains_per_target_on_raw_columns(frame):
    base = GPPerfBaseline(n_estimators=10).fit(frame)
    assert set(base.forests_) == {"runtime", "power", "energy"}
    pred = base.predict(frame.head(4))
    assert (pred["runtime_s"] > 0).all()
    # It cannot tell GPUs apart: identical configs on two GPUs get one prediction.
    twin = frame.head(1).copy()
    twin = pd.concat([twin, twin.assign(gpu="a100-sxm4-80gb")])
    assert base.predict(twin)["runtime_s"].nunique() == 1


@pytest.mark.shared_data
def test_real_dvfs_table_power_on_held_out_clocks(shared_data):
    from gemmperf.predict.data import load_data
    from gemmperf.predict.evaluate import cross_validate

    frame = load_data([shared_data / "gpuptxmodel_gtxtitanx_dvfs.csv"])
    result = cross_validate(frame, "clock", lambda: Predictor(n_estimators=16), folds=4)
    assert result["targets"]["power"]["n"] == len(frame)
    assert result["targets"]["power"]["median_ape"] < 3.0   # the issue-4 goal, on 16 trees


def test_per_gpu_experts_fit_what_the_shared_ensemble_leaves_on_a_measured_gpu():
    # On the RTX 3090 only, SA=1 configs are 25 % faster: hardware-normalised features cannot
    # tell the GPUs apart, so the shared ensemble averages the effect; the 3090's expert keeps it.
    frame = xgemm_frame(900, seed=1)
    sa = frame["params"].str.contains('"SA": 1').to_numpy()
    faster = (frame["gpu"] == "rtx-3090").to_numpy() & sa
    frame = frame.assign(runtime_s=np.where(faster, 0.75, 1.0) * frame["runtime_s"])
    shared = Predictor(targets=("runtime",), expert_estimators=0, **SMALL).fit(frame)
    expert = Predictor(targets=("runtime",), expert_min_rows=100, **SMALL).fit(frame)
    assert shared.experts_["runtime"] == {}
    assert sorted(expert.experts_["runtime"]) == sorted(frame["gpu"].unique())
    on_3090 = (frame["gpu"] == "rtx-3090").to_numpy()

    def error(model: Predictor) -> float:
        pred = model.predict(frame[on_3090])["runtime_s"].to_numpy()
        return float(np.mean(np.abs(pred / frame["runtime_s"].to_numpy()[on_3090] - 1)))

    assert error(expert) < 0.5 * error(shared)
    # ... and its interval comes from the expert's own spread: narrower where it fits better.
    def width(model: Predictor) -> float:
        pred = model.predict(frame[on_3090])
        return float(np.median(np.log(pred["runtime_s_hi"] / pred["runtime_s_lo"])))

    assert width(expert) < width(shared)
    # A GPU without an expert is predicted by the shared ensemble alone (without analogy:
    # tests/test_analogy.py).
    plain = Predictor(targets=("runtime",), expert_min_rows=100, analogy=False, **SMALL).fit(frame)
    moved = frame[on_3090].head(5).assign(gpu="rtx-4090")
    assert np.allclose(plain.predict(moved)["runtime_s"], shared.predict(moved)["runtime_s"])
    with pytest.raises(InvalidConfigError, match="expert_estimators"):
        Predictor(expert_estimators=-1).fit(frame)


def test_import_gemmperf_defers_scikit_learn_until_the_predictor_is_used():
    import subprocess
    import sys

    code = ("import sys, gemmperf\n"
            "assert 'sklearn' not in sys.modules\n"
            "assert gemmperf.Predictor.__name__ == 'Predictor'\n"
            "assert 'sklearn' in sys.modules\n"
            "from gemmperf import load_model\n"
            "assert callable(load_model)\n"
            "try:\n    gemmperf.no_such_name\nexcept AttributeError:\n    pass\n"
            "else:\n    raise SystemExit('no AttributeError')\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_energy_ensemble_only_for_families_with_energy_rows_else_power_times_runtime(fitted,
                                                                                    frame):
    assert fitted.families_["energy"] == ["clblast_xgemm"]
    rows = frame.head(6).copy()
    rows.loc[rows.index[3:], "family"] = "cublas"          # no energy row of this family
    with pytest.warns(UserWarning, match="'cublas' not in the model's training data"):
        pred = fitted.predict(rows)
    product = pred["runtime_s"] * pred["power_w"]
    assert np.allclose(pred["energy_j"].iloc[3:], product.iloc[3:])
    assert not np.allclose(pred["energy_j"].iloc[:3], product.iloc[:3])   # its own ensemble
    for bound in ("_lo", "_hi"):
        assert np.allclose(pred["energy_j" + bound].iloc[3:],
                           (pred["runtime_s" + bound] * pred["power_w" + bound]).iloc[3:])


def test_predict_can_skip_ensembles(fitted, frame):
    part = fitted.predict(frame.head(7), targets=("runtime", "power"))
    full = fitted.predict(frame.head(7))
    pd.testing.assert_series_equal(part["runtime_s"], full["runtime_s"])
    assert np.allclose(part["energy_j"], part["runtime_s"] * part["power_w"])
    assert "energy_j" in full and not np.allclose(full["energy_j"], part["energy_j"])
    only = fitted.predict(frame.head(7), targets=("runtime",))
    assert list(only.columns) == ["runtime_s", "runtime_s_lo", "runtime_s_hi"]
    with pytest.raises(InvalidConfigError, match="unknown target"):
        fitted.predict(frame.head(7), targets=("latency",))


def test_few_rows_take_one_numpy_walk_and_predict_what_a_batch_predicts(frame):
    from gemmperf.predict.ensembles import SMALL_ROWS, all_trees

    model = Predictor(expert_min_rows=50, **SMALL).fit(frame)
    assert model.experts_["runtime"]       # the walk covers experts too
    batch = model.predict(frame)            # > SMALL_ROWS rows: scikit-learn's trees
    assert len(frame) > SMALL_ROWS
    rows = [model.predict(frame.iloc[[i]]) for i in range(0, len(frame), 37)]
    few = model.predict(frame.iloc[:SMALL_ROWS])
    pd.testing.assert_frame_equal(pd.concat(rows), batch.iloc[::37], rtol=1e-12)
    pd.testing.assert_frame_equal(few, batch.iloc[:SMALL_ROWS], rtol=1e-12)
    # The combined forest is built once and rebuilt after a refit.
    combined = all_trees(model)[0]
    assert all_trees(model)[0] is combined
    assert combined.n_trees == sum(f.n_trees for f in model.forests_.values()) + sum(
        e.n_trees for experts in model.experts_.values() for e in experts.values())
    model.fit(frame.head(200))
    assert all_trees(model)[0] is not combined


def test_no_runtime_is_predicted_below_a_kernel_calls_fixed_cost():
    from gemmperf.predict.physical_limits import call_floor_s

    assert 1e-6 < call_floor_s() < 1e-5   # the calibrated t0 of library GEMMs, microseconds
    model = Predictor(targets=("runtime",), **SMALL).fit(xgemm_frame(200))
    pred = model.predict(xgemm_frame(2).assign(m=1, n=1, k=1))
    columns = ["runtime_s", "runtime_s_lo", "runtime_s_hi"]
    assert (pred[columns].to_numpy() >= call_floor_s()).all()


def test_power_and_energy_never_exceed_the_boards_power_limit(fitted, frame):
    # Trained on ~150-250 W rows; moved to a 115 W laptop part, power and its interval stop at
    # the TDP (the GPU clocks down to hold it) and energy at TDP x time, on every row.
    laptop = frame.head(20).assign(gpu="rtx-3060-laptop")
    pred = fitted.predict(laptop)
    tdp = get_gpu("rtx-3060-laptop").tdp_w
    for suffix in ("", "_lo", "_hi"):
        assert (pred["power_w" + suffix] <= tdp).all()
        assert (pred["energy_j" + suffix] <= tdp * pred["runtime_s" + suffix] * (1 + 1e-12)).all()
    assert (pred["power_w_hi"] == tdp).any()               # the cap is what bounds it here

    # Values under the limit are untouched; an unknown limit (NaN) caps nothing.
    out = {"power_w": np.array([100.0, 300.0, 300.0]), "runtime_s": np.array([1.0, 2.0, 2.0]),
           "energy_j": np.array([100.0, 700.0, 700.0])}
    for column in list(out):
        out[column + "_lo"], out[column + "_hi"] = out[column] / 2, out[column] * 2
    cap_at_power_limit(out, np.array([200.0, 200.0, np.nan]))
    assert out["power_w"].tolist() == [100.0, 200.0, 300.0]
    assert out["power_w_lo"].tolist() == [50.0, 150.0, 150.0]
    assert out["energy_j"].tolist() == [100.0, 400.0, 700.0]      # <= 200 W x 2 s
    assert out["energy_j_hi"].tolist() == [200.0, 800.0, 1400.0]  # <= 200 W x 4 s


def test_params_given_as_mappings_work_like_json_text(fitted, frame):
    # A frame built by hand may hold params={"VWM": 2, ...} rather than the records' JSON text.
    as_dicts = frame.head(30).assign(params=[json.loads(p) for p in frame["params"].head(30)])
    pd.testing.assert_frame_equal(fitted.predict(as_dicts), fitted.predict(frame.head(30)))
    refit = Predictor(**SMALL).fit(frame.assign(params=[json.loads(p) for p in frame["params"]]))
    pd.testing.assert_frame_equal(refit.predict(frame.head(30)), fitted.predict(frame.head(30)))


def test_part_of_a_gemm_shape_is_an_error_not_a_shapeless_row(fitted, frame):
    # A missing or non-numeric dimension would otherwise read as "no GEMM shape" (1 ms base).
    for bad, message in (({"n": np.nan}, "only part of a GEMM shape"),
                         ({"m": "abc"}, "m of row 0 is 'abc', not a number"),
                         ({"dtype": None}, "3 GEMM row\\(s\\) have no dtype")):
        with pytest.raises(InvalidProblemError, match=message):
            fitted.predict(frame.head(3).assign(**bad))
