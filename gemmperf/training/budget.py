"""Compute-optimal budgets: how big a model and how many tokens a GPU budget buys.

:func:`compute_optimal` turns a budget (FLOPs, GPU-hours, energy or dollars) into FLOPs with the
*planner's achieved throughput* for the GPU -- not peak x a guessed MFU -- solves the scaling law
for N_opt and D_opt, builds a concrete decoder near N_opt (Llama 3 recipe: SwiGLU, GQA, 128-wide
heads, width/depth 64-160) and plans its training run. Achieved throughput depends on the model,
which depends on the FLOPs, so the conversion iterates to a fixed point (a few rounds).

The law's own FLOP convention is kept: C = 6 N D with N as the law counts it (total parameters
for hoffmann/epoch, non-embedding for kaplan; for deepseek, M = non-embedding FLOPs per token
with full attention, C = M D), so the GPU budget is converted as
C = (GPU-seconds) x (tokens/s per GPU of the plan) x (FLOPs per token in the law's convention).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from gemmperf.hardware.specs import GpuSpec, get_gpu
from gemmperf.problem import canonical_dtype, peak_key
from gemmperf.training.arch import TransformerArch
from gemmperf.training.config import arch_from_config
from gemmperf.training.errors import DoesNotFitError, PlanError
from gemmperf.training.gemms import flops_per_token
from gemmperf.training.planner import TrainingPlan, plan_training
from gemmperf.training.scaling import (
    BatchGuidance,
    ScalingLaw,
    ScalingOptimum,
    architecture_recipe,
    batch_guidance,
    get_law,
    optimum,
)
from gemmperf.training.values import as_int, is_real

TARGET_DAYS = 30.0      # default wall-clock when the cluster size is not given
MAX_ITERATIONS = 8
MAX_WIDTH = 65536       # widest hidden size arch_for_size tries (bounds the sizes it can build)


@dataclass(frozen=True)
class ComputeOptimalPlan:
    """A budget's compute-optimal model, a concrete architecture for it and its training plan."""

    law: str
    budget: dict[str, float]
    flops: float
    optimum: ScalingOptimum
    arch: TransformerArch
    arch_params: float
    tokens: float
    loss: float | None
    plan: TrainingPlan | None
    batch: BatchGuidance
    achieved_law_flops_per_gpu_s: float | None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        a = self.arch
        return {
            "law": self.law, "budget": self.budget, "flops": self.flops,
            "optimum": asdict(self.optimum),
            "architecture": {"name": a.name, "layers": a.num_layers, "hidden_size": a.hidden_size,
                             "heads": a.num_heads, "kv_heads": a.num_kv_heads,
                             "intermediate_size": a.intermediate_size, "vocab_size": a.vocab_size,
                             "params": self.arch_params, "tie_word_embeddings":
                                 a.tie_word_embeddings},
            "tokens": self.tokens, "loss": self.loss,
            "plan": self.plan.to_dict() if self.plan else None,
            "batch": asdict(self.batch),
            "achieved_law_flops_per_gpu_s": self.achieved_law_flops_per_gpu_s,
            "notes": list(self.notes),
        }


def law_count(arch: TransformerArch, law: ScalingLaw, seq_len: int) -> float:
    """The architecture's size as ``law`` counts it (N, or M FLOPs/token for deepseek)."""
    p = arch.params
    if law.params_counted == "total":
        return float(p.active)
    if law.params_counted == "non_embedding":
        return float(p.active_non_embedding)
    # DeepSeek's M: non-embedding training FLOPs per token with full (non-causal) attention.
    per_token = flops_per_token(arch, seq_len=seq_len, causal=False, flash_attention=False)
    return per_token.model - per_token.by_kind.get("lm_head", 0.0)


def _law_flops_per_token(arch: TransformerArch, law: ScalingLaw, seq_len: int) -> float:
    count = law_count(arch, law, seq_len)
    return count if law.params_counted == "non_embedding_flops_per_token" else 6.0 * count


def arch_for_size(target: float, law: str | ScalingLaw = "epoch", *, seq_len: int = 4096
                  ) -> TransformerArch:
    """A Llama-3-style decoder whose size (as ``law`` counts it) is nearest ``target``.

    Widths step by ``width_round_to`` with whole groups of key/value heads; the depth is the
    layer count that best matches ``target`` with width/depth inside the recipe's range.
    """
    law = get_law(law)
    r = architecture_recipe()
    head_dim, step = r["head_dim"], r["width_round_to"]
    scored: list[tuple[float, int, int]] = []
    too_deep = False  # at the widest width: the target needs more layers than the recipe allows
    for width in range(step, MAX_WIDTH + 1, step):
        heads = width // head_dim
        kv = math.gcd(heads, r["kv_heads"])
        ffn = int(round(r["ffn_multiplier"] * width / r["ffn_round_to"]) * r["ffn_round_to"])
        # Per-layer size and fixed part (analytic, as law_count would count them).
        layer_params = width * (heads + 2 * kv) * head_dim + heads * head_dim * width \
            + 3 * width * ffn + 2 * width
        tie = target < r.get("tie_below_params", 0)
        embed = r["vocab_size"] * width * (1 if tie else 2) + width
        if law.params_counted == "total":
            per_layer, base = layer_params, embed
        elif law.params_counted == "non_embedding":
            per_layer, base = layer_params, width
        else:  # DeepSeek M: 6 x matmul weights + 12 x seq x attention width, per layer
            per_layer, base = 6 * (layer_params - 2 * width) + 12 * seq_len * heads * head_dim, 0
        layers = round((target - base) / per_layer)
        too_deep = layers >= 1 and width / layers < r["aspect_ratio_min"]
        if layers < 1 or too_deep or width / layers > r["aspect_ratio_max"]:
            continue
        size = base + layers * per_layer
        score = abs(math.log(size / target)) \
            + 0.02 * abs(math.log(width / layers / r["aspect_ratio_target"]))
        scored.append((score, width, layers))
    if not scored and too_deep:
        # The width range ends, so the largest size is bounded: say so rather than "too small".
        deepest = int(MAX_WIDTH // r["aspect_ratio_min"])
        raise PlanError(f"no {law.key}-size {target:.3g} decoder fits the width/depth recipe "
                        f"(the budget is too large: the recipe's largest decoder is {deepest} "
                        f"layers x {MAX_WIDTH} wide)")
    if not scored:
        raise PlanError(f"no {law.key}-size {target:.3g} decoder fits the width/depth recipe "
                        "(the budget is too small for a 128k-vocabulary model)")
    _, width, layers = min(scored)
    heads = width // head_dim
    ffn = int(round(r["ffn_multiplier"] * width / r["ffn_round_to"]) * r["ffn_round_to"])
    return _recipe_arch(width, layers, heads, math.gcd(heads, r["kv_heads"]), ffn, r,
                        tie=target < r.get("tie_below_params", 0))


def _recipe_arch(width: int, layers: int, heads: int, kv: int, ffn: int, r: dict[str, Any], *,
                 tie: bool) -> TransformerArch:
    return arch_from_config({
        "model_type": "llama", "hidden_size": width, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv, "intermediate_size": ffn,
        "vocab_size": r["vocab_size"], "hidden_act": "silu", "tie_word_embeddings": tie,
    }, name=f"recipe-{layers}x{width}", source="gemmperf architecture recipe "
                                                "(data/scaling_laws.json)")


def _default_gpus(gpu_seconds: float | None, arch_gpus_min: int) -> int:
    if gpu_seconds is None:
        return max(8, arch_gpus_min)
    n = gpu_seconds / (TARGET_DAYS * 86400.0)
    return max(8, arch_gpus_min, round(n / 8.0) * 8)


def compute_optimal(*, gpu: str | GpuSpec | None = None, flops: float | None = None,
                    gpu_hours: float | None = None, energy_mwh: float | None = None,
                    usd: float | None = None, price_per_gpu_hour: float | None = None,
                    law: str = "epoch", num_gpus: int | None = None,
                    tokens_per_param: float | None = None,
                    inference_tokens: float | None = None, dtype: str = "bf16",
                    seq_len: int = 4096, pue: float | None = None) -> ComputeOptimalPlan:
    """The compute-optimal model for a budget, a concrete architecture and its plan.

    Give exactly one budget: ``flops``; ``gpu_hours``; ``energy_mwh`` (facility energy, PUE
    included); or ``usd`` with ``price_per_gpu_hour``. All but ``flops`` need ``gpu``.
    """
    given = {k: v for k, v in (("flops", flops), ("gpu_hours", gpu_hours),
                               ("energy_mwh", energy_mwh), ("usd", usd)) if v is not None}
    if len(given) != 1:
        raise PlanError("give exactly one budget: flops, gpu_hours, energy_mwh or usd (+ price)")
    (kind, value), = given.items()
    if not is_real(value, low=0.0):
        raise PlanError(f"the {kind} budget must be a positive number, got {value!r}")
    if price_per_gpu_hour is not None and not is_real(price_per_gpu_hour, low=0.0):
        raise PlanError(f"price_per_gpu_hour must be a positive number, got "
                        f"{price_per_gpu_hour!r}")
    if kind == "usd" and price_per_gpu_hour is None:
        raise PlanError("a dollar budget needs a positive price per GPU-hour (--price)")
    if pue is not None and not (is_real(pue, low=1.0, inclusive=True)):
        raise PlanError(f"PUE is at least 1.0, got {pue!r}")
    num_gpus, seq_len = as_int(num_gpus), as_int(seq_len)
    _check_budget_options(num_gpus=num_gpus, tokens_per_param=tokens_per_param,
                          inference_tokens=inference_tokens, seq_len=seq_len)
    if kind != "flops" and gpu is None:
        raise PlanError(f"a {kind.replace('_', ' ')} budget needs a GPU (--gpu) to convert it "
                        "to FLOPs")
    if canonical_dtype(dtype) not in ("bf16", "f16", "fp8"):
        raise PlanError(f"training dtype must be bf16, fp16 or fp8, got {dtype}")
    if gpu is None:   # no plan is made: these would do nothing
        unused = [(name, flag) for name, flag, v in (
            ("num_gpus", "--num-gpus", num_gpus), ("price_per_gpu_hour", "--price",
                                                   price_per_gpu_hour),
            ("pue", "--pue", pue)) if v is not None]
        if unused:
            raise PlanError(f"without a gpu (--gpu) no plan is made, so "
                            f"{', '.join(n for n, _ in unused)} "
                            f"({', '.join(f for _, f in unused)}) would do nothing: give a "
                            "gpu or drop them")
    law_obj = get_law(law)
    spec: GpuSpec | None = gpu if isinstance(gpu, GpuSpec) or gpu is None else get_gpu(gpu)
    notes: list[str] = []
    budget = {kind: float(value)}
    if price_per_gpu_hour:
        budget["price_per_gpu_hour"] = float(price_per_gpu_hour)

    def solve(c: float) -> tuple[ScalingOptimum, TransformerArch]:
        opt = optimum(c, law_obj, tokens_per_param=tokens_per_param,
                      inference_tokens=inference_tokens)
        size = opt.flops_per_token if law_obj.params_counted.startswith("non_embedding_flops") \
            else opt.n_params
        return opt, arch_for_size(size, law_obj, seq_len=seq_len)

    def planned(arch: TransformerArch, tokens: float, gpus: int) -> TrainingPlan:
        return plan_training(arch, gpu=spec, num_gpus=gpus, tokens=tokens, seq_len=seq_len,
                             dtype=dtype, price_per_gpu_hour=price_per_gpu_hour, pue=pue)

    plan: TrainingPlan | None = None
    achieved = None
    if kind == "flops":
        c = float(value)
        opt, arch = solve(c)
        tokens = c / _law_flops_per_token(arch, law_obj, seq_len)
        if spec is not None:
            # Size the cluster for ~TARGET_DAYS at 40 % of peak (only a default cluster size).
            guess = c / (0.4 * spec.peak(peak_key(dtype)))
            plan = _plan_with_fit(planned, arch, tokens, num_gpus, guess)
    else:
        gpu_s = _gpu_seconds(kind, value, price_per_gpu_hour, None, tdp_w=spec.tdp_w)
        c = _first_guess(spec, gpu_s, dtype)
        for _ in range(MAX_ITERATIONS):
            opt, arch = solve(c)
            probe = _plan_with_fit(planned, arch, c / _law_flops_per_token(arch, law_obj, seq_len),
                                   num_gpus, gpu_s)
            gpu_s = _gpu_seconds(kind, value, price_per_gpu_hour, probe)
            achieved = probe.tokens_per_s_per_gpu * _law_flops_per_token(arch, law_obj, seq_len)
            new_c = gpu_s * achieved
            converged = abs(new_c / c - 1.0) < 0.02
            c = math.sqrt(c * new_c)  # damped: the chosen architecture moves in steps
            if converged:
                break
        else:
            notes.append(f"budget-to-FLOPs conversion stopped after {MAX_ITERATIONS} rounds")
        opt, arch = solve(c)
        # Spend exactly the budget: tokens = GPU-seconds x this architecture's throughput.
        probe = _plan_with_fit(planned, arch, c / _law_flops_per_token(arch, law_obj, seq_len),
                               num_gpus, gpu_s)
        gpu_s = _gpu_seconds(kind, value, price_per_gpu_hour, probe)
        tokens = gpu_s * probe.tokens_per_s_per_gpu
        plan = planned(arch, tokens, probe.num_gpus)
        c = tokens * _law_flops_per_token(arch, law_obj, seq_len)
    n_arch = law_count(arch, law_obj, seq_len)
    loss = None
    if law_obj.has_loss:
        loss = float(law_obj.loss(n_arch, tokens))
    if plan is not None and num_gpus is None:
        notes.append(f"cluster size chosen for about {TARGET_DAYS:.0f} days of training "
                     "(override with num_gpus)")
    return ComputeOptimalPlan(
        law=law_obj.key, budget=budget, flops=c, optimum=opt, arch=arch, arch_params=n_arch,
        tokens=tokens, loss=loss, plan=plan, batch=batch_guidance(c, loss=loss, law=law_obj.key),
        achieved_law_flops_per_gpu_s=achieved, notes=tuple(notes))


def _check_budget_options(*, num_gpus: int | None, tokens_per_param: float | None,
                          inference_tokens: float | None, seq_len: int) -> None:
    """Reject nonsense settings before the solver runs (it would take or round them silently)."""
    if num_gpus is not None and (isinstance(num_gpus, bool) or not isinstance(num_gpus, int)
                                 or num_gpus < 1):
        raise PlanError(f"num_gpus must be a positive integer, got {num_gpus!r}")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise PlanError(f"seq_len must be a positive integer, got {seq_len!r}")
    if tokens_per_param is not None and not is_real(tokens_per_param, low=0.0):
        raise PlanError(f"tokens_per_param must be a positive number, got {tokens_per_param!r}")
    if inference_tokens is not None and not is_real(inference_tokens, low=0.0, inclusive=True):
        raise PlanError(f"inference_tokens must be a non-negative number, got "
                        f"{inference_tokens!r}")


def _first_guess(spec: GpuSpec | None, gpu_seconds: float | None, dtype: str) -> float:
    """A starting FLOP count, 40 % of peak: it only seeds the fixed-point iteration."""
    assert spec is not None and gpu_seconds is not None
    try:
        peak = spec.peak(peak_key(dtype))
    except KeyError:
        raise PlanError(f"{spec.name} has no {dtype} tensor-core path") from None
    return gpu_seconds * 0.4 * peak


def _gpu_seconds(kind: str, value: float, price: float | None, plan: TrainingPlan | None,
                 tdp_w: float | None = None) -> float | None:
    if kind == "gpu_hours":
        return value * 3600.0
    if kind == "usd":
        assert price
        return value / price * 3600.0
    if kind == "energy_mwh":
        if plan is not None:
            return value * 3.6e9 / (plan.avg_gpu_power_w * plan.pue)
        return value * 3.6e9 / tdp_w if tdp_w else None
    return None


def _plan_with_fit(planned: Any, arch: TransformerArch, tokens: float, num_gpus: int | None,
                   gpu_seconds: float | None) -> TrainingPlan:
    """Plan on ``num_gpus``, or on a cluster sized for ~TARGET_DAYS that fits the model."""
    if num_gpus is not None:
        return planned(arch, tokens, num_gpus)
    if gpu_seconds is None:
        gpu_seconds = 0.0
    gpus = _default_gpus(gpu_seconds, 8)
    last_error: DoesNotFitError | None = None
    for _ in range(12):
        try:
            return planned(arch, tokens, gpus)
        except DoesNotFitError as exc:  # too small a cluster for the model: double it
            last_error = exc
            gpus *= 2
    assert last_error is not None
    raise last_error
