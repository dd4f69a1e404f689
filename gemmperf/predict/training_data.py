"""What a predictor's fit reads and records about its training rows: the target values, the
kernels seen per family, which rows ran the same config on different GPUs and the scatter of
per-GPU levels on them, and the provenance a bundle stores.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd

from gemmperf.errors import DataFormatError
from gemmperf.features import TARGET_COLUMNS, FeatureSet


def kernels_by_family(features: FeatureSet, rows: np.ndarray) -> dict[str, list[str]]:
    """Kernel names seen per family on ``rows`` (families without kernel names are omitted)."""
    table = pd.DataFrame({"family": features.categorical["family"][rows],
                          "kernel": features.categorical["kernel_name"][rows]})
    table = table[table["kernel"] != ""]
    return {str(f): sorted(map(str, part["kernel"].unique()))
            for f, part in table.groupby("family")}


#: The record columns that say which kernel config on which problem a row measured (not where
#: or at what clock): rows equal on all of them ran the same config on different GPUs.
CONFIG_COLUMNS = ("family", "kernel_name", "m", "n", "k", "batch", "dtype", "tile_m", "tile_n",
                  "tile_k", "threads_per_block", "stages", "split_k", "params")


def config_keys(X: pd.DataFrame) -> np.ndarray:
    """One integer code per row naming its (kernel config, problem), equal across GPUs."""
    columns = [c for c in CONFIG_COLUMNS if c in X.columns]
    if not columns:
        return np.arange(len(X))
    # Each column's own codes (missing: -1 in every column alike), then one code per distinct row.
    codes = np.column_stack([pd.factorize(X[c].to_numpy(dtype=object))[0] for c in columns])
    return np.unique(codes, axis=0, return_inverse=True)[1].reshape(-1)


#: The record columns that name a problem (a shape) on a GPU, not the config or kernel that ran
#: it: rows equal on all of them and on the GPU are one measurement unit for calibration.
PROBLEM_COLUMNS = ("family", "m", "n", "k", "batch", "dtype")
#: The columns that name the operating point a problem ran at.
CLOCK_COLUMNS = ("sm_clock_mhz", "mem_clock_mhz")
#: A (family, GPU) with this many distinct problems (or clocks) is calibrated on held-out ones.
MIN_PROBLEMS = 10


def calibration_groups(X: pd.DataFrame, gpus: np.ndarray) -> np.ndarray:
    """One integer code per row: the unit that conformal calibration holds out whole, i.e.
    what the trees must generalise over on that kernel family and GPU.

    Where a family was measured on a GPU at ``MIN_PROBLEMS`` or more problems (shapes), the
    unit is the problem: all its configs, kernels, clocks and repeats together. The XLA table
    holds each shape twice (two table versions, a median ratio of 1.015 apart); held out row by
    row, a row's twin stayed in the calibration fit and the interval covered 52 % of held-out
    shapes instead of 80 %. Else, where it was swept over ``MIN_PROBLEMS`` or more clocks (a
    DVFS table, a clock sweep), the unit is the clock with every kernel run at it: held out one
    (benchmark, clock) at a time, a benchmark's other 31 clocks stayed in the fit (67 % of
    held-out clocks covered). A benchmark is not a unit: the trees are not asked to generalise
    over kernel names (a new one is its family's average, :mod:`gemmperf.predict.unseen_kernels`,
    with its own scatter term), and held out whole, the 24 DVFS benchmarks left four or five to
    calibrate on, a power scale anywhere from 2.3 to 7.6 with the seed. Else (a Kernel Tuner
    space: one 4096^3 GEMM per GPU) the unit is the row, i.e. the config. Codes are in row
    order where every row is its own unit, so that calibration draws stay as they were."""
    gpu = pd.factorize(np.asarray(gpus, dtype=object))[0]
    family = pd.factorize(X["family"].to_numpy(dtype=object))[0] if "family" in X.columns \
        else np.zeros(len(X), dtype=np.int64)
    family_gpu = family * (gpu.max(initial=0) + 1) + gpu
    key, offset = np.arange(len(X)), len(X)   # each row its own unit, unless a rule applies
    for columns in (CLOCK_COLUMNS, PROBLEM_COLUMNS):   # the later rule wins where both apply
        unit = _units(X, [c for c in columns if c in X.columns], family_gpu)
        many = pd.Series(unit).groupby(family_gpu).transform("nunique").to_numpy() \
            >= MIN_PROBLEMS
        key = np.where(many, unit + offset, key)
        offset += unit.max(initial=0) + 1
    return np.unique(key, return_inverse=True)[1].reshape(-1)


def _units(X: pd.DataFrame, columns: list[str], family_gpu: np.ndarray) -> np.ndarray:
    """One code per distinct (family, GPU, values of ``columns``)."""
    codes = [pd.factorize(X[c].to_numpy(dtype=object))[0] for c in columns]
    return np.unique(np.column_stack([*codes, family_gpu]), axis=0,
                     return_inverse=True)[1].reshape(-1)


def gpu_levels(z: np.ndarray, gpus: np.ndarray, configs: np.ndarray,
               iterations: int = 20) -> list[pd.Series]:
    """Per-GPU levels of z on the configs two or more of the GPUs measured, one Series per
    group of GPUs linked by shared configs (levels of unlinked groups are not comparable),
    each centred on 0. Comparing medians of each GPU's own rows instead confounds level with
    config mix: the RTX A6000 table is a prefix of a larger Xgemm space (no config in common
    with the other GPUs), and its median z sits 0.6-0.85 above theirs. GPUs sharing no config
    with another are left out; no group when no config is shared.

    The fit is the two-way additive z = config effect + GPU level by alternating updates
    (Tukey's median polish, Exploratory Data Analysis, 1977), with the median for the levels
    and the mean for the config effects: a median of three GPUs' values per config would take
    the middle GPU's and shrink the Kernel Tuner levels by about a third. Where every GPU
    measured every config, a level is the median over configs of the GPU's z minus the
    config's mean z."""
    table = pd.DataFrame({"z": z, "gpu": gpus, "config": configs})
    table = table[(table.groupby("config")["gpu"].transform("nunique") >= 2).to_numpy()]
    groups = []
    for members in _linked_gpus(table):
        part = table[table["gpu"].isin(members).to_numpy()]
        level = pd.Series(0.0, index=sorted(members))
        for _ in range(iterations):
            effect = (part["z"] - part["gpu"].map(level)).groupby(part["config"]).mean()
            new = (part["z"] - part["config"].map(effect)).groupby(part["gpu"]).median()
            converged = np.allclose(new.reindex(level.index), level, atol=1e-9)
            level = new
            if converged:
                break
        groups.append(level - level.mean())
    return groups


def _linked_gpus(table: pd.DataFrame) -> list[set[str]]:
    """The GPUs of ``table`` (rows of shared configs) grouped by 'measured a config in
    common', transitively (connected components, by repeated merging)."""
    groups: list[set[str]] = []
    for members in table.groupby("config")["gpu"].agg(frozenset).drop_duplicates():
        touching = [g for g in groups if g & members]
        merged = set(members).union(*touching)
        groups = [g for g in groups if not g & members] + [merged]
    return groups


def gpu_level_sd(z: np.ndarray, gpus: np.ndarray, families: np.ndarray,
                 interval: float = 0.8, configs: np.ndarray | None = None) -> float:
    """How far the base alone misplaces an unseen GPU's level, as the sd of a normal whose
    ``interval`` quantile is the level's prediction-interval half-width. 0 when no family has
    two GPUs (nothing to estimate it from).

    Each kernel family with 2+ GPUs gives one level per GPU: with ``configs``
    (:func:`config_keys`) from :func:`gpu_levels` where its GPUs share configs (each linked
    group of GPUs on its own), else (one
    kernel measured on several GPUs, say, whose rows differ in their clock) the median z (log
    target / base) of each GPU's rows. Pooled over families, the levels' scatter is a sample sd
    ``s`` with ``dof = sum(n_f - 1)``. A new GPU's level is a new draw, predicted by the
    family's mean of ``n_f`` levels: its prediction interval is ``t(dof) * s * sqrt(1 + 1/n)``
    (the textbook interval for a new observation of a normal sample; e.g. Hahn and Meeker,
    Statistical Intervals, 1991, sec. 4.6). With two training GPUs (``dof = 1``) the 80 %
    interval is 3.8 s, not the normal quantile's 1.3 s: two levels say little about a third."""
    table = pd.DataFrame({"z": z, "gpu": gpus, "family": families,
                          # no configs: every row its own, so no GPU shares one
                          "config": np.arange(len(z)) if configs is None else configs})
    deviations, dof, pairs = 0.0, 0, 0
    for _, part in table.groupby("family"):
        if part["gpu"].nunique() < 2:
            continue
        groups = gpu_levels(part["z"].to_numpy(), part["gpu"].to_numpy(),
                            part["config"].to_numpy())
        if not groups:   # no shared config: each GPU's own median
            groups = [part.groupby("gpu")["z"].median()]
        for levels in groups:
            n = len(levels)
            deviations += float(((levels - levels.mean()) ** 2).sum())
            dof += n - 1
            pairs += n * (n - 1)
    if not dof:
        return 0.0
    n_mean = pairs / dof   # the families' GPU counts, weighted by their degrees of freedom
    return float(np.sqrt(deviations / dof)) * new_draw_factor(n_mean, dof, interval)


@functools.lru_cache(maxsize=64)
def new_draw_factor(n: float, dof: float, interval: float) -> float:
    """What a sample sd of ``n`` values (``dof`` degrees of freedom) is multiplied by to give
    the sd of a normal whose ``interval`` quantile is the prediction interval of one more
    value: ``t(dof) / z * sqrt(1 + 1/n)`` (Hahn and Meeker, Statistical Intervals, 1991, sec.
    4.6). 2.94 for two values at 80 %; it falls to 1 as they grow."""
    from scipy.stats import norm, t

    q = 0.5 + interval / 2
    return float(t.ppf(q, dof) / norm.ppf(q)) * float(np.sqrt(1 + 1 / n))


def target_values(X: pd.DataFrame, y: Any, targets: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Each target's values per row (NaN where absent), from ``y`` when given, else from ``X``.

    Only rows whose ``status`` (where X has one) is ``ok`` teach anything: a failed, invalid or
    suspect row's time is not a measurement of the config. A measured value that no GPU can
    produce (not a number, infinite, or <= 0) is a :class:`DataFormatError`, not a row to drop.
    """
    source = X if y is None else (y if isinstance(y, pd.DataFrame) else pd.DataFrame(y))
    if y is not None and len(source) != len(X):
        raise DataFormatError(f"y has {len(source)} rows, X has {len(X)}")
    learnable = np.ones(len(X), dtype=bool)
    if "status" in X.columns:
        learnable = (X["status"].fillna("ok") == "ok").to_numpy()
    out = {}
    for target in targets:
        column = TARGET_COLUMNS[target]
        if column not in source.columns:
            out[target] = np.full(len(X), np.nan)
            continue
        raw = source[column]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = learnable & raw.notna().to_numpy() & ~(np.isfinite(values) & (values > 0))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DataFormatError(f"{column} of row {first} is {raw.iloc[first]} "
                                  f"({int(bad.sum())} such rows): a measurement is a positive "
                                  "finite number")
        out[target] = np.where(learnable, values, np.nan)
    return out


def training_summary(X: pd.DataFrame, features: FeatureSet,
               targets: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Training rows per (source, GPU) and target: the provenance a bundle records."""
    source = X["source"].astype(str).to_numpy() if "source" in X.columns \
        else np.full(len(X), "unknown")
    table = pd.DataFrame({"source": source, "gpu": features.gpu})
    for target, values in targets.items():
        table[target] = np.isfinite(values) & (values > 0)
    grouped = table.groupby(["source", "gpu"], sort=True)
    rows = []
    for (src, gpu), part in grouped:
        entry: dict[str, Any] = {"source": src, "gpu": gpu, "rows": len(part)}
        entry.update({t: int(part[t].sum()) for t in targets})
        rows.append(entry)
    return rows
