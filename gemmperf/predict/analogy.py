"""Transfer by analogy: how a predictor carries a kernel family to a GPU it has no data for.

The shared ensemble sees an unseen GPU only through its hardware-normalised features, and where
those take values no training GPU had, its trees route the rows somewhere in between: on the
Kernel Tuner Xgemm spaces (train on two GPUs, predict the third) that ranks the held-out RTX
3090's configs with Spearman 0.926, while the *measured* times of the two other GPUs rank them
0.953 (``benchmarks/data_bounds.py``). What transfers between GPUs is a config's time relative
to the roofline base, so for a row on an unseen GPU of a family measured on two or more GPUs
("analogues"), the model predicts that row as though it ran on each analogue,

    z_a(row) = mean over analogues g of  z(row as on g)     (z = log(t) - log(base), trees kept),

and puts it on the unseen GPU's own base. The analogues' mean *level* (how far each GPU sits
from its base) is a poor guess for a new GPU (the RTX 3060 Laptop's spec stores the top of its
boost range and sits 29-44 % above the others), while the shared ensemble's own level was closer
on all three held-out GPUs. So the level is the shared ensemble's and the structure the
analogues':

    z(row) = z_a(row) - L,   L = median over reference rows r of (z_a(r) - z_shared(r)),

with the reference rows a fixed sample of the family's training rows put on the unseen GPU
(:data:`REFERENCE_ROWS`, stored with the model, so ``L`` does not depend on the batch
predicted). Measured (``benchmarks/predictor_accuracy.py``, "no analogy" column; more in
models/MODEL_CARD.md): held-out RTX 3090 Spearman 0.926 -> 0.955 and MAPE 12.9 -> 9.8 %,
RTX 2080 Ti 0.944 -> 0.950, RTX 3060 Laptop 0.961 -> 0.964.

Rows are placed on an analogue at its default clocks (their clock columns dropped): ``z`` is a
config's efficiency relative to its base, and the unseen GPU's base carries the row's own clock.
A row is placed only on the analogues with its math path (an fp8 cuBLAS GEMM on a B200 not on
the A100 and A40 the family was measured on), ``L`` taken over the same ones; where fewer than
two have it, the row is left to the shared ensemble, as for a family measured on one GPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gemmperf import records
from gemmperf.feature_inputs import XGEMM_PARAMS, Columns, math_keys
from gemmperf.features import FeatureSet, build_features
from gemmperf.hardware.specs import get_gpu
from gemmperf.predict.training_data import new_draw_factor

if TYPE_CHECKING:
    from gemmperf.predict.forest import Predictor

#: Reference rows kept per (target, family) to place an unseen GPU's level (module doc).
REFERENCE_ROWS = 256
_SMALL_ROWS = 64   # up to this many rows, object arrays beat a frame (as in feature_inputs)
#: Every column the features read apart from the GPU and its clocks: the problem, the config,
#: and family tunables given as columns of their own (what a reference row keeps and what a row
#: placed on an analogue carries over; tests/test_analogy.py checks the features need no more).
CONFIG_COLUMNS = (*records.PROBLEM_COLUMNS, *records.CONFIG_COLUMNS, *XGEMM_PARAMS, "flops")


def analogue_gpus(families: np.ndarray, gpus: np.ndarray, min_rows: int
                  ) -> dict[str, list[str]]:
    """Per family, the GPUs with ``min_rows`` or more rows of it, for families with two or more
    such GPUs (one GPU alone is no evidence of what carries across GPUs)."""
    table = pd.DataFrame({"family": families, "gpu": gpus})
    counts = table.groupby(["family", "gpu"]).size()
    out = {}
    for family, per_gpu in counts[counts >= min_rows].groupby(level=0):
        if len(per_gpu) >= 2:
            out[str(family)] = sorted(str(g) for g in per_gpu.index.get_level_values(1))
    return out


def capable_analogues(analogues: Sequence[str], math_key: str | None) -> list[str]:
    """The ``analogues`` with a ``math_key`` math path (all for None: a row that is not a
    GEMM), or none where fewer than two have it (one GPU is no evidence of what carries)."""
    if math_key is None:
        return list(analogues)
    have = [gpu for gpu in analogues if get_gpu(gpu).has_math(math_key)]
    return have if len(have) >= 2 else []


def _runs_on(gpu: str, keys: Sequence[str | None]) -> np.ndarray:
    """Mask of rows (by math path, :func:`~gemmperf.feature_inputs.math_keys`) that ``gpu``
    can run."""
    spec = get_gpu(gpu)
    return np.array([key is None or spec.has_math(key) for key in keys], dtype=bool)


def reference_rows(X: pd.DataFrame, rows: np.ndarray, rng: np.random.Generator,
                   size: int = REFERENCE_ROWS) -> dict[str, list[Any]]:
    """A JSON-ready sample (column -> values; None where absent) of up to ``size`` of ``X``'s
    ``rows`` (positions), keeping :data:`CONFIG_COLUMNS`."""
    chosen = np.sort(rng.choice(rows, size=min(size, len(rows)), replace=False))
    part = X.iloc[chosen]
    out = {}
    for column in CONFIG_COLUMNS:
        if column in part.columns:
            out[column] = [_jsonable(v) for v in part[column].tolist()]
    return out


def _jsonable(value: Any) -> Any:
    """A frame cell as JSON: None for a missing value, Python scalars for numpy ones."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def placed_on(frame: pd.DataFrame, gpus: Sequence[str]) -> pd.DataFrame | Columns:
    """``frame``'s config columns once per GPU of ``gpus`` (stacked in that order), each copy
    on that GPU at its default clocks (a frame, or for a few rows the same as Columns)."""
    names = [c for c in CONFIG_COLUMNS if c in frame.columns]
    gpu = np.repeat(np.asarray(gpus, dtype=object), len(frame))
    if len(frame) <= _SMALL_ROWS:
        # Object arrays, no frame: pandas' per-column cost would dominate a single prediction.
        table = frame.to_numpy(dtype=object)
        where = {str(c): j for j, c in enumerate(frame.columns.tolist())}
        columns = {c: np.tile(table[:, where[c]], len(gpus)) for c in names}
        return Columns.from_objects({**columns, "gpu": gpu})
    config = frame[names].reset_index(drop=True)
    stacked = pd.concat([config] * len(gpus), ignore_index=True)
    stacked["gpu"] = gpu
    return stacked


def reference_frame(reference: Mapping[str, list[Any]]) -> pd.DataFrame:
    """A stored reference sample back as a records-style frame."""
    return pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in reference.items()})


# -- prediction (called by Predictor.predict) ---------------------------------------------------


def analogies(model: Predictor, target: str, X: pd.DataFrame, features: FeatureSet,
              unseen: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(rows, per-tree z, analogue scatter) for ``X``'s ``unseen`` rows (on a GPU ``model``
    has no ``target`` data for), of a family with analogue GPUs, one triple per (GPU, family):
    the analogues' mean trees shifted to the shared ensemble's level on that GPU, and per row
    the scatter over analogues of their level-free z (module doc), as the sd of one more draw
    (:func:`~gemmperf.predict.training_data.new_draw_factor`)."""
    analogues = getattr(model, "analogues_", {}).get(target)
    if not analogues or not unseen.any():
        return []
    family_codes, families = features.factorized("family")
    gpu_codes, gpus = features.factorized("gpu")
    keys = features.math_keys()
    out = []
    for code, family in enumerate(families):
        if family not in analogues:
            continue
        in_family = unseen & (family_codes == code)
        for gpu_code in np.unique(gpu_codes[in_family]):
            rows = np.flatnonzero(in_family & (gpu_codes == gpu_code))
            for key in dict.fromkeys(keys[rows]):         # each math path once, in order
                placed = capable_analogues(analogues[family], key)
                level = placed and analogy_level(model, target, family, gpus[gpu_code], placed)
                if not level:       # too few analogues, or no reference row they all run
                    continue
                part = rows[keys[rows] == key]     # object array: elementwise, None too
                trees, each = analogue_trees(model, target, X.iloc[part], placed)
                # A new GPU's structure is one more draw from the analogues' (a prediction
                # interval: few analogues, so Student's t, as for the level term).
                factor = new_draw_factor(len(each), len(each) - 1, model.interval)
                out.append((part, trees - level[0],
                            factor * (each - level[1][:, None]).std(axis=0, ddof=1)))
    return out


def analogue_trees(model: Predictor, target: str, frame: pd.DataFrame, analogues: list[str]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per-tree z (trees x rows) of ``frame``'s rows averaged over their copies placed on each
    analogue GPU (its expert's mean correction added where it has one), and each analogue's
    mean z (analogues x rows)."""
    matrix = model._matrix(build_features(placed_on(frame, analogues)))
    trees = model.forests_[target].predict_trees(matrix)
    n = len(frame)
    experts = getattr(model, "experts_", {}).get(target, {})
    for i, gpu in enumerate(analogues):
        if gpu in experts:
            block = slice(i * n, (i + 1) * n)
            trees[:, block] += experts[gpu].predict_trees(matrix[block]).mean(axis=0)
    trees = trees.reshape(len(trees), len(analogues), n)
    return trees.mean(axis=1), trees.mean(axis=0)


def analogy_level(model: Predictor, target: str, family: str, gpu: str,
                  placed: Sequence[str]) -> tuple[float, np.ndarray] | None:
    """``L`` of the module doc for an unseen ``gpu`` (median over the family's reference rows
    of the mean z over the analogues ``placed`` on, minus the shared-ensemble z on that GPU),
    and the same per analogue; over the reference rows ``gpu`` and all of ``placed`` can run
    (by math path), None where there is none. Each analogue's differences are cached on the
    model per target, family and GPU."""
    cache = model.__dict__.setdefault("_analogy_level_cache", {})
    key = (id(model.forests_), target, family, gpu)
    every = model.analogues_[target][family]
    if key not in cache:
        reference = reference_frame(model.reference_rows_[target][family])
        reference["gpu"] = gpu
        keys = math_keys(reference)
        differences = np.full((len(every), len(reference)), np.nan)  # (analogues, rows)
        runs = np.flatnonzero(_runs_on(gpu, keys))
        if len(runs):
            own = model.forests_[target].predict_trees(
                model._matrix(build_features(reference.iloc[runs]))).mean(axis=0)
            for i, analogue in enumerate(every):
                both = _runs_on(analogue, [keys[r] for r in runs])
                if both.any():
                    _, each = analogue_trees(model, target, reference.iloc[runs[both]],
                                             [analogue])
                    differences[i, runs[both]] = each[0] - own[both]
        cache[key] = differences
    differences = cache[key][[every.index(g) for g in placed]]
    differences = differences[:, np.isfinite(differences).all(axis=0)]
    if not differences.shape[1]:
        return None
    return float(np.median(differences.mean(axis=0))), np.median(differences, axis=1)
