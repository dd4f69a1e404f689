"""Training plans: step time, throughput, MFU, GPU-hours, energy and cost of a training run.

:func:`plan_training` times every GEMM of a step (:mod:`~gemmperf.training.costmodel`), adds the
memory-bound kernels, collectives and pipeline bubble (:mod:`~gemmperf.training.step`) and picks
a parallel layout unless one is given: tensor parallelism within a node (up to its 8 GPUs),
pipeline stages only when the model does not fit otherwise, data parallelism for the rest; among
the layouts that fit in memory the fastest wins. Everything the user fixes (tp, pp, ep,
micro-batch, recomputation) is respected.

Conventions:

* **MFU** = model FLOPs per step / (step time x GPUs x dense peak of the training dtype). Model
  FLOPs are the forward, dgrad and wgrad GEMMs with causal attention counted as the L(L+1)/2
  unmasked pairs; no recomputation. ``mfu_palm`` counts model FLOPs as PaLM does,
  6N + 12 L H Q T per token with full (non-causal) attention.
* **HFU** adds recomputation (full activation recomputation, FlashAttention's replay of the
  scores) and GEMMs that tensor parallelism runs redundantly: the FLOPs the GPUs executed.
* Energy = GPU power x time x PUE (GPU power from the predictor, else TDP x the fractions in
  ``data/training_systems.json``); CPUs, network and storage are not included beyond the PUE.

The plan is the steady state of the training loop. Not modelled: job restarts, failures and the
work redone after them, checkpoint writes, evaluation, data-loader stalls, batch-size ramp-up,
long-context stages run at another sequence length, and host (CPU/Python) overheads. Published
wall-clock GPU-hours include them, so a plan predicts fewer GPU-hours than a run reports.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gemmperf.hardware.specs import GpuSpec, get_gpu
from gemmperf.problem import canonical_dtype, peak_key
from gemmperf.training.arch import TransformerArch
from gemmperf.training.comm import SystemSpec
from gemmperf.training.config import get_preset, load_arch
from gemmperf.training.costmodel import time_gemms
from gemmperf.training.errors import ArchConfigError, DoesNotFitError, PlanError
from gemmperf.training.gemms import (
    ATTENTION_CORE,
    TrainingGemm,
    check_parallel,
    flops_per_token,
    training_gemms,
)
from gemmperf.training.kernels import resolve_attention, sustained_clock_factor
from gemmperf.training.layout import Parallelism
from gemmperf.training.memory import MemoryEstimate, estimate_memory
from gemmperf.training.plan import GIB, TrainingPlan
from gemmperf.training.scaling import get_law
from gemmperf.training.step import MicrobatchCost, StepCost, microbatch_cost, step_cost
from gemmperf.training.values import as_int, is_real

TP_CHOICES = (1, 2, 4, 8, 16)
# ZeRO stages tried when not fixed, in order: the distributed optimizer, then FSDP full sharding
# only if nothing fits (the FSDP overlap model is optimistic against Narayanan et al. 2021's
# ZeRO-3 measurements at moderate scale; see benchmarks/training_validation.py).
ZERO_CHOICES = (1, 3)
MICRO_BATCH_CHOICES = (1, 2, 4, 8)
VIRTUAL_STAGE_CHOICES = (1, 2, 4)


def _preset_training(arch: TransformerArch) -> dict[str, Any]:
    """The published training setup of ``arch`` if it is a bundled preset (else empty)."""
    try:
        preset = get_preset(arch.name)
    except ArchConfigError:
        return {}
    return dict(preset.training) if preset.arch == arch else {}


def _default_batch_tokens(arch: TransformerArch, seq_len: int, tokens: float) -> tuple[int, str]:
    """The preset's published batch, else DeepSeek LLM's B_opt(C) (C = 6 N D)."""
    published = _preset_training(arch).get("global_batch_tokens")
    if published:
        return int(published), "published batch of the preset"
    c = get_law("deepseek").constants
    flops = 6.0 * arch.params.active * tokens
    return int(c["B_coeff"] * flops ** c["B_exp"]), "DeepSeek LLM 2024 B_opt(C)"


def _capacity(gpu: GpuSpec, system: SystemSpec) -> float:
    return gpu.mem_bytes * system.memory_usable_fraction - system.memory_reserved_bytes


class _Planner:
    """Evaluates layouts for one (arch, GPU, cluster, batch) question; caches GEMM timings."""

    def __init__(self, arch: TransformerArch, gpu: GpuSpec, system: SystemSpec, *, num_gpus: int,
                 seq_len: int, batch_seqs: int, dtype: str, use_predictor: bool,
                 attention: str = "unfused", dropout: bool = False,
                 grad_reduce_bytes: float = 4.0, check_memory: bool = True,
                 overlap: bool = True) -> None:
        self.arch, self.gpu, self.system = arch, gpu, system
        self.num_gpus, self.seq_len, self.batch_seqs = num_gpus, seq_len, batch_seqs
        self.dtype, self.use_predictor = dtype, use_predictor
        self.attention, self.dropout = attention, dropout
        self.grad_reduce_bytes = grad_reduce_bytes
        self.check_memory, self.overlap = check_memory, overlap
        self.zero_fallback: int | None = None
        self.capacity = _capacity(gpu, system)
        self._mb: dict[tuple[int, int, int, bool, bool], MicrobatchCost] = {}

    def micro_batches(self, par: Parallelism) -> int:
        return max(1, round(self.batch_seqs / (par.dp * par.micro_batch)))

    def memory(self, par: Parallelism) -> MemoryEstimate:
        return estimate_memory(self.arch, par, seq_len=self.seq_len,
                               capacity_bytes=self.capacity, micro_batches=self.micro_batches(par),
                               dropout=self.dropout)

    def cost(self, par: Parallelism) -> StepCost:
        key = (par.tp, par.ep, par.micro_batch, par.recompute, par.flash_attention)
        if key not in self._mb:
            self._mb[key] = microbatch_cost(self.arch, self.gpu, par, seq_len=self.seq_len,
                                            dtype=self.dtype, use_predictor=self.use_predictor,
                                            attention=self.attention)
        return step_cost(self.arch, self.gpu, self.system, par, self._mb[key],
                         seq_len=self.seq_len, micro_batches=self.micro_batches(par),
                         attention=self.attention, dropout=self.dropout,
                         grad_reduce_bytes=self.grad_reduce_bytes, overlap=self.overlap)

    def prefetch(self, layouts: list[Parallelism]) -> None:
        """Time the GEMMs of every layout in one batch (one predictor call, one cache fill)."""
        seen: set[tuple[int, int, int, bool, bool]] = set()
        gemms: list[TrainingGemm] = []
        for par in layouts:
            key = (par.tp, par.ep, par.micro_batch, par.recompute, par.flash_attention)
            if key in seen:
                continue
            seen.add(key)
            fused = par.flash_attention and self.attention != "unfused"
            gemms.extend(g for g in training_gemms(
                self.arch, seq_len=self.seq_len, micro_batch=par.micro_batch, tp=par.tp,
                ep=par.ep, dtype=self.dtype, recompute=par.recompute,
                flash_attention=par.flash_attention)
                if not (fused and g.kind in ATTENTION_CORE))
        if gemms and self.use_predictor:
            time_gemms(self.gpu, gemms, use_predictor=True)

    def candidates(self, fixed: dict[str, Any]) -> list[Parallelism]:
        a, n = self.arch, self.num_gpus
        tps = [fixed["tp"]] if fixed.get("tp") else [
            t for t in TP_CHOICES if t <= self.system.gpus_per_node and n % t == 0
            and a.num_heads % t == 0 and (a.is_mla or a.num_kv_heads % t == 0
                                          or t % a.num_kv_heads == 0)]
        mbs = [fixed["micro_batch"]] if fixed.get("micro_batch") else list(MICRO_BATCH_CHOICES)
        rcs = [fixed["recompute"]] if fixed.get("recompute") is not None else [False, True]
        zeros = [fixed["zero_stage"]] if fixed.get("zero_stage") is not None \
            else [self.zero_fallback or ZERO_CHOICES[0]]
        if fixed.get("ep"):
            eps = [fixed["ep"]]
        elif a.is_moe:
            eps = [e for e in (1, 2, 4, 8, 16, 32, 64, 128, 256) if a.num_experts % e == 0]
        else:
            eps = [1]
        out = []
        for tp in tps:
            if n % tp:
                continue
            pps = [fixed["pp"]] if fixed.get("pp") else [
                p for p in range(1, min(a.num_layers, n // tp) + 1) if (n // tp) % p == 0]
            # Every pipeline depth that fits: more stages add bubble but also leave fewer
            # data-parallel replicas (less gradient traffic) and more micro-batches per replica
            # (a smaller bubble share), so the deepest that fits can be the fastest. Stopping at
            # the shallowest had taken 1.05-1.43x longer steps than layouts the planner accepted
            # when given (llama-2-70b on 1,024 H100s: TP8 PP1 4.55 s, TP4 PP8 mb2 3.95 s).
            for rc, zero, mb, ep, pp in itertools.product(rcs, zeros, mbs, eps, pps):
                out.extend(self._fitting(tp, pp, ep, mb, rc, zero, fixed))
        return out

    def _fitting(self, tp: int, pp: int, ep: int, mb: int, rc: bool, zero: int,
                 fixed: dict[str, Any]) -> list[Parallelism]:
        """Layouts with these degrees that fit in memory (one per interleaving depth)."""
        n, a = self.num_gpus, self.arch
        if (n // tp) % pp:
            return []
        dp = n // (tp * pp)
        if dp % ep or dp * mb > self.batch_seqs * 1.5:
            return []
        if fixed.get("virtual_stages"):
            vs = [fixed["virtual_stages"]] if pp > 1 or fixed["virtual_stages"] == 1 else []
        else:
            vs = [v for v in VIRTUAL_STAGE_CHOICES if v == 1 or (pp > 1 and pp * v <= a.num_layers)]
        out = []
        for v in vs:
            par = Parallelism(tp=tp, pp=pp, dp=dp, ep=ep, micro_batch=mb, recompute=rc,
                              virtual_stages=v, flash_attention=fixed.get("flash_attention", True),
                              zero_stage=zero)
            if pp * v <= a.num_layers and (not self.check_memory or self.memory(par).fits):
                out.append(par)
        return out


def _resolve_gpu(gpu: str | GpuSpec) -> GpuSpec:
    return gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)


def _check_flags(**values: Any) -> None:
    """Each value is a bool (or None where the planner may choose): ``recompute="no"`` would
    otherwise read as True."""
    for name, value in values.items():
        if value is not None and not isinstance(value, bool):
            raise PlanError(f"{name} must be True or False, got {value!r}")


def _check_optional_count(**values: int | None) -> None:
    """Each value is None (chosen by the planner) or a positive integer.

    Checked up front because the layout search reads a falsy degree as "not fixed": 0 would
    silently mean "searched" and a negative interleaving depth would shrink the bubble.
    """
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise PlanError(f"{name} must be a positive integer (or None), got {value!r}")


def plan_training(arch: str | Path | TransformerArch | dict[str, Any], *, gpu: str | GpuSpec,
                  num_gpus: int, tokens: float, seq_len: int | None = None,
                  global_batch_tokens: int | None = None, dtype: str = "bf16",
                  price_per_gpu_hour: float | None = None, pue: float | None = None,
                  tp: int | None = None, pp: int | None = None, ep: int | None = None,
                  micro_batch: int | None = None, recompute: bool | None = None,
                  virtual_stages: int | None = None, flash_attention: bool = True,
                  system: SystemSpec | None = None, use_predictor: bool = True,
                  zero_stage: int | None = None, attention: str | None = None,
                  dropout: bool = False, grad_reduce_dtype: str = "fp32",
                  overlap_grad_reduce: bool = True, check_memory: bool = True) -> TrainingPlan:
    """Plan training ``arch`` on ``num_gpus`` x ``gpu`` for ``tokens`` tokens.

    ``seq_len`` defaults to the preset's training length (else 4096, capped by the model's
    positions), ``global_batch_tokens`` to the preset's published batch (else DeepSeek's
    B_opt). Layout arguments left as None are chosen (see module doc); ``zero_stage`` (0-3)
    defaults to 1 (distributed optimizer), with 3 (FSDP) tried only when nothing else fits.
    ``attention`` names the attention kernel (``fa2``, ``fa3``, ``fa4``, ``unfused``; default:
    the fastest published one for the GPU, see :mod:`gemmperf.training.kernels`);
    ``flash_attention=False`` is ``attention="unfused"``. ``dropout`` adds hidden (and,
    unfused, attention) dropout; ``grad_reduce_dtype`` (fp32, bf16, fp16) is the precision of
    data-parallel gradient reductions and ``overlap_grad_reduce`` whether they overlap the
    backward pass. Raises :class:`DoesNotFitError` when no layout fits in memory;
    ``check_memory=False`` skips that check (to time a layout known to run, e.g. one whose
    framework saves memory the estimate does not see) and says so in the plan's notes.
    """
    num_gpus, tp, pp, ep, micro_batch, virtual_stages, seq_len, global_batch_tokens, \
        zero_stage = map(as_int, (num_gpus, tp, pp, ep, micro_batch, virtual_stages, seq_len,
                                    global_batch_tokens, zero_stage))
    _check_flags(recompute=recompute, flash_attention=flash_attention, dropout=dropout,
                 use_predictor=use_predictor, overlap_grad_reduce=overlap_grad_reduce,
                 check_memory=check_memory)
    arch = load_arch(arch)
    spec = _resolve_gpu(gpu)
    dtype = canonical_dtype(dtype)
    if dtype not in ("bf16", "f16", "fp8"):
        raise PlanError(f"training dtype must be bf16, fp16 or fp8, got {dtype}")
    if not isinstance(num_gpus, int) or isinstance(num_gpus, bool) or num_gpus < 1:
        raise PlanError(f"num_gpus must be a positive integer, got {num_gpus!r}")
    if not is_real(tokens, low=0.0):
        raise PlanError(f"tokens must be a positive number, got {tokens!r}")
    _check_optional_count(tp=tp, pp=pp, ep=ep, micro_batch=micro_batch,
                          virtual_stages=virtual_stages, seq_len=seq_len,
                          global_batch_tokens=global_batch_tokens)
    if price_per_gpu_hour is not None and not is_real(price_per_gpu_hour, low=0.0):
        raise PlanError(f"price_per_gpu_hour must be a positive number, got "
                        f"{price_per_gpu_hour!r}")
    try:
        peak = spec.peak(peak_key(dtype))
    except KeyError:
        raise PlanError(f"{spec.name} has no {dtype} tensor-core path") from None
    system = system or SystemSpec.for_gpu(spec)
    if pue is not None:
        if not is_real(pue, low=1.0, inclusive=True):
            raise PlanError(f"PUE is at least 1.0, got {pue}")
        system = SystemSpec(**{**asdict(system), "pue": float(pue)})
    notes: list[str] = []
    if seq_len is None:
        seq_len = int(_preset_training(arch).get("seq_len") or 4096)
        if arch.max_position_embeddings:
            seq_len = min(seq_len, arch.max_position_embeddings)
    if seq_len < 1:  # a preset's max_position_embeddings of 0
        raise PlanError("seq_len must be positive")
    kernel = resolve_attention(spec, attention, flash_attention)
    reduce_dtype = canonical_dtype(grad_reduce_dtype)
    if reduce_dtype not in ("f32", "bf16", "f16"):
        raise PlanError(f"grad_reduce_dtype must be fp32, bf16 or fp16, got {grad_reduce_dtype}")
    flash_attention = kernel != "unfused"
    if zero_stage is not None and (isinstance(zero_stage, bool) or zero_stage not in (0, 1, 2, 3)):
        raise PlanError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage!r}")
    if global_batch_tokens is None:
        global_batch_tokens, why = _default_batch_tokens(arch, seq_len, tokens)
        notes.append(f"global batch {global_batch_tokens:,} tokens ({why})")
    elif global_batch_tokens < seq_len:
        raise PlanError(f"a global batch of {global_batch_tokens:,} tokens is less than one "
                        f"{seq_len:,}-token sequence")
    batch_seqs = max(1, round(global_batch_tokens / seq_len))
    planner = _Planner(arch, spec, system, num_gpus=num_gpus, seq_len=seq_len,
                       batch_seqs=batch_seqs, dtype=dtype, use_predictor=use_predictor,
                       attention=kernel, dropout=bool(dropout),
                       grad_reduce_bytes=4.0 if reduce_dtype == "f32" else 2.0,
                       check_memory=check_memory, overlap=bool(overlap_grad_reduce))
    fixed = {"tp": tp, "pp": pp, "ep": ep, "micro_batch": micro_batch, "recompute": recompute,
             "virtual_stages": virtual_stages, "flash_attention": flash_attention,
             "zero_stage": zero_stage}
    if tp or ep:
        check_parallel(arch, tp or 1, ep or 1)
    if (tp or 1) * (pp or 1) > num_gpus or num_gpus % ((tp or 1) * (pp or 1)):
        raise PlanError(f"tp x pp = {(tp or 1) * (pp or 1)} does not divide {num_gpus} GPUs")
    if (virtual_stages or 1) > 1 and pp == 1:
        raise PlanError(f"{virtual_stages} virtual stages interleave pipeline stages: they "
                        "need pp > 1 (drop --virtual-stages or raise --pp)")
    if tp and pp:
        Parallelism(tp=tp, pp=pp, dp=num_gpus // (tp * pp), ep=ep or 1,
                    micro_batch=micro_batch or 1, virtual_stages=virtual_stages or 1).check(arch)
    candidates = planner.candidates(fixed)
    if not candidates and zero_stage is None:
        planner.zero_fallback = ZERO_CHOICES[-1]
        candidates = planner.candidates(fixed)
        if candidates:
            notes.append("ZeRO-3 (FSDP) sharding: nothing fits with the distributed optimizer")
    if not candidates:
        _raise_no_fit(planner, fixed)
    planner.prefetch(candidates)
    if not check_memory:
        notes.append("memory check skipped (check_memory=False)")
    costs = [(planner.cost(p), p) for p in candidates]
    cost, par = min(costs, key=lambda cp: (cp[0].step_s, cp[1].tp * cp[1].pp))
    return _assemble(planner, par, cost, peak, tokens, price_per_gpu_hour, notes)


def _raise_no_fit(planner: _Planner, fixed: dict[str, Any]) -> None:
    a, n = planner.arch, planner.num_gpus
    tp = fixed.get("tp") or max(t for t in TP_CHOICES
                                if t <= min(planner.system.gpus_per_node, n) and n % t == 0)
    pp = fixed.get("pp") or max(p for p in range(1, min(a.num_layers, n // tp) + 1)
                                if (n // tp) % p == 0)
    if planner.batch_seqs * tp * pp < n:
        raise PlanError(f"a global batch of {planner.batch_seqs} sequences cannot keep {n} GPUs "
                        f"busy (each of the {n // (tp * pp)} data-parallel replicas needs a "
                        "sequence): raise --global-batch-tokens or use fewer GPUs")
    zero = fixed.get("zero_stage")
    par = Parallelism(tp=tp, pp=pp, dp=max(n // (tp * pp), 1), ep=fixed.get("ep") or 1,
                      micro_batch=fixed.get("micro_batch") or 1, recompute=True,
                      flash_attention=fixed.get("flash_attention", True),
                      zero_stage=max(ZERO_CHOICES) if zero is None else zero)
    mem = planner.memory(par)
    if mem.fits:
        given = {k: v for k, v in fixed.items() if v is not None and k != "flash_attention"}
        settings = ", ".join(f"{k}={v}" for k, v in given.items())
        raise PlanError(f"no layout of {n} GPUs matches "
                        + (f"the fixed settings {settings} and " if settings else "")
                        + f"a batch of {planner.batch_seqs} sequences of {planner.seq_len}")
    raise DoesNotFitError(
        f"{a.name} does not fit on {n} x {planner.gpu.name}: even {par.describe()} needs "
        f"{mem.total / GIB:.1f} GiB per GPU of {mem.capacity / GIB:.1f} GiB usable; "
        "use more GPUs, more pipeline stages or a GPU with more memory")


def _assemble(planner: _Planner, par: Parallelism, cost: StepCost, peak: float, tokens: float,
              price: float | None, notes: list[str]) -> TrainingPlan:
    arch, gpu, system, seq = planner.arch, planner.gpu, planner.system, planner.seq_len
    n = planner.num_gpus
    batch_tokens = cost.micro_batches * par.micro_batch * par.dp * seq
    if batch_tokens != planner.batch_seqs * seq:
        notes.append(f"global batch rounded to {batch_tokens:,} tokens "
                     f"({cost.micro_batches} micro-batches x {par.micro_batch} x DP {par.dp})")
    step = cost.step_s
    tokens_per_s = batch_tokens / step
    per_token = flops_per_token(arch, seq_len=seq)
    model_flops = per_token.model * batch_tokens
    palm = (6.0 * arch.params.active + 12.0 * arch.num_layers * arch.num_heads
            * arch.qk_head_dim * seq) * batch_tokens
    steps = tokens / batch_tokens
    seconds = steps * step
    gpu_hours = seconds * n / 3600.0
    energy_j = cost.energy_j_per_gpu * steps * n * system.pue
    notes.append(f"GEMM times from the {cost.gemm_source}")
    sustained = sustained_clock_factor(gpu)
    if sustained < 1.0:
        notes.append(f"GEMM and attention compute at {sustained:.3f} x their burst speed: the "
                     "GPU's published sustained/burst matmul throughput at its power limit")
    else:
        notes.append("no sustained-clock measurement for this GPU: GEMM and attention times are "
                     "burst-rate and may be optimistic at the power limit")
    if planner.attention != "unfused":
        notes.append(f"attention: {planner.attention} (published kernel benchmarks, "
                     "data/training_kernels.json)")
    notes.append("steady state: restarts, failures, checkpointing, evaluation and batch ramp-up "
                 "are not modelled")
    return TrainingPlan(
        arch=arch.name, gpu=gpu.key, dtype=planner.dtype, num_gpus=n, parallelism=par,
        seq_len=seq, global_batch_tokens=batch_tokens, tokens=float(tokens), steps=steps,
        step_time_s=step, tokens_per_s=tokens_per_s, tokens_per_s_per_gpu=tokens_per_s / n,
        model_flops_per_token=per_token.model,
        mfu=model_flops / (step * n * peak), hfu=cost.hardware_flops_per_step / (step * n * peak),
        mfu_palm=palm / (step * n * peak), model_tflops_per_gpu=model_flops / (step * n) / 1e12,
        days=seconds / 86400.0, gpu_hours=gpu_hours, energy_mwh=energy_j / 3.6e9,
        avg_gpu_power_w=cost.energy_j_per_gpu / step, pue=system.pue,
        usd=None if price is None else gpu_hours * price, price_per_gpu_hour=price,
        memory=planner.memory(par),
        breakdown_s={"compute": cost.gemm_s, "memory": cost.memory_s,
                     "communication": cost.comm_s, "bubble": cost.bubble_s},
        breakdown_kind_s=dict(sorted(cost.kind_s.items(), key=lambda kv: -kv[1])),
        communication_s=cost.comm_detail_s, gemm_source=cost.gemm_source, notes=tuple(notes),
        attention_kernel=planner.attention, sustained_clock_factor=sustained)
