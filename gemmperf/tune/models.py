"""The model the recommender ranks with, and the records-style frame it is asked about.

Any object with ``predict(frame) -> DataFrame`` giving ``runtime_s`` (and optionally
``runtime_s_lo``/``runtime_s_hi``, ``power_w``, ``energy_j`` and their bounds) is a model: the
trained :class:`gemmperf.predict.forest.Predictor`, a test stand-in, or :class:`RooflineModel`, the
fallback when no trained model is available (the tile-aware roofline estimate as runtime).

Power: where the model predicts none, :func:`utilization_power` fills it from the GPU's TDP with
the DVFS model of :mod:`gemmperf.tune.power`, and ``power_source`` says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from gemmperf.errors import GemmperfError, InvalidProblemError
from gemmperf.hardware.specs import GpuSpec
from gemmperf.problem import GemmProblem
from gemmperf.spaces.space import COMMON_COLUMNS, params_json_column

#: Prediction columns the recommender carries (bounds are NaN when a model gives none).
PREDICTION_COLUMNS = ("runtime_s", "runtime_s_lo", "runtime_s_hi", "power_w", "power_w_lo",
                      "power_w_hi", "energy_j", "energy_j_lo", "energy_j_hi")
#: Record source whose rows taught a model a family (for picking reference GPUs).
FAMILY_SOURCES = {"clblast_xgemm": ("kernel_tuner",), "tiled": ("sweep",),
                  "blocked": ("sweep",), "cutlass": ("sweep", "cutlass_profiler"),
                  "cublas": ("sweep",)}


@runtime_checkable
class Model(Protocol):
    """What the recommender needs from a predictor."""

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per row of a records-style frame: ``runtime_s`` and optional bounds/power/energy."""


class RooflineModel:
    """Fallback model: runtime = the tile-aware roofline estimate (no interval, no power).

    It ranks configurations by wave quantisation and tile traffic only, so it cannot tell
    tunables it does not model (vector widths, shared-memory staging) apart.
    """

    name = "roofline (no trained model)"

    def __init__(self, reason: str | None = None) -> None:
        if reason:
            self.name = f"roofline ({reason})"

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        from gemmperf.roofline_frame import roofline_frame

        est = roofline_frame(X)
        # An infinite estimate is a footprint that cannot launch: no time (NaN ranks last), not
        # the lower bound, which would rank it first.
        runtime = est["estimate_s"].where(est["estimate_s"] < np.inf)
        return pd.DataFrame({"runtime_s": runtime.to_numpy(dtype=float)}, index=X.index)


def model_for_family(model: Any, family: str) -> Any:
    """``model``, or the roofline where ``model`` is a trained predictor that has no runtime of
    ``family``: its trees then give every config of the family one time (measured: every tiled
    config of a 4096^3 f32 GEMM on an H100 at 2.874 ms with a +-0.6 % interval, the 8x8 tile
    first), an order that carries no information, while the roofline still ranks by waves and
    tile traffic."""
    families = getattr(model, "families_", None)
    if not isinstance(families, dict) or family in families.get("runtime", ()):
        return model
    return RooflineModel(reason=f"the model has no {family} measurements")


def model_name(model: Any) -> str:
    """A short description of ``model`` for reports."""
    name = getattr(model, "name", None)
    if isinstance(name, str):
        return name
    trained = getattr(model, "training_data_", None)
    if trained:
        gpus = sorted({str(e.get("gpu")) for e in trained})
        return f"{type(model).__name__} trained on {', '.join(gpus)}"
    return type(model).__name__


def analogy_gpus(model: Any, gpu: str, family: str, math_key: str | None = None) -> list[str]:
    """The GPUs ``model`` predicts ``family`` on ``gpu`` by analogy with, for rows of
    ``math_key`` where given (a Predictor's
    :meth:`~gemmperf.predict.forest.Predictor.analogues`; none for other models)."""
    analogues = getattr(model, "analogues", None)
    return analogues(gpu, family, math_key=math_key) if callable(analogues) else []


def load_default_model(path: str | None = None) -> Any:
    """The model bundle at ``path``, or the shipped default; the roofline when there is none.

    Loading a given ``path`` that fails is an error; a missing default only warns.
    """
    try:
        from gemmperf.predict.persist import load_model
    except ImportError:
        load_model = None
    if path is not None:
        if load_model is None:
            raise GemmperfError("this gemmperf has no model loader (gemmperf.predict.persist)")
        return load_model(path)
    if load_model is not None:
        try:
            return load_model()
        except (GemmperfError, OSError) as exc:
            warnings.warn(f"no default model ({exc}); ranking by the roofline estimate",
                          stacklevel=2)
    else:
        warnings.warn("no trained model available; ranking by the roofline estimate",
                      stacklevel=2)
    return RooflineModel()


def _family_rows(model: Any, family: str) -> dict[str, int]:
    """Runtime rows per GPU the model trained on from this family's kind of source."""
    sources = FAMILY_SOURCES.get(family)
    rows: dict[str, int] = {}
    for entry in getattr(model, "training_data_", None) or []:
        gpu, src = entry.get("gpu"), entry.get("source")
        if not isinstance(gpu, str) or (sources is not None and src not in sources):
            continue
        rows[gpu] = rows.get(gpu, 0) + int(entry.get("runtime", entry.get("rows", 0)) or 0)
    return rows


def trained_on(model: Any, family: str, gpu: str) -> bool:
    """Whether the model saw this family measured on ``gpu`` (its own predictions are then the
    best prior the autotuner can have)."""
    return _family_rows(model, family).get(gpu, 0) > 0


def reference_gpus(model: Any, family: str, target: str, limit: int = 4) -> list[str]:
    """GPUs the model saw this family measured on (from ``training_data_``), target excluded.

    These are the "source" GPUs of few-shot adaptation: the autotuner learns how the target
    GPU's times relate to the model's predictions for them.
    """
    rows = {g: r for g, r in _family_rows(model, family).items() if g != target}
    ranked = sorted((g for g, r in rows.items() if r > 0), key=lambda g: (-rows[g], g))
    return ranked[:limit]


def candidate_frame(candidates: pd.DataFrame, param_names: Sequence[str],
                    problem: GemmProblem, gpu: GpuSpec) -> pd.DataFrame:
    """The records-style frame a model predicts on: problem, GPU and config columns.

    Tunables travel as columns of their own name (the features read them there first) and only
    the non-numeric ones stay in the ``params`` JSON, so the model does not re-parse thousands of
    JSON texts it already has as numbers.
    """
    n = len(candidates)
    out: dict[str, Any] = {}   # columns, assembled into a frame once (per-column inserts cost)
    for name in ("m", "n", "k", "batch", "dtype", "acc_dtype", "out_dtype", "layout"):
        value = getattr(problem, name)
        out[name] = np.full(n, value, dtype=None if isinstance(value, int) else object)
    out["gpu"] = np.full(n, gpu.key, dtype=object)
    out["family"] = candidates["family"].to_numpy(dtype=object)
    if "kernel_name" in candidates:
        out["kernel_name"] = candidates["kernel_name"].to_numpy(dtype=object)
    for name in COMMON_COLUMNS:
        if name in candidates:
            out[name] = pd.to_numeric(candidates[name], errors="coerce").to_numpy(
                dtype=float, na_value=np.nan)
    other = []
    for name in param_names:
        if name in COMMON_COLUMNS or name not in candidates:
            continue
        if pd.api.types.is_numeric_dtype(candidates[name].dtype):
            out[name] = candidates[name].to_numpy()
        else:
            other.append(name)
    out["params"] = np.array(params_json_column(candidates, other), dtype=object)
    return pd.DataFrame(out, index=candidates.index)


def predict_frame(model: Any, frame: pd.DataFrame, gpu: GpuSpec) -> pd.DataFrame:
    """Run ``model`` on ``frame``: every :data:`PREDICTION_COLUMNS` (energy = power x runtime),
    ``power_source`` and the roofline columns (``bound``, ``lower_bound_s``, tile-aware
    ``compute_time_s`` and ``memory_time_s``, ``roofline_fraction``)."""
    from gemmperf.roofline_frame import roofline_frame
    from gemmperf.tune.power import utilization_power

    if frame.empty:
        raise InvalidProblemError("no configurations to predict")
    if getattr(model, "forests_", None) is not None:   # a Predictor: skip its energy ensemble
        pred = model.predict(frame, targets=("runtime", "power"))
    else:
        pred = model.predict(frame)
    if "runtime_s" not in pred:
        raise GemmperfError(f"{model_name(model)} predicts no runtime_s")
    out = pd.DataFrame(index=frame.index)
    for name in PREDICTION_COLUMNS:
        out[name] = pd.to_numeric(pred[name], errors="coerce").to_numpy(dtype=float) \
            if name in pred else np.nan
    roof = roofline_frame(frame, gpu)
    out["bound"] = roof["bound"].astype(str).to_numpy()
    out["lower_bound_s"] = roof["lower_bound_s"].to_numpy(dtype=float)
    out["compute_time_s"] = roof["tile_compute_time_s"].to_numpy(dtype=float)
    out["memory_time_s"] = roof["tile_memory_time_s"].to_numpy(dtype=float)
    out["roofline_fraction"] = out["lower_bound_s"] / out["runtime_s"]
    if out["power_w"].isna().all():
        power = utilization_power(gpu, out["roofline_fraction"].to_numpy(dtype=float))
        out["power_w"] = power
        out["power_source"] = "utilization model (no power prediction)"
    else:
        out["power_source"] = "model"
    # Energy per call = power x runtime, so the three columns agree for every config (a model's
    # separate energy ensemble, trained on other kernels, is not consulted).
    for suffix in ("", "_lo", "_hi"):
        power = out["power_w" + suffix].fillna(out["power_w"])
        out["energy_j" + suffix] = out["runtime_s" + suffix] * power
    return out
