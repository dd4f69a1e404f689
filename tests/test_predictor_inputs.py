"""Inputs the Predictor refuses instead of fitting or predicting something wrong (found by a
probe of the Python API)."""

from __future__ import annotations

import pandas as pd
import pytest
from predict_helpers import SMALL, xgemm_frame

from gemmperf.errors import DataFormatError, GemmperfError, InvalidConfigError
from gemmperf.predict.forest import Predictor
from gemmperf.predict.inputs import NotFittedError


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return xgemm_frame(300)


@pytest.fixture(scope="module")
def fitted(frame) -> Predictor:
    return Predictor(targets=("runtime", "power"), **SMALL).fit(frame)


def test_rows_that_did_not_run_ok_teach_nothing(frame):
    broken = frame.assign(runtime_s=frame["runtime_s"] * 50, status="wrong_result")
    mixed = pd.concat([frame, broken.head(120)], ignore_index=True)
    model = Predictor(targets=("runtime",), **SMALL).fit(mixed)
    assert model.n_train_["runtime"] == len(frame)


@pytest.mark.parametrize("value", [-1e-3, 0.0, float("inf"), "slow"])
def test_a_measurement_no_gpu_produces_is_an_error(frame, value):
    bad = frame.copy()
    bad["runtime_s"] = bad["runtime_s"].astype(object)
    bad.loc[5, "runtime_s"] = value
    with pytest.raises(DataFormatError, match="runtime_s of row 5"):
        Predictor(targets=("runtime",), **SMALL).fit(bad)


@pytest.mark.parametrize(("column", "value", "message"), [
    ("sm_clock_mhz", 1.41e9, "sm_clock_mhz of row 0 is 1.41e\\+09"),
    ("sm_clock_mhz", -5.0, "sm_clock_mhz of row 0 is -5"),
    ("mem_clock_mhz", -5.0, "mem_clock_mhz of row 0 is -5"),
])
def test_a_clock_that_is_not_one_of_the_gpu(fitted, frame, column, value, message):
    with pytest.raises(InvalidConfigError, match=message):
        fitted.predict(frame.head(2).assign(**{column: value}))


def test_use_before_fit_and_unknown_targets_are_gemmperf_errors(fitted, frame):
    with pytest.raises(NotFittedError, match="not fitted"):
        Predictor().predict(frame.head(1))
    assert issubclass(NotFittedError, GemmperfError)
    only_runtime = fitted.predict(frame.head(2), targets="runtime")
    assert {c.split("_s")[0] for c in only_runtime.columns} == {"runtime"}
    with pytest.raises(InvalidConfigError, match="no energy ensemble"):
        fitted.predict(frame.head(2), targets=("energy",))
    with pytest.raises(InvalidConfigError, match="targets is a tuple of names"):
        Predictor(targets="runtime").fit(frame)


@pytest.mark.parametrize("params", [{"n_estimators": 0}, {"n_estimators": "8"},
                                    {"max_leaf_nodes": 1}, {"min_samples_leaf": 0},
                                    {"max_features": 0}, {"expert_min_rows": "1000"}])
def test_hyperparameters_are_checked_before_scikit_learn_sees_them(frame, params):
    with pytest.raises(InvalidConfigError):
        Predictor(**{**SMALL, **params}).fit(frame)


def test_own_ensemble_energy_stays_within_power_times_runtime():
    import numpy as np

    from gemmperf.predict.physical_limits import energy_within_power_bounds

    out = {"runtime_s": np.array([1e-3, 1e-3]), "runtime_s_lo": np.array([8e-4, 8e-4]),
           "runtime_s_hi": np.array([1.2e-3, 1.2e-3]), "power_w": np.array([200.0, 200.0]),
           "power_w_lo": np.array([150.0, 150.0]), "power_w_hi": np.array([250.0, 250.0]),
           "energy_j": np.array([1e-9, 0.21]), "energy_j_lo": np.array([1e-10, 0.15]),
           "energy_j_hi": np.array([1e-8, 0.26])}
    energy_within_power_bounds(out)
    # an energy no power in the interval can give moves to the nearest that can ...
    assert out["energy_j"][0] == pytest.approx(150.0 * 8e-4)
    assert out["energy_j_lo"][0] == 1e-10 and out["energy_j_hi"][0] == pytest.approx(0.12)
    # ... and one that can is left as its own ensemble predicted it, interval and all
    assert (out["energy_j"][1], out["energy_j_lo"][1], out["energy_j_hi"][1]) == (0.21, 0.15,
                                                                                0.26)
