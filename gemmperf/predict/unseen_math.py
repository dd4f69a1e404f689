"""A math path no training row of a target has (fp8 once the suspect XLA block is left out,
int8, fp64, fp16 with fp16 accumulation): the trees route such a row by its math code among
the paths they know, and their spread says nothing about how far off that is. The interval
adds how far the known paths of the same kind (tensor-core, or SIMT) disagree about the row:
the row is placed as each of them its GPU has (the data type changed, so the base is that
path's roofline bound), and the scatter of its z over them (shared ensemble, plus the GPU's
expert where it has one), as one more draw
(sample sd x Student's t x sqrt(1 + 1/n), :func:`~gemmperf.predict.training_data.new_draw_factor`),
joins the interval in quadrature (:meth:`gemmperf.predict.forest.Predictor.predict`). With one
such path there is nothing to estimate it from, and a warning says so; with none (the power
of a GEMM, trained on other kernels) the interval is the extrapolation the model card
describes."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from gemmperf.feature_inputs import MATH_KEYS, SIMT_KEYS
from gemmperf.features import NUMERIC_FEATURES, FeatureSet, build_features
from gemmperf.hardware.specs import get_gpu
from gemmperf.predict.clock_transfer import as_measured
from gemmperf.predict.training_data import new_draw_factor
from gemmperf.problem import DTYPES

if TYPE_CHECKING:
    from gemmperf.predict.forest import Predictor

#: The data types that select each math path (``acc_dtype`` f16 selects fp16_acc16).
_AS_DTYPE = {key: (dtype, None) for dtype, (_, key) in DTYPES.items()} | {
    "fp16_acc16": ("f16", "f16")}


def trained_math_paths(features: FeatureSet, rows: np.ndarray) -> list[str]:
    """The math paths among ``features``' ``rows`` (a mask), e.g. ["bf16", "fp16", "fp32"]."""
    return sorted(k for k in pd.unique(features.math_keys()[rows]) if k is not None)


def unseen_math(model: Predictor, target: str, X: pd.DataFrame, features: FeatureSet
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, scatter) for ``X``'s rows of a math path ``target`` never trained on, one pair
    per (path, GPU): the sd of a normal whose interval quantile is one more path's prediction
    interval (module doc)."""
    known = getattr(model, "math_paths_", {}).get(target)
    if not known:
        return []
    codes = features.values[:, NUMERIC_FEATURES.index("math_code")]
    if not ((codes >= 0) & ~np.isin(codes, [MATH_KEYS.index(k) for k in known])).any():
        return []      # the common case, checked cheaply: a single prediction asks per target
    keys = features.math_keys()
    new = [k for k in pd.unique(keys) if k is not None and k not in known]
    out = []
    for key in new:
        same_kind = [k for k in known if (k in SIMT_KEYS) == (key in SIMT_KEYS)]
        if not same_kind:
            # Nothing of its kind trained on at all (the power of a GEMM): the extrapolation
            # the model card's limits describe, not worth a warning on every prediction.
            continue
        rows = np.flatnonzero(keys == key)
        gpus = features.gpu[rows]
        for gpu in dict.fromkeys(gpus):
            part = rows[gpus == gpu]
            paths = [k for k in same_kind if get_gpu(gpu).has_math(k)]
            if len(paths) < 2:    # one known path of its kind: the interval would look covered
                warnings.warn(
                    f"the {target} interval of {key} rows on {gpu} leaves out how far a math "
                    f"path without training rows may be off: fewer than two paths of its kind "
                    f"were trained on ({', '.join(same_kind) or 'none'})", stacklevel=3)
                continue
            z = np.stack([_z(model, target, _as_path(X.iloc[part], path), gpu)
                          for path in paths])
            factor = new_draw_factor(len(paths), len(paths) - 1, model.interval)
            out.append((part, z.std(axis=0, ddof=1) * factor))
    return out


def _z(model: Predictor, target: str, frame: pd.DataFrame, gpu: str) -> np.ndarray:
    """Mean z of the shared ensemble on ``frame``'s rows, plus ``gpu``'s expert's where it has
    one (on a measured GPU the expert knows how its paths differ; the shared trees less); the
    trees see a clock as ``predict`` shows it them (:mod:`gemmperf.predict.clock_transfer`)."""
    features = build_features(frame)
    clock = as_measured(frame, features, getattr(model, "clocked_families_", None))
    matrix = model._matrix(clock.tree_features if clock else features)
    z = model.forests_[target].predict_trees(matrix).mean(axis=0)
    expert = getattr(model, "experts_", {}).get(target, {}).get(gpu)
    return z if expert is None else z + expert.predict_trees(matrix).mean(axis=0)


def _as_path(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """``frame``'s rows with the data types of math path ``key`` (output as the input)."""
    dtype, acc = _AS_DTYPE[key]
    return frame.assign(dtype=dtype, acc_dtype=acc, out_dtype=None)
