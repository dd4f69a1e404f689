"""Checks a predictor runs on its inputs before predicting: it is fitted, the targets asked for
exist, and the clocks a row gives are clocks of its GPU (a value in Hz, or a negative one, would
otherwise be extrapolated into a time no GPU reaches)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted

from gemmperf.errors import GemmperfError, InvalidConfigError
from gemmperf.feature_inputs import numeric_column, text_column
from gemmperf.features import TARGETS
from gemmperf.hardware.specs import MAX_CLOCK_OVER_BOOST, MAX_MEM_CLOCK_MHZ, get_gpu


class NotFittedError(GemmperfError, SklearnNotFittedError):
    """A predictor used before :meth:`fit` (also scikit-learn's NotFittedError)."""


def require_fitted(model: Any) -> None:
    """Raise :class:`NotFittedError` unless ``model`` has been fitted."""
    try:
        check_is_fitted(model, "forests_")
    except SklearnNotFittedError:
        raise NotFittedError(f"this {type(model).__name__} is not fitted: call fit(records) "
                             "first, or load one with gemmperf.load_model()") from None


def target_names(targets: Any) -> tuple[str, ...] | None:
    """``targets`` as a tuple of known target names (a single name is one target)."""
    if targets is None:
        return None
    names = (targets,) if isinstance(targets, str) else tuple(targets)
    unknown = [t for t in names if t not in TARGETS]
    if unknown or not names:
        raise InvalidConfigError(f"unknown target(s) {', '.join(map(str, unknown)) or '(none)'}; "
                                 f"targets are {', '.join(TARGETS)}")
    return names


def check_clocks(X: pd.DataFrame, gpus: np.ndarray) -> None:
    """Every ``sm_clock_mhz`` given is above 0 and at most :data:`MAX_CLOCK_OVER_BOOST` x the
    row's GPU boost clock, every ``mem_clock_mhz`` above 0 and at most ``MAX_MEM_CLOCK_MHZ``."""
    for column in ("sm_clock_mhz", "mem_clock_mhz"):
        values = numeric_column(X, column)
        given = ~np.isnan(values)
        if not given.any():
            continue
        if column == "sm_clock_mhz":
            keys, codes = np.unique(gpus[given], return_inverse=True)
            limit = np.array([MAX_CLOCK_OVER_BOOST * get_gpu(key).boost_clock_mhz
                              for key in keys])[codes]
        else:
            limit = MAX_MEM_CLOCK_MHZ
        bad = ~((values[given] > 0) & (values[given] <= limit))
        if bad.any():
            row = int(np.flatnonzero(given)[np.argmax(bad)])
            high = limit if np.isscalar(limit) else limit[np.argmax(bad)]
            raise InvalidConfigError(f"{column} of row {row} is {values[row]:g}: not a clock of "
                                     f"{gpus[row]} (MHz, above 0, up to {high:g})")


def warn_unknown_families(X: pd.DataFrame, families: dict[str, list[str]]) -> None:
    """Warn once per call about kernel families the model never saw (a typo such as
    "cublass" would otherwise be predicted as an unknown kernel without a word)."""
    known = {f for names in families.values() for f in names}
    given = {f for f in pd.unique(text_column(X, "family")) if f}
    unknown = sorted(given - known)
    if unknown and known:
        warnings.warn(f"kernel famil{'y' if len(unknown) == 1 else 'ies'} "
                      f"{', '.join(map(repr, unknown))} not in the model's training data "
                      f"(it knows {', '.join(sorted(known))}): predicted as an unseen kernel",
                      stacklevel=3)
