"""The level term of an interval: what a GPU the model never measured adds, and so does a
kernel family on a GPU it was never measured on (the GPU measured with other families: cuBLAS on
the H100, where only XLA's library was measured; a row of no family). Either way the row's level
rests on what carries across GPUs, and the between-GPU level scatter the base leaves unexplained
(``gpu_level_sd_``, :func:`gemmperf.predict.training_data.gpu_level_sd`) joins the half-width in
quadrature (independent error sources). On a GPU never measured, so does the clock a row leaves
unrecorded where the spec gives only a range; a measured GPU's expert has learned its actual
level (:meth:`gemmperf.predict.forest.Predictor.predict`)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from gemmperf.features import POWER_CLOCK_EXPONENT, FeatureSet

if TYPE_CHECKING:
    from gemmperf.predict.forest import Predictor

#: |d log(base) / d log(SM clock)| of a compute-bound row per target (:mod:`gemmperf.features`:
#: runtime ~ 1 / f, power ~ f ** POWER_CLOCK_EXPONENT, energy = power x runtime).
CLOCK_SENSITIVITY = {"runtime": 1.0, "power": POWER_CLOCK_EXPONENT,
                     "energy": 1.0 - POWER_CLOCK_EXPONENT}


def family_gpus(families: np.ndarray, gpus: np.ndarray) -> dict[str, list[str]]:
    """Per family of the training rows, the GPUs it was measured on."""
    pairs = pd.DataFrame({"family": families, "gpu": gpus}).drop_duplicates()
    return {str(f): sorted(map(str, g)) for f, g in pairs.groupby("family")["gpu"]}


def measured_pairs(features: FeatureSet, measured: Mapping[str, list[str]]) -> np.ndarray:
    """Per row, whether its (family, GPU) pair is among the ``measured`` ones."""
    family_codes, families = features.factorized("family")
    out = np.zeros(len(features.gpu), dtype=bool)
    for code, family in enumerate(families):
        rows = family_codes == code
        out[rows] = features.isin("gpu", measured.get(family, []))[rows]
    return out


def with_level_term(model: Predictor, target: str, features: FeatureSet, unseen: np.ndarray,
                    half: np.ndarray, z_score: float) -> np.ndarray:
    """``half`` with the level term (module doc) on the rows of a GPU never measured
    (``unseen``) or of a (family, GPU) pair never measured; a warning where a new GPU gets no
    level term because no family was measured on two GPUs."""
    measured = getattr(model, "family_gpus_", {}).get(target)
    new = unseen if measured is None else unseen | ~measured_pairs(features, measured)
    if not new.any():
        return half
    level_sd = model.gpu_level_sd_[target]
    if not level_sd and unseen.any():
        new_gpus = ", ".join(sorted(map(str, pd.unique(features.gpu[unseen]))))
        warnings.warn(
            f"the {target} interval on {new_gpus} leaves out how far a new GPU's level may be "
            f"off: no kernel family in the training data was measured on two GPUs, so there is "
            f"nothing to estimate it from", stacklevel=3)
    if features.log_clock_sd is not None:
        level_sd = np.hypot(level_sd, np.where(
            unseen, CLOCK_SENSITIVITY[target] * features.log_clock_sd, 0.0))
    return np.where(new, np.hypot(half, z_score * level_sd), half)
