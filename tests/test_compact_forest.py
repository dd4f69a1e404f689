"""CompactForest: the bundle's tree arrays evaluate like scikit-learn's trees, and refuse
corrupt arrays."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

from gemmperf.errors import DataFormatError
from gemmperf.predict.compact import CompactForest


@pytest.mark.parametrize("cls", [ExtraTreesRegressor, RandomForestRegressor])
def test_compact_forest_matches_sklearn_both_paths(cls):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5)).astype(np.float32)
    y = x[:, 0] + np.sin(3 * x[:, 1]) + 0.05 * rng.normal(size=2000)
    est = cls(n_estimators=5, max_leaf_nodes=200, random_state=0).fit(x, y)
    forest = CompactForest.from_sklearn(est.estimators_, 5)
    forest.validate()
    reference = np.stack([t.predict(x) for t in est.estimators_])
    assert np.allclose(forest.predict_trees(x), reference, atol=1e-6)
    assert np.allclose(forest.predict_trees_numpy(x), reference, atol=1e-6)
    # Thresholds stored as float32 (rounded down) keep every comparison identical.
    edge = np.repeat(x[:1], 3, axis=0)
    assert np.allclose(forest.predict_trees_numpy(edge), np.stack([t.predict(edge)
                                                                   for t in est.estimators_]))


def test_rows_equal_on_the_features_trees_read_are_evaluated_once(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 10)).astype(np.float32)
    x[:, :2] = rng.integers(0, 6, size=(3000, 2))           # 36 combinations of features 0, 1
    y = x[:, 0] * 2 + x[:, 1]
    est = ExtraTreesRegressor(n_estimators=4, max_features=2, random_state=0).fit(x[:, :2], y)
    forest = CompactForest.from_sklearn(est.estimators_, 10)   # features 2..9: never read
    assert list(forest.used_features()) == [0, 1]
    wide = x
    reference = np.stack([t.predict(x[:, :2]) for t in est.estimators_])
    first, inverse = forest._distinct_rows(wide)
    assert len(first) == 36 and (wide[first][inverse][:, :2] == wide[:, :2]).all()
    np.testing.assert_array_equal(forest.predict_trees(wide), reference)
    # A hash collision (forced here: every row gets one key) falls back to every row.
    with monkeypatch.context() as patch:
        patch.setattr("gemmperf.predict.compact._row_hash", lambda bits: np.zeros(len(bits)))
        assert forest._distinct_rows(wide) is None
        np.testing.assert_array_equal(forest.predict_trees(wide), reference)
    # Rows that are mostly distinct, or few, are not worth it.
    assert forest._distinct_rows(x[:500]) is None
    spread = x.copy()
    spread[:, 0] = rng.normal(size=3000)
    assert forest._distinct_rows(spread) is None


def test_compact_forest_rejects_corrupt_arrays():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    est = ExtraTreesRegressor(n_estimators=2, max_leaf_nodes=8, random_state=0).fit(x, x[:, 0])
    arrays = CompactForest.from_sklearn(est.estimators_, 3).to_arrays("t/")
    bad = dict(arrays)
    bad["t/right"] = arrays["t/right"].copy()
    bad["t/right"][0] = 10_000
    with pytest.raises(DataFormatError, match="child index"):
        CompactForest.from_arrays(bad, "t/", 3)
    bad = dict(arrays)
    bad["t/feature"] = np.where(arrays["t/feature"] >= 0, 7, -1).astype(np.int16)
    with pytest.raises(DataFormatError, match="feature out of range"):
        CompactForest.from_arrays(bad, "t/", 3)
