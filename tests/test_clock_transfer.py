"""A clock a family was never measured at: the bases carry it, not the trees (clock_transfer)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from predict_helpers import SMALL, xgemm_frame

from gemmperf.features import build_features
from gemmperf.hardware.specs import get_gpu
from gemmperf.predict.clock_transfer import as_measured
from gemmperf.predict.forest import Predictor
from gemmperf.tune.power import dvfs_params


def clocked_rows(n: int = 120) -> pd.DataFrame:
    """A family measured at many clocks whose time rises far faster than 1/f below the boost
    clock (what the trees would otherwise carry over to an unclocked family)."""
    rng = np.random.default_rng(1)
    clock = rng.uniform(600, 1695, n)
    runtime = 1e-3 * (1695 / clock) ** 3
    return pd.DataFrame({"source": "synthetic", "status": "ok", "gpu": "rtx-3090",
                         "family": "swept", "kernel_name": "bench", "m": 2048, "n": 2048,
                         "k": 2048, "dtype": "f32", "sm_clock_mhz": clock,
                         "runtime_s": runtime, "power_w": 100 + 0.1 * clock,
                         "energy_j": (100 + 0.1 * clock) * runtime})


@pytest.fixture(scope="module")
def model() -> Predictor:
    frame = pd.concat([xgemm_frame(300, gpus=("rtx-3090", "rtx-2080-ti")), clocked_rows()],
                      ignore_index=True)
    return Predictor(**SMALL).fit(frame)


def test_fit_records_the_families_trained_with_a_clock(model):
    assert model.clocked_families_ == ["swept"]


def test_unclocked_family_follows_the_roofline_in_time_and_the_dvfs_curve_in_power(model):
    row = xgemm_frame(1, gpus=("rtx-3090",)).drop(columns=["power_w", "energy_j"],
                                                     errors="ignore")
    slow = row.assign(sm_clock_mhz=0.6 * get_gpu("rtx-3090").boost_clock_mhz)
    at_default, at_slow = model.predict(row).iloc[0], model.predict(slow).iloc[0]
    base_default = np.exp(build_features(row).log_base["runtime"][0])
    base_slow = np.exp(build_features(slow).log_base["runtime"][0])
    assert at_slow["runtime_s"] / at_default["runtime_s"] == pytest.approx(
        base_slow / base_default, rel=1e-9)
    spec = get_gpu("rtx-3090")
    params, _ = dvfs_params(spec)
    activity = params.activity_at_peak * min(1.0, base_default / at_default["runtime_s"])
    expected = (params.power(spec, slow["sm_clock_mhz"].iloc[0], activity)
                / params.power(spec, spec.boost_clock_mhz, activity))
    assert at_slow["power_w"] / at_default["power_w"] == pytest.approx(float(expected), rel=1e-9)
    # The family has an energy ensemble: its base moves by both shifts.
    assert at_slow["energy_j"] / at_default["energy_j"] == pytest.approx(
        base_slow / base_default * float(expected), rel=1e-9)


def test_a_family_trained_with_clocks_keeps_them_in_the_trees(model):
    rows = clocked_rows(4)
    assert as_measured(rows, build_features(rows), model.clocked_families_) is None
    fast, slow = rows.iloc[[0]].assign(sm_clock_mhz=1600.0), rows.iloc[[0]].assign(
        sm_clock_mhz=700.0)
    ratio = model.predict(slow)["runtime_s"].iloc[0] / model.predict(fast)["runtime_s"].iloc[0]
    assert ratio > 1600 / 700 * 1.5     # the learned ~f^-3, not the base's 1/f


# The fixture's power rows are from one GPU: predict says the interval leaves the level out.
@pytest.mark.filterwarnings("ignore:the (power|energy) interval on")
def test_rows_without_a_clock_are_predicted_as_before(model):
    rows = xgemm_frame(20, seed=3)
    assert as_measured(rows, build_features(rows), model.clocked_families_) is None
    legacy = Predictor(**SMALL)
    legacy.__dict__.update({k: v for k, v in model.__dict__.items()
                            if k != "clocked_families_"})
    pd.testing.assert_frame_equal(model.predict(rows), legacy.predict(rows))
