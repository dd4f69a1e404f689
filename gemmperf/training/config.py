"""Architecture configs: Hugging Face-style ``config.json`` parsing and the bundled presets.

Parsing is strict: an unknown field is an error unless it is on the list of fields known not to
change any shape (token ids, rope scaling, dropout, epsilons, ...), because a silently ignored
field (say, a new MoE knob) would give a silently wrong FLOP count. ``strict=False`` turns
unknown fields into a recorded list (``ignored_fields``) for configs of newer model families.
Presets live in ``data/archs/*.json``, each with the source of its numbers and, where published,
how the model was trained (sequence length, batch, tokens).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from gemmperf._paths import data_dir
from gemmperf.training.arch import _GATED_ACTS, TransformerArch
from gemmperf.training.errors import ArchConfigError

# Canonical field -> accepted spellings (Hugging Face names first; GPT-2, OPT, BLOOM, MPT and
# Qwen-MoE spell some of them differently).
_ALIASES: dict[str, tuple[str, ...]] = {
    "hidden_size": ("hidden_size", "n_embd", "n_embed", "d_model"),
    "num_layers": ("num_hidden_layers", "n_layer", "n_layers", "num_layers"),
    "num_heads": ("num_attention_heads", "n_head", "n_heads"),
    "num_kv_heads": ("num_key_value_heads", "n_head_kv", "num_kv_heads"),
    "head_dim": ("head_dim",),
    "intermediate_size": ("intermediate_size", "ffn_dim", "n_inner", "ffn_hidden_size"),
    "expansion_ratio": ("expansion_ratio",),
    "vocab_size": ("vocab_size",),
    "max_position_embeddings": ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len",
                                "seq_length"),
    "tie_word_embeddings": ("tie_word_embeddings",),
    "hidden_act": ("hidden_act", "activation_function"),
    "mlp_type": ("mlp_type",),
    "norm_type": ("norm_type",),
    "position_embedding": ("position_embedding",),
    "attention_bias": ("attention_bias",),
    "mlp_bias": ("mlp_bias",),
    "no_bias": ("no_bias",),
    "multi_query": ("multi_query",),
    "learned_pos_emb": ("learned_pos_emb",),
    "num_experts": ("num_local_experts", "n_routed_experts", "num_experts"),
    "experts_per_token": ("num_experts_per_tok", "moe_top_k"),
    "moe_intermediate_size": ("moe_intermediate_size",),
    "num_shared_experts": ("n_shared_experts", "num_shared_experts"),
    "shared_expert_intermediate_size": ("shared_expert_intermediate_size",),
    "first_k_dense": ("first_k_dense_replace",),
    "moe_layer_freq": ("moe_layer_freq", "decoder_sparse_step"),
    "q_lora_rank": ("q_lora_rank",),
    "kv_lora_rank": ("kv_lora_rank",),
    "qk_nope_head_dim": ("qk_nope_head_dim",),
    "qk_rope_head_dim": ("qk_rope_head_dim",),
    "v_head_dim": ("v_head_dim",),
    "word_embed_proj_dim": ("word_embed_proj_dim",),
    "model_type": ("model_type",),
}

# Fields that change no GEMM shape and no parameter count gemmperf models.
_IGNORED = frozenset({
    "architectures", "auto_map", "bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id",
    "sep_token_id", "decoder_start_token_id", "torch_dtype", "transformers_version", "use_cache",
    "rope_theta", "rope_scaling", "rope_interleave", "rotary_pct", "rotary_emb_base",
    "partial_rotary_factor", "rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon",
    "initializer_range", "init_std", "attention_dropout", "hidden_dropout", "dropout",
    "resid_pdrop", "embd_pdrop", "emb_pdrop", "attn_pdrop", "activation_dropout", "layerdrop",
    "sliding_window", "use_sliding_window", "max_window_layers", "pretraining_tp",
    "output_router_logits", "router_aux_loss_coef", "router_jitter_noise", "aux_loss_alpha",
    "seq_aux", "norm_topk_prob", "routed_scaling_factor", "scoring_func", "topk_method",
    "n_group", "topk_group", "ep_size", "num_nextn_predict_layers", "quantization_config",
    "do_layer_norm_before", "enable_bias", "_remove_final_layer_norm", "prefix",
    "apply_residual_connection_post_layernorm", "attention_softmax_in_fp32", "bias_dropout_fusion",
    "masked_softmax_fusion", "offset_alibi", "skip_bias_add", "skip_bias_add_qkv",
    "slow_but_exact", "scale_attn_weights", "scale_attn_by_inverse_layer_idx",
    "reorder_and_upcast_attn", "summary_type", "summary_use_proj", "summary_activation",
    "summary_proj_to_labels", "summary_first_dropout", "task_specific_params", "attn_config",
    "init_config", "init_device", "logit_scale", "embedding_fraction", "verbose",
    "use_return_dict", "return_dict", "output_attentions", "output_hidden_states",
    "qk_layernorm", "use_qk_norm", "bias",
})


# Family conventions a config does not spell out (what the Hugging Face modeling code hard-wires).
_FAMILY: dict[str, dict[str, Any]] = {
    "llama": {"gated": True, "norm": "rmsnorm", "pos": "rope", "tie": False},
    "mistral": {"gated": True, "norm": "rmsnorm", "pos": "rope", "tie": False},
    "mixtral": {"gated": True, "norm": "rmsnorm", "pos": "rope", "tie": False},
    "qwen2": {"gated": True, "norm": "rmsnorm", "pos": "rope", "tie": False, "qkv_bias": True},
    "qwen2_moe": {"gated": True, "norm": "rmsnorm", "pos": "rope", "tie": False,
                  "qkv_bias": True, "shared_gate": True},
    "qwen3": {"gated": True, "norm": "rmsnorm", "pos": "rope", "tie": False},
    "qwen3_moe": {"gated": True, "norm": "rmsnorm", "pos": "rope", "tie": False},
    "deepseek_v2": {"gated": True, "norm": "rmsnorm", "pos": "rope", "tie": False},
    "deepseek_v3": {"gated": True, "norm": "rmsnorm", "pos": "rope", "tie": False},
    "gpt2": {"gated": False, "norm": "layernorm", "pos": "learned", "tie": True, "bias": True},
    "opt": {"gated": False, "norm": "layernorm", "pos": "learned", "tie": True, "bias": True},
    "bloom": {"gated": False, "norm": "layernorm", "pos": "alibi", "tie": True, "bias": True,
              "embedding_norm": True},
    "mpt": {"gated": False, "norm": "layernorm", "pos": "alibi", "tie": True, "bias": True},
}
# A config without model_type gets Hugging Face's PretrainedConfig default for tying (True).
_GENERIC: dict[str, Any] = {"gated": None, "norm": "rmsnorm", "pos": "rope", "tie": True}


# -- parsing -----------------------------------------------------------------------------------

def _take(cfg: dict[str, Any], canonical: str) -> Any:
    found = [(k, cfg.pop(k)) for k in _ALIASES[canonical] if k in cfg]
    values = {json.dumps(v, sort_keys=True) for _, v in found}
    if len(values) > 1:
        names = ", ".join(f"{k}={v!r}" for k, v in found)
        raise ArchConfigError(f"conflicting values for {canonical}: {names}")
    return found[0][1] if found else None


#: Config fields that are booleans.
_FLAGS = ("multi_query", "no_bias", "attention_bias", "mlp_bias", "learned_pos_emb",
          "tie_word_embeddings")


def _as_int(name: str, value: Any, *, allow_none: bool = True) -> int | None:
    if value is None:
        if allow_none:
            return None
        raise ArchConfigError(f"config lacks {name}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or int(value) != value:
        raise ArchConfigError(f"{name} must be an integer, got {value!r}")
    return int(value)


def arch_from_config(config: Mapping[str, Any], *, name: str | None = None, source: str = "",
                     strict: bool = True) -> TransformerArch:
    """Build a :class:`TransformerArch` from a Hugging Face-style ``config.json`` mapping.

    Raises :class:`ArchConfigError` for missing required fields, inconsistent ones (heads not
    dividing the hidden size without an explicit ``head_dim``, kv heads not dividing heads,
    partial MoE or MLA fields) and, when ``strict``, fields gemmperf does not know.
    """
    if not isinstance(config, Mapping):
        raise ArchConfigError("an architecture config must be a JSON object")
    cfg = dict(config)
    if cfg.pop("mlp_only_layers", None):
        raise ArchConfigError("mlp_only_layers (dense layers at arbitrary positions) is not "
                              "modelled; use first_k_dense_replace / moe_layer_freq")
    v = {c: _take(cfg, c) for c in _ALIASES}
    unknown = sorted(k for k in cfg if k not in _IGNORED and not k.startswith("_"))
    label = name or str(config.get("_name_or_path") or v["model_type"] or "config")
    if unknown and strict:
        raise ArchConfigError(
            f"{label}: unknown config field(s) {', '.join(unknown)}; gemmperf cannot tell whether "
            "they change layer shapes (pass strict=False / --lenient to ignore them)")
    for flag in _FLAGS:   # bool("false") is True: a flag is a JSON true/false (or 0/1)
        if v[flag] is not None and not (isinstance(v[flag], bool) or v[flag] in (0, 1)):
            raise ArchConfigError(f"{label}: {flag} must be true or false, got {v[flag]!r}")
    model_type = v["model_type"]
    if model_type is not None and model_type not in _FAMILY and strict:
        raise ArchConfigError(
            f"{label}: unsupported model_type {model_type!r}; supported: "
            f"{', '.join(sorted(_FAMILY))} (or omit model_type and give mlp_type/norm_type)")
    fam = _FAMILY.get(model_type, _GENERIC)

    def req(canonical: str) -> int:
        value = _as_int(canonical, v[canonical], allow_none=False)
        assert value is not None
        return value

    h = req("hidden_size")
    heads = req("num_heads")
    kv_heads = _as_int("num_key_value_heads", v["num_kv_heads"])
    if v["multi_query"]:
        kv_heads = 1
    kv_heads = heads if kv_heads is None else kv_heads
    head_dim = _as_int("head_dim", v["head_dim"])
    is_mla = bool(v["kv_lora_rank"])
    if head_dim is None:
        if h % heads and not is_mla:
            raise ArchConfigError(f"{label}: num_attention_heads={heads} does not divide "
                                  f"hidden_size={h}; give head_dim explicitly if that is intended")
        head_dim = max(h // heads, 1)
    if v["word_embed_proj_dim"] not in (None, h):
        raise ArchConfigError(f"{label}: word_embed_proj_dim != hidden_size is not modelled")

    act = str(v["hidden_act"] or "gelu").lower()
    mlp_type = v["mlp_type"]
    if mlp_type not in (None, "gated", "plain"):
        raise ArchConfigError(f"{label}: mlp_type must be 'gated' or 'plain', got {mlp_type!r}")
    if mlp_type is not None:
        gated = mlp_type == "gated"
    elif act in _GATED_ACTS:
        gated = True
    elif fam["gated"] is not None:
        gated = fam["gated"]
    else:
        gated = act in ("silu", "swish")  # SiLU MLPs in the wild are SwiGLU
    inter = _as_int("intermediate_size", v["intermediate_size"])
    if inter is None and v["expansion_ratio"] is not None:
        inter = round(float(v["expansion_ratio"]) * h)
    if inter is None and not gated and model_type in ("gpt2", "bloom", "mpt", None):
        inter = 4 * h  # GPT-2/BLOOM default n_inner = 4 * hidden

    bias_default = bool(fam.get("bias", False)) and not v["no_bias"]
    attn_bias = v["attention_bias"]
    qkv_bias = bool(attn_bias) if attn_bias is not None else (bias_default or
                                                              fam.get("qkv_bias", False))
    out_bias = bool(attn_bias) if attn_bias is not None else bias_default
    mlp_bias = bool(v["mlp_bias"]) if v["mlp_bias"] is not None else bias_default
    norm = str(v["norm_type"] or fam["norm"]).lower()
    if norm in ("low_precision_layernorm", "layer_norm"):
        norm = "layernorm"
    if norm in ("rms_norm", "rms"):
        norm = "rmsnorm"
    pos = v["position_embedding"] or fam["pos"]
    if v["learned_pos_emb"] is not None:
        pos = "learned" if v["learned_pos_emb"] else "alibi"

    n_exp = _as_int("num_experts", v["num_experts"]) or 0
    moe_inter = _as_int("moe_intermediate_size", v["moe_intermediate_size"])
    if n_exp and moe_inter is None:
        moe_inter = inter  # Mixtral: experts use intermediate_size
    shared = _as_int("shared_expert_intermediate_size", v["shared_expert_intermediate_size"])
    n_shared = _as_int("n_shared_experts", v["num_shared_experts"]) or 0
    if shared is None:
        shared = n_shared * (moe_inter or 0)
    tie = v["tie_word_embeddings"]
    arch = TransformerArch(
        name=label, hidden_size=h, num_layers=req("num_layers"), num_heads=heads,
        num_kv_heads=kv_heads, head_dim=head_dim, intermediate_size=inter or 0,
        vocab_size=req("vocab_size"),
        max_position_embeddings=_as_int("max_position_embeddings", v["max_position_embeddings"]),
        tie_word_embeddings=bool(fam["tie"] if tie is None else tie),
        gated_mlp=gated, activation=act, norm=norm, position_embedding=pos,
        qkv_bias=qkv_bias, out_bias=out_bias, mlp_bias=mlp_bias,
        norm_bias=norm == "layernorm" and bias_default,
        embedding_norm=bool(fam.get("embedding_norm", False)),
        num_experts=n_exp, experts_per_token=_as_int("num_experts_per_tok",
                                                     v["experts_per_token"]) or 0,
        moe_intermediate_size=(moe_inter or 0) if n_exp else 0,
        shared_expert_intermediate_size=shared or 0,
        shared_expert_gate=bool(fam.get("shared_gate", False)) and bool(shared),
        first_k_dense=_as_int("first_k_dense_replace", v["first_k_dense"]) or 0,
        moe_layer_freq=_as_int("moe_layer_freq", v["moe_layer_freq"]) or 1,
        q_lora_rank=_as_int("q_lora_rank", v["q_lora_rank"]) or 0,
        kv_lora_rank=_as_int("kv_lora_rank", v["kv_lora_rank"]) or 0,
        qk_nope_head_dim=_as_int("qk_nope_head_dim", v["qk_nope_head_dim"]) or 0,
        qk_rope_head_dim=_as_int("qk_rope_head_dim", v["qk_rope_head_dim"]) or 0,
        v_head_dim=_as_int("v_head_dim", v["v_head_dim"]) or 0,
        source=source, ignored_fields=tuple(unknown),
    )
    return arch


# -- presets -----------------------------------------------------------------------------------

def presets_dir() -> Path:
    """Folder of the bundled architecture presets (``data/archs``)."""
    return data_dir() / "archs"


@dataclass(frozen=True)
class ArchPreset:
    """A bundled architecture with where its numbers come from and how it was trained."""

    key: str
    display_name: str
    source: str
    notes: str
    arch: TransformerArch
    training: Mapping[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=1)
def _load_presets() -> dict[str, ArchPreset]:
    presets: dict[str, ArchPreset] = {}
    folder = presets_dir()
    if not folder.is_dir():
        return presets
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text())
        key = doc.get("name") or path.stem
        if not doc.get("source"):
            raise ArchConfigError(f"preset {path.name} must cite its config source")
        arch = arch_from_config(doc["config"], name=key, source=doc["source"])
        presets[key] = ArchPreset(key=key, display_name=doc.get("display_name", key),
                                  source=doc["source"], notes=doc.get("notes", ""), arch=arch,
                                  training=doc.get("training", {}))
    return presets


def list_presets() -> list[ArchPreset]:
    """All bundled presets, sorted by name."""
    return list(_load_presets().values())


def get_preset(name: str) -> ArchPreset:
    """The preset called ``name`` (case-insensitive; ``_`` and ``-`` interchangeable)."""
    presets = _load_presets()
    key = name.strip().lower().replace("_", "-")
    if key in presets:
        return presets[key]
    raise ArchConfigError(f"unknown architecture preset {name!r}; presets: "
                          f"{', '.join(presets) or '(none found)'}; or give a config.json path")


def load_arch(spec: str | Path | Mapping[str, Any] | TransformerArch, *,
              strict: bool = True) -> TransformerArch:
    """An architecture from a preset name, a ``config.json`` path, a config mapping, or itself.

    A string ending in ``.json`` or naming an existing file is read as a config; anything else
    is a preset name.
    """
    if isinstance(spec, TransformerArch):
        return spec
    if isinstance(spec, Mapping):
        return arch_from_config(spec, strict=strict)
    text = str(spec)
    path = Path(text).expanduser()
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise ArchConfigError(f"no such config file: {path}")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ArchConfigError(f"{path} is not valid JSON: {exc}") from None
        except UnicodeDecodeError:
            raise ArchConfigError(f"{path} is not UTF-8 text (a config.json is)") from None
        except OSError as exc:
            raise ArchConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if not isinstance(config, Mapping):
            raise ArchConfigError(f"{path}: a config.json holds one JSON object")
        return arch_from_config(config, name=path.parent.name if path.name == "config.json"
                                else path.stem, source=str(path), strict=strict)
    return get_preset(text).arch
