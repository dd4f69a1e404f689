"""The GPPerf-style baseline (arXiv 2411.16954), kept for honest side-by-side comparison.

GPPerf fits ``MultiOutputRegressor(RandomForestRegressor(n_estimators=100, max_depth=6))`` on raw
sizes and tile labels (m, n, k, block sizes, arithmetic intensity, bytes, flops) and predicts raw
runtime and power. This class reproduces that recipe on our records: one such forest per target,
trained on the rows that have the target, on the raw columns below (NaN -> -1), predicting the
raw value (not its log). For tables without GEMM sizes the only inputs it has are the clocks and
the kernel label, as in the paper's setting. It knows nothing about the GPU a row ran on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestRegressor

from gemmperf.errors import DataFormatError
from gemmperf.features import TARGET_COLUMNS, TARGETS
from gemmperf.predict.inputs import require_fitted

RAW_COLUMNS = ("m", "n", "k", "batch", "tile_m", "tile_n", "tile_k", "threads_per_block",
               "sm_clock_mhz", "mem_clock_mhz")


class GPPerfBaseline(BaseEstimator):
    """RF(100 trees, max_depth 6) per target on raw sizes and tile labels (module doc)."""

    def __init__(self, targets: tuple[str, ...] = TARGETS, n_estimators: int = 100,
                 max_depth: int = 6, random_state: int | None = 0,
                 n_jobs: int | None = None) -> None:
        self.targets = targets
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        cols = {}
        for name in RAW_COLUMNS:
            values = X[name] if name in X.columns else pd.Series(np.nan, index=X.index)
            cols[name] = pd.to_numeric(values, errors="coerce").to_numpy(float, na_value=np.nan)
        a_bytes = 4.0  # GPPerf's fp32 kernels; bytes/flops as its feature list has them
        flops = 2 * cols["m"] * cols["n"] * cols["k"] * np.nan_to_num(cols["batch"], nan=1.0)
        nbytes = a_bytes * (cols["m"] * cols["k"] + cols["k"] * cols["n"] + cols["m"] * cols["n"])
        kernel = X["kernel_name"].astype(str).to_numpy() if "kernel_name" in X.columns \
            else np.full(len(X), "")
        label = np.array([self.kernels_.get(v, -1) for v in kernel], dtype=float)
        matrix = np.column_stack([*cols.values(), flops, nbytes, flops / nbytes, label])
        return np.nan_to_num(matrix, nan=-1.0)

    def fit(self, X: pd.DataFrame, y: pd.DataFrame | None = None) -> GPPerfBaseline:
        """One forest per target on the rows that have it."""
        source = X if y is None else y
        kernel = X["kernel_name"].astype(str) if "kernel_name" in X.columns else pd.Series("")
        self.kernels_ = {v: i for i, v in enumerate(sorted(pd.unique(kernel)))}
        raw = self._raw(X)
        self.forests_ = {}
        for target in self.targets:
            column = TARGET_COLUMNS[target]
            if column not in source.columns:
                continue
            values = pd.to_numeric(source[column], errors="coerce").to_numpy(float)
            ok = np.isfinite(values) & (values > 0)
            if ok.sum() < 2:
                continue
            rf = RandomForestRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                       random_state=self.random_state, n_jobs=self.n_jobs)
            self.forests_[target] = rf.fit(raw[ok], values[ok])
        if not self.forests_:
            raise DataFormatError("the baseline found no target to train on")
        return self

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Raw predictions; the interval columns repeat the point (the baseline has none)."""
        require_fitted(self)
        raw = self._raw(X)
        out = {}
        for target, rf in self.forests_.items():
            column = TARGET_COLUMNS[target]
            out[column] = out[column + "_lo"] = out[column + "_hi"] = rf.predict(raw)
        return pd.DataFrame(out, index=X.index)
