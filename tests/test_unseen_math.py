"""A math path no training row has (gemmperf.predict.unseen_math): the interval adds the
scatter of the known paths of its kind placed on the row; the point prediction stays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from predict_helpers import SMALL, xgemm_frame

from gemmperf.features import build_features
from gemmperf.predict import forest
from gemmperf.predict.forest import Predictor
from gemmperf.predict.training_data import new_draw_factor
from gemmperf.predict.unseen_math import unseen_math

TENSOR = ("f16", "bf16", "tf32")


def on_h100(frame: pd.DataFrame, dtypes: tuple[str, ...]) -> pd.DataFrame:
    """``frame``'s rows on an H100, cycling through ``dtypes`` (one per row in turn)."""
    return frame.assign(gpu="h100-sxm", dtype=[dtypes[i % len(dtypes)]
                                                 for i in range(len(frame))])


@pytest.fixture(scope="module")
def model() -> Predictor:
    # fp32 (SIMT) on two GPUs, three tensor-core paths on the H100: fp8 is a path no row has.
    train = pd.concat([xgemm_frame(300, seed=1, gpus=("rtx-3090", "rtx-2080-ti")),
                       on_h100(xgemm_frame(300, seed=2, gpus=("a100-sxm4-80gb",)), TENSOR)],
                      ignore_index=True)
    return Predictor(**{**SMALL, "targets": ("runtime",)}).fit(train)


def fp8_rows() -> pd.DataFrame:
    return on_h100(xgemm_frame(30, seed=7, gpus=("a100-sxm4-80gb",)), ("fp8",))


def test_fit_records_the_math_paths_of_each_target(model):
    assert model.math_paths_ == {"runtime": ["bf16", "fp16", "fp32", "tf32"]}


def test_an_unseen_math_path_keeps_its_point_and_widens_its_interval(model, monkeypatch):
    rows = fp8_rows()
    got = model.predict(rows)
    monkeypatch.setattr(forest, "unseen_math", lambda *args: [])
    narrow = model.predict(rows)
    np.testing.assert_array_equal(got["runtime_s"], narrow["runtime_s"])
    assert (got["runtime_s_hi"] > narrow["runtime_s_hi"]).all()
    assert (got["runtime_s_lo"] < narrow["runtime_s_lo"]).all()
    # The added term: the shared ensemble's z of the rows placed as each tensor path, their
    # sample sd as one more draw, in quadrature with the trees' own half-width.
    z = np.stack([model.forests_["runtime"].predict_trees(model._matrix(build_features(
        rows.assign(dtype=d, acc_dtype=None, out_dtype=None)))).mean(axis=0)
        for d in ("bf16", "f16", "tf32")])
    scatter = z.std(axis=0, ddof=1) * new_draw_factor(3, 2, model.interval)
    half, before = (np.log(p["runtime_s_hi"] / p["runtime_s"]) for p in (got, narrow))
    z80 = 1.2815515655446004
    np.testing.assert_allclose(half**2 - before**2, (z80 * scatter) ** 2, rtol=1e-6)


def test_known_paths_and_rows_without_a_dtype_are_left_alone(model):
    rows = on_h100(xgemm_frame(20, seed=8, gpus=("a100-sxm4-80gb",)), ("bf16", "f32"))
    features = build_features(rows)
    assert unseen_math(model, "runtime", rows, features) == []
    no_gemm = rows.assign(dtype=None, m=None, n=None, k=None)
    assert unseen_math(model, "runtime", no_gemm, build_features(no_gemm)) == []


def test_one_known_path_of_the_kind_warns_and_none_adds_nothing(recwarn):
    # Trained on fp32 alone: an f64 (SIMT) row has one known path of its kind, nothing to
    # take a scatter from; an f16 (tensor-core) row none at all, the extrapolation the model
    # card describes (as for the power of a GEMM), without a warning per prediction.
    model = Predictor(**{**SMALL, "targets": ("runtime",)}).fit(xgemm_frame(200, seed=3))
    rows = xgemm_frame(10, seed=4, gpus=("a100-sxm4-80gb",))
    tensor = rows.assign(dtype="f16")
    assert unseen_math(model, "runtime", tensor, build_features(tensor)) == []
    assert not recwarn.list
    simt = rows.assign(dtype="f64")
    with pytest.warns(UserWarning, match="fewer than two paths of its kind.*fp32"):
        assert unseen_math(model, "runtime", simt, build_features(simt)) == []


def test_a_clocked_row_of_a_new_path_is_placed_as_predict_shows_it_the_trees(model):
    # The families here were trained without clocks: predict blanks a requested clock for the
    # trees (the base carries it), and so does the scatter's placement, so the scatter of a
    # row at a locked clock is the same as at the default clock.
    rows = fp8_rows()
    at = unseen_math(model, "runtime", rows, build_features(rows))
    locked = rows.assign(sm_clock_mhz=1200.0)
    at_clock = unseen_math(model, "runtime", locked, build_features(locked))
    np.testing.assert_allclose(at_clock[0][1], at[0][1])
