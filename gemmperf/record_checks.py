"""What a record may hold: the checks that the records readers and writers of
:mod:`gemmperf.records` run, so that nothing is written that could not be read back and nothing
is read that no GPU could have measured (a runtime of -1 s, a status no tool writes)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gemmperf.errors import DataFormatError


def check_row(row: Mapping[str, Any]) -> None:
    """One record about to be written: the per-row rules of :func:`check_values` (a known
    status; an ``ok`` row's runtime, power and energy positive and finite where given)."""
    from gemmperf.records import MEASURED_COLUMNS, STATUSES  # (records imports this module)

    status = row.get("status", "ok")
    if status not in STATUSES:
        raise DataFormatError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    for name in MEASURED_COLUMNS:
        value = row.get(name)
        if value is None or status != "ok" or (isinstance(value, float) and math.isnan(value)):
            continue   # unknown (NaN is written as null)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not (math.isfinite(value) and value > 0):
            raise DataFormatError(f"an ok record has {name} = {value!r}: a measurement is a "
                                  "positive finite number")


def check_values(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``frame`` (records read from ``path``) with its numeric columns as numbers; a
    :class:`DataFormatError` naming the row where a number is not one, a status is not one of
    :data:`STATUSES`, or an ``ok`` row's runtime, power or energy is not positive."""
    from gemmperf.records import MEASURED_COLUMNS, NUMERIC_COLUMNS, STATUSES

    def fail(rows: pd.Series, what: str) -> None:
        first = int(np.flatnonzero(rows.to_numpy())[0])
        raise DataFormatError(f"{path}: record {first + 1}: {what} ({int(rows.sum())} such "
                              "rows); fix or remove them")

    if len(frame) and "status" not in frame.columns:
        raise DataFormatError(f"{path}: not gemmperf records (no status column; gemmperf import "
                              "converts other tools' files)")
    for name in (c for c in NUMERIC_COLUMNS if c in frame.columns):
        values = pd.to_numeric(frame[name], errors="coerce")
        bad = frame[name].notna() & values.isna()
        if bad.any():
            fail(bad, f"{name} must be a number, got {frame[name][bad].iloc[0]!r}")
        frame[name] = values
    if len(frame):
        unknown = frame["status"].notna() & ~frame["status"].isin(STATUSES)
        if unknown.any():
            fail(unknown, f"status {frame['status'][unknown].iloc[0]!r} is not one of "
                          f"{', '.join(STATUSES)}")
        for name in (c for c in MEASURED_COLUMNS if c in frame.columns):
            values = frame[name].to_numpy(dtype=float, na_value=np.nan)
            bad = (frame["status"] == "ok") & ((values <= 0) | np.isinf(values))
            if bad.any():
                fail(bad, f"an ok row has {name} = {float(frame[name][bad].iloc[0]):g}, "
                          "not a positive finite number")
    return frame
