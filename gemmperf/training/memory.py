"""Memory per GPU of a training layout: model state, activations, logits.

Model state (mixed-precision Adam, Megatron-LM): 2-byte weights, 4-byte fp32 gradient buffers,
and 12 bytes of fp32 master weights plus Adam moments. ZeRO stage 1 (the distributed optimizer)
shards the 12 bytes over data-parallel ranks: 6 + 12/dp bytes per parameter (18 without
sharding); stage 2 also shards the gradients (2 + 16/dp); stage 3 (FSDP, DeepSpeed ZeRO-3) keeps
no persistent 16-bit copy -- the sharded fp32 master weights are cast when gathered -- so 16/dp,
plus the gathered 16-bit weights and unsharded gradients of the layer in flight. Expert weights
are further split over the expert-parallel group and their sharded state over the
expert-data-parallel group (dp / ep).

Activations saved for the backward pass, per layer and token, in 2-byte elements, with sequence
parallelism dividing everything by tp (Korthikanti et al. 2022, adapted to FlashAttention, which
keeps Q, K, V, O and the softmax statistics but not the L x L scores, and to GQA/SwiGLU/MoE):

* norm inputs and outputs, the residual stream: 4 h
* Q, K, V and the attention output O: (a + 2 g) d + a d_v
* MLP: 2 f + f (gated: gate, up, activation output) or f + f (plain)
* MoE layer: the dispatched token copies k h (in and out) and each routed expert's 3 f_e per
  routed token, plus the shared experts like a dense MLP;
* with dropout, the two 1-byte hidden-dropout masks (2 h bytes).

With full recomputation only each layer's input (h per token) is kept, plus one layer's full set
while it is recomputed. Under 1F1B the first stage holds ``pp`` micro-batches in flight over its
L/pp layers, i.e. about one micro-batch of every layer, whatever pp is (Korthikanti et al.
2022, Sec. 4.2.3); the interleaved schedule adds a factor 1 + (pp - 1)/(pp v).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gemmperf.training.arch import TransformerArch, _attention_params, _mlp_params
from gemmperf.training.layout import Parallelism, stage_layer_counts

ACT_BYTES = 2          # bf16/fp16 activations (fp8 recipes keep bf16 copies for the backward)
LOGIT_BYTES = 4        # fp32 logits for a numerically safe cross-entropy
WEIGHT_BYTES = 2
GRAD_BYTES = 4         # fp32 main gradients (Megatron accumulates in fp32)
OPTIMIZER_BYTES = 12   # fp32 master weights + Adam m and v


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes per GPU on the fullest pipeline stage, by component."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    logits: float
    capacity: float          # usable bytes: HBM x usable fraction - reserved

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.logits

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity


def layer_params(arch: TransformerArch) -> tuple[float, float, float]:
    """(dense-layer params, MoE-layer non-expert params, one routed expert's params)."""
    h = arch.hidden_size
    attn_w, attn_b = _attention_params(arch)
    common = attn_w + attn_b + 2 * h
    dense = common + sum(_mlp_params(arch, arch.intermediate_size)) if arch.intermediate_size \
        else common
    if not arch.is_moe:
        return float(dense), 0.0, 0.0
    shared = (sum(_mlp_params(arch, arch.shared_expert_intermediate_size))
              if arch.shared_expert_intermediate_size else 0)
    moe_common = common + h * arch.num_experts + shared
    expert = sum(_mlp_params(arch, arch.moe_intermediate_size))
    return float(dense), float(moe_common), float(expert)


def activation_bytes_per_token(arch: TransformerArch, tp: int, moe_layer: bool,
                               seq_len: int = 0, flash_attention: bool = True,
                               dropout: bool = False) -> float:
    """Bytes one layer keeps per token for the backward pass (see module doc).

    Without FlashAttention the softmax output (2 bytes per score) is kept; with attention
    dropout also its mask (1 byte) and the dropped-out probabilities (2 bytes): Korthikanti et
    al.'s 5 a s bytes per token.
    """
    h = arch.hidden_size
    a, g, d = arch.num_heads, arch.num_kv_heads, arch.qk_head_dim
    attention = (a + 2 * g) * d + a * arch.v_dim + a * 2  # + fp32 softmax statistics per head
    if arch.is_mla:
        attention += arch.kv_lora_rank + arch.q_lora_rank  # latent inputs of the up-projections
    up = 3 if arch.gated_mlp else 2
    if moe_layer:
        k = arch.experts_per_token
        mlp = 2 * k * h + k * up * arch.moe_intermediate_size \
            + up * arch.shared_expert_intermediate_size
    else:
        mlp = up * arch.intermediate_size
    scores = 0 if flash_attention else (5 if dropout else 2) * a * seq_len
    masks = 2 * h if dropout else 0  # 1-byte hidden-dropout masks after attention and MLP
    return (ACT_BYTES * (4 * h + attention + mlp) + masks + scores) / tp


def estimate_memory(arch: TransformerArch, par: Parallelism, *, seq_len: int,
                    capacity_bytes: float, micro_batches: int, dropout: bool = False
                    ) -> MemoryEstimate:
    """Peak memory per GPU of ``par`` over its pipeline stages (the fullest stage wins)."""
    tokens = par.micro_batch * seq_len
    dense_p, moe_p, expert_p = layer_params(arch)
    counts = stage_layer_counts(arch, par.pp)
    vocab_p = arch.vocab_size * arch.hidden_size
    expert_dp = max(par.dp // par.ep, 1)
    zero = par.sharding
    opt_shard, opt_expert = (par.dp, expert_dp) if zero >= 1 else (1, 1)
    grad_shard, grad_expert = (par.dp, expert_dp) if zero >= 2 else (1, 1)
    weight_shard, weight_expert = (par.dp, expert_dp) if zero >= 3 else (1, 1)
    in_flight = min(par.pp, micro_batches)
    interleave = 1.0 + (par.pp - 1) / (par.pp * par.virtual_stages) if par.virtual_stages > 1 \
        else 1.0
    act_dense = activation_bytes_per_token(arch, par.tp, False, seq_len,
                                           par.flash_attention, dropout) * tokens
    act_moe = activation_bytes_per_token(arch, par.tp, True, seq_len,
                                         par.flash_attention, dropout) * tokens \
        if arch.is_moe else 0.0
    # ZeRO-3 holds one layer's gathered bf16 weights and unsharded gradients at a time (FSDP
    # with limit_all_gathers; DeepSpeed bounds it by stage3_max_live_parameters).
    in_flight_layer = max(dense_p, moe_p + expert_p * arch.num_experts / par.ep) / par.tp \
        if zero >= 3 else 0.0
    best: MemoryEstimate | None = None
    for stage, (n_dense, n_moe) in enumerate(counts):
        first, last = stage == 0, stage == par.pp - 1
        params = (n_dense * dense_p + n_moe * moe_p) / par.tp
        experts = n_moe * expert_p * arch.num_experts / (par.ep * par.tp)
        if first:
            params += vocab_p / par.tp
        if last and (not arch.tie_word_embeddings or par.pp > 1):
            params += vocab_p / par.tp  # the LM head (a tied copy lives on the last stage)
        persistent = 0.0 if zero >= 3 else params / weight_shard + experts / weight_expert
        weights = WEIGHT_BYTES * (persistent + in_flight_layer)
        grads = GRAD_BYTES * (params / grad_shard + experts / grad_expert) \
            + WEIGHT_BYTES * in_flight_layer
        optimizer = OPTIMIZER_BYTES * (params / opt_shard + experts / opt_expert)
        # Activations: micro-batches in flight on this stage (1F1B: pp - stage for stage s).
        flight = min(max(in_flight - stage, 1), micro_batches) * interleave
        if par.recompute:
            saved = ACT_BYTES * arch.hidden_size / par.tp * tokens * (n_dense + n_moe) * flight
            working = act_moe if n_moe else act_dense
            activations = saved + working
        else:
            activations = (n_dense * act_dense + n_moe * act_moe) * flight
        logits = LOGIT_BYTES * tokens * math.ceil(arch.vocab_size / par.tp) * 2 if last else 0.0
        est = MemoryEstimate(weights, grads, optimizer, activations, logits, capacity_bytes)
        if best is None or est.total > best.total:
            best = est
    assert best is not None
    return best
