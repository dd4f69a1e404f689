"""Recommend kernel configurations: rank a family's valid configs for a problem on a GPU.

:func:`recommend` builds the space (:mod:`gemmperf.spaces`), asks the model for every valid
config's runtime, power and energy with their intervals (:mod:`gemmperf.tune.models`), and
returns the best ``top`` by the objective:

- ``time``: predicted runtime;
- ``energy``: predicted energy per call, power x runtime (power from the model, or from the
  DVFS/utilisation power model of :mod:`gemmperf.tune.power` when the model predicts none:
  ``power_source`` says);
- ``edp``: energy-delay product, energy x runtime (Horowitz et al., "Low-power digital design",
  1994), which weighs a slower, thriftier config against a faster one.

Each row carries the config's own tunables (e.g. MWG, NWG, ... for Xgemm), the roofline bound and
how close the prediction is to it, and the predicted speedup over the family's default config
(CLBlast's NVIDIA default for Xgemm; ``data/spaces``). Measured times in a ``--space`` file are
ignored: ranking is by prediction only.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gemmperf.errors import InvalidConfigError, InvalidProblemError
from gemmperf.hardware.specs import GpuSpec, get_gpu
from gemmperf.problem import GemmProblem
from gemmperf.spaces import Space, file_space, get_space
from gemmperf.tune.autotune import OBJECTIVES, objective_values
from gemmperf.tune.models import (
    candidate_frame,
    load_default_model,
    model_for_family,
    model_name,
    predict_frame,
)

__all__ = ["OBJECTIVES", "rank_space", "recommend", "resolve_space"]

#: Columns of a recommendation, after the tunables (those depend on the space).
RESULT_COLUMNS = (
    "runtime_s", "runtime_s_lo", "runtime_s_hi", "power_w", "energy_j", "energy_j_lo",
    "energy_j_hi", "edp_js", "objective_value", "bound", "roofline_fraction",
    "compute_time_s", "memory_time_s", "speedup_vs_default", "objective_gain_vs_default",
    "power_source",
)


def resolve_space(problem: GemmProblem, gpu: GpuSpec, *, family: str | None = None,
                  space: Space | str | Path | None = None) -> Space:
    """The space to rank: a Space, the configs of a file, or a family's space."""
    if isinstance(space, Space):
        return space
    if space is not None:
        return file_space(space, problem=problem, gpu=gpu)[0]
    if family is None:
        raise InvalidConfigError("give a kernel family (--family) or a space file (--space)")
    return get_space(family, problem, gpu)


def rank_space(space: Space, problem: GemmProblem, gpu: str | GpuSpec, model: Any, *,
               objective: str = "time", include_default: bool = True) -> pd.DataFrame:
    """Every valid config of ``space`` with predictions, sorted by ``objective`` (best first).

    The index is the config id in the space; ``rank`` starts at 1.
    """
    spec = get_gpu(gpu)
    objective_values(pd.DataFrame({"runtime_s": [], "energy_j": []}), objective)  # validates
    candidates = space.candidates
    if candidates.empty:
        raise InvalidConfigError(
            f"{space.name} has no valid configuration for this problem on {spec.key} "
            f"({len(space.pruned)} pruned; see --explain)")
    frame = candidate_frame(candidates, space.param_names, problem, spec)
    pred = predict_frame(model, frame, spec)
    pred["edp_js"] = pred["energy_j"] * pred["runtime_s"]
    pred["objective_value"] = objective_values(pred, objective)
    default_id = space.default_id if include_default else None
    if default_id is not None:
        base_time = pred.at[default_id, "runtime_s"]
        base_obj = pred.at[default_id, "objective_value"]
        pred["speedup_vs_default"] = base_time / pred["runtime_s"]
        pred["objective_gain_vs_default"] = base_obj / pred["objective_value"]
    else:
        pred["speedup_vs_default"] = np.nan
        pred["objective_gain_vs_default"] = np.nan
    tunables = [n for n in space.param_names if n in candidates]
    extra = [c for c in ("family", "kernel_name", "tile_m", "tile_n", "tile_k",
                         "threads_per_block", "stages", "split_k") if c in candidates
             and c not in tunables]
    table = pd.concat([candidates[[*extra, *tunables, "params"]],
                       pred[[c for c in RESULT_COLUMNS if c in pred]]], axis=1)
    # Stable sort: equal predictions keep the space's order (reproducible output).
    order = np.argsort(table["objective_value"].to_numpy(dtype=float), kind="stable")
    table = table.iloc[order]
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    table.insert(1, "is_default", table.index == default_id)
    return table


def recommend(problem: GemmProblem, gpu: str | GpuSpec, *, family: str | None = None,
              space: Space | str | Path | None = None, model: Any = None,
              objective: str = "time", top: int | None = 10) -> pd.DataFrame:
    """The ``top`` configs of ``family`` (or of the configs ``space`` lists) for ``problem`` on
    ``gpu``, best first by ``objective`` (time, energy or edp).

    ``model`` is any object with ``predict(frame)``; default: the shipped model bundle, else
    the roofline. ``top=None`` returns every valid config. ``result.attrs`` holds the space
    summary, the model's name and the default config.
    """
    if not isinstance(problem, GemmProblem):
        raise InvalidProblemError(f"problem is a GemmProblem, got {type(problem).__name__}")
    if top is not None and (isinstance(top, bool) or not isinstance(top, numbers.Integral)
                            or top < 1):
        raise InvalidConfigError(f"top must be an integer >= 1 (or None for all), got {top!r}")
    if model is not None and not callable(getattr(model, "predict", None)):
        raise InvalidConfigError(f"model needs a predict(frame) method; "
                                 f"{type(model).__name__} has none")
    spec = get_gpu(gpu)
    chosen = resolve_space(problem, spec, family=family, space=space)
    model = model_for_family(load_default_model() if model is None else model, chosen.family)
    table = rank_space(chosen, problem, spec, model, objective=objective)
    default_row = table[table["is_default"]]
    result = table if top is None else table.head(top)
    candidates = chosen.candidates
    result.attrs.update({
        "gpu": spec.key, "objective": objective, "model": model_name(model),
        "tunables": [n for n in chosen.param_names
                     if n in candidates and candidates[n].nunique(dropna=False) > 1],
        "space": chosen.summary(),
        "default": None if default_row.empty else {
            "config_id": _plain(default_row.index[0]),
            "rank": int(default_row["rank"].iloc[0]),
            "runtime_s": float(default_row["runtime_s"].iloc[0]),
            "source": chosen.default_source},
    })
    return result


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
