"""The level term (gemmperf.predict.levels): a GPU never measured, and a kernel family on a GPU
it was never measured on, add the between-GPU level scatter to the interval; measured pairs
keep theirs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from predict_helpers import SMALL, xgemm_frame

from gemmperf.features import build_features
from gemmperf.predict import forest
from gemmperf.predict.forest import Predictor
from gemmperf.predict.levels import family_gpus, measured_pairs
from gemmperf.predict.persist import load_model, save_model


@pytest.fixture(scope="module")
def model() -> Predictor:
    # Xgemm on the 3090 and 2080 Ti (a level scatter to estimate); "other" on the 3090 only.
    xgemm = xgemm_frame(600, seed=1, gpus=("rtx-3090", "rtx-2080-ti"))
    other = xgemm_frame(200, seed=2, gpus=("rtx-3090",)).assign(family="other",
                                                               kernel_name="other")
    return Predictor(**{**SMALL, "targets": ("runtime",)}).fit(
        pd.concat([xgemm, other], ignore_index=True))


def test_fit_records_the_gpus_each_family_was_measured_on(model):
    assert model.family_gpus_ == {"runtime": {"clblast_xgemm": ["rtx-2080-ti", "rtx-3090"],
                                              "other": ["rtx-3090"]}}
    assert family_gpus(np.array(["a", "a", "b"]), np.array(["x", "y", "x"])) == {
        "a": ["x", "y"], "b": ["x"]}


def test_a_family_on_a_gpu_it_was_never_measured_on_gets_the_level_term(model, monkeypatch):
    rows = xgemm_frame(20, seed=3, gpus=("rtx-2080-ti",))
    rows = pd.concat([rows, rows.assign(family="other", kernel_name="other"),
                      rows.assign(family=None, kernel_name=None)], ignore_index=True)
    measured = measured_pairs(build_features(rows), model.family_gpus_["runtime"])
    assert measured.tolist() == [True] * 20 + [False] * 40
    got = model.predict(rows)
    monkeypatch.setattr(forest, "with_level_term", lambda m, t, f, unseen, half, z: half)
    plain = model.predict(rows)
    np.testing.assert_array_equal(got["runtime_s"], plain["runtime_s"])   # intervals only
    half, before = (np.log(p["runtime_s_hi"] / p["runtime_s"]).to_numpy() for p in (got, plain))
    np.testing.assert_allclose(half[:20], before[:20])          # measured: as before
    level = 1.2815515655446004 * model.gpu_level_sd_["runtime"]
    assert level > 0
    np.testing.assert_allclose(half[20:] ** 2 - before[20:] ** 2, level ** 2, rtol=1e-6)


def test_a_bundle_keeps_the_measured_pairs(model, tmp_path):
    loaded = load_model(save_model(model, tmp_path / "m.npz"))
    assert loaded.family_gpus_ == model.family_gpus_
