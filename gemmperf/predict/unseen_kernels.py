"""A kernel a predictor never saw by name, of a family it saw with several kernels (a new
benchmark of a DVFS table): predicted as the average over that family's known kernels, whose
scatter widens the interval (:meth:`gemmperf.predict.forest.Predictor.predict`): the new
kernel is one more draw from them, so the scatter is their sample sd times Student's t and
sqrt(1 + 1/n) (:func:`~gemmperf.predict.training_data.new_draw_factor`), as for a new GPU's
level."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gemmperf.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, FeatureSet
from gemmperf.predict.training_data import new_draw_factor

if TYPE_CHECKING:
    from gemmperf.predict.forest import Predictor

#: Rows per chunk: the stacked matrix is (known kernels x chunk) rows, so memory stays bounded.
CHUNK_ROWS = 4096


def unseen_kernels(model: Predictor, target: str, matrix: np.ndarray, features: FeatureSet
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(rows, mean, scatter) of the shared ensemble's z over the family's known kernels, for
    rows naming a kernel ``target`` never trained on, one triple per family; the scatter is
    the sd of a normal whose interval quantile is the new kernel's prediction interval."""
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
        factor = new_draw_factor(len(names), len(names) - 1, model.interval)
        mean, scatter = np.empty(len(rows)), np.empty(len(rows))
        for start in range(0, len(rows), CHUNK_ROWS):
            part = rows[start:start + CHUNK_ROWS]
            stacked = np.repeat(matrix[part][None], len(names), axis=0)   # (kernels, rows, f)
            stacked[:, :, column] = codes
            trees = model.forests_[target].predict_trees(stacked.reshape(-1, matrix.shape[1]))
            per_kernel = trees.mean(axis=0).reshape(len(names), len(part))
            mean[start:start + len(part)] = per_kernel.mean(axis=0)
            scatter[start:start + len(part)] = per_kernel.std(axis=0, ddof=1) * factor
        out.append((rows, mean, scatter))
    return out
