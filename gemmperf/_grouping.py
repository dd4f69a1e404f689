"""Grouping rows by several code columns at once (mixed-radix codes, one pandas factorize)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def group_codes(columns: Sequence[tuple[np.ndarray, int]]
                ) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Rows grouped by the tuple of their codes in ``columns`` ((codes in [0, size), size) per
    column): (group per row, numbered in order of first appearance; each group's code tuple).

    The codes are read as the digits of one mixed-radix integer per row, so one factorize of
    integers does the grouping; only the distinct groups are decoded in Python."""
    combined = np.zeros(len(columns[0][0]) if columns else 0, dtype=np.int64)
    for codes, size in columns:
        combined = combined * size + codes
    groups, flats = pd.factorize(combined)
    decoded = []
    for flat in flats:
        digits = []
        for _, size in reversed(columns):
            flat, digit = divmod(int(flat), size)
            digits.append(digit)
        decoded.append(tuple(reversed(digits)))
    return groups, decoded
