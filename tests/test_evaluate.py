"""Evaluation metrics and split protocols."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from predict_helpers import xgemm_frame

from gemmperf.errors import InvalidConfigError
from gemmperf.predict.evaluate import (
    cross_validate,
    evaluate_predictions,
    split_folds,
    target_metrics,
    within_problem_spearman,
)
from gemmperf.predict.forest import Predictor


def test_target_metrics_on_known_numbers():
    true = np.array([1.0, 2.0, 4.0, 8.0])
    pred = np.array([1.1, 1.8, 4.0, 8.0])
    m = target_metrics(true, pred, lo=true * 0.95, hi=true * 1.05,
                       problems=np.array(["a"] * 4))
    assert m["n"] == 4
    assert m["mape"] == pytest.approx((10 + 10 + 0 + 0) / 4)
    assert m["median_ape"] == pytest.approx(5.0)
    assert m["spearman"] == pytest.approx(1.0)
    assert m["coverage_80"] == pytest.approx(1.0)
    lt, lp = np.log(true), np.log(pred)
    r2 = 1 - ((lt - lp) ** 2).sum() / ((lt - lt.mean()) ** 2).sum()
    assert m["r2_log"] == pytest.approx(r2)


def test_missing_targets_are_ignored_and_empty_metrics_are_none():
    m = target_metrics(np.array([np.nan, 2.0]), np.array([1.0, 2.0]))
    assert m["n"] == 1 and m["mape"] == 0.0
    empty = target_metrics(np.array([np.nan]), np.array([1.0]))
    assert empty["n"] == 0 and empty["mape"] is None


def test_spearman_is_within_problems_weighted_by_rows():
    true = np.array([1, 2, 3, 1, 2, 3, 5.0])
    pred = np.array([1, 2, 3, 3, 2, 1, 9.0])     # problem a perfect, b reversed, c too small
    problems = np.array(["a"] * 3 + ["b"] * 3 + ["c"])
    assert within_problem_spearman(true, pred, problems) == pytest.approx(0.0)
    assert within_problem_spearman(true[:2], pred[:2], problems[:2]) is None


def test_random_split_holds_out_a_fraction_within_each_gpu():
    frame = xgemm_frame(300)
    [(label, train, test)] = list(split_folds(frame, "random", test_fraction=0.2))
    assert label == "random" and len(set(train) & set(test)) == 0
    assert len(train) + len(test) == len(frame)
    for gpu, part in frame.iloc[test].groupby("gpu"):
        assert len(part) == round(0.2 * (frame["gpu"] == gpu).sum())


def test_shape_split_never_shares_a_shape():
    frame = xgemm_frame(300)
    folds = list(split_folds(frame, "shape", folds=3))
    assert len(folds) == 3
    seen = []
    for _, train, test in folds:
        shapes = lambda idx: set(map(tuple, frame.iloc[idx][["m", "n", "k"]].to_numpy()))  # noqa: E731
        assert not shapes(train) & shapes(test)
        seen.extend(test)
    assert sorted(seen) == list(range(len(frame)))


def test_gpu_split_leaves_one_gpu_out_and_needs_two():
    frame = xgemm_frame(90)
    folds = list(split_folds(frame, "gpu"))
    assert len(folds) == 3
    for label, train, test in folds:
        held = frame.iloc[test]["gpu"].unique()
        assert len(held) == 1 and held[0] in label
        assert held[0] not in set(frame.iloc[train]["gpu"])
    with pytest.raises(InvalidConfigError, match="2\\+ GPUs"):
        list(split_folds(frame[frame["gpu"] == "rtx-3090"], "gpu"))


def test_clock_split_groups_clocks_and_requires_them():
    frame = pd.DataFrame({"gpu": ["gtx-titan-x"] * 8, "kernel_name": ["a", "b"] * 4,
                          "sm_clock_mhz": [595, 595, 633, 633, 671, 671, 709, 709]})
    for _, train, test in split_folds(frame, "clock", folds=2):
        assert not set(frame["sm_clock_mhz"][train]) & set(frame["sm_clock_mhz"][test])
    with pytest.raises(InvalidConfigError, match="sm_clock_mhz"):
        list(split_folds(xgemm_frame(10), "clock"))
    with pytest.raises(InvalidConfigError, match="split must be"):
        list(split_folds(frame, "bogus"))


def test_cross_validate_pools_held_out_rows_and_reports_folds():
    frame = xgemm_frame(240)
    result = cross_validate(frame, "gpu", lambda: Predictor(n_estimators=6, max_leaf_nodes=32))
    assert result["split"] == "gpu" and len(result["folds"]) == 3
    assert result["n"] == 240 and result["mape"] is not None
    assert set(result["gpus"]) == set(frame["gpu"])
    assert {"runtime", "power", "energy"} <= set(result["targets"])


def test_evaluate_predictions_top_level_and_per_gpu():
    frame = xgemm_frame(60)
    pred = pd.DataFrame({"runtime_s": frame["runtime_s"] * 1.1,
                         "runtime_s_lo": frame["runtime_s"] * 0.9,
                         "runtime_s_hi": frame["runtime_s"] * 1.2})
    out = evaluate_predictions(frame, pred)
    assert out["n"] == 60 and out["mape"] == pytest.approx(10.0)
    assert out["coverage_80"] == 1.0 and out["median_ape"] == pytest.approx(10.0)
    assert out["width_80"] == pytest.approx(1.2 / 0.9)   # the interval's hi / lo
    assert set(out["gpus"]) == set(frame["gpu"]) and list(out["targets"]) == ["runtime"]
