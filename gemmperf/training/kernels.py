"""The non-GEMM work of a training step: fused attention, memory-bound kernels, sustained clocks.

Fused attention (FlashAttention-2/3/4) is not a pair of plain GEMMs: its throughput depends on the
sequence length, the head dimension, the causal mask and the pass, and it reaches a smaller share
of the tensor-core peak than a large GEMM does (FlashAttention-2 runs at ~35% of an H100). Its
time comes from the published kernel benchmarks in ``data/training_kernels.json``, interpolated in
log2(sequence length) and linearly in head dimension (clipped to the measured range). FLOPs are
counted as those benchmarks count them: forward 4 s^2 d h per sequence (halved when causal),
backward 2.5 x forward (the five matmuls including FlashAttention's recomputed scores).

Memory-bound kernels are listed one by one with the bytes each moves per token of one layer
(2-byte activations, ``h`` hidden, ``f`` MLP width, ``a``/``g`` query/key-value heads, ``d``
rotary width; sequence parallelism divides everything by tp). Forward pass:

=========================  ===============================  =========================
kernel                      bytes per token / 2              note
=========================  ===============================  =========================
2 norms                     2 x (read x, write y) = 4 h
rotary on q and k           2 (a + g) d
2 residual adds             2 x (2 reads + 1 write) = 6 h    + 0.5 h each with dropout
activation                  3 f (SwiGLU) or 2 f (GELU/ReLU)  (1-byte dropout mask)
=========================  ===============================  =========================

Backward pass: each residual join adds two gradients (3 h), each norm reads x and dy and writes dx
(3 h), SwiGLU reads gate, up and dy and writes two gradients (5 f; GELU 3 f), rotary 2 (a + g) d,
dropout reads dy and its mask and writes dx (2.5 h). This is the accounting of Korthikanti et al.
2022 (Sec. 4.1, activation memory) turned into bytes touched. Weight gradients accumulate into fp32
main gradients (Megatron's gradient-accumulation fusion: the wgrad GEMM reads and writes 4-byte
C instead of writing 2 bytes), 6 extra bytes per weight and micro-batch. Unfused attention adds
the softmax over each head's L x L scores: forward read S, write P; backward read P, dP, write dS
(5 elements per score; dropout on P adds 2.5 + 2.5). Every kernel also pays a fixed launch/tail
time, the ``t0`` of the GPU's GEMM calibration (measured per library call). Time = bytes / (DRAM
bandwidth x measured memory-bound efficiency) + kernels x t0.

Sustained clocks: the GEMM tables and the attention benchmarks are short bursts at boost clock;
training keeps the GPU at its power limit. Where a sustained-vs-burst matmul measurement exists
for the GPU, compute times are divided by it (``sustained_clock_factor``); FP8 GEMMs reach a
smaller share of their peak than BF16 ones (``fp8_efficiency``, measured per GPU).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from gemmperf._paths import data_dir
from gemmperf.hardware.specs import GpuSpec, get_gpu
from gemmperf.problem import peak_key
from gemmperf.training.arch import TransformerArch
from gemmperf.training.errors import PlanError

KERNELS_FILE = "training_kernels.json"
ATTENTION_KERNELS = ("fa2", "fa3", "fa4", "unfused")
ACT = 2.0                 # bytes per activation element (bf16/fp16)
MASK = 1.0                # bytes per dropout-mask element
WGRAD_ACCUMULATE = 6.0    # extra bytes per weight and micro-batch: fp32 C read+write vs bf16 write
# Optimizer step per parameter of this GPU's shard: Adam reads fp32 master, m, v, grad and writes
# master, m, v and the bf16 copy (30 B, Megatron's mixed-precision distributed optimizer);
# gradient clipping reads the fp32 gradient for its norm and rescales it in place (12 B).
ADAM_BYTES = 30.0
CLIP_BYTES = 12.0
ZERO_GRAD_BYTES = 4.0     # the fp32 gradient buffer is cleared once per step (memset)


@lru_cache(maxsize=1)
def kernel_data() -> dict[str, Any]:
    """The parsed ``data/training_kernels.json``."""
    path = data_dir() / KERNELS_FILE
    if not path.is_file():
        raise PlanError(f"missing {path}: the attention-kernel and sustained-clock table")
    return json.loads(path.read_text())


def _cc_major(gpu: GpuSpec) -> str:
    return str(gpu.compute_capability[0])


# -- sustained clocks --------------------------------------------------------------------------

def sustained_clock_factor(gpu: GpuSpec) -> float:
    """Sustained / burst dense-matmul throughput of ``gpu`` (1.0 where none is published)."""
    return float(kernel_data()["sustained_clock"]["by_gpu"].get(gpu.key, 1.0))


def fp8_efficiency(gpu: GpuSpec) -> float:
    """FP8 GEMM efficiency relative to BF16 on ``gpu`` (measured MAMF ratio; 1.0 if unknown)."""
    return float(kernel_data()["fp8_gemm"]["efficiency_vs_bf16"].get(gpu.key, 1.0))


# -- fused attention ---------------------------------------------------------------------------

def default_attention(gpu: GpuSpec) -> str:
    """The fastest published attention kernel for ``gpu``'s architecture."""
    table = kernel_data()["attention"]["default_by_compute_capability"]
    return str(table.get(_cc_major(gpu), "unfused"))


def resolve_attention(gpu: GpuSpec, name: str | None, flash_attention: bool = True) -> str:
    """The attention kernel a plan uses: ``name`` checked against the GPU, else the default."""
    if not flash_attention:
        if name not in (None, "auto", "unfused"):
            raise PlanError(f"attention={name!r} (--attention) contradicts flash_attention=False "
                            "(--no-flash-attention)")
        return "unfused"
    if name in (None, "auto"):
        return default_attention(gpu)
    if name not in ATTENTION_KERNELS:
        raise PlanError(f"attention kernel must be one of {', '.join(ATTENTION_KERNELS)}, "
                        f"got {name!r}")
    if name != "unfused":
        _kernel_entry(gpu, name)  # raises if the kernel does not run on this GPU
    return name


def _kernel_entry(gpu: GpuSpec, name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(kernel table, per-compute-capability rescaling or None) for ``name`` on ``gpu``."""
    entry = kernel_data()["attention"]["kernels"][name]
    home = get_gpu(entry["measured_on"])
    cc = _cc_major(gpu)
    if cc == _cc_major(home):
        return entry, None
    scale = entry.get("by_compute_capability", {}).get(cc)
    if scale is None:
        raise PlanError(f"{entry['display_name']} has no published measurement for "
                        f"{gpu.name} ({gpu.sm_arch}); "
                        f"use attention={default_attention(gpu)!r} or 'unfused'")
    if "same_as" in scale:
        scale = entry["by_compute_capability"][scale["same_as"]]
    return entry, scale


def _interp(seq_len: float, head_dim: float, table: dict[str, list[float]]) -> float:
    """Bilinear interpolation in (log2 L, head dim) over the measured grid, clipped to it."""
    att = kernel_data()["attention"]
    lens = np.log2(np.asarray(att["seq_lens"], float))
    x = float(np.clip(np.log2(max(seq_len, 1.0)), lens[0], lens[-1]))
    dims = sorted(int(k) for k in table)
    per_dim = [float(np.interp(x, lens, np.asarray(table[str(d)], float))) for d in dims]
    return float(np.interp(float(np.clip(head_dim, dims[0], dims[-1])), dims, per_dim))


def _curve(tables: dict[str, Any], pass_: str, causal: bool, seq_len: float,
           head_dim: float) -> float:
    """Measured TFLOP/s of one pass; the causal backward follows the data file's rule."""
    if pass_ == "fwd":
        return _interp(seq_len, head_dim, tables["fwd_causal" if causal else "fwd_noncausal"])
    bwd = _interp(seq_len, head_dim, tables["bwd_noncausal"])
    if causal:  # published without a mask: the mask costs what it costs the forward pass
        bwd *= (_interp(seq_len, head_dim, tables["fwd_causal"])
                / _interp(seq_len, head_dim, tables["fwd_noncausal"]))
    return bwd


@lru_cache(maxsize=4096)
def attention_fraction(gpu: GpuSpec, name: str, *, seq_len: int, head_dim: int, causal: bool,
                       backward: bool) -> float:
    """Achieved fraction of ``gpu``'s dense 16-bit peak for one attention pass (see module doc)."""
    entry, scale = _kernel_entry(gpu, name)
    pass_ = "bwd" if backward else "fwd"
    if "points" in entry:  # one published point, shaped by another kernel's measured curve
        tables = kernel_data()["attention"]["kernels"][entry["shape_from"]]["tflops"]
        p = entry["points"]
        tflops = float(p[f"{pass_}_{'causal' if causal else 'noncausal'}"]) \
            * _curve(tables, pass_, causal, seq_len, head_dim) \
            / _curve(tables, pass_, causal, p["seq_len"], p["head_dim"])
    else:
        tables = entry["tflops"]
        tflops = _curve(tables, pass_, causal, seq_len, head_dim)
    if scale is None:  # same architecture as the measurement: a fraction of its peak
        return tflops * 1e12 / get_gpu(entry["measured_on"]).peak("bf16")
    # Another architecture: the curve rescaled so its best point is the published best fraction.
    best = max(max(v) for v in tables[f"{pass_}_noncausal"].values())
    return tflops / best * float(scale[f"{pass_}_max_fraction"])


def attention_time(gpu: GpuSpec, name: str, *, fwd_flops: float, seq_len: int, head_dim: int,
                   causal: bool, forward_passes: int = 1) -> tuple[float, float]:
    """(forward s, backward s) of a fused attention kernel doing ``fwd_flops`` per forward pass.

    The backward does 2.5 x the forward FLOPs (benchmark convention); ``forward_passes`` is 2
    under full activation recomputation (the forward is replayed before the backward).
    """
    peak = gpu.peak(peak_key("bf16")) * sustained_clock_factor(gpu)
    fwd = fwd_flops / (peak * attention_fraction(gpu, name, seq_len=seq_len, head_dim=head_dim,
                                                 causal=causal, backward=False))
    bwd = 2.5 * fwd_flops / (peak * attention_fraction(gpu, name, seq_len=seq_len,
                                                       head_dim=head_dim, causal=causal,
                                                       backward=True))
    return forward_passes * fwd, bwd


# -- memory-bound kernels ----------------------------------------------------------------------

@dataclass(frozen=True)
class KernelWork:
    """DRAM bytes and kernel launches of a group of memory-bound kernels."""

    bytes: float = 0.0
    kernels: float = 0.0

    def __add__(self, other: KernelWork) -> KernelWork:
        return KernelWork(self.bytes + other.bytes, self.kernels + other.kernels)

    def scaled(self, factor: float) -> KernelWork:
        return KernelWork(self.bytes * factor, self.kernels * factor)


def layer_work(arch: TransformerArch, *, tokens: int, tp: int, moe_layer: bool, recompute: bool,
               seq_len: int, attention: str, dropout: bool, local_matmul_params: float
               ) -> KernelWork:
    """Memory-bound kernels of one layer for ``tokens`` tokens on one GPU (module doc)."""
    h = arch.hidden_size
    a, g = arch.num_heads, arch.num_kv_heads
    rope = (arch.qk_rope_head_dim if arch.is_mla else arch.head_dim) \
        if arch.position_embedding == "rope" else 0
    rope_g = 1 if arch.is_mla else g  # MLA: one shared rotary key per token
    if moe_layer:
        k = arch.experts_per_token
        width = k * arch.moe_intermediate_size + arch.shared_expert_intermediate_size
    else:
        k, width = 0, arch.intermediate_size
    act_fwd, act_bwd = (3, 5) if arch.gated_mlp else (2, 3)
    # Elements per token (2 bytes each) and kernels, forward and backward.
    fwd = 4 * h + 6 * h + act_fwd * width + 2 * (a + rope_g) * rope
    bwd = 6 * h + 6 * h + act_bwd * width + 2 * (a + rope_g) * rope
    n_fwd, n_bwd = 5 + (1 if rope else 0), 5 + (1 if rope else 0)
    fwd_bytes, bwd_bytes = ACT * fwd, ACT * bwd
    if moe_layer:  # token permute (dispatch) and un-permute (combine), forward and backward
        fwd_bytes += ACT * 4 * k * h
        bwd_bytes += ACT * 4 * k * h
        n_fwd, n_bwd = n_fwd + 2, n_bwd + 2
    if dropout:  # hidden dropout fused into both residual adds: 1-byte masks, dropout backward
        fwd_bytes += 2 * MASK * h
        bwd_bytes += 2 * (ACT * 2 * h + MASK * h)
        n_bwd += 2
    if attention == "unfused":
        scores = a * seq_len  # L x L scores per head and sequence = L per token and head
        fwd_bytes += ACT * 2 * scores
        bwd_bytes += ACT * 3 * scores
        n_fwd, n_bwd = n_fwd + 1, n_bwd + 1
        if dropout:  # attention dropout on the probabilities
            fwd_bytes += (ACT * 2 + MASK) * scores
            bwd_bytes += (ACT * 2 + MASK) * scores
            n_fwd, n_bwd = n_fwd + 1, n_bwd + 1
    passes = 2 if recompute else 1
    per_token = passes * fwd_bytes + bwd_bytes
    work = KernelWork(per_token * tokens / tp, passes * n_fwd + n_bwd)
    return work + KernelWork(WGRAD_ACCUMULATE * local_matmul_params, 0.0)


def head_work(arch: TransformerArch, *, tokens: int, tp: int) -> KernelWork:
    """Embedding lookup and its gradient, cross-entropy over the logits (fp32 arithmetic).

    Cross-entropy: read the bf16 logits for the max and the sum of exponentials, write the fp32
    softmax gradient and cast it back (3 x 4 bytes per logit, Megatron's vocab-parallel kernel).
    """
    logits = 3 * 4.0 * tokens * arch.vocab_size / tp
    embed = 2 * ACT * tokens * arch.hidden_size + 2 * 4.0 * tokens * arch.hidden_size / tp
    return KernelWork(logits + embed, 6.0)


def optimizer_work(shard_params: float, local_params: float) -> KernelWork:
    """Adam + gradient clipping on this GPU's optimizer shard; zeroing its local gradients."""
    return KernelWork(shard_params * (ADAM_BYTES + CLIP_BYTES)
                      + local_params * ZERO_GRAD_BYTES, 4.0)


def kernel_time(gpu: GpuSpec, work: KernelWork, *, efficiency: float, launch_s: float) -> float:
    """Seconds for ``work``: bytes at the measured memory-bound bandwidth plus fixed launches."""
    return work.bytes / (gpu.mem_bandwidth_bytes_s * efficiency) + work.kernels * launch_s
