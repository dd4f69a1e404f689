"""Pieces shared by the Kernel Tuner cache and CSV-export readers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gemmperf.errors import DataFormatError
from gemmperf.importers._common import params_records

SOURCE = "kernel_tuner"
XGEMM_FAMILY = "clblast_xgemm"
XGEMM_LAYOUT = "nt"

# Kernel Tuner's ErrorConfig class names (kernel_tuner/util.py) -> record status.
ERROR_STATUS = {
    "InvalidConfig": "invalid",
    "CompilationFailedConfig": "compile_error",
    "RuntimeFailedConfig": "launch_error",
}
# Kernel Tuner releases before ErrorConfig stored this time (ms) for a failed configuration.
LEGACY_FAILURE_TIME_MS = 1e20

# CLBlast's PRECISION tunable -> canonical dtype (CLBlast: 16 half, 32 single, 64 double;
# 3232/6464 are complex and have no canonical dtype, so they stay in params only).
_CLBLAST_PRECISION = {16: "f16", 32: "f32", 64: "f64"}
# Tunables that identify CLBlast's Xgemm (and give the common tile columns).
XGEMM_KEYS = ("MWG", "NWG", "KWG", "MDIMC", "NDIMC")


def statuses(
    time_raw: list[Any], path: Path, keys: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(status, reason) per configuration from Kernel Tuner's raw ``time`` values."""
    status = np.full(len(time_raw), "ok", dtype=object)
    reason = np.full(len(time_raw), None, dtype=object)
    for i, t in enumerate(time_raw):
        if isinstance(t, str):
            if t not in ERROR_STATUS:
                raise DataFormatError(
                    f"{path}: config {keys[i]!r} has time {t!r}; expected milliseconds or one of "
                    f"{', '.join(ERROR_STATUS)}"
                )
            status[i], reason[i] = ERROR_STATUS[t], f"Kernel Tuner: {t}"
        elif isinstance(t, bool) or not isinstance(t, (int, float)):
            raise DataFormatError(f"{path}: config {keys[i]!r} has no numeric time ({t!r})")
        elif t >= LEGACY_FAILURE_TIME_MS:
            status[i] = "launch_error"
            reason[i] = f"Kernel Tuner failure marker time={t:g} (compile or launch failed)"
    return status, reason


def solve_integer(estimates: np.ndarray, rel_tol: float = 1e-3) -> int | None:
    """The integer every finite estimate agrees on (within ``rel_tol``), else None."""
    est = estimates[np.isfinite(estimates)]
    if est.size == 0:
        return None
    value = round(float(np.median(est)))
    if value <= 0 or np.any(np.abs(est - value) > rel_tol * value):
        return None
    return value


def is_xgemm(tunables: list[str]) -> bool:
    """Whether the tunables are CLBlast Xgemm's."""
    return all(key in tunables for key in XGEMM_KEYS)


def family_name(kernel_name: Any, tunables: list[str]) -> str:
    """The record family: clblast_xgemm, else kernel_tuner_<kernel name>."""
    if is_xgemm(tunables):
        return XGEMM_FAMILY
    name = str(kernel_name or "kernel").strip().lower()
    return f"kernel_tuner_{name}"


def base_frame(
    frame: pd.DataFrame, tunables: list[str], status: np.ndarray, reason: np.ndarray
) -> pd.DataFrame:
    """source, status, reason, params (every tunable) and, for non-Xgemm kernels, threads."""
    out = pd.DataFrame(index=frame.index)
    out["source"] = SOURCE
    out["status"] = status
    out["reason"] = reason
    out["params"] = params_records(frame, tunables)
    block = [c for c in ("block_size_x", "block_size_y", "block_size_z") if c in tunables]
    if block and not is_xgemm(tunables):
        out["threads_per_block"] = frame[block].astype("Int64").prod(axis=1)
    return out


def set_runtime(out: pd.DataFrame, time_ms: np.ndarray, stats: dict[str, np.ndarray]) -> None:
    """runtime_s = median of the runs where they are stored, else Kernel Tuner's mean."""
    has_runs = ~np.isnan(stats["median"])
    out["runtime_s"] = np.where(has_runs, stats["median"], time_ms) * 1e-3
    out["runtime_mean_s"] = np.where(has_runs, stats["mean"], time_ms) * 1e-3
    for name, column in (("iqr", "runtime_iqr_s"), ("min", "runtime_min_s"),
                         ("max", "runtime_max_s"), ("std", "runtime_std_s")):
        out[column] = stats[name] * 1e-3
    out["repeats"] = pd.array(np.where(has_runs, stats["count"], 0), dtype="Int64")
    out.loc[~has_runs, "repeats"] = pd.NA


def set_problem(out: pd.DataFrame, frame: pd.DataFrame, m: int, n: int, k: int) -> None:
    """Problem and common tile columns for CLBlast Xgemm."""
    out["m"], out["n"], out["k"], out["batch"] = m, n, k, 1
    if "PRECISION" in frame.columns:
        precision = pd.to_numeric(frame["PRECISION"], errors="coerce")
        out["dtype"] = [_CLBLAST_PRECISION.get(int(p)) if p == p else None for p in precision]
    out["layout"] = XGEMM_LAYOUT
    out["tile_m"] = frame["MWG"].astype("Int64")
    out["tile_n"] = frame["NWG"].astype("Int64")
    out["tile_k"] = frame["KWG"].astype("Int64")
    out["threads_per_block"] = (frame["MDIMC"] * frame["NDIMC"]).astype("Int64")


def run_statistics(
    runs: Sequence[Any], ok: np.ndarray, path: Path, labels: Sequence[str]
) -> dict[str, np.ndarray]:
    """Median, IQR, min, max, mean, sample std (ddof=1) and count of each row's runs.

    ``runs[i]`` is a list of times (any unit; the statistics keep it) or None. Rows that are not
    ``ok`` or have no list get NaN (count 0). A run time that is not a positive finite number is
    an error naming the configuration. Rows are grouped by run count so each group is one numpy
    array: 18k configurations x 32 runs take a few milliseconds.
    """
    count = len(runs)
    out = {name: np.full(count, np.nan) for name in ("median", "iqr", "min", "max", "mean", "std")}
    out["count"] = np.zeros(count, dtype=np.int64)
    lengths = np.fromiter(
        (len(r) if ok[i] and isinstance(r, list) else 0 for i, r in enumerate(runs)),
        dtype=np.int64, count=count,
    )
    for length in np.unique(lengths[lengths > 0]):
        rows = np.flatnonzero(lengths == length)
        try:
            arr = np.array([runs[i] for i in rows], dtype=float)
        except (TypeError, ValueError) as exc:
            bad = next(i for i in rows if not all(_is_number(v) for v in runs[i]))
            raise DataFormatError(
                f"{path}: config {labels[bad]!r} has a non-numeric run time in 'times'"
            ) from exc
        bad_rows = ~np.isfinite(arr).all(axis=1) | (arr <= 0).any(axis=1)
        if bad_rows.any():
            bad = rows[np.flatnonzero(bad_rows)[0]]
            raise DataFormatError(
                f"{path}: config {labels[bad]!r} has a run time that is NaN, infinite or <= 0 "
                f"in 'times'"
            )
        q25, q50, q75 = np.percentile(arr, [25, 50, 75], axis=1)
        out["median"][rows] = q50
        out["iqr"][rows] = q75 - q25
        out["min"][rows] = arr.min(axis=1)
        out["max"][rows] = arr.max(axis=1)
        out["mean"][rows] = arr.mean(axis=1)
        out["std"][rows] = arr.std(axis=1, ddof=1) if length > 1 else np.nan
        out["count"][rows] = length
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
