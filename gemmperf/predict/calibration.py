"""Conformal calibration of the tree-spread intervals of :class:`gemmperf.predict.forest.Predictor`.

A tree spread is not a calibrated interval, so ``fit`` holds out part of the rows, fits the same
ensemble on the rest and finds the factor ``c`` such that ``center +- c * spread`` covers
``interval`` of the held-out rows (split-conformal calibration, Lei et al., JASA 2018, with the
tree spread as the scale). Rows are held out in whole units
(:func:`gemmperf.predict.training_data.calibration_groups`: a problem where a family was measured
at many problems on a GPU, else a clock where it was swept over many clocks), so that a repeat
of a held-out measurement does not stay behind in the fit; with fewer than
:data:`CROSS_CALIBRATION_UNITS` units, each is held out once in folds (cross-conformal
calibration, Vovk, Ann. Math. Artif. Intell. 2015), not a 20 % draw of a few. GPUs that get a
per-GPU expert get a scale of their own: the expert's tree spread is narrower than the shared
ensemble's.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from gemmperf.predict.ensembles import center_spread

if TYPE_CHECKING:
    from gemmperf.predict.forest import Predictor

#: A target needs at least this many rows to be calibrated (fewer: scale 1, with a warning).
MIN_CALIBRATION_ROWS = 20
#: Fewer calibration units than this (a 20 % draw would rest on fewer than 40 of them, say 6 of
#: the DVFS table's 32 clocks): every unit is held out once, in folds.
CROSS_CALIBRATION_UNITS = 200


def held_out_parts(units: np.ndarray, fraction: float, rng: np.random.Generator
                   ) -> list[np.ndarray]:
    """Row masks to hold out, each scored by a fit on the other rows: one ``fraction`` draw of
    the ``units`` (one code per row), or, with fewer than :data:`CROSS_CALIBRATION_UNITS` of
    them, ``1 / fraction`` folds that hold out every unit once."""
    units = np.unique(units, return_inverse=True)[1].reshape(-1)   # codes 0.. on these rows
    n_units = units.max() + 1
    if n_units < CROSS_CALIBRATION_UNITS:
        folds = min(n_units, max(2, round(1 / fraction)))
        fold = rng.permutation(n_units) % folds
        return [(fold == f)[units] for f in range(folds)]
    held = (rng.random(n_units) < fraction)[units]
    held[rng.integers(len(units))] = True
    return [held]


def interval_scales(model: Predictor, rows: np.ndarray, z: np.ndarray, gpus: np.ndarray,
                    units: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """Spread multipliers giving ``model.interval`` coverage on held-out ``units``: of the
    shared ensemble alone, and of shared + expert on the GPUs that get experts (the same as
    the first where none does). ``rows`` is the tree matrix and ``z`` the log target relative
    to its base."""
    n = len(z)
    if n < MIN_CALIBRATION_ROWS:
        warnings.warn(f"only {n} rows: the prediction interval is uncalibrated (scale 1)",
                      stacklevel=3)
        return 1.0, 1.0
    # The GPUs the final fit gives experts, also where holding out leaves fewer rows than
    # expert_min_rows (else an expert would go uncalibrated: XLA's 1,200 rows in a fold).
    chosen = model._expert_gpus(gpus)
    ratios = [calibration_ratios(model, rows, z, gpus, held, chosen)
              for held in held_out_parts(units, model.calibration_fraction, rng)]
    scale = float(np.quantile(np.concatenate([shared for shared, _ in ratios]), model.interval))
    corrected = np.concatenate([expert for _, expert in ratios])
    if not len(corrected):
        return scale, scale
    return scale, float(np.quantile(corrected, model.interval))


def calibration_ratios(model: Predictor, rows: np.ndarray, z: np.ndarray, gpus: np.ndarray,
                       held: np.ndarray, chosen: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """|error| / spread on the ``held`` rows of an ensemble fitted on the others: of the
    shared ensemble alone on all of them, and of shared + expert on those of the ``chosen``
    GPUs (the ones that get an expert)."""
    forest = model._fit_forest(rows[~held], z[~held])
    center, spread = center_spread(forest.predict_trees(rows[held]))
    shared = np.abs(z[held] - center) / spread
    experts = model._fit_experts(forest, rows[~held], z[~held], gpus[~held], chosen)
    corrected = np.zeros(len(center), dtype=bool)
    for gpu, expert in experts.items():
        these = gpus[held] == gpu
        if these.any():
            shift, spread[these] = center_spread(expert.predict_trees(rows[held][these]))
            center[these] += shift
            corrected |= these
    return shared, np.abs(z[held][corrected] - center[corrected]) / spread[corrected]
