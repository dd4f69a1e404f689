"""The GEMMs of one transformer training step, and the FLOP counts they add up to.

Every linear layer Y[M x N] = X[M x K] W[K x N] runs three GEMMs per step (Megatron-LM;
REFERENCES.md "Training FLOPs"), each 2MNK FLOPs:

* forward  ``fwd``:   Y  = X  W        -> (m, n, k) = (M, N, K)
* ``dgrad``:          dX = dY W^T      -> (M, K, N)
* ``wgrad``:          dW = X^T dY      -> (K, N, M)

Attention's two batched GEMMs (S = Q K^T and O = P V, one per head) have the same pair of
backward GEMMs: the gradient of the left operand is called ``dgrad`` and of the right operand
``wgrad`` by analogy, though no weight is involved. ``recompute`` marks hardware work that the
model-FLOP count leaves out: the forward pass replayed under full activation recomputation, and
FlashAttention's replay of S = Q K^T inside its backward kernel.

Conventions (stated because the published formulas differ in them):

* Causal attention is counted honestly: only the L(L+1)/2 unmasked query-key pairs of each
  sequence are multiplied, a fraction (L+1)/(2L) of the rectangular score and P.V GEMMs
  (``work_fraction``). PaLM's 12LHQT and Megatron's formulas count the full L x L square; pass
  ``causal=False`` to reproduce them.
* GEMMs are listed per micro-batch on one GPU of a tensor-parallel group (Megatron layout:
  QKV, gate/up column-parallel, output and down projection row-parallel, vocabulary-parallel LM
  head); ``count`` is the number of times the GEMM runs per micro-batch over all layers of its
  ``scope`` ("dense" or "moe" layers, or "head" for the LM head).
* MoE experts are grouped by expert load: under uniform routing each of the E routed experts
  receives tokens * top_k / E tokens, times ``ep`` when experts are spread over an
  expert-parallel group of ``ep`` GPUs (each holding E/ep experts).
* With ``dtype="fp8"`` the linear layers run in FP8 (Transformer Engine recipe); the attention
  core, router and LM head stay in BF16.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache

from gemmperf.problem import GemmProblem, canonical_dtype
from gemmperf.training.arch import TransformerArch
from gemmperf.training.errors import PlanError

PHASES = ("fwd", "dgrad", "wgrad", "recompute")
MODEL_PHASES = ("fwd", "dgrad", "wgrad")

# Kinds, in the order a breakdown lists them.
KINDS = ("qkv", "mla_q_down", "mla_q_up", "mla_kv_down", "mla_kv_up", "rel_pos", "attn_score",
         "attn_value", "attn_out", "mlp_up", "mlp_down", "moe_router", "expert_up", "expert_down",
         "shared_up", "shared_down", "lm_head")
ATTENTION_CORE = ("attn_score", "attn_value")


@dataclass(frozen=True)
class TrainingGemm:
    """One GEMM of a training step: its shape, what it is, and how often it runs."""

    kind: str
    phase: str
    problem: GemmProblem
    count: int
    scope: str = "dense"
    work_fraction: float = 1.0

    @property
    def flops(self) -> float:
        """FLOPs this entry performs per micro-batch: 2mnk * batch * count * work_fraction."""
        return self.problem.flops * self.count * self.work_fraction

    @property
    def is_model_flop(self) -> bool:
        """Whether MFU counts it (everything but recomputation)."""
        return self.phase != "recompute"


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of a training step (or per token): model FLOPs exclude recomputation, hardware
    FLOPs include it (PaLM's MFU/HFU distinction)."""

    model: float
    hardware: float
    by_phase: dict[str, float] = field(default_factory=dict)
    by_kind: dict[str, float] = field(default_factory=dict)

    def scaled(self, factor: float) -> FlopCount:
        return FlopCount(self.model * factor, self.hardware * factor,
                         {k: v * factor for k, v in self.by_phase.items()},
                         {k: v * factor for k, v in self.by_kind.items()})


@lru_cache(maxsize=65536)
def _problem(m: int, n: int, k: int, batch: int, dtype: str, layout: str) -> GemmProblem:
    """A validated GemmProblem, memoised: plans rebuild the same shapes many times."""
    acc = "f32" if dtype in ("f16", "bf16", "fp8") else None
    return GemmProblem(m, n, k, batch=batch, dtype=dtype, acc_dtype=acc, layout=layout)


def check_parallel(arch: TransformerArch, tp: int, ep: int) -> None:
    """Raise :class:`PlanError` unless ``tp`` and ``ep`` can split ``arch``'s heads/experts."""
    for name, value in (("tp", tp), ("ep", ep)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PlanError(f"{name} must be a positive integer, got {value!r}")
    if arch.num_heads % tp:
        raise PlanError(f"{arch.name}: tensor parallel size {tp} does not divide its "
                        f"{arch.num_heads} attention heads")
    kv = arch.num_kv_heads
    if not arch.is_mla and kv % tp and tp % kv:
        raise PlanError(f"{arch.name}: tensor parallel size {tp} and its {kv} key/value heads "
                        "must divide one another")
    if ep > 1 and (not arch.is_moe or arch.num_experts % ep):
        raise PlanError(f"{arch.name}: expert parallel size {ep} must divide the number of "
                        f"experts ({arch.num_experts})")


def training_gemms(arch: TransformerArch, *, seq_len: int, micro_batch: int = 1, tp: int = 1,
                   ep: int = 1, dtype: str = "bf16", recompute: bool = False,
                   flash_attention: bool = True, causal: bool = True) -> tuple[TrainingGemm, ...]:
    """The GEMMs one GPU of a TP group runs for one micro-batch of ``micro_batch`` sequences.

    ``recompute`` adds a second forward pass of every layer (full activation recomputation,
    not the LM head); ``flash_attention`` adds FlashAttention's backward-pass replay of
    S = Q K^T. Both appear with phase ``"recompute"``.
    """
    check_parallel(arch, tp, ep)
    if seq_len < 1 or micro_batch < 1:
        raise PlanError("seq_len and micro_batch must be positive")
    if arch.position_embedding == "learned" and seq_len > (arch.max_position_embeddings or 0):
        raise PlanError(f"{arch.name}: sequence length {seq_len} exceeds its "
                        f"{arch.max_position_embeddings} learned positions")
    dtype = canonical_dtype(dtype)
    hi = "bf16" if dtype == "fp8" else dtype  # precision of attention core, router and LM head
    h, a, t = arch.hidden_size, arch.num_heads, tp
    tokens = micro_batch * seq_len
    out: list[TrainingGemm] = []

    def linear(kind: str, m: int, n: int, k: int, count: int, scope: str,
               gemm_dtype: str = dtype, batch: int = 1, fraction: float = 1.0,
               replay: bool = True) -> None:
        """Forward, dgrad and wgrad GEMMs of Y[m x n] = X[m x k] W[k x n] (batched)."""
        if count <= 0:
            return
        shapes = {"fwd": (m, n, k, "nn"), "dgrad": (m, k, n, "nt"), "wgrad": (k, n, m, "tn")}
        for phase, (gm, gn, gk, layout) in shapes.items():
            problem = _problem(gm, gn, gk, batch, gemm_dtype, layout)
            out.append(TrainingGemm(kind, phase, problem, count, scope, fraction))
        if recompute and replay and scope != "head":
            problem = _problem(m, n, k, batch, gemm_dtype, "nn")
            out.append(TrainingGemm(kind, "recompute", problem, count, scope, fraction))

    causal_fraction = (seq_len + 1) / (2 * seq_len) if causal else 1.0
    heads_local = a // t
    scopes = (("dense", arch.num_dense_layers), ("moe", arch.num_moe_layers))
    for scope, layers in scopes:
        if layers == 0:
            continue
        # --- attention projections
        if arch.is_mla:
            q_out = heads_local * arch.qk_head_dim
            if arch.q_lora_rank:
                # Down-projections are replicated on every TP rank; up-projections are sharded.
                linear("mla_q_down", tokens, arch.q_lora_rank, h, layers, scope)
                linear("mla_q_up", tokens, q_out, arch.q_lora_rank, layers, scope)
            else:
                linear("qkv", tokens, q_out, h, layers, scope)
            linear("mla_kv_down", tokens, arch.kv_lora_rank + arch.qk_rope_head_dim, h, layers,
                   scope)
            linear("mla_kv_up", tokens, heads_local * (arch.qk_nope_head_dim + arch.v_head_dim),
                   arch.kv_lora_rank, layers, scope)
        else:
            kv_local = max(arch.num_kv_heads // t, 1)  # KV heads are replicated when tp > kv
            linear("qkv", tokens, (heads_local + 2 * kv_local) * arch.head_dim, h, layers, scope)
        if arch.position_embedding == "relative":
            # Transformer-XL: R = P W_r on the L position encodings, once per micro-batch.
            linear("rel_pos", seq_len, h // t, h, layers, scope)
        # --- attention core (batched over sequences x local heads)
        d_qk, d_v = arch.qk_head_dim, arch.v_dim
        core_batch = micro_batch * heads_local
        linear("attn_score", seq_len, seq_len, d_qk, layers, scope, hi, core_batch,
               causal_fraction)
        linear("attn_value", seq_len, d_v, seq_len, layers, scope, hi, core_batch,
               causal_fraction)
        if flash_attention:
            out.append(TrainingGemm(
                "attn_score", "recompute", _problem(seq_len, seq_len, d_qk, core_batch, hi, "nn"),
                layers, scope, causal_fraction))
        linear("attn_out", tokens, h, heads_local * d_v, layers, scope)
        # --- MLP
        up = 2 if arch.gated_mlp else 1
        if scope == "dense":
            linear("mlp_up", tokens, up * arch.intermediate_size // t, h, layers, scope)
            linear("mlp_down", tokens, h, arch.intermediate_size // t, layers, scope)
            continue
        linear("moe_router", tokens, arch.num_experts, h, layers, scope, hi)
        per_expert = max(1, round(tokens * arch.experts_per_token * ep / arch.num_experts))
        local_experts = arch.num_experts // ep
        f_e = max(arch.moe_intermediate_size // t, 1)
        linear("expert_up", per_expert, up * f_e, h, layers * local_experts, scope)
        linear("expert_down", per_expert, h, f_e, layers * local_experts, scope)
        if arch.shared_expert_intermediate_size:
            f_s = max(arch.shared_expert_intermediate_size // t, 1)
            linear("shared_up", tokens, up * f_s, h, layers, scope)
            linear("shared_down", tokens, h, f_s, layers, scope)
    linear("lm_head", tokens, math.ceil(arch.vocab_size / t), h, 1, "head", hi)
    return tuple(out)


def count_flops(gemms: tuple[TrainingGemm, ...] | list[TrainingGemm]) -> FlopCount:
    """Sum a GEMM list into model and hardware FLOPs, by phase and by kind."""
    by_phase: dict[str, float] = defaultdict(float)
    by_kind: dict[str, float] = defaultdict(float)
    model = hardware = 0.0
    for g in gemms:
        f = g.flops
        hardware += f
        by_phase[g.phase] += f
        if g.is_model_flop:
            model += f
            by_kind[g.kind] += f
    return FlopCount(model, hardware, dict(by_phase), dict(by_kind))


def step_gemms(arch: TransformerArch, *, seq_len: int, global_batch: int, micro_batch: int = 1,
               **kwargs: object) -> tuple[TrainingGemm, ...]:
    """The GEMMs of one optimizer step over ``global_batch`` sequences, ``count`` per step.

    Same entries as :func:`training_gemms` (keyword arguments pass through), with each count
    multiplied by the number of micro-batches, global_batch / micro_batch.
    """
    if global_batch < 1 or global_batch % micro_batch:
        raise PlanError(f"global batch {global_batch} is not a multiple of the micro-batch "
                        f"{micro_batch}")
    steps = global_batch // micro_batch
    gemms = training_gemms(arch, seq_len=seq_len, micro_batch=micro_batch,
                           **kwargs)  # type: ignore[arg-type]
    return tuple(TrainingGemm(g.kind, g.phase, g.problem, g.count * steps, g.scope,
                              g.work_fraction) for g in gemms)


def step_flops(arch: TransformerArch, *, seq_len: int, global_batch: int, **kwargs: object
               ) -> FlopCount:
    """FLOPs of one optimizer step over ``global_batch`` sequences (no tensor parallelism)."""
    return count_flops(step_gemms(arch, seq_len=seq_len, global_batch=global_batch, **kwargs))


def flops_per_token(arch: TransformerArch, *, seq_len: int, causal: bool = True,
                    recompute: bool = False, flash_attention: bool = True) -> FlopCount:
    """Training FLOPs per token (forward + backward) at sequence length ``seq_len``."""
    return step_flops(arch, seq_len=seq_len, global_batch=1, causal=causal, recompute=recompute,
                      flash_attention=flash_attention).scaled(1.0 / seq_len)
