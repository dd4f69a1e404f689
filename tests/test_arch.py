"""Architecture specs, parameter counts and the GEMMs of a training step vs published formulas."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from gemmperf.training.arch import TransformerArch
from gemmperf.training.config import arch_from_config, get_preset, list_presets, load_arch
from gemmperf.training.errors import ArchConfigError, PlanError
from gemmperf.training.gemms import (
    ATTENTION_CORE,
    count_flops,
    flops_per_token,
    step_flops,
    step_gemms,
    training_gemms,
)

LLAMA2_7B = {
    "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 11008, "max_position_embeddings": 4096, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None,
    "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.31.0.dev0",
    "use_cache": True, "vocab_size": 32000,
}


# -- parameter counts against the published model sizes ---------------------------------------

@pytest.mark.parametrize(("preset", "published_total", "published_active", "tol"), [
    ("llama-2-7b", 6.738e9, None, 0.001),          # HF model card: 6,738,415,616
    ("llama-2-70b", 68.98e9, None, 0.001),         # 68,976,648,192
    ("llama-3-8b", 8.03e9, None, 0.001),
    ("llama-3.1-405b", 405.85e9, None, 0.001),
    ("mistral-7b", 7.24e9, None, 0.001),
    ("mixtral-8x7b", 46.7e9, 12.9e9, 0.01),        # Mistral AI: 46.7B total, 12.9B active
    ("qwen2.5-7b", 7.61e9, None, 0.002),
    ("deepseek-v3", 671e9, 37e9, 0.02),            # DeepSeek-V3 report: 671B total, 37B active
    ("bloom-176b", 176.247e9, None, 0.001),        # BLOOM paper: 176,247M
    ("palm-540b", 540.35e9, None, 0.001),          # PaLM paper: 540.35B
    ("megatron-1t", 1008.0e9, None, 0.001),        # Narayanan et al. 2021 Table 1
    ("megatron-530b", 529.6e9, None, 0.001),
    ("chinchilla-70b", 70e9, None, 0.01),
])
def test_parameter_counts_match_published_sizes(preset, published_total, published_active, tol):
    params = get_preset(preset).arch.params
    assert params.total == pytest.approx(published_total, rel=tol)
    if published_active is not None:
        assert params.active == pytest.approx(published_active, rel=max(tol, 0.02))
    else:
        assert params.active == params.total


def test_every_preset_cites_a_source_and_parses():
    presets = list_presets()
    assert len(presets) >= 15
    for p in presets:
        assert p.source and (p.source.startswith("http") or " " in p.source)
        assert p.arch.source == p.source


def test_hf_config_round_trip_equals_the_preset(tmp_path):
    path = tmp_path / "Llama-2-7b-hf" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(LLAMA2_7B))
    arch = load_arch(path)
    preset = get_preset("llama-2-7b").arch
    assert arch.name == "Llama-2-7b-hf"
    assert arch.params == preset.params
    assert (arch.hidden_size, arch.num_layers, arch.num_kv_heads, arch.gated_mlp) == \
        (4096, 32, 32, True)


def test_gpt2_style_fields_and_family_defaults():
    arch = arch_from_config({"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12,
                             "n_positions": 1024, "vocab_size": 50257})
    assert arch.intermediate_size == 4 * 768 and not arch.gated_mlp
    assert arch.tie_word_embeddings and arch.position_embedding == "learned"
    # GPT-2 small: 124,439,808 parameters (HF gpt2)
    assert arch.params.total == 124_439_808


# -- clear errors for bad configs ---------------------------------------------------------------

@pytest.mark.parametrize(("change", "message"), [
    ({"num_attention_heads": 30}, "does not divide hidden_size"),
    ({"num_key_value_heads": 5}, "does not divide num_attention_heads"),
    ({"my_new_moe_knob": 3}, "unknown config field"),
    ({"hidden_act": "tanh"}, "unknown hidden_act"),
    ({"num_experts_per_tok": 2}, "MoE fields given without a number of experts"),
    ({"num_local_experts": 8}, "num_experts_per_tok must be a positive integer"),
    ({"kv_lora_rank": 512}, "multi-head latent attention needs all"),
    ({"model_type": "mamba"}, "unsupported model_type"),
    ({"hidden_size": 4096.5}, "must be an integer"),
    ({"num_hidden_layers": 0}, "must be a positive integer"),
    ({"n_embd": 2048}, "conflicting values for hidden_size"),
])
def test_bad_configs_fail_with_one_clear_line(change, message):
    with pytest.raises(ArchConfigError, match=message):
        arch_from_config({**LLAMA2_7B, **change})


def test_missing_required_field():
    cfg = dict(LLAMA2_7B)
    del cfg["vocab_size"]
    with pytest.raises(ArchConfigError, match="lacks vocab_size"):
        arch_from_config(cfg)


def test_lenient_parsing_records_what_it_ignored():
    arch = arch_from_config({**LLAMA2_7B, "fancy_field": 1}, strict=False)
    assert arch.ignored_fields == ("fancy_field",)
    assert arch.params == get_preset("llama-2-7b").arch.params


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(ArchConfigError, match="unknown architecture preset 'llama-9'"):
        load_arch("llama-9")
    with pytest.raises(ArchConfigError, match="no such config file"):
        load_arch(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ArchConfigError, match="not valid JSON"):
        load_arch(bad)


# -- GEMM list: shapes ---------------------------------------------------------------------------

def _by(gemms, kind, phase):
    return [g for g in gemms if g.kind == kind and g.phase == phase]


def test_dgrad_and_wgrad_are_the_transposed_products():
    arch = load_arch("llama-2-70b")
    gemms = training_gemms(arch, seq_len=4096, micro_batch=2, tp=8, flash_attention=False)
    tokens = 2 * 4096
    qkv = {g.phase: g.problem for g in gemms if g.kind == "qkv"}
    n_local = (64 // 8 + 2 * 8 // 8) * 128  # GQA: 8 query heads + 1 K + 1 V head per rank
    assert qkv["fwd"].shape == (tokens, n_local, 8192)
    assert qkv["dgrad"].shape == (tokens, 8192, n_local)
    assert qkv["wgrad"].shape == (8192, n_local, tokens)
    score = _by(gemms, "attn_score", "fwd")[0].problem
    assert (score.m, score.n, score.k, score.batch) == (4096, 4096, 128, 2 * 64 // 8)
    assert _by(gemms, "mlp_up", "fwd")[0].problem.n == 2 * 28672 // 8   # SwiGLU gate + up


def test_mla_shapes_for_deepseek_v3():
    arch = load_arch("deepseek-v3")
    gemms = training_gemms(arch, seq_len=4096, micro_batch=1)
    kinds = {g.kind for g in gemms}
    assert {"mla_q_down", "mla_q_up", "mla_kv_down", "mla_kv_up", "expert_up",
            "shared_up", "moe_router"} <= kinds
    assert _by(gemms, "attn_score", "fwd")[0].problem.k == 128 + 64
    assert _by(gemms, "attn_value", "fwd")[0].problem.n == 128
    expert = next(g for g in _by(gemms, "expert_up", "fwd") if g.scope == "moe")
    assert expert.problem.m == 4096 * 8 // 256          # tokens x top_k / experts per expert
    assert expert.count == 256 * (61 - 3)                # every expert of the 58 MoE layers
    assert _by(gemms, "mlp_up", "fwd")[0].count == 3     # first_k_dense_replace


# -- FLOPs against the published formulas ------------------------------------------------------

def test_weight_gemms_are_exactly_6n_per_token():
    for name in ("llama-2-7b", "llama-3-70b", "mixtral-8x7b", "qwen2.5-7b"):
        arch = load_arch(name)
        per_token = flops_per_token(arch, seq_len=4096)
        weights = per_token.model - sum(per_token.by_kind.get(k, 0.0) for k in ATTENTION_CORE)
        assert weights == pytest.approx(6 * arch.params.matmul_active, rel=1e-12), name
        # ... which is 6N for N without the input embedding (a lookup, no GEMM), up to the norms
        assert weights == pytest.approx(6 * (arch.params.active - arch.params.embedding),
                                        rel=1e-4)


def test_palm_6n_plus_12lhqt_on_palm_540b():
    arch = load_arch("palm-540b")
    seq = 2048
    f = flops_per_token(arch, seq_len=seq, causal=False, flash_attention=False)
    lhqt = 12 * arch.num_layers * arch.num_heads * arch.head_dim * seq
    assert f.model == pytest.approx(6 * arch.params.matmul + lhqt, rel=1e-12)
    # PaLM's N counts every parameter (540.35B); the difference is the layer-norm scales.
    assert f.model == pytest.approx(6 * arch.params.total + lhqt, rel=1e-5)


@pytest.mark.parametrize("name", ["megatron-1t", "gpt-3-175b", "megatron-530b"])
def test_megatron_formulas_without_and_with_full_recomputation(name):
    arch = load_arch(name)
    B, s, layers, h, V = 3072, 2048, arch.num_layers, arch.hidden_size, arch.vocab_size
    plain = step_flops(arch, seq_len=s, global_batch=B, causal=False, flash_attention=False)
    assert plain.model == pytest.approx(72 * B * s * layers * h * h
                                        * (1 + s / (6 * h) + V / (12 * h * layers)), rel=1e-12)
    assert plain.hardware == plain.model
    rc = step_flops(arch, seq_len=s, global_batch=B, causal=False, flash_attention=False,
                    recompute=True)
    assert rc.hardware == pytest.approx(96 * B * s * layers * h * h
                                        * (1 + s / (6 * h) + V / (16 * layers * h)), rel=1e-12)
    assert rc.model == plain.model


def test_deepseek_non_embedding_flops_per_token_formula():
    arch = load_arch("gpt-3-175b")
    seq = 2048
    f = flops_per_token(arch, seq_len=seq, causal=False, flash_attention=False)
    m = f.model - f.by_kind["lm_head"]
    n, d = arch.num_layers, arch.hidden_size
    assert m == pytest.approx(72 * n * d * d + 12 * n * d * seq, rel=1e-12)


def test_causal_attention_counts_the_unmasked_pairs():
    arch = load_arch("llama-3-8b")
    seq = 8192
    causal = flops_per_token(arch, seq_len=seq, causal=True, flash_attention=False)
    full = flops_per_token(arch, seq_len=seq, causal=False, flash_attention=False)
    for kind in ATTENTION_CORE:
        assert causal.by_kind[kind] == pytest.approx(full.by_kind[kind] * (seq + 1) / (2 * seq))
    assert causal.by_kind["qkv"] == full.by_kind["qkv"]


def test_recomputation_is_hardware_not_model_flops():
    arch = load_arch("llama-2-7b")
    base = count_flops(training_gemms(arch, seq_len=4096, flash_attention=False))
    flash = count_flops(training_gemms(arch, seq_len=4096, flash_attention=True))
    full = count_flops(training_gemms(arch, seq_len=4096, recompute=True, flash_attention=False))
    assert base.model == flash.model == full.model
    # FlashAttention replays S = QK^T once in the backward pass.
    assert flash.hardware - base.hardware == pytest.approx(base.by_kind["attn_score"] / 3)
    # Full recomputation replays every layer's forward GEMMs (not the LM head).
    assert full.by_phase["recompute"] == pytest.approx(
        base.by_phase["fwd"] - base.by_kind["lm_head"] / 3)


def test_tensor_parallel_split_conserves_flops():
    arch = load_arch("llama-2-70b")
    one = count_flops(training_gemms(arch, seq_len=4096, tp=1))
    eight = count_flops(training_gemms(arch, seq_len=4096, tp=8))
    assert eight.model * 8 == pytest.approx(one.model, rel=1e-9)


def test_moe_expert_load_and_expert_parallel_grouping():
    arch = load_arch("mixtral-8x7b")
    one = training_gemms(arch, seq_len=4096, micro_batch=1, ep=1)
    four = training_gemms(arch, seq_len=4096, micro_batch=1, ep=4)
    up1 = _by(one, "expert_up", "fwd")[0]
    up4 = _by(four, "expert_up", "fwd")[0]
    assert up1.problem.m == 4096 * 2 // 8 and up1.count == 8 * 32
    assert up4.problem.m == 4 * up1.problem.m and up4.count == 2 * 32  # 2 local experts
    assert count_flops(one).model == pytest.approx(count_flops(four).model)


def test_invalid_parallel_sizes():
    arch = load_arch("llama-2-7b")
    with pytest.raises(PlanError, match="does not divide its 32 attention heads"):
        training_gemms(arch, seq_len=4096, tp=3)
    with pytest.raises(PlanError, match="expert parallel size"):
        training_gemms(arch, seq_len=4096, ep=2)
    with pytest.raises(PlanError, match="exceeds its 2048 learned positions"):
        training_gemms(load_arch("gpt-3-175b"), seq_len=4096)


def test_gemm_list_has_three_phases_per_linear_layer():
    gemms = training_gemms(load_arch("llama-2-7b"), seq_len=1024)
    phases = Counter((g.kind, g.phase) for g in gemms)
    for kind in ("qkv", "attn_out", "mlp_up", "mlp_down", "lm_head"):
        assert all(phases[(kind, p)] == 1 for p in ("fwd", "dgrad", "wgrad"))
    assert isinstance(load_arch(get_preset("llama-2-7b").arch), TransformerArch)


def test_step_gemms_count_every_micro_batch():
    arch = load_arch("llama-2-7b")
    per_mb = training_gemms(arch, seq_len=2048, micro_batch=2)
    step = step_gemms(arch, seq_len=2048, global_batch=64, micro_batch=2)
    assert [g.count for g in step] == [32 * g.count for g in per_mb]
    assert count_flops(step).model == pytest.approx(
        step_flops(arch, seq_len=2048, global_batch=64).model)
    with pytest.raises(PlanError, match="not a multiple of the micro-batch"):
        step_gemms(arch, seq_len=2048, global_batch=63, micro_batch=2)
