"""Scaling-law fits and the compute-optimal solver.

Four published laws (constants and sources in ``data/scaling_laws.json``):

* ``hoffmann`` -- Hoffmann et al. 2022 approach 3, L(N, D) = E + A/N^alpha + B/D^beta. With
  C = 6 N D the loss-minimising split is N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b, where
  G = (alpha A / (beta B))^(1/(alpha+beta)), a = beta/(alpha+beta), b = alpha/(alpha+beta).
* ``epoch`` -- Besiroglu et al. 2024's refit of the same form, with standard errors.
* ``kaplan`` -- Kaplan et al. 2020: N_opt = 1.3e9 C_min^0.73 (PF-days, non-embedding N),
  D = C / (6 N), L(C_min) = (C_c / C_min)^0.050; L(N, D) of Table 2 for off-frontier points.
* ``deepseek`` -- DeepSeek LLM 2024: M_opt = 0.1715 C^0.5243 non-embedding FLOPs per token,
  D_opt = 5.8316 C^0.4757 and C = M D (no loss formula).

Beyond the compute optimum, :func:`optimum` can over-train (a fixed ``tokens_per_param``) or be
inference-aware (Sardana et al. 2023, "Beyond Chinchilla-Optimal": reach the compute-optimal
loss with the N, D that minimise training plus inference FLOPs, 6 N D + 2 N I, for I expected
inference tokens). Uncertainty: the Epoch fit's standard errors are propagated by seeded
Monte-Carlo (independent normal draws; see the data file for why that over-states it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from gemmperf._paths import data_dir
from gemmperf.training.errors import PlanError

UNCERTAINTY_SAMPLES = 4000
INTERVAL = (10.0, 90.0)  # percentiles reported (an 80 % interval, as Epoch reports)


@dataclass(frozen=True)
class ScalingLaw:
    """One published fit: its functional ``form``, constants and where they come from."""

    key: str
    form: str                      # "chinchilla", "kaplan" or "deepseek"
    display_name: str
    source: str
    params_counted: str            # what N means: total, non_embedding, or FLOPs/token (M)
    constants: Mapping[str, float]
    stderr: Mapping[str, float] = field(default_factory=dict)
    notes: str = ""

    @property
    def has_loss(self) -> bool:
        return self.form in ("chinchilla", "kaplan")

    def loss(self, n_params: Any, tokens: Any) -> Any:
        """Predicted loss for N parameters trained on D tokens (numpy-broadcasting)."""
        c = self.constants
        n, d = np.asarray(n_params, float), np.asarray(tokens, float)
        if self.form == "chinchilla":
            return c["E"] + c["A"] / n ** c["alpha"] + c["B"] / d ** c["beta"]
        if self.form == "kaplan":
            ratio = c["joint_alpha_N"] / c["joint_alpha_D"]
            return ((c["joint_N_c"] / n) ** ratio + c["joint_D_c"] / d) ** c["joint_alpha_D"]
        raise PlanError(f"the {self.key} law publishes no loss formula")


@dataclass(frozen=True)
class ScalingOptimum:
    """N and D for a compute budget under one law, with the loss and its uncertainty.

    ``n_params`` counts what the law counts (``params_counted``); for DeepSeek it is M/6, the
    parameter count whose 6N equals M, and ``flops_per_token`` holds M itself.
    ``training_flops`` can exceed ``flops`` in inference-aware mode (a smaller model trained
    longer to the same loss). Intervals are (low, high) at the 10th/90th percentiles.
    """

    law: str
    mode: str                      # "compute_optimal", "fixed_ratio" or "inference_aware"
    flops: float
    n_params: float
    tokens: float
    loss: float | None
    tokens_per_param: float
    flops_per_token: float
    training_flops: float
    inference_flops: float = 0.0
    n_params_interval: tuple[float, float] | None = None
    tokens_interval: tuple[float, float] | None = None
    loss_interval: tuple[float, float] | None = None
    uncertainty: str = ""
    params_counted: str = "total"
    source: str = ""


@dataclass(frozen=True)
class BatchGuidance:
    """Batch-size guidance for a run: each entry says where it comes from."""

    kaplan_critical_batch_tokens: float | None
    deepseek_batch_tokens: float | None
    deepseek_learning_rate: float | None
    warmup_schedule_tokens: tuple[tuple[float, float], ...]
    notes: tuple[str, ...] = ()


@lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    path = data_dir() / "scaling_laws.json"
    return json.loads(path.read_text())


def laws() -> dict[str, ScalingLaw]:
    """All bundled laws by key."""
    out = {}
    for key, doc in _document()["laws"].items():
        out[key] = ScalingLaw(key=key, form=doc["form"], display_name=doc["display_name"],
                              source=doc["source"], params_counted=doc["params_counted"],
                              constants=dict(doc["constants"]), stderr=dict(doc.get("stderr", {})),
                              notes=doc.get("notes", ""))
    return out


def get_law(name: str | ScalingLaw) -> ScalingLaw:
    """The law called ``name`` (hoffmann, epoch, kaplan, deepseek)."""
    if isinstance(name, ScalingLaw):
        return name
    table = laws()
    key = str(name).strip().lower()
    if key not in table:
        raise PlanError(f"unknown scaling law {name!r}; use one of {', '.join(table)}")
    return table[key]


def architecture_recipe() -> dict[str, Any]:
    """The width/depth recipe used to turn N_opt into layers and width (see the data file)."""
    return dict(_document()["architecture_recipe"])


def merrill_schedule() -> dict[str, Any]:
    return dict(_document()["critical_batch"]["merrill2025"])


# -- closed forms ------------------------------------------------------------------------------

def _chinchilla_opt(c: Mapping[str, Any], flops: Any) -> tuple[Any, Any]:
    alpha, beta = c["alpha"], c["beta"]
    g = (alpha * c["A"] / (beta * c["B"])) ** (1.0 / (alpha + beta))
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    n = g * (np.asarray(flops, float) / 6.0) ** a
    return n, (np.asarray(flops, float) / 6.0) ** b / g


def _kaplan_opt(c: Mapping[str, float], flops: float) -> tuple[float, float]:
    c_pf = flops / c["pf_day_flops"]
    n = c["N_opt_coeff"] * c_pf ** c["N_opt_exp"]
    return n, flops / (6.0 * n)


def _sample_constants(law: ScalingLaw, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Independent normal draws of each constant, keeping draws where all are positive."""
    names = list(law.constants)
    draws = {k: rng.normal(law.constants[k], law.stderr.get(k, 0.0), UNCERTAINTY_SAMPLES)
             for k in names}
    keep = np.all([draws[k] > 0 for k in names], axis=0)
    return {k: v[keep] for k, v in draws.items()}


def _interval(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values[np.isfinite(values)], INTERVAL)
    return float(lo), float(hi)


def optimum(flops: float, law: str | ScalingLaw = "epoch", *,
            tokens_per_param: float | None = None, inference_tokens: float | None = None,
            seed: int = 0) -> ScalingOptimum:
    """The model size and token count a compute budget ``flops`` buys under ``law``.

    Default: the loss-minimising (compute-optimal) split. ``tokens_per_param`` fixes D/N
    (over-training, e.g. 100-200 for inference-heavy models). ``inference_tokens`` solves
    Sardana et al.'s problem: match the compute-optimal loss while minimising training plus
    inference FLOPs.
    """
    law = get_law(law)
    if not (isinstance(flops, (int, float)) and math.isfinite(flops) and flops > 0):
        raise PlanError(f"compute budget must be a positive number of FLOPs, got {flops!r}")
    if tokens_per_param is not None and inference_tokens is not None:
        raise PlanError("give tokens_per_param (--tokens-per-param) or inference_tokens "
                        "(--inference-tokens), not both")
    # Checked before any law's closed form: the DeepSeek one takes a square root of it.
    if tokens_per_param is not None and not (math.isfinite(tokens_per_param)
                                             and tokens_per_param > 0):
        raise PlanError("tokens_per_param must be positive")
    c = law.constants
    common = {"law": law.key, "flops": float(flops), "params_counted": law.params_counted,
              "source": law.source}
    if law.form == "deepseek":
        if inference_tokens is not None:
            raise PlanError("the deepseek law has no loss formula, so no inference-aware optimum")
        m = c["M_coeff"] * flops ** c["M_exp"]
        d = c["D_coeff"] * flops ** c["D_exp"]
        mode = "compute_optimal"
        if tokens_per_param is not None:
            # Hold the parameter-equivalent ratio D / (M/6) fixed at the same budget C = M D.
            m = math.sqrt(6.0 * flops / tokens_per_param)
            d = flops / m
            mode = "fixed_ratio"
        return ScalingOptimum(mode=mode, n_params=m / 6.0, tokens=d, loss=None,
                              tokens_per_param=d / (m / 6.0), flops_per_token=m,
                              training_flops=m * d, **common)
    if law.form == "chinchilla":
        n_opt, d_opt = (float(x) for x in _chinchilla_opt(c, flops))
    else:
        n_opt, d_opt = _kaplan_opt(c, flops)
    if law.form == "kaplan":
        loss_opt = (c["C_c_min_pf_days"] / (flops / c["pf_day_flops"])) ** c["alpha_C_min"]
    else:
        loss_opt = float(law.loss(n_opt, d_opt))
    intervals: dict[str, Any] = {}
    if law.stderr:
        s = _sample_constants(law, np.random.default_rng(seed))
        n_s, d_s = _chinchilla_opt(s, flops)
        intervals = {"n_params_interval": _interval(n_s), "tokens_interval": _interval(d_s),
                     "loss_interval": _interval(
                         s["E"] + s["A"] / n_s ** s["alpha"] + s["B"] / d_s ** s["beta"]),
                     "uncertainty": f"Monte-Carlo over the published standard errors, "
                                    f"{UNCERTAINTY_SAMPLES} independent normal draws (seed "
                                    f"{seed}); 10th-90th percentiles"}
    if tokens_per_param is not None:
        n = math.sqrt(flops / (6.0 * tokens_per_param))
        d = tokens_per_param * n
        return ScalingOptimum(mode="fixed_ratio", n_params=n, tokens=d,
                              loss=float(law.loss(n, d)), tokens_per_param=tokens_per_param,
                              flops_per_token=6.0 * n, training_flops=6.0 * n * d, **common)
    if inference_tokens is not None:
        # The iso-loss target is the minimum of the law's own L(N, D) on C = 6ND. For Kaplan
        # that differs from the C_min frontier above (which assumes training at the critical
        # batch and stopping early), so it is found numerically.
        if law.form == "kaplan":
            n_opt = _argmin_loss_on_budget(law, flops)
            d_opt = flops / (6.0 * n_opt)
        return _inference_aware(law, flops, float(law.loss(n_opt, d_opt)), n_opt,
                                inference_tokens, common)
    return ScalingOptimum(mode="compute_optimal", n_params=n_opt, tokens=d_opt, loss=loss_opt,
                          tokens_per_param=d_opt / n_opt, flops_per_token=6.0 * n_opt,
                          training_flops=flops, **intervals, **common)


def _argmin_loss_on_budget(law: ScalingLaw, flops: float) -> float:
    """N minimising L(N, C / 6N) (log grid, refined twice)."""
    lo, hi = math.log(1e6), math.log(flops / 6.0)
    for _ in range(3):
        n = np.exp(np.linspace(lo, hi, 801))
        i = int(np.argmin(law.loss(n, flops / (6.0 * n))))
        step = (hi - lo) / 800
        lo, hi = math.log(n[i]) - 2 * step, math.log(n[i]) + 2 * step
    return float(n[i])


def _tokens_for_loss(law: ScalingLaw, n: np.ndarray, target: float) -> np.ndarray:
    """D such that L(N, D) = target (inf where N alone cannot reach it)."""
    c = law.constants
    with np.errstate(divide="ignore", invalid="ignore"):
        if law.form == "chinchilla":
            gap = target - c["E"] - c["A"] / n ** c["alpha"]
            d = (c["B"] / gap) ** (1.0 / c["beta"])
        else:
            ratio = c["joint_alpha_N"] / c["joint_alpha_D"]
            gap = target ** (1.0 / c["joint_alpha_D"]) - (c["joint_N_c"] / n) ** ratio
            d = c["joint_D_c"] / gap
    return np.where(gap > 0, d, np.inf)


def _inference_aware(law: ScalingLaw, flops: float, target: float, n_opt: float,
                     inference_tokens: float, common: dict[str, Any]) -> ScalingOptimum:
    if inference_tokens < 0:
        raise PlanError("inference_tokens must be non-negative")
    # Total cost 6 N D(N) + 2 N I along the iso-loss curve; its minimum lies at N <= N_opt
    # (inference only rewards smaller models). Dense log grid, then a finer one around the best.
    lo, hi = math.log(n_opt) - 8.0, math.log(n_opt) + 0.5
    for _ in range(3):
        n = np.exp(np.linspace(lo, hi, 801))
        d = _tokens_for_loss(law, n, target)
        cost = 6.0 * n * d + 2.0 * n * inference_tokens
        i = int(np.argmin(cost))
        step = (hi - lo) / 800
        lo, hi = math.log(n[i]) - 2 * step, math.log(n[i]) + 2 * step
    n_best, d_best = float(n[i]), float(d[i])
    return ScalingOptimum(mode="inference_aware", n_params=n_best, tokens=d_best, loss=target,
                          tokens_per_param=d_best / n_best, flops_per_token=6.0 * n_best,
                          training_flops=6.0 * n_best * d_best,
                          inference_flops=2.0 * n_best * inference_tokens, **common)


def batch_guidance(flops: float, *, loss: float | None = None, law: str = "kaplan"
                   ) -> BatchGuidance:
    """Critical/optimal batch size for a run of ``flops`` (and predicted ``loss`` if known).

    Kaplan's B_crit(L) = B* / L^(1/alpha_B) uses the loss in nats on Kaplan's data, so it is only
    indicative for other laws' losses; DeepSeek's B_opt(C) needs only compute; the Merrill et al.
    2025 warmup schedule (in tokens) is the measured OLMo recipe.
    """
    k = get_law("kaplan").constants
    dsk = get_law("deepseek").constants
    notes = []
    b_crit = None
    if loss is not None and loss > 0:
        b_crit = k["B_star_tokens"] / loss ** (1.0 / k["alpha_B"])
        if law != "kaplan":
            notes.append(f"Kaplan B_crit evaluated at the {law} loss (different dataset): "
                         "indicative only")
    m = merrill_schedule()
    schedule = tuple((float(start), float(seqs) * m["seq_len"])
                     for start, seqs in m["warmup_schedule_sequences"])
    notes.append(f"batch warmup (Merrill et al. 2025): {m['lr_rule']}")
    return BatchGuidance(
        kaplan_critical_batch_tokens=b_crit,
        deepseek_batch_tokens=dsk["B_coeff"] * flops ** dsk["B_exp"],
        deepseek_learning_rate=dsk["lr_coeff"] * flops ** dsk["lr_exp"],
        warmup_schedule_tokens=schedule, notes=tuple(notes))
