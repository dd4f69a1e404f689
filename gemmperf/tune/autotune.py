"""Model-guided autotuning: measure the most promising configs, adapt the model, repeat.

The loop (:func:`autotune`): rank the space's valid configs with the predictor (the priors: its
log predictions of the objective on the target GPU and on reference GPUs that it saw this
family measured on), measure the best-looking one through a :class:`~gemmperf.tune.measure.
Measurer` (the collector on a real GPU, or a replayed recording), update the few-shot correction
(:mod:`gemmperf.tune.surrogate`), re-rank, and stop when ``budget`` measurements are spent.
Random search and Kernel Tuner-style greedy local search run through the same loop as baselines.
Every measurement is kept in the result (and, for the collector, appended to a records file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gemmperf.errors import GemmperfError, InvalidConfigError
from gemmperf.hardware.specs import GpuSpec, get_gpu
from gemmperf.problem import GemmProblem
from gemmperf.spaces.space import Space
from gemmperf.tune.measure import Measurer
from gemmperf.tune.models import (
    candidate_frame,
    model_name,
    predict_frame,
    reference_gpus,
    trained_on,
)
from gemmperf.tune.strategies import (
    STRATEGIES,
    GreedyLocalSearch,
    ModelGuided,
    RandomSearch,
    Strategy,
)
from gemmperf.tune.surrogate import one_hot

OBJECTIVES = ("time", "energy", "edp")
PRIOR_MODES = ("target+references", "references", "target")


def objective_values(frame: pd.DataFrame, objective: str) -> np.ndarray:
    """Objective per row from ``runtime_s`` / ``energy_j`` columns (NaN where unknown)."""
    if objective not in OBJECTIVES:
        raise InvalidConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, "
                                 f"got {objective!r}")
    runtime = pd.to_numeric(frame["runtime_s"], errors="coerce").to_numpy(dtype=float)
    if objective == "time":
        return runtime
    energy = pd.to_numeric(frame["energy_j"], errors="coerce").to_numpy(dtype=float)
    return energy if objective == "energy" else energy * runtime


def prior_matrix(model: Any, candidates: pd.DataFrame, names: tuple[str, ...],
                 problem: GemmProblem, gpu: GpuSpec, gpus: list[str],
                 objective: str) -> np.ndarray:
    """Log predicted objective of every candidate on each GPU of ``gpus`` (n x len(gpus))."""
    columns = []
    for key in gpus:
        spec = get_gpu(key)
        pred = predict_frame(model, candidate_frame(candidates, names, problem, spec), spec)
        values = objective_values(pred, objective)
        if not np.isfinite(values).all() or (values <= 0).any():
            raise GemmperfError(f"{model_name(model)} gives no usable {objective} prediction "
                                f"on {key}")
        columns.append(np.log(values))
    return np.column_stack(columns)


@dataclass
class AutotuneResult:
    """Every measurement of one autotuning run and the best configuration found."""

    gpu: str
    problem: GemmProblem
    space: str
    strategy: str
    objective: str
    budget: int
    seed: int
    model: str | None
    reference_gpus: list[str]
    history: pd.DataFrame
    param_names: tuple[str, ...]
    notes: list[str] = field(default_factory=list)

    @property
    def best(self) -> pd.Series | None:
        """The measured config with the lowest objective (None when every one failed)."""
        ok = self.history[np.isfinite(self.history["objective"].to_numpy(dtype=float))]
        if ok.empty:
            return None
        return ok.loc[ok["objective"].idxmin()]

    def best_so_far(self) -> np.ndarray:
        """Lowest objective after each measurement (inf until one succeeds)."""
        values = self.history["objective"].to_numpy(dtype=float)
        return np.minimum.accumulate(np.where(np.isfinite(values), values, np.inf))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: every measured config (parameters, times) and the best."""
        keep = ["step", "config_id", *self.param_names, "status", "reason", "runtime_s",
                "power_w", "energy_j", "objective", "predicted_objective", "predicted_sd_log",
                "source"]
        keep = [c for c in dict.fromkeys(keep) if c in self.history]
        measured = self.history[keep].to_dict(orient="records")
        best = self.best
        return {
            "gpu": self.gpu,
            "problem": {k: getattr(self.problem, k) for k in ("m", "n", "k", "batch", "dtype",
                                                               "layout")},
            "space": self.space, "strategy": self.strategy, "objective": self.objective,
            "budget": self.budget, "measurements": len(self.history), "seed": self.seed,
            "model": self.model, "reference_gpus": self.reference_gpus,
            "measured": measured,
            "best": None if best is None else {k: best[k] for k in keep if k in best.index},
            "notes": self.notes,
        }


def make_strategy(name: str, candidates: pd.DataFrame, names: tuple[str, ...],
                  rng: np.random.Generator, priors: np.ndarray | None = None) -> Strategy:
    """A strategy instance over ``candidates`` (``priors`` needed for ``model``)."""
    if name == "random":
        return RandomSearch(len(candidates), rng)
    if name == "greedy":
        return GreedyLocalSearch(candidates, names, rng)
    if name == "model":
        if priors is None:
            raise InvalidConfigError("the model strategy needs predictions (priors)")
        effects, labels = one_hot(candidates, names)
        return ModelGuided(priors, effects, rng, labels=labels)
    raise InvalidConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")


def autotune(space: Space, problem: GemmProblem, gpu: str | GpuSpec, measurer: Measurer, *,
             budget: int, strategy: str = "model", model: Any = None, objective: str = "time",
             seed: int = 0, references: list[str] | None = None,
             prior_mode: str = "target+references", batch: int = 1,
             priors: np.ndarray | None = None) -> AutotuneResult:
    """Spend ``budget`` measurements finding the config of ``space`` with the lowest objective.

    ``model`` predicts the priors of the ``model`` strategy (unless ``priors`` are given,
    n_valid x J log objective); ``references`` are the reference GPUs (default: those the model
    saw this family measured on, :func:`gemmperf.tune.models.reference_gpus`). ``batch``
    configs are proposed per round.
    """
    spec = get_gpu(gpu)
    if budget < 1:
        raise InvalidConfigError(f"budget must be at least 1, got {budget}")
    if batch < 1:
        raise InvalidConfigError(f"batch must be at least 1, got {batch}")
    if prior_mode not in PRIOR_MODES:
        raise InvalidConfigError(f"prior mode must be one of {', '.join(PRIOR_MODES)}")
    objective_values(pd.DataFrame({"runtime_s": [], "energy_j": []}), objective)
    candidates = space.candidates
    if candidates.empty:
        raise GemmperfError(f"{space.name} has no valid configuration to tune")
    names = space.param_names
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    refs: list[str] = []
    if strategy == "model" and priors is None:
        if model is None:
            raise InvalidConfigError("the model strategy needs a model")
        if references is not None:
            refs = list(references)
        elif trained_on(model, space.family, spec.key):
            refs = []  # the model knows this GPU: its own predictions are the prior
            notes.append(f"the model was trained on {space.family} measurements of {spec.key}: "
                         "its own predictions are the prior")
        else:
            refs = reference_gpus(model, space.family, spec.key)
        gpus = ([spec.key] if prior_mode != "references" or not refs else []) + \
            (refs if prior_mode != "target" else [])
        if prior_mode == "references" and not refs:
            notes.append("no reference GPUs: the prior is the target prediction alone")
        priors = prior_matrix(model, candidates, names, problem, spec, gpus, objective)
    search = make_strategy(strategy, candidates, names, rng, priors)
    ids = candidates.index.to_numpy()
    rows: list[dict[str, Any]] = []
    while len(rows) < budget:
        picks = search.propose(min(batch, budget - len(rows)))
        if not picks:
            notes.append(f"the space ran out after {len(rows)} configs")
            break
        predicted = [search.predicted(p) if isinstance(search, ModelGuided) else (math.nan,) * 2
                     for p in picks]
        result = measurer.measure(space, [ids[p] for p in picks])
        values = objective_values(result, objective)
        if objective != "time" and result["status"].eq("ok").any() and \
                not np.isfinite(values[result["status"].eq("ok").to_numpy()]).any():
            raise GemmperfError(f"the measurements carry no energy: objective {objective} needs "
                                "power (a replay file with power_w/energy_j, or NVML)")
        for p, (config_id, row), value, (mean, sd) in zip(
                picks, result.iterrows(), values, predicted, strict=True):
            ok = row["status"] == "ok" and np.isfinite(value) and value > 0
            search.observe(p, math.log(value) if ok else math.inf)
            entry = {"step": len(rows) + 1, "config_id": config_id,
                     **{n: candidates.at[config_id, n] for n in names},
                     **{c: row[c] for c in ("status", "reason", "runtime_s", "power_w",
                                            "energy_j", "source")},
                     "objective": value if ok else math.inf,
                     "predicted_objective": math.exp(mean) if math.isfinite(mean) else math.nan,
                     "predicted_sd_log": sd, "params": candidates.at[config_id, "params"]}
            rows.append(entry)
    history = pd.DataFrame(rows)
    return AutotuneResult(
        gpu=spec.key, problem=problem, space=space.name, strategy=strategy,
        objective=objective, budget=budget, seed=seed,
        model=model_name(model) if model is not None else None, reference_gpus=refs,
        history=history, param_names=names, notes=notes)
