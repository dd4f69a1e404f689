"""Time and energy of one optimizer step for one parallel layout.

Per micro-batch and pipeline stage (the slowest stage sets the pace)::

    t_stage = sum over its layers (GEMMs + memory-bound kernels + TP/EP collectives)
              + LM head and loss on the last stage + 2 pipeline sends (activation, gradient)

    step    = (m + (pp - 1)/v) t_stage            1F1B pipeline: m micro-batches, bubble (pp-1)/v
            + exposed data-parallel collectives   gradient reduce-scatter hidden behind the last
                                                  micro-batch's backward, parameter all-gather
                                                  behind the next step's first forward
            + optimizer step                      memory-bound Adam on this GPU's shard

Tensor-parallel collectives (sequence parallelism: 4 all-gathers and 4 reduce-scatters of the
layer's tokens x hidden activations per layer, forward and backward, +4 with recomputation) and
MoE all-to-alls are on the critical path (Megatron-LM default, no TP communication overlap).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from gemmperf.hardware.specs import GpuSpec
from gemmperf.training import costmodel as cm
from gemmperf.training.arch import TransformerArch
from gemmperf.training.comm import (
    SystemSpec,
    all_to_all_time,
    p2p_time,
    ring_gather_time,
)
from gemmperf.training.gemms import TrainingGemm, count_flops, training_gemms
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
                    dtype: str, use_predictor: bool) -> MicrobatchCost:
    """Time every GEMM of one micro-batch and sum by scope and kind."""
    gemms: tuple[TrainingGemm, ...] = training_gemms(
        arch, seq_len=seq_len, micro_batch=par.micro_batch, tp=par.tp, ep=par.ep, dtype=dtype,
        recompute=par.recompute, flash_attention=par.flash_attention)
    timing = cm.time_gemms(gpu, gemms, use_predictor=use_predictor,
                           flash_attention=par.flash_attention)
    scope_s: dict[str, float] = defaultdict(float)
    scope_j: dict[str, float] = defaultdict(float)
    kind_s: dict[str, float] = defaultdict(float)
    per_entry = timing.runtime_s * np.array([g.count * g.work_fraction for g in gemms])
    for g, t, p in zip(gemms, per_entry, timing.power_w, strict=True):
        scope_s[g.scope] += float(t)
        scope_j[g.scope] += float(t * p)
        kind_s[g.kind] += float(t)
    return MicrobatchCost(dict(scope_s), dict(scope_j), dict(kind_s),
                          count_flops(gemms).hardware, timing.source)


def step_cost(arch: TransformerArch, gpu: GpuSpec, system: SystemSpec, par: Parallelism,
              mb: MicrobatchCost, *, seq_len: int, micro_batches: int) -> StepCost:
    """Step time, its breakdown and the energy per GPU for layout ``par``."""
    tokens = par.micro_batch * seq_len
    n_dense, n_moe = arch.num_dense_layers, arch.num_moe_layers
    _, mem_fraction = cm.power_fractions()
    idle_w = mem_fraction * gpu.tdp_w

    # Per-layer costs of one micro-batch: (GEMM s, GEMM J, memory-bound s, TP comm s, EP comm s).
    def layer(scope: str, count: int, moe: bool) -> tuple[float, ...]:
        if count == 0:
            return (0.0,) * 5
        mem = cm.memory_time(gpu, cm.layer_elementwise_bytes(
            arch, tokens=tokens, tp=par.tp, moe_layer=moe, recompute=par.recompute,
            seq_len=seq_len, flash_attention=par.flash_attention))
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
    head_mem = cm.memory_time(gpu, cm.head_elementwise_bytes(arch, tokens=tokens, tp=par.tp))
    head = (mb.gemm_s.get("head", 0.0), mb.gemm_j.get("head", 0.0), head_mem, 0.0, 0.0)
    p2p = 0.0
    if par.pp > 1:
        bw, lat = system.link(par.pp, par.tp)
        # Interleaving sends v times as many (smaller-stage) messages per micro-batch.
        p2p = 2 * par.virtual_stages * p2p_time(tokens * arch.hidden_size * ACT_BYTES / par.tp,
                                                bw, lat)

    stages = []
    for s, (nd, nm) in enumerate(stage_layer_counts(arch, par.pp)):
        parts = [nd * dense[i] + nm * moe[i] + (head[i] if s == par.pp - 1 else 0.0)
                 for i in range(5)]
        stages.append(parts)
    gemm_mb, gemm_j_mb, mem_mb, tp_mb, ep_mb = max(
        stages, key=lambda p: p[0] + p[2] + p[3] + p[4])
    comm_mb = tp_mb + ep_mb + p2p
    stage_s = gemm_mb + mem_mb + comm_mb
    m = micro_batches
    bubble = (par.pp - 1) / par.virtual_stages * stage_s

    # Data-parallel gradient reduce-scatter and parameter all-gather (distributed optimizer).
    # The fuller of the first (embedding) and last (LM head) stages sets the size.
    dense_p, moe_p, expert_p = layer_params(arch)
    counts = stage_layer_counts(arch, par.pp)
    vocab = arch.vocab_size * arch.hidden_size
    local = max(counts[0][0] * dense_p + counts[0][1] * moe_p + vocab,
                counts[-1][0] * dense_p + counts[-1][1] * moe_p
                + (vocab if par.pp > 1 or not arch.tie_word_embeddings else 0)) / par.tp
    nm = max(c[1] for c in counts)
    experts = nm * expert_p * arch.num_experts / (par.ep * par.tp)
    dp_rs = dp_ag = 0.0
    if par.dp > 1:
        bw, lat = system.link(par.dp, par.tp * par.pp)
        dp_rs += ring_gather_time(local * GRAD_BYTES, par.dp, bw, lat)
        dp_ag += ring_gather_time(local * WEIGHT_BYTES, par.dp, bw, lat)
    edp = par.dp // par.ep
    if experts and edp > 1:
        bw, lat = system.link(edp, par.tp * par.pp * par.ep)
        dp_rs += ring_gather_time(experts * GRAD_BYTES, edp, bw, lat)
        dp_ag += ring_gather_time(experts * WEIGHT_BYTES, edp, bw, lat)
    if not par.distributed_optimizer:
        dp_rs, dp_ag = 2 * dp_rs + dp_ag * GRAD_BYTES / WEIGHT_BYTES, 0.0  # fp32 all-reduce
    # Backward is ~2/3 of a micro-batch's compute, forward ~1/3.
    dp_exposed = max(0.0, dp_rs - 2.0 / 3.0 * stage_s) + max(0.0, dp_ag - stage_s / 3.0)
    shard = local / (par.dp if par.distributed_optimizer else 1) \
        + experts / (edp if par.distributed_optimizer else 1)
    optimizer_s = cm.memory_time(gpu, shard * cm.ADAM_BYTES_PER_PARAM)

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
