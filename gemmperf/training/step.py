"""Time and energy of one optimizer step for one parallel layout.

Per micro-batch and pipeline stage (the slowest stage sets the pace)::

    t_stage = sum over its layers (GEMMs + fused attention + memory-bound kernels
                                   + TP/EP collectives)
              + LM head and loss on the last stage + 2 pipeline sends (activation, gradient)

    step    = (m + (pp - 1)/v) t_stage            1F1B pipeline: m micro-batches, bubble (pp-1)/v
            + exposed data-parallel collectives   (by ZeRO stage, below)
            + optimizer step                      memory-bound Adam + clipping on this GPU's shard

Tensor-parallel collectives (sequence parallelism: 4 all-gathers and 4 reduce-scatters of the
layer's tokens x hidden activations per layer, forward and backward, +4 with recomputation) and
MoE all-to-alls are on the critical path (Megatron-LM default, no TP communication overlap).

Data-parallel collectives run on their own stream when the framework overlaps them. Stages 0-1
reduce gradients once per step (hidden behind the last micro-batch's backward, 2/3 of its
compute) and stage 1 all-gathers the updated parameters once (behind the next step's first
forward, 1/3); stage 2 reduce-scatters after every micro-batch; stage 3 (FSDP) all-gathers each
layer's bf16 weights before its forward and its backward and reduce-scatters its gradients,
overlapped layer by layer with compute: per micro-batch, the part that exceeds the compute plus
one layer's share (the first gather and the last reduce have nothing to hide behind) is exposed.
Overlap is not free: compute that runs under a collective is slowed by the measured contention
of ``SystemSpec.overlap_slowdown`` (18.9%, arXiv 2507.03114). Frameworks that reduce after the
backward pass (``overlap=False``) expose the whole collective.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from gemmperf.hardware.specs import GpuSpec
from gemmperf.training import costmodel as cm
from gemmperf.training import kernels as kn
from gemmperf.training.arch import TransformerArch, _attention_params, _mlp_params
from gemmperf.training.comm import (
    SystemSpec,
    all_to_all_time,
    p2p_time,
    ring_gather_time,
)
from gemmperf.training.gemms import ATTENTION_CORE, TrainingGemm, count_flops, training_gemms
from gemmperf.training.layout import Parallelism, stage_layer_counts
from gemmperf.training.memory import GRAD_BYTES, WEIGHT_BYTES, layer_params

ACT_BYTES = 2.0


@dataclass(frozen=True)
class MicrobatchCost:
    """Per-micro-batch costs on one GPU of a TP group, per layer type (seconds, joules)."""

    gemm_s: dict[str, float]            # scope ("dense", "moe", "head") -> GEMM time, all layers
    gemm_j: dict[str, float]            # same, energy at the GEMMs' power
    kind_s: dict[str, float]            # GEMM kind -> time over the whole model
    hardware_flops: float               # executed GEMM FLOPs on this GPU (whole model)
    source: str


@dataclass(frozen=True)
class StepCost:
    """One step on the critical path, split into what the GPU was doing."""

    step_s: float
    gemm_s: float
    memory_s: float
    comm_s: float
    bubble_s: float
    energy_j_per_gpu: float
    stage_s: float
    micro_batches: int
    hardware_flops_per_step: float
    kind_s: dict[str, float] = field(default_factory=dict)
    comm_detail_s: dict[str, float] = field(default_factory=dict)
    gemm_source: str = ""


def microbatch_cost(arch: TransformerArch, gpu: GpuSpec, par: Parallelism, *, seq_len: int,
                    dtype: str, use_predictor: bool, attention: str = "unfused"
                    ) -> MicrobatchCost:
    """Time every GEMM of one micro-batch, and fused attention from its kernel benchmarks."""
    gemms: tuple[TrainingGemm, ...] = training_gemms(
        arch, seq_len=seq_len, micro_batch=par.micro_batch, tp=par.tp, ep=par.ep, dtype=dtype,
        recompute=par.recompute, flash_attention=par.flash_attention)
    fused = attention != "unfused" and par.flash_attention
    timed = [g for g in gemms if not (fused and g.kind in ATTENTION_CORE)]
    timing = cm.time_gemms(gpu, timed, use_predictor=use_predictor)
    scope_s: dict[str, float] = defaultdict(float)
    scope_j: dict[str, float] = defaultdict(float)
    kind_s: dict[str, float] = defaultdict(float)
    # A timed GEMM runs whole: the unfused causal score and P.V GEMMs are batched cuBLAS calls
    # over the full L x L square, masked afterwards, so their time does not get the
    # work_fraction their FLOPs count (FlashAttention's causal kernels do skip the masked
    # blocks: that is in its benchmarks, below).
    per_entry = timing.runtime_s * np.array([g.count for g in timed])
    for g, t, p in zip(timed, per_entry, timing.power_w, strict=True):
        scope_s[g.scope] += float(t)
        scope_j[g.scope] += float(t * p)
        kind_s[g.kind] += float(t)
    if fused:
        power = cm.power_fractions()[0] * gpu.tdp_w
        head_dim = max(arch.qk_head_dim, arch.v_dim)
        for scope in {g.scope for g in gemms if g.kind in ATTENTION_CORE}:
            fwd_flops = sum(g.flops for g in gemms if g.kind in ATTENTION_CORE
                            and g.scope == scope and g.phase == "fwd")
            fwd_s, bwd_s = kn.attention_time(
                gpu, attention, fwd_flops=fwd_flops, seq_len=seq_len, head_dim=head_dim,
                causal=True, forward_passes=2 if par.recompute else 1)
            scope_s[scope] += fwd_s + bwd_s
            scope_j[scope] += (fwd_s + bwd_s) * power
            kind_s["flash_attention"] += fwd_s + bwd_s
    return MicrobatchCost(dict(scope_s), dict(scope_j), dict(kind_s),
                          count_flops(gemms).hardware, timing.source)


def _layer_matmul_params(arch: TransformerArch, par: Parallelism, moe: bool) -> float:
    """Weights of one layer that take part in a GEMM on this GPU (their gradients accumulate)."""
    attn_w, _ = _attention_params(arch)
    if not moe:
        mlp_w = _mlp_params(arch, arch.intermediate_size)[0] if arch.intermediate_size else 0
        return (attn_w + mlp_w) / par.tp
    expert_w = _mlp_params(arch, arch.moe_intermediate_size)[0]
    shared_w = (_mlp_params(arch, arch.shared_expert_intermediate_size)[0]
                if arch.shared_expert_intermediate_size else 0)
    return (attn_w + shared_w + arch.hidden_size * arch.num_experts
            + expert_w * arch.num_experts / par.ep) / par.tp


def _per_layer(whole_s: float, layers: int, ranks: int, system: SystemSpec, stride: int
               ) -> float:
    """A whole-stage ring collective split into one collective per layer (extra latency)."""
    if whole_s <= 0.0 or ranks <= 1:
        return whole_s
    _, lat = system.link(ranks, stride)
    return whole_s + (layers - 1) * (ranks - 1) * lat


def _hidden(comm_s: float, window_s: float, slowdown: float) -> float:
    """Exposed time of a collective overlapped with ``window_s`` of compute.

    What does not fit in the window is exposed; the overlapped part still slows the compute
    under it by ``slowdown`` (measured contention for SMs and HBM, data/training_systems.json).
    """
    return max(0.0, comm_s - window_s) + slowdown * min(comm_s, window_s)


def _dp_exposed(zero: int, reduce: float, gather: float, compute_mb: float, m: int,
                layers: int, par: Parallelism, system: SystemSpec, overlap: bool) -> float:
    """Data-parallel collective time on the critical path for ZeRO stage ``zero`` (module doc)."""
    slow = system.overlap_slowdown
    if zero <= 1:
        allreduce = 2 * reduce if zero == 0 else reduce  # fp32 all-reduce = RS + AG
        if not overlap:  # reduced after the backward, gathered before the next forward
            return allreduce + (gather if zero == 1 else 0.0)
        out = _hidden(allreduce, 2.0 / 3.0 * compute_mb, slow)
        return out + (_hidden(gather, compute_mb / 3.0, slow) if zero == 1 else 0.0)
    # ZeRO-2/3 issue one collective per layer (FSDP unit) and micro-batch: the bandwidth term
    # is the whole stage's, the latency term is paid per layer.
    stride = par.tp * par.pp
    per_mb = _per_layer(reduce, layers, par.dp, system, stride)
    if zero == 3:
        per_mb += 2 * _per_layer(gather, layers, par.dp, system, stride)
    # Overlapped, the first gather and the last reduce still have no compute to hide behind.
    out = m * (_hidden(per_mb, compute_mb, slow) + per_mb / layers) if overlap else m * per_mb
    if zero == 2:
        out += gather if not overlap else _hidden(gather, compute_mb / 3.0, slow)
    return out


def dp_local_params(arch: TransformerArch, par: Parallelism,
                    counts: list[tuple[int, int]]) -> float:
    """Non-expert parameters of the fullest pipeline stage on one GPU (its data-parallel
    gradient and weight volume): the first stage holds the embedding, the last the LM head,
    one stage both (one matrix where they are tied). ``counts`` is (dense, MoE) layers per
    stage."""
    dense_p, moe_p, _ = layer_params(arch)
    vocab = arch.vocab_size * arch.hidden_size
    first, last = (c[0] * dense_p + c[1] * moe_p for c in (counts[0], counts[-1]))
    if par.pp == 1:
        return (first + vocab * (1 if arch.tie_word_embeddings else 2)) / par.tp
    return (max(first, last) + vocab) / par.tp


def step_cost(arch: TransformerArch, gpu: GpuSpec, system: SystemSpec, par: Parallelism,
              mb: MicrobatchCost, *, seq_len: int, micro_batches: int,
              attention: str = "unfused", dropout: bool = False,
              grad_reduce_bytes: float = GRAD_BYTES, overlap: bool = True) -> StepCost:
    """Step time, its breakdown and the energy per GPU for layout ``par``.

    ``grad_reduce_bytes`` is the width of the gradients on the wire: 4 (fp32, Megatron's and
    FSDP's default ``reduce_dtype``) or 2 (bf16/fp16 reductions, DeepSpeed's default).
    ``overlap`` False runs the data-parallel collectives after the backward pass (Megatron-LM's
    ``DDP_impl=local`` before ``--overlap-grad-reduce``, DeepSpeed without ``overlap_comm``).
    """
    tokens = par.micro_batch * seq_len
    n_dense, n_moe = arch.num_dense_layers, arch.num_moe_layers
    _, mem_fraction = cm.power_fractions()
    idle_w = mem_fraction * gpu.tdp_w
    efficiency = cm.memory_bound_efficiency()
    launch_s = cm.gemm_params(gpu)[0]["t0_s"]  # measured fixed cost of one library kernel

    def kernel_s(work: kn.KernelWork) -> float:
        return kn.kernel_time(gpu, work, efficiency=efficiency, launch_s=launch_s)

    # Per-layer costs of one micro-batch: (GEMM s, GEMM J, memory-bound s, TP comm s, EP comm s).
    def layer(scope: str, count: int, moe: bool) -> tuple[float, ...]:
        if count == 0:
            return (0.0,) * 5
        mem = kernel_s(kn.layer_work(
            arch, tokens=tokens, tp=par.tp, moe_layer=moe, recompute=par.recompute,
            seq_len=seq_len, attention=attention if par.flash_attention else "unfused",
            dropout=dropout, local_matmul_params=_layer_matmul_params(arch, par, moe)))
        tp_comm = ep_comm = 0.0
        if par.tp > 1:
            bw, lat = system.link(par.tp, 1)
            ops = 12 if par.recompute else 8
            tp_comm = ops * ring_gather_time(tokens * arch.hidden_size * ACT_BYTES, par.tp, bw,
                                             lat)
        if moe and par.ep > 1:
            bw, lat = system.link(par.ep, par.tp * par.pp)
            size = tokens / par.tp * arch.experts_per_token * arch.hidden_size * ACT_BYTES
            ep_comm = (6 if par.recompute else 4) * all_to_all_time(size, par.ep, bw, lat)
        return (mb.gemm_s.get(scope, 0.0) / count, mb.gemm_j.get(scope, 0.0) / count, mem,
                tp_comm, ep_comm)

    dense = layer("dense", n_dense, False)
    moe = layer("moe", n_moe, True)
    head_mem = kernel_s(kn.head_work(arch, tokens=tokens, tp=par.tp))
    head = (mb.gemm_s.get("head", 0.0), mb.gemm_j.get("head", 0.0), head_mem, 0.0, 0.0)
    p2p = 0.0
    if par.pp > 1:
        bw, lat = system.link(par.pp, par.tp)
        # Interleaving sends v times as many (smaller-stage) messages per micro-batch.
        p2p = 2 * par.virtual_stages * p2p_time(tokens * arch.hidden_size * ACT_BYTES / par.tp,
                                                bw, lat)

    stages = []
    counts = stage_layer_counts(arch, par.pp)
    for s, (nd, nm) in enumerate(counts):
        parts = [nd * dense[i] + nm * moe[i] + (head[i] if s == par.pp - 1 else 0.0)
                 for i in range(5)]
        stages.append(parts)
    gemm_mb, gemm_j_mb, mem_mb, tp_mb, ep_mb = max(
        stages, key=lambda p: p[0] + p[2] + p[3] + p[4])
    comm_mb = tp_mb + ep_mb + p2p
    stage_s = gemm_mb + mem_mb + comm_mb
    compute_mb = gemm_mb + mem_mb
    m = micro_batches
    bubble = (par.pp - 1) / par.virtual_stages * stage_s

    # Data-parallel collectives, sized by the fuller stage.
    _, _, expert_p = layer_params(arch)
    local = dp_local_params(arch, par, counts)
    nm = max(c[1] for c in counts)
    experts = nm * expert_p * arch.num_experts / (par.ep * par.tp)
    edp = par.dp // par.ep
    zero = par.sharding
    gather = reduce = 0.0  # one all-gather of the bf16 weights, one reduce-scatter of the grads
    if par.dp > 1:
        bw, lat = system.link(par.dp, par.tp * par.pp)
        reduce += ring_gather_time(local * grad_reduce_bytes, par.dp, bw, lat)
        gather += ring_gather_time(local * WEIGHT_BYTES, par.dp, bw, lat)
    if experts and edp > 1:
        bw, lat = system.link(edp, par.tp * par.pp * par.ep)
        reduce += ring_gather_time(experts * grad_reduce_bytes, edp, bw, lat)
        gather += ring_gather_time(experts * WEIGHT_BYTES, edp, bw, lat)
    layers_on_stage = max(max(sum(c) for c in counts), 1)
    dp_exposed = _dp_exposed(zero, reduce, gather, compute_mb, m, layers_on_stage, par, system,
                             overlap)
    shard_divisor = par.dp if zero >= 1 else 1
    expert_divisor = edp if zero >= 1 else 1
    shard = local / shard_divisor + experts / expert_divisor
    optimizer_s = kernel_s(kn.optimizer_work(shard, local + experts))

    gemm_s = m * gemm_mb
    memory_s = m * mem_mb + optimizer_s
    comm_s = m * comm_mb + dp_exposed
    step_s = gemm_s + memory_s + comm_s + bubble
    energy = m * gemm_j_mb + (memory_s + comm_s + bubble) * idle_w
    # Per-GPU kind times averaged over pipeline stages (each stage holds 1/pp of the layers).
    kind_s = {k: v * m / par.pp for k, v in mb.kind_s.items()}
    detail = {"tensor_parallel": m * tp_mb, "expert_parallel": m * ep_mb,
              "pipeline_p2p": m * p2p, "data_parallel_exposed": dp_exposed}
    hw_flops = mb.hardware_flops * par.tp * m * par.dp
    return StepCost(step_s=step_s, gemm_s=gemm_s, memory_s=memory_s, comm_s=comm_s,
                    bubble_s=bubble, energy_j_per_gpu=energy, stage_s=stage_s, micro_batches=m,
                    hardware_flops_per_step=hw_flops, kind_s=kind_s, comm_detail_s=detail,
                    gemm_source=mb.source)
