"""What a predictor's fit reads and records about its training rows: the target values, the
kernels seen per family, the scatter of per-GPU levels, and the provenance a bundle stores.
"""

from __future__ import annotations

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


def gpu_level_sd(z: np.ndarray, gpus: np.ndarray, families: np.ndarray) -> float:
    """Scatter of the per-GPU median of z (log target / base) within kernel families with 2+
    GPUs, pooled over families: how far the base alone misplaces an unseen GPU's level. 0 when
    no family has two GPUs (nothing to estimate it from)."""
    table = pd.DataFrame({"z": z, "gpu": gpus, "family": families})
    medians = table.groupby(["family", "gpu"])["z"].median()
    deviations, dof = 0.0, 0
    for _, per_gpu in medians.groupby(level=0):
        if len(per_gpu) >= 2:
            deviations += float(((per_gpu - per_gpu.mean()) ** 2).sum())
            dof += len(per_gpu) - 1
    return float(np.sqrt(deviations / dof)) if dof else 0.0


def target_values(X: pd.DataFrame, y: Any, targets: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Each target's values per row (NaN where absent), from ``y`` when given, else from ``X``."""
    source = X if y is None else (y if isinstance(y, pd.DataFrame) else pd.DataFrame(y))
    if y is not None and len(source) != len(X):
        raise DataFormatError(f"y has {len(source)} rows, X has {len(X)}")
    out = {}
    for target in targets:
        column = TARGET_COLUMNS[target]
        if column in source.columns:
            out[target] = pd.to_numeric(source[column], errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan)
        else:
            out[target] = np.full(len(X), np.nan)
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
