"""Evaluating a fitted predictor's tree ensembles on a feature matrix: each target's shared
ensemble on every row and each per-GPU expert on its GPU's rows (:mod:`gemmperf.predict.forest`),
and the mean and spread over trees that a prediction and its interval are made of.

Two paths give the same per-tree values: scikit-learn's compiled trees, one call per tree
(:meth:`CompactForest.predict_trees`), and for a frame of a few rows a single numpy walk over
every tree of the model at once (:func:`all_trees`). A scikit-learn tree call costs ~10 us,
a walk step about the same for all trees together, so single predictions take the walk.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import norm

from gemmperf.features import FeatureSet
from gemmperf.predict.compact import CompactForest

if TYPE_CHECKING:
    from gemmperf.predict.forest import Predictor

#: Floor of the per-row tree spread (log units) so a row all trees agree on still gets an interval.
MIN_SPREAD = 1e-3
#: Up to this many rows, every tree of the model is walked at once in numpy.
SMALL_ROWS = 64
#: A tree slice key: (target, None) for a shared ensemble, (target, gpu) for an expert.
TreeKey = tuple[str, str | None]


def tree_predictions(model: Predictor, matrix: np.ndarray, features: FeatureSet,
                     targets: list[str]
                     ) -> tuple[dict[str, np.ndarray],
                                dict[str, list[tuple[np.ndarray, np.ndarray]]]]:
    """Per-tree predictions (trees x rows) of each target's shared ensemble, and of its
    per-GPU experts as (row mask, predictions on those rows) pairs."""
    if len(matrix) <= SMALL_ROWS:
        everything, slices = all_trees(model)
        walked = everything.predict_trees_numpy(matrix).astype(np.float64)

        def trees(key: TreeKey, forest: CompactForest,
                  rows: np.ndarray | None = None) -> np.ndarray:
            return walked[slices[key]] if rows is None else walked[slices[key]][:, rows]
    else:
        def trees(key: TreeKey, forest: CompactForest,
                  rows: np.ndarray | None = None) -> np.ndarray:
            return forest.predict_trees(matrix if rows is None else matrix[rows])

    shared = {t: trees((t, None), model.forests_[t]) for t in targets}
    experts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {t: [] for t in targets}
    gpu_codes, present = features.factorized("gpu")
    for target in targets:
        for code, gpu in enumerate(present):
            expert = getattr(model, "experts_", {}).get(target, {}).get(gpu)
            if expert is not None:
                rows = gpu_codes == code
                experts[target].append((rows, trees((target, gpu), expert, rows)))
    return shared, experts


def all_trees(model: Predictor) -> tuple[CompactForest, dict[TreeKey, slice]]:
    """Every ensemble and expert of ``model`` as one forest, and each one's tree slice. Built
    once per fit (cached on the model, keyed by the identity of its ensembles)."""
    key = (id(model.forests_), id(getattr(model, "experts_", {})))
    cached = model.__dict__.get("_all_trees_cache")
    if cached is None or cached[0] != key:
        parts: list[tuple[TreeKey, CompactForest]] = [
            ((t, None), f) for t, f in model.forests_.items()]
        parts += [((t, gpu), f) for t, experts in getattr(model, "experts_", {}).items()
                  for gpu, f in experts.items()]
        slices, start = {}, 0
        for name, forest in parts:
            slices[name] = slice(start, start + forest.n_trees)
            start += forest.n_trees
        cached = (key, CompactForest.concatenate([f for _, f in parts]), slices)
        model.__dict__["_all_trees_cache"] = cached
    return cached[1], cached[2]


@functools.lru_cache(maxsize=16)
def normal_quantile(p: float) -> float:
    """Standard normal quantile (cached: scipy's ppf costs half a millisecond a call)."""
    return float(norm.ppf(p))


def center_spread(trees: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over trees (axis 0), the latter floored at MIN_SPREAD.

    Var = E[x^2] - E[x]^2 in one pass (einsum): trees predict log ratios of order 1, so float64
    cancellation errors (~1e-16) are far below the floor's square (1e-6)."""
    mean = trees.mean(axis=0)
    mean_square = np.einsum("ij,ij->j", trees, trees) / trees.shape[0]
    spread = np.sqrt(np.maximum(mean_square - mean * mean, 0.0))
    return mean, np.maximum(spread, MIN_SPREAD)
