"""Checks of the numbers the planning API takes (shared by the planner and the budget solver):
numpy integers are integers, bools are not numbers, NaN and infinity are not sizes or prices."""

from __future__ import annotations

import math
import numbers
from typing import Any


def is_real(value: Any, *, low: float, inclusive: bool = False) -> bool:
    """Is ``value`` a finite real number above ``low`` (or at it, with ``inclusive``)? Not a
    bool, not text."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return False
    return value >= low if inclusive else value > low


def as_int(value: Any) -> Any:
    """A numpy or other integral value as a Python int (bools and the rest unchanged, for the
    checks to refuse)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value
