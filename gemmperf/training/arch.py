"""Transformer architecture specs and their parameter counts.

A :class:`TransformerArch` is the shape information that decides a decoder-only transformer's
GEMMs and parameter count: width, depth, (grouped-query) attention heads, MLP width and kind
(gated SwiGLU/GeGLU or a plain GELU/ReLU MLP), mixture-of-experts routing and DeepSeek's
multi-head latent attention (MLA). :mod:`gemmperf.training.gemms` turns it into the GEMMs of a
training step.

Build one from a Hugging Face-style ``config.json`` or a bundled preset with
:func:`gemmperf.training.config.load_arch` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

from gemmperf.training.errors import ArchConfigError

_GATED_ACTS = frozenset({"swiglu", "geglu", "reglu"})
_ACTS = frozenset({"silu", "swish", "gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh",
                   "quick_gelu", "relu", "relu2", *_GATED_ACTS})
_POSITIONS = ("rope", "learned", "alibi", "relative", "none")

@dataclass(frozen=True)
class ParamCount:
    """Parameter counts of one architecture (plain counts, not bytes).

    ``embedding`` is the input token (plus learned position) embedding; ``lm_head`` the output
    projection when it is not tied to the input embedding (0 when tied). ``non_embedding``
    excludes both, as Kaplan et al. count N. ``matmul`` counts the weights that take part in a
    GEMM per token (every projection, experts, router, and the LM head matrix whether tied or
    not) -- the N of "6N" FLOPs per token. ``active`` replaces the routed experts by the
    ``experts_per_token`` that each token uses.
    """

    total: int
    embedding: int
    lm_head: int
    non_embedding: int
    active: int
    active_non_embedding: int
    matmul: int
    matmul_active: int


@dataclass(frozen=True)
class TransformerArch:
    """Shape of a decoder-only transformer (frozen; build with :func:`load_arch`).

    Attention has ``num_heads`` query heads and ``num_kv_heads`` key/value heads of ``head_dim``
    (grouped-query attention when fewer). With MLA (``kv_lora_rank > 0``) queries and keys have
    ``qk_nope_head_dim + qk_rope_head_dim`` per head and values ``v_head_dim``. Layers
    ``first_k_dense <= i`` with ``(i - first_k_dense) % moe_layer_freq == 0`` are MoE layers
    when ``num_experts > 0``; their routed experts have width ``moe_intermediate_size`` and the
    shared experts ``shared_expert_intermediate_size`` in total.
    """

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int | None = None
    tie_word_embeddings: bool = False
    gated_mlp: bool = True
    activation: str = "silu"
    norm: str = "rmsnorm"
    position_embedding: str = "rope"
    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    norm_bias: bool = False
    embedding_norm: bool = False
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0
    shared_expert_gate: bool = False
    first_k_dense: int = 0
    moe_layer_freq: int = 1
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    source: str = ""
    ignored_fields: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        _validate(self)

    # -- derived shape -------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def qk_head_dim(self) -> int:
        """Per-head width of queries and keys (the K dimension of the score GEMM)."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim if self.is_mla else self.head_dim

    @property
    def v_dim(self) -> int:
        """Per-head width of values (the N dimension of the attention x V GEMM)."""
        return self.v_head_dim if self.is_mla else self.head_dim

    def is_moe_layer(self, index: int) -> bool:
        """Whether layer ``index`` (0-based) has routed experts (DeepSeek's placement rule)."""
        return (self.is_moe and index >= self.first_k_dense
                and (index - self.first_k_dense) % self.moe_layer_freq == 0)

    @property
    def num_moe_layers(self) -> int:
        return _moe_layer_count(self)

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    @property
    def params(self) -> ParamCount:
        """Parameter counts (see :class:`ParamCount`)."""
        return _cached_param_count(self)

    def with_name(self, name: str) -> TransformerArch:
        return replace(self, name=name)


def _validate(a: TransformerArch) -> None:
    def positive(name: str, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ArchConfigError(f"{a.name}: {name} must be a positive integer, got {value!r}")

    for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                 "vocab_size"):
        positive(name, getattr(a, name))
    if a.num_heads % a.num_kv_heads:
        raise ArchConfigError(
            f"{a.name}: num_key_value_heads={a.num_kv_heads} does not divide "
            f"num_attention_heads={a.num_heads} (grouped-query attention needs whole groups)")
    if a.activation not in _ACTS:
        raise ArchConfigError(f"{a.name}: unknown hidden_act {a.activation!r}; "
                              f"use one of {', '.join(sorted(_ACTS))}")
    if a.position_embedding not in _POSITIONS:
        raise ArchConfigError(f"{a.name}: position_embedding must be one of {_POSITIONS}")
    if a.max_position_embeddings is not None and a.max_position_embeddings < 1:
        raise ArchConfigError(f"{a.name}: max_position_embeddings must be positive, got "
                              f"{a.max_position_embeddings}")
    if a.position_embedding == "learned" and not a.max_position_embeddings:
        raise ArchConfigError(f"{a.name}: learned position embeddings need "
                              "max_position_embeddings")
    if a.norm not in ("rmsnorm", "layernorm"):
        raise ArchConfigError(f"{a.name}: norm_type must be rmsnorm or layernorm, got {a.norm!r}")
    if a.num_dense_layers and a.intermediate_size <= 0:
        raise ArchConfigError(f"{a.name}: intermediate_size is required for the dense MLP layers")
    if a.is_moe:
        positive("num_experts_per_tok", a.experts_per_token)
        positive("moe_intermediate_size", a.moe_intermediate_size)
        positive("moe_layer_freq", a.moe_layer_freq)
        if a.experts_per_token > a.num_experts:
            raise ArchConfigError(f"{a.name}: num_experts_per_tok={a.experts_per_token} exceeds "
                                  f"the {a.num_experts} experts")
        if not 0 <= a.first_k_dense < a.num_layers:
            raise ArchConfigError(f"{a.name}: first_k_dense_replace={a.first_k_dense} leaves no "
                                  f"MoE layer among {a.num_layers}")
    elif a.experts_per_token or a.shared_expert_intermediate_size or a.first_k_dense:
        raise ArchConfigError(f"{a.name}: MoE fields given without a number of experts "
                              "(num_local_experts / n_routed_experts)")
    mla = (a.kv_lora_rank, a.qk_nope_head_dim, a.qk_rope_head_dim, a.v_head_dim)
    if any(mla) and not all(mla):
        raise ArchConfigError(f"{a.name}: multi-head latent attention needs all of kv_lora_rank, "
                              "qk_nope_head_dim, qk_rope_head_dim, v_head_dim")
    if a.q_lora_rank and not a.is_mla:
        raise ArchConfigError(f"{a.name}: q_lora_rank is only meaningful with kv_lora_rank (MLA)")


# -- parameter counting ------------------------------------------------------------------------

@lru_cache(maxsize=1024)
def _moe_layer_count(a: TransformerArch) -> int:
    return sum(a.is_moe_layer(i) for i in range(a.num_layers))


@lru_cache(maxsize=1024)
def _cached_param_count(a: TransformerArch) -> ParamCount:
    return _param_count(a)


def _attention_params(a: TransformerArch) -> tuple[int, int]:
    """(matmul weights, other params: biases and norms inside attention) of one layer."""
    h = a.hidden_size
    if a.is_mla:
        q_out = a.num_heads * a.qk_head_dim
        if a.q_lora_rank:
            q = h * a.q_lora_rank + a.q_lora_rank * q_out
            extra = a.q_lora_rank  # q_a_layernorm scale
        else:
            q, extra = h * q_out, 0
        kv = h * (a.kv_lora_rank + a.qk_rope_head_dim) \
            + a.kv_lora_rank * a.num_heads * (a.qk_nope_head_dim + a.v_head_dim)
        extra += a.kv_lora_rank  # kv_a_layernorm scale
        out = a.num_heads * a.v_head_dim * h
        return q + kv + out, extra
    qkv_out = (a.num_heads + 2 * a.num_kv_heads) * a.head_dim
    weights = h * qkv_out + a.num_heads * a.head_dim * h
    if a.position_embedding == "relative":
        weights += h * h  # Transformer-XL style projection of the relative position encodings
    biases = (qkv_out if a.qkv_bias else 0) + (h if a.out_bias else 0)
    return weights, biases


def _mlp_params(a: TransformerArch, width: int) -> tuple[int, int]:
    """(matmul weights, biases) of one MLP or expert of intermediate ``width``."""
    h = a.hidden_size
    up = (2 if a.gated_mlp else 1) * width
    weights = h * up + width * h
    return weights, (up + h if a.mlp_bias else 0)


def _param_count(a: TransformerArch) -> ParamCount:
    h = a.hidden_size
    norm = h * (2 if a.norm_bias else 1)
    attn_w, attn_other = _attention_params(a)
    dense_w, dense_b = _mlp_params(a, a.intermediate_size) if a.intermediate_size else (0, 0)
    layer_common = attn_w + attn_other + 2 * norm
    total = active = matmul = matmul_active = 0
    n_moe = a.num_moe_layers
    n_dense = a.num_layers - n_moe
    total += n_dense * (layer_common + dense_w + dense_b)
    matmul += n_dense * (attn_w + dense_w)
    if n_moe:
        exp_w, exp_b = _mlp_params(a, a.moe_intermediate_size)
        sh_w, sh_b = (_mlp_params(a, a.shared_expert_intermediate_size)
                      if a.shared_expert_intermediate_size else (0, 0))
        router = h * a.num_experts + (h if a.shared_expert_gate else 0)
        routed_all = a.num_experts * (exp_w + exp_b)
        routed_act = a.experts_per_token * (exp_w + exp_b)
        moe_total = layer_common + router + sh_w + sh_b
        total += n_moe * (moe_total + routed_all)
        active += n_moe * (moe_total + routed_act)
        matmul += n_moe * (attn_w + router + sh_w + a.num_experts * exp_w)
        matmul_active += n_moe * (attn_w + router + sh_w + a.experts_per_token * exp_w)
    active += n_dense * (layer_common + dense_w + dense_b)
    matmul_active += n_dense * (attn_w + dense_w)
    final_norm = norm + (norm if a.embedding_norm else 0)
    embedding = a.vocab_size * h
    if a.position_embedding == "learned":
        embedding += (a.max_position_embeddings or 0) * h
    lm_head = 0 if a.tie_word_embeddings else a.vocab_size * h
    head_matmul = a.vocab_size * h  # the LM head GEMM runs whether or not the matrix is tied
    total += final_norm + embedding + lm_head
    active += final_norm + embedding + lm_head
    return ParamCount(
        total=total, embedding=embedding, lm_head=lm_head,
        non_embedding=total - embedding - lm_head,
        active=active, active_non_embedding=active - embedding - lm_head,
        matmul=matmul + head_matmul, matmul_active=matmul_active + head_matmul,
    )


def load_arch(spec: str | Path | Mapping[str, Any] | TransformerArch, *,
              strict: bool = True) -> TransformerArch:
    """An architecture from a preset name, a ``config.json`` path, a config mapping, or itself
    (see :func:`gemmperf.training.config.load_arch`)."""
    from gemmperf.training.config import load_arch as _load

    return _load(spec, strict=strict)
