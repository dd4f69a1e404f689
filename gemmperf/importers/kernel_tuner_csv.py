"""Kernel Tuner results exported as CSV (one row per configuration) -> records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gemmperf.errors import DataFormatError
from gemmperf.importers._common import (
    PathLike,
    check_nonnegative,
    check_positive,
    integer_column,
    numeric_column,
    read_bytes,
    read_csv,
    require_columns,
)
from gemmperf.importers._kt_common import (
    base_frame,
    family_name,
    is_xgemm,
    set_problem,
    solve_integer,
    statuses,
)

# Columns of the CSV export that are measurements, not tunables.
_CSV_MEASUREMENT_COLUMNS = {
    "gpu", "device_name", "time_ms", "time_std", "time_std_ms", "gflops", "GFLOP/s", "n_times",
    "time_field_raw", "timestamp",
}


def read_csv_export(
    path: PathLike,
    *,
    raw: bytes | None = None,
    problem_size: tuple[int, int, int] | None = None,
) -> pd.DataFrame:
    """Records (not yet normalised) from a CSV export of Kernel Tuner results.

    Columns: ``gpu`` (device name), one column per tunable, ``time_ms`` (the mean of the timed
    runs, as Kernel Tuner's ``time``), optionally ``time_std``, ``gflops``, ``n_times``,
    ``time_field_raw`` (the cache's raw ``time``, which may be an error class name) and
    ``timestamp``. There are no per-run times, so ``runtime_s`` is the mean.

    Such a file names no problem size. For Xgemm it is solved from gflops and time_ms under the
    dataset's statement that M = N = K (shared/data/README.md): the flop count 2*s*s*(s + 1) must
    give the same integer s for every row, else the import stops and asks for ``problem_size``.
    """
    path = Path(path)
    text = (read_bytes(path) if raw is None else raw).decode("utf-8-sig", errors="strict")
    frame = read_csv(path, text=text)
    require_columns(frame, ["gpu", "time_ms"], path, "Kernel Tuner CSV export")
    tunables = [c for c in frame.columns if c not in _CSV_MEASUREMENT_COLUMNS]
    if not tunables:
        raise DataFormatError(f"{path}: no tunable-parameter columns besides the measurements")
    raw_time = frame["time_field_raw"] if "time_field_raw" in frame.columns else frame["time_ms"]
    as_text = raw_time.astype(object).where(raw_time.notna(), None)
    keys = [f"data row {i + 1}" for i in range(len(frame))]
    time_values = [_number_or_text(v) for v in as_text]
    status, reason = statuses(time_values, path, keys)
    ok = status == "ok"
    time_ms = numeric_column(frame, "time_ms", path).to_numpy(float, copy=True)
    time_ms[~ok] = np.nan
    check_positive(time_ms[ok], path, "time_ms", [keys[i] for i in np.flatnonzero(ok)])
    for column in tunables:
        frame[column] = _maybe_integer(frame[column])
    out = base_frame(frame, tunables, status, reason)
    out["device_name"] = frame["gpu"].astype(object)
    out["kernel_name"] = "Xgemm" if is_xgemm(tunables) else None
    out["timestamp"] = frame["timestamp"].astype(object) if "timestamp" in frame else None
    out["runtime_s"] = time_ms * 1e-3
    out["runtime_mean_s"] = time_ms * 1e-3
    if "time_std" in frame.columns:
        std = numeric_column(frame, "time_std", path).to_numpy(float)
        check_nonnegative(std, path, "time_std")
        out["runtime_std_s"] = np.where(ok, std * 1e-3, np.nan)
    if "n_times" in frame.columns:
        out["repeats"] = integer_column(frame, "n_times", path).where(ok)
    if is_xgemm(tunables):
        if problem_size is None:
            if "gflops" not in frame.columns:
                raise DataFormatError(
                    f"{path}: no problem size and no gflops column; pass problem_size=(M, N, K)"
                )
            flops = numeric_column(frame, "gflops", path).to_numpy(float) * 1e9 * time_ms * 1e-3
            side = solve_integer(_cube_side(flops[ok]), rel_tol=1e-4)
            if side is None:
                raise DataFormatError(
                    f"{path}: gflops and time_ms do not agree on one M = N = K; "
                    "pass problem_size=(M, N, K)"
                )
            problem_size = (side, side, side)
        set_problem(out, frame, *problem_size)
    elif problem_size is not None:
        out["m"], out["n"], out["k"] = problem_size
    out["family"] = family_name(out["kernel_name"].iloc[0], tunables)
    return out


def _number_or_text(value: Any) -> Any:
    if value is None or isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except ValueError:
        return str(value).strip()


def _maybe_integer(column: pd.Series) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce")
    if values.notna().all() and (values == np.round(values)).all():
        return values.astype("int64")
    return column


def _cube_side(flops: np.ndarray) -> np.ndarray:
    """s with 2*s^2*(s + 1) = flops (Newton from the cube root; converges in a few steps)."""
    s = np.cbrt(flops / 2.0)
    for _ in range(8):
        f = 2.0 * s * s * (s + 1.0) - flops
        s = s - f / (6.0 * s * s + 4.0 * s)
    return s
