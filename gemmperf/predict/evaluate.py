"""Honest evaluation: metrics of a model on data, and the split protocols of cross-validation.

Metrics (percent where they are errors), per target and per GPU:

* ``mape`` mean and ``median_ape`` median of |predicted / measured - 1| x 100;
* ``r2_log`` coefficient of determination of log(target);
* ``spearman`` rank correlation *within each problem* (rows sharing GPU, m, n, k, batch and dtype:
  how well the model orders the kernel configs of one GEMM), averaged over problems weighted by
  their rows; None where no problem has 3 or more rows;
* ``coverage_80`` share of rows whose measurement lies inside the predicted interval (nominal
  80%), and ``width_80`` its median width as hi / lo (coverage alone rewards wide intervals).

Split protocols (:func:`split_folds`):

* ``random``: rows split at random, ``test_fraction`` held out within each GPU (the seed paper's
  protocol; shapes and configs leak across it);
* ``shape``: held-out problems, grouped by (m, n, k, batch) so no shape is in both parts (rows
  with no GEMM shape are grouped by kernel: a held-out benchmark); k-fold;
* ``gpu``: leave one GPU out: train on every other GPU, test on it;
* ``clock``: held-out SM clocks (power and DVFS tables), grouped by clock; k-fold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from gemmperf.errors import DataFormatError, InvalidConfigError
from gemmperf.features import TARGET_COLUMNS, resolve_gpus

SPLITS = ("random", "shape", "gpu", "clock")
PROBLEM_KEYS = ("gpu", "m", "n", "k", "batch", "dtype")
MIN_GROUP = 3


def _ape(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    return np.abs(pred / true - 1.0) * 100.0


def target_metrics(true: np.ndarray, pred: np.ndarray, lo: np.ndarray | None = None,
                   hi: np.ndarray | None = None, problems: np.ndarray | None = None
                   ) -> dict[str, Any]:
    """Metrics of one target over the rows where it was measured (module doc)."""
    ok = np.isfinite(true) & (true > 0) & np.isfinite(pred) & (pred > 0)
    out: dict[str, Any] = {"n": int(ok.sum())}
    if not ok.any():
        return {**out, "mape": None, "median_ape": None, "r2_log": None, "spearman": None,
                "coverage_80": None, "width_80": None}
    t, p = true[ok], pred[ok]
    ape = _ape(p, t)
    out["mape"] = float(ape.mean())
    out["median_ape"] = float(np.median(ape))
    lt, lp = np.log(t), np.log(p)
    ss = float(((lt - lt.mean()) ** 2).sum())
    out["r2_log"] = float(1.0 - ((lt - lp) ** 2).sum() / ss) if ss > 0 else None
    out["spearman"] = None if problems is None else within_problem_spearman(t, p, problems[ok])
    out["coverage_80"] = out["width_80"] = None
    if lo is not None and hi is not None:
        out["coverage_80"] = float(np.mean((t >= lo[ok]) & (t <= hi[ok])))
        with np.errstate(divide="ignore", invalid="ignore"):
            out["width_80"] = float(np.nanmedian(hi[ok] / lo[ok]))
    return out


def within_problem_spearman(true: np.ndarray, pred: np.ndarray,
                            problems: np.ndarray) -> float | None:
    """Row-weighted mean of the Spearman correlation inside each problem with 3+ rows."""
    codes, _ = pd.factorize(problems)
    total, weight = 0.0, 0
    for code in np.unique(codes):
        rows = codes == code
        if rows.sum() < MIN_GROUP or np.ptp(true[rows]) == 0 or np.ptp(pred[rows]) == 0:
            continue
        rho = spearmanr(true[rows], pred[rows]).statistic
        if np.isfinite(rho):
            total += float(rho) * int(rows.sum())
            weight += int(rows.sum())
    return total / weight if weight else None


def problem_keys(frame: pd.DataFrame, gpus: np.ndarray | None = None) -> np.ndarray:
    """One text key per row naming its problem (GPU, shape, dtype)."""
    gpus = resolve_gpus(frame) if gpus is None else gpus
    parts = [_text(pd.Series(gpus))] + [_text(frame, name) for name in PROBLEM_KEYS[1:]]
    return np.array(["|".join(p) for p in zip(*parts, strict=True)], dtype=object)


def _text(frame: pd.DataFrame | pd.Series, name: str | None = None) -> np.ndarray:
    """A column as Python strings ("" where missing or absent)."""
    if name is not None:
        if name not in frame.columns:
            return np.full(len(frame), "", dtype=object)
        frame = frame[name]
    values = frame.to_numpy(dtype=object)
    return np.array(["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                     for v in values], dtype=object)


def evaluate_predictions(frame: pd.DataFrame, pred: pd.DataFrame) -> dict[str, Any]:
    """Metrics of predictions ``pred`` (Predictor.predict output) against ``frame``.

    Top level: the runtime metrics (``n``, ``mape``, ``median_ape``, ``r2_log``, ``spearman``,
    ``coverage_80``); ``targets``: the same per target; ``gpus``: per GPU, per target.
    """
    gpus = resolve_gpus(frame)
    problems = problem_keys(frame, gpus)
    result: dict[str, Any] = {}
    targets: dict[str, Any] = {}
    for target, column in TARGET_COLUMNS.items():
        if column not in pred.columns or column not in frame.columns:
            continue
        true = pd.to_numeric(frame[column], errors="coerce").to_numpy(float, na_value=np.nan)
        p = pred[column].to_numpy(float)
        lo, hi = pred[column + "_lo"].to_numpy(float), pred[column + "_hi"].to_numpy(float)
        metrics = target_metrics(true, p, lo, hi, problems)
        if metrics["n"]:
            targets[target] = metrics
    if not targets:
        raise DataFormatError("no row has a measured target the model predicts "
                              f"({', '.join(pred.columns)})")
    per_gpu: dict[str, Any] = {}
    for gpu in pd.unique(gpus):
        rows = gpus == gpu
        entry = {}
        for target in targets:
            column = TARGET_COLUMNS[target]
            true = pd.to_numeric(frame[column], errors="coerce").to_numpy(float, na_value=np.nan)
            m = target_metrics(true[rows], pred[column].to_numpy(float)[rows],
                               pred[column + "_lo"].to_numpy(float)[rows],
                               pred[column + "_hi"].to_numpy(float)[rows], problems[rows])
            if m["n"]:
                entry[target] = m
        if entry:
            per_gpu[str(gpu)] = entry
    runtime = targets.get("runtime", {"n": 0, "mape": None, "median_ape": None, "r2_log": None,
                                      "spearman": None, "coverage_80": None})
    result.update(runtime)
    result["targets"] = targets
    result["gpus"] = per_gpu
    return result


def evaluate_model(model: Any, frame: pd.DataFrame) -> dict[str, Any]:
    """Predict ``frame`` with ``model`` and score the predictions (:func:`evaluate_predictions`)."""
    return evaluate_predictions(frame, model.predict(frame))


# -- split protocols ---------------------------------------------------------------------------


def split_folds(frame: pd.DataFrame, split: str, *, folds: int = 5, test_fraction: float = 0.2,
                seed: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield (label, train indices, test indices) of a protocol (module doc)."""
    if split not in SPLITS:
        raise InvalidConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    n = len(frame)
    rng = np.random.default_rng(seed)
    gpus = resolve_gpus(frame)
    if split == "random":
        test = np.zeros(n, dtype=bool)
        for gpu in pd.unique(gpus):
            rows = np.flatnonzero(gpus == gpu)
            take = rng.permutation(len(rows))[: round(test_fraction * len(rows))]
            test[rows[take]] = True
        yield "random", np.flatnonzero(~test), np.flatnonzero(test)
        return
    if split == "gpu":
        unique = sorted(pd.unique(gpus))
        if len(unique) < 2:
            raise InvalidConfigError(f"--split gpu needs data from 2+ GPUs, got {unique}")
        for gpu in unique:
            yield f"held out {gpu}", np.flatnonzero(gpus != gpu), np.flatnonzero(gpus == gpu)
        return
    groups = _shape_groups(frame) if split == "shape" else _clock_groups(frame)
    codes, uniques = pd.factorize(groups)
    k = min(folds, len(uniques))
    if k < 2:
        raise InvalidConfigError(f"--split {split} needs 2+ distinct groups, got {len(uniques)}")
    fold_of_group = rng.permutation(len(uniques)) % k
    fold = fold_of_group[codes]
    for i in range(k):
        yield f"fold {i + 1}/{k}", np.flatnonzero(fold != i), np.flatnonzero(fold == i)


def _shape_groups(frame: pd.DataFrame) -> np.ndarray:
    keys = [_text(frame, name) for name in ("m", "n", "k", "batch")]
    shape = np.array(["x".join(p) for p in zip(*keys, strict=True)], dtype=object)
    kernel = _text(frame, "kernel_name")
    no_shape = keys[0] == ""
    return np.where(no_shape, np.array(["kernel:" + k for k in kernel], dtype=object), shape)


def _clock_groups(frame: pd.DataFrame) -> np.ndarray:
    if "sm_clock_mhz" not in frame.columns or frame["sm_clock_mhz"].isna().all():
        raise InvalidConfigError("--split clock needs rows with sm_clock_mhz (power/DVFS tables)")
    return _text(frame["sm_clock_mhz"].round(0))


def cross_validate(frame: pd.DataFrame, split: str, make_model: Callable[[], Any], *,
                   folds: int = 5, test_fraction: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """Fit a fresh model per fold, predict the held-out rows, and score.

    Returns the pooled metrics over every held-out row (top level, like
    :func:`evaluate_predictions`) and ``folds``: each fold's label, sizes and runtime metrics.
    """
    frame = frame.reset_index(drop=True)
    preds: list[pd.DataFrame] = []
    fold_results = []
    for label, train, test in split_folds(frame, split, folds=folds,
                                          test_fraction=test_fraction, seed=seed):
        model = make_model().fit(frame.iloc[train])
        pred = model.predict(frame.iloc[test])
        preds.append(pred)
        metrics = evaluate_predictions(frame.iloc[test], pred)
        fold_results.append({"fold": label, "train_rows": len(train), "test_rows": len(test),
                             **{k: v for k, v in metrics.items() if k != "gpus"}})
    pooled_pred = pd.concat(preds).sort_index()
    pooled = evaluate_predictions(frame.loc[pooled_pred.index], pooled_pred)
    return {"split": split, **pooled, "folds": fold_results}
