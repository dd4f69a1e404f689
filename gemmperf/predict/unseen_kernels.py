"""A kernel a predictor never saw by name, of a family it saw with several kernels (a new
benchmark of a DVFS table): predicted as the average over that family's known kernels, whose
scatter widens the interval (:meth:`gemmperf.predict.forest.Predictor.predict`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gemmperf.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, FeatureSet

if TYPE_CHECKING:
    from gemmperf.predict.forest import Predictor

#: Rows per chunk: the stacked matrix is (known kernels x chunk) rows, so memory stays bounded.
CHUNK_ROWS = 4096


def unseen_kernels(model: Predictor, target: str, matrix: np.ndarray, features: FeatureSet
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(rows, mean, sd over the family's known kernels) of the shared ensemble's z, for rows
    naming a kernel ``target`` never trained on, one triple per family."""
    known = model.kernels_.get(target, {})
    every = [k for names in known.values() for k in names]
    named = ~features.isin("kernel_name", [""])
    if not every or not (named & ~features.isin("kernel_name", every)).any():
        return []
    family_codes, families = features.factorized("family")
    column = len(NUMERIC_FEATURES) + CATEGORICAL_FEATURES.index("kernel_name")
    vocab = model._vocabulary_codes("kernel_name")
    out = []
    for code in np.unique(family_codes[named]):
        names = known.get(families[code], [])
        if len(names) < 2:
            continue
        rows = np.flatnonzero((family_codes == code) & named
                              & ~features.isin("kernel_name", names))
        if not len(rows):
            continue
        codes = np.array([vocab[name] for name in names])[:, None]   # known kernels
        mean, sd = np.empty(len(rows)), np.empty(len(rows))
        for start in range(0, len(rows), CHUNK_ROWS):
            part = rows[start:start + CHUNK_ROWS]
            stacked = np.repeat(matrix[part][None], len(names), axis=0)   # (kernels, rows, f)
            stacked[:, :, column] = codes
            trees = model.forests_[target].predict_trees(stacked.reshape(-1, matrix.shape[1]))
            per_kernel = trees.mean(axis=0).reshape(len(names), len(part))
            mean[start:start + len(part)] = per_kernel.mean(axis=0)
            sd[start:start + len(part)] = per_kernel.std(axis=0)
        out.append((rows, mean, sd))
    return out
