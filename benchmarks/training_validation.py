"""Predicted vs published training runs: throughput per GPU, MFU, GPU-hours, days, energy.

Run: ``python benchmarks/training_validation.py [--json | --markdown]``. Every published figure
names its source. The planner runs with one set of parameters for every model (no per-model
factor); what a row fixes is what its source states about the run (GPUs, layout, micro-batch,
recomputation, sharding, attention kernel, dropout, network), each marked in ``facts``.

Two kinds of rows:

* **throughput** -- steady-state speed of the training loop as the source measured it (TFLOP/s
  or MFU per GPU). These test the step-time model directly.
* **wall-clock** -- GPU-hours or days of a whole run. They include what a steady-state model
  leaves out (restarts and failures, checkpointing, evaluation, batch-size ramp-up, stages at
  other sequence lengths), listed per row under ``not modelled``; a ratio below 1 is expected
  and the gap is the run's overhead, not a model parameter.

FLOP conventions of the published throughput figures, matched per row:

* ``tflops_megatron``: Narayanan et al. 2021 eq. 3 (96 B s l h^2 (1 + s/6h + V/16lh) with full
  recomputation, 72 ... without): full (non-causal) attention, recomputation counted. BLOOM's
  Megatron-DeepSpeed prints the same (BigScience tr11 README, "Throughput");
* ``mfu_palm``: (6 N + 12 L H Q T) per token / peak -- PaLM's MFU, llm-foundry's MFU and the
  Llama 3 paper's "BF16 MFU" (Chowdhery et al. definition).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from gemmperf.hardware.specs import get_gpu
from gemmperf.training.comm import SystemSpec
from gemmperf.training.config import arch_from_config, load_arch
from gemmperf.training.errors import DoesNotFitError
from gemmperf.training.gemms import step_flops
from gemmperf.training.planner import TrainingPlan, plan_training


def gpt(name: str, hidden: int, layers: int, heads: int, vocab: int = 51200) -> Any:
    """A GPT-2/3-style decoder (learned positions, LayerNorm, GELU 4h MLP, tied embeddings)."""
    return arch_from_config({"model_type": "gpt2", "n_embd": hidden, "n_layer": layers,
                             "n_head": heads, "vocab_size": vocab, "n_positions": 2048},
                            name=name, source="Narayanan et al. 2021, Table 1")


def mpt(name: str, d_model: int, layers: int, heads: int) -> Any:
    """An MPT decoder as llm-foundry benchmarks it (vocab 50368, expansion 4, no bias, ALiBi)."""
    return arch_from_config({"model_type": "mpt", "d_model": d_model, "n_layers": layers,
                             "n_heads": heads, "expansion_ratio": 4, "vocab_size": 50368,
                             "max_seq_len": 2048, "no_bias": True, "learned_pos_emb": False,
                             "norm_type": "low_precision_layernorm",
                             "activation_function": "gelu", "tie_word_embeddings": True},
                            name=name, source="mosaicml/llm-foundry scripts/train/yamls/pretrain")


@dataclass(frozen=True)
class PublishedRun:
    name: str
    kind: str                   # throughput | wall-clock
    arch: Any                   # preset name or TransformerArch
    gpu: str
    num_gpus: int
    tokens: float
    metric: str      # gpu_hours | days | tflops_megatron | mfu_palm | tokens_per_s_per_gpu
    published: float
    source: str
    facts: dict[str, Any] = field(default_factory=dict)   # plan_training settings the source states
    assumed: str = ""           # settings the source does not state
    not_modelled: str = ""      # what the published figure includes that the plan leaves out
    energy_mwh: float | None = None  # published energy (GPU TDP x GPU-hours), where given
    system: dict[str, float] = field(default_factory=dict)


_MEGATRON = ("Narayanan et al. 2021 (arXiv 2104.04473) Table 1: A100 80GB (Selene, 8x HDR "
             "200 Gb/s per node), V=51200, s=2048, full recomputation")
_MEGATRON_T2 = "Narayanan et al. 2021 Table 2 (PTD-P vs ZeRO-3, same cluster)"
_FOUNDRY = ("mosaicml/llm-foundry scripts/train/benchmarking/README.md (8 GPUs, FSDP FULL_SHARD, "
            "amp_bf16 with fp32 reductions, FlashAttention)")
_FOUNDRY_FACTS = {"tp": 1, "pp": 1, "zero_stage": 3, "attention": "fa2"}
# Megatron-LM 2021: fp16, no distributed optimizer, gradients all-reduced after the backward pass
# (train_step calls allreduce_gradients() after forward_backward_func, DDP_impl=local).
_MEGATRON_FACTS = {"recompute": True, "flash_attention": False, "dropout": True, "dtype": "fp16",
                   "zero_stage": 0, "grad_reduce_dtype": "fp16", "overlap_grad_reduce": False}
_BLOOM_FACTS = {"tp": 4, "pp": 12, "micro_batch": 2, "virtual_stages": 1, "recompute": True,
                "flash_attention": False, "dropout": True, "zero_stage": 1,
                "overlap_grad_reduce": False}
# Jean Zay: 4 x 100 Gb/s Omni-Path per 8-GPU node (BigScience tr11 README, "Hardware").
_JEAN_ZAY = {"inter_node_bytes_s": 4 * 100e9 / 8 / 8}
_NEMO = ("NVIDIA/NeMo docs/source/performance/performance_summary.md (NeMo 24.07 container, "
         "DGX-H100, FP8)")
_NEMO_FACTS = {"dtype": "fp8"}
_NEMO_ASSUMED = ("recomputation searched; cuDNN fused attention modelled as FA3; distributed "
                 "optimizer with overlapped reductions (Megatron-Core defaults)")
_LLAMA31_FACTS = {"tp": 8, "pp": 16, "recompute": False, "zero_stage": 1}
_LLAMA_CARD_2 = ("meta-llama/llama-models models/llama2/MODEL_CARD.md: 'Time: total GPU time "
                 "required for training each model', A100-80GB (TDP 350-400 W), 2.0T tokens, 4M "
                 "batch")
_LLAMA_CARD_3 = ("meta-llama/llama3 MODEL_CARD.md: 'total GPU time required for training each "
                 "model', H100-80GB (700 W), 15T+ tokens")
_LLAMA2_GAP = ("restarts and failures; Meta's production cluster ran A100s capped at 350 W "
               "(RSC 400 W; Touvron et al. 2023 Sec. 2.2.1)")
_LLAMA3_GAP = ("restarts and failures (>90% effective training time for the 405B, Llama Team "
               "2024 Sec. 3.3.4); batch ramp 4M->8M->16M tokens; the published hours imply 17% "
               "(8B) and 30% (70B) MFU (causal FLOPs), far below any steady state, so they "
               "include work the card does not itemise")


def _table1(params: str, hidden: int, heads: int, layers: int, tp: int, pp: int, gpus: int,
            batch: int, tflops: float) -> PublishedRun:
    return PublishedRun(
        f"Megatron GPT {params}", "throughput", gpt(f"gpt-{params}", hidden, layers, heads),
        "a100-sxm4-80gb", gpus, 1e12, "tflops_megatron", tflops, _MEGATRON,
        {**_MEGATRON_FACTS, "tp": tp, "pp": pp, "global_batch_tokens": batch * 2048},
        assumed="micro-batch and interleaving searched")


def _table2(scheme: str, params: str, model: Any, tp: int, pp: int, gpus: int, batch: int,
            micro: int, tflops: float) -> PublishedRun:
    facts = {**_MEGATRON_FACTS, "tp": tp, "pp": pp, "micro_batch": micro,
             "global_batch_tokens": batch * 2048}
    if scheme == "ZeRO-3":
        facts.update(zero_stage=3, overlap_grad_reduce=True)
    return PublishedRun(f"{scheme} {params} {gpus} GPUs", "throughput", model, "a100-sxm4-80gb",
                        gpus, 1e12, "tflops_megatron", tflops, _MEGATRON_T2, facts,
                        assumed="DeepSpeed ZeRO-3 prefetches and overlaps its collectives"
                        if scheme == "ZeRO-3" else "")


def _foundry(size: str, model: Any, gpu: str, mfu: float, micro: int, batch: int,
             recompute: bool) -> PublishedRun:
    return PublishedRun(
        f"llm-foundry MPT-{size} {gpu.split('-')[0].upper()}", "throughput", model, gpu, 8, 1e12,
        "mfu_palm", mfu, _FOUNDRY + f": {size} 2048-token row",
        {**_FOUNDRY_FACTS, "micro_batch": micro, "global_batch_tokens": batch * 2048,
         "recompute": recompute})


GPT_175B = gpt("gpt-175b", 12288, 96, 96)
GPT_530B = gpt("gpt-530b", 20480, 105, 128)
MPT_7B = mpt("mpt-7b-foundry", 4096, 32, 32)
MPT_13B = mpt("mpt-13b-foundry", 5120, 40, 40)
MPT_30B = mpt("mpt-30b-foundry", 7168, 48, 56)

RUNS: tuple[PublishedRun, ...] = (
    # -- throughput: Megatron-LM on A100 (Narayanan et al. 2021, Table 1) ----------------------
    _table1("1.7B", 2304, 24, 24, 1, 1, 32, 512, 137),
    _table1("3.6B", 3072, 32, 30, 2, 1, 64, 512, 138),
    _table1("7.5B", 4096, 32, 36, 4, 1, 128, 512, 142),
    _table1("18.4B", 6144, 48, 40, 8, 1, 256, 1024, 135),
    _table1("39.1B", 8192, 64, 48, 8, 2, 512, 1536, 138),
    _table1("76.1B", 10240, 80, 60, 8, 4, 1024, 1792, 140),
    _table1("145.6B", 12288, 96, 80, 8, 8, 1536, 2304, 148),
    _table1("310.1B", 16384, 128, 96, 8, 16, 1920, 2160, 155),
    _table1("529.6B", 20480, 128, 105, 8, 35, 2520, 2520, 163),
    _table1("1008B", 25600, 160, 128, 8, 64, 3072, 3072, 163),
    # -- throughput: data-parallel scaling, PTD-P vs ZeRO-3 (Table 2) -------------------------
    _table2("PTD-P", "175B", GPT_175B, 8, 12, 384, 1536, 1, 153),
    _table2("PTD-P", "175B", GPT_175B, 8, 12, 1536, 1536, 1, 141),
    _table2("PTD-P", "530B", GPT_530B, 8, 35, 560, 2240, 1, 171),
    _table2("PTD-P", "530B", GPT_530B, 8, 35, 2240, 2240, 1, 159),
    _table2("ZeRO-3", "175B", GPT_175B, 1, 1, 384, 1536, 4, 144),
    _table2("ZeRO-3", "175B", GPT_175B, 1, 1, 1536, 1536, 1, 44),
    _table2("ZeRO-3", "530B", GPT_530B, 1, 1, 640, 2560, 4, 138),
    _table2("ZeRO-3", "530B", GPT_530B, 1, 1, 2240, 2240, 1, 48),
    # -- throughput: other A100 runs -------------------------------------------------------------
    PublishedRun("BLOOM 176B throughput", "throughput", "bloom-176b", "a100-sxm4-80gb", 384,
                 366e9, "tflops_megatron", 150.0,
                 "bigscience-workshop/bigscience train/tr11-176B-ml (README, .slurm): ~150 "
                 "TFLOP/s at GBS 2048 (stas00/ml-engineering training/hparams); Megatron-"
                 "DeepSpeed, TP4 PP12 DP8, MBS 2, full recomputation, bf16, ZeRO-1, dropout 0.1",
                 {**_BLOOM_FACTS, "global_batch_tokens": 2048 * 2048},
                 assumed="gradients reduced after the backward (DeepSpeed BF16_Optimizer)",
                 not_modelled="CUDA_LAUNCH_BLOCKING=1 in the launch script (serialised "
                 "launches)", system=_JEAN_ZAY),
    PublishedRun("OPT-175B throughput", "throughput", "opt-175b", "a100-sxm4-80gb", 992, 180e9,
                 "tflops_megatron", 147.0,
                 "Zhang et al. 2022 (arXiv 2205.01068) Sec. 2.4: up to 147 TFLOP/s per GPU on 992 "
                 "A100-80GB, FSDP + Megatron TP, fp16",
                 {"tp": 8, "pp": 1, "zero_stage": 3, "flash_attention": False, "dropout": True,
                  "grad_reduce_dtype": "fp16", "dtype": "fp16"},
                 assumed="TP8; full recomputation searched; the FLOP convention of '147' is not "
                 "stated (Megatron eq. 3 used)"),
    # -- throughput: llm-foundry, same framework on A100 and H100 -------------------------------
    _foundry("7B", MPT_7B, "a100-sxm4-80gb", 0.6423, 6, 96, False),
    _foundry("7B", MPT_7B, "h100-sxm", 0.4644, 6, 48, False),
    _foundry("13B", MPT_13B, "a100-sxm4-80gb", 0.5957, 2, 48, False),
    _foundry("13B", MPT_13B, "h100-sxm", 0.3979, 2, 16, False),
    _foundry("30B", MPT_30B, "a100-sxm4-80gb", 0.5530, 3, 504, True),
    _foundry("30B", MPT_30B, "h100-sxm", 0.3811, 3, 504, True),
    # -- throughput: Llama 3.1 405B on H100 (Llama Team 2024, Table 4) --------------------------
    PublishedRun("Llama 3.1 405B 8K GPUs", "throughput", "llama-3.1-405b", "h100-sxm", 8192,
                 15.6e12, "mfu_palm", 0.43,
                 "Llama Team 2024 (arXiv 2407.21783) Table 4: 8,192 GPUs, TP8 CP1 PP16 DP64, seq "
                 "8192, 16M tokens/batch, 430 TFLOP/s, 43% BF16 MFU; no activation checkpointing",
                 {**_LLAMA31_FACTS, "global_batch_tokens": 16 * 2**20},
                 assumed="FSDP without resharding modelled as ZeRO-1 traffic (one gather, one "
                 "reduce-scatter per step); attention kernel: FA3/cuDNN class"),
    PublishedRun("Llama 3.1 405B 16K GPUs", "throughput", "llama-3.1-405b", "h100-sxm", 16384,
                 15.6e12, "mfu_palm", 0.41,
                 "Llama Team 2024 Table 4: 16,384 GPUs, TP8 CP1 PP16 DP128, 400 TFLOP/s, 41% MFU",
                 {**_LLAMA31_FACTS, "global_batch_tokens": 16 * 2**20},
                 assumed="as the 8K-GPU row"),
    # -- throughput: NeMo (Megatron-Core + Transformer Engine) FP8 on DGX-H100 ------------------
    PublishedRun("NeMo Llama 2 7B FP8", "throughput", "llama-2-7b", "h100-sxm", 8, 1e12,
                 "tokens_per_s_per_gpu", 16847, _NEMO + ": LLAMA2-7B, 8 GPUs, GBS 128, MBS 1, "
                 "seq 4096, TP1 PP1", {**_NEMO_FACTS, "tp": 1, "pp": 1, "micro_batch": 1,
                                      "global_batch_tokens": 128 * 4096},
                 assumed=_NEMO_ASSUMED),
    PublishedRun("NeMo Llama 2 70B FP8", "throughput", "llama-2-70b", "h100-sxm", 64, 1e12,
                 "tokens_per_s_per_gpu", 1707, _NEMO + ": LLAMA2-70B, 64 GPUs, GBS 128, MBS 1, "
                 "seq 4096, TP4 PP4 VP20", {**_NEMO_FACTS, "tp": 4, "pp": 4, "virtual_stages": 20,
                                           "micro_batch": 1, "global_batch_tokens": 128 * 4096},
                 assumed=_NEMO_ASSUMED),
    PublishedRun("NeMo GPT-3 175B FP8", "throughput", "gpt-3-175b", "h100-sxm", 512, 1e12,
                 "tokens_per_s_per_gpu", 782, _NEMO + ": GPT3-175B, 512 GPUs, GBS 2048, MBS 2, "
                 "seq 2048, TP4 PP8 VP6", {**_NEMO_FACTS, "tp": 4, "pp": 8, "virtual_stages": 6,
                                          "micro_batch": 2, "global_batch_tokens": 2048 * 2048},
                 assumed=_NEMO_ASSUMED),
    # -- wall-clock: published GPU-hours and days -----------------------------------------------
    PublishedRun("Llama 2 7B", "wall-clock", "llama-2-7b", "a100-sxm4-80gb", 1024, 2.0e12,
                 "gpu_hours", 184_320, _LLAMA_CARD_2, assumed="1024 GPUs; layout searched",
                 not_modelled=_LLAMA2_GAP, energy_mwh=184_320 * 0.4 / 1e3),
    PublishedRun("Llama 2 13B", "wall-clock", "llama-2-13b", "a100-sxm4-80gb", 1024, 2.0e12,
                 "gpu_hours", 368_640, _LLAMA_CARD_2, assumed="1024 GPUs; layout searched",
                 not_modelled=_LLAMA2_GAP, energy_mwh=368_640 * 0.4 / 1e3),
    PublishedRun("Llama 2 70B", "wall-clock", "llama-2-70b", "a100-sxm4-80gb", 2048, 2.0e12,
                 "gpu_hours", 1_720_320, _LLAMA_CARD_2, assumed="2048 GPUs; layout searched",
                 not_modelled=_LLAMA2_GAP, energy_mwh=1_720_320 * 0.4 / 1e3),
    PublishedRun("Llama 3 8B", "wall-clock", "llama-3-8b", "h100-sxm", 2048, 15e12, "gpu_hours",
                 1.3e6, _LLAMA_CARD_3, {"global_batch_tokens": 16 * 2**20},
                 assumed="2048 GPUs, 16M-token batch (the 405B recipe); layout searched",
                 not_modelled=_LLAMA3_GAP, energy_mwh=1.3e6 * 0.7 / 1e3),
    PublishedRun("Llama 3 70B", "wall-clock", "llama-3-70b", "h100-sxm", 4096, 15e12, "gpu_hours",
                 6.4e6, _LLAMA_CARD_3, {"global_batch_tokens": 16 * 2**20},
                 assumed="4096 GPUs, 16M-token batch; layout searched",
                 not_modelled=_LLAMA3_GAP, energy_mwh=6.4e6 * 0.7 / 1e3),
    PublishedRun("Llama 3.1 405B", "wall-clock", "llama-3.1-405b", "h100-sxm", 16384, 15.6e12,
                 "gpu_hours", 30.84e6,
                 "meta-llama/llama-models models/llama3_1/MODEL_CARD.md: 30.84M H100 GPU-hours "
                 "('training time'); 15.6T tokens and Table 4 layout: Llama Team 2024",
                 {**_LLAMA31_FACTS, "global_batch_tokens": 16 * 2**20},
                 not_modelled="~800B tokens of long-context stages up to 128K at 38% MFU; >90% "
                 "effective training time; 4M/8M-token batch ramp; the 3.1 card's 'training "
                 "time' may include post-training", energy_mwh=30.84e6 * 0.7 / 1e3),
    PublishedRun("BLOOM 176B", "wall-clock", "bloom-176b", "a100-sxm4-80gb", 384, 366e9,
                 "gpu_hours", 1_082_990,
                 "BigScience 2022 (arXiv 2211.05100) Sec. 3.4.1: 1,082,990 compute hours on 384 "
                 "A100-80GB; Luccioni et al. 2023 Table 1: 118 days, 433,196 kWh",
                 {**_BLOOM_FACTS, "global_batch_tokens": 2048 * 2048},
                 not_modelled="batch ramp-up from 192 sequences (73 TFLOP/s) over ~20B tokens; "
                 "CUDA_LAUNCH_BLOCKING=1; restarts (4 spare nodes kept for failures)",
                 energy_mwh=433.2, system=_JEAN_ZAY),
    PublishedRun("MPT-7B", "wall-clock", "mpt-7b", "a100-sxm4-40gb", 440, 1e12, "days", 9.5,
                 "mosaicml/mpt-7b model card: 440 A100-40GB for about 9.5 days, FSDP; batch 1760 "
                 "sequences (mpt-7b-8k model card, stage i)",
                 {"zero_stage": 3, "attention": "fa2", "tp": 1, "pp": 1,
                  "global_batch_tokens": 1760 * 2048, "recompute": True,
                  "grad_reduce_dtype": "bf16"},
                 assumed="activation checkpointing and bf16 (PURE) reductions as in llm-foundry's "
                 "scripts/train/yamls/pretrain/mpt-7b.yaml",
                 not_modelled="LION optimizer (one moment; Adam modelled); restarts"),
)


def _value(run: PublishedRun, plan: TrainingPlan, arch: Any) -> float:
    if run.metric == "gpu_hours":
        return plan.gpu_hours
    if run.metric == "days":
        return plan.days
    if run.metric == "mfu_palm":
        return plan.mfu_palm
    if run.metric == "tokens_per_s_per_gpu":
        return plan.tokens_per_s_per_gpu
    if run.metric == "tflops_megatron":
        flops = step_flops(arch, seq_len=plan.seq_len,
                           global_batch=plan.global_batch_tokens // plan.seq_len, causal=False,
                           flash_attention=False, recompute=plan.parallelism.recompute).hardware
        return flops / (plan.step_time_s * plan.num_gpus) / 1e12
    raise ValueError(run.metric)


def evaluate(runs: tuple[PublishedRun, ...] = RUNS) -> list[dict[str, Any]]:
    """Plan every run and compare with its published figure."""
    rows = []
    for run in runs:
        start = time.perf_counter()
        arch = load_arch(run.arch)
        system = None
        if run.system:
            system = SystemSpec.for_gpu(get_gpu(run.gpu), **run.system)
        # A layout the source reports ran: time it even where the memory estimate (which does
        # not see every framework's memory savings) would reject it.
        known = "tp" in run.facts and "pp" in run.facts
        try:
            plan = plan_training(arch, gpu=run.gpu, num_gpus=run.num_gpus, tokens=run.tokens,
                                 pue=1.0, system=system, check_memory=not known, **run.facts)
        except DoesNotFitError as exc:  # the memory model, not the timing, rejects the layout
            print(f"{run.name}: skipped, {exc}", file=sys.stderr)
            continue
        predicted = _value(run, plan, arch)
        rows.append({
            "run": run.name, "kind": run.kind, "gpu": run.gpu, "gpus": run.num_gpus,
            "layout": plan.parallelism.describe(), "attention": plan.attention_kernel,
            "metric": run.metric, "published": run.published, "predicted": predicted,
            "ratio": predicted / run.published, "mfu": plan.mfu, "mfu_palm": plan.mfu_palm,
            "energy_mwh_published": run.energy_mwh,
            "energy_mwh_predicted": plan.energy_mwh if run.energy_mwh else None,
            "source": run.source, "facts": sorted(run.facts), "assumed": run.assumed,
            "not_modelled": run.not_modelled, "seconds": time.perf_counter() - start,
        })
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median ratio and geometric-mean |error| per row kind."""
    out = {}
    for kind in ("throughput", "wall-clock"):
        ratios = sorted(r["ratio"] for r in rows if r["kind"] == kind)
        if not ratios:
            continue
        logs = [abs(math.log(x)) for x in ratios]
        out[kind] = {"rows": len(ratios), "median_ratio": ratios[len(ratios) // 2],
                     "geomean_abs_error": math.exp(sum(logs) / len(logs)) - 1.0,
                     "within_15pct": sum(abs(x - 1.0) <= 0.15 for x in ratios)}
    return out


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) < 1:
        return f"{v:.3f}"
    return f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"


def _layout(r: dict[str, Any]) -> str:
    fused = r["attention"] != "unfused"
    return f"{r['layout']}, {r['attention']}" if fused else r["layout"]


def markdown(rows: list[dict[str, Any]]) -> str:
    """The README table: predicted vs published, ratio, what is and is not modelled."""
    lines = ["| run | GPUs | metric | published | predicted | ratio | planned layout | "
             "not modelled / assumed |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        caveat = "; ".join(x for x in (r["not_modelled"], r["assumed"]) if x) or "-"
        lines.append(f"| {r['run']} | {r['gpus']} x {r['gpu']} | {r['metric']} | "
                     f"{_fmt(r['published'])} | {_fmt(r['predicted'])} | {r['ratio']:.2f} | "
                     f"{_layout(r)} | {caveat} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    args = parser.parse_args(argv)
    rows = evaluate()
    if args.json:
        json.dump({"rows": rows, "summary": summary(rows)}, sys.stdout, indent=2)
        print()
        return 0
    if args.markdown:
        print(markdown(rows))
        return 0
    header = (f"{'run':30s} {'kind':10s} {'GPUs':>6s} {'layout (planned)':44s} {'metric':15s} "
              f"{'published':>11s} {'predicted':>11s} {'ratio':>6s} {'MWh pub':>8s} "
              f"{'MWh pred':>8s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['run']:30s} {r['kind']:10s} {r['gpus']:>6d} "
              f"{_layout(r)[:44]:44s} {r['metric']:15s} "
              f"{_fmt(r['published']):>11s} {_fmt(r['predicted']):>11s} {r['ratio']:6.2f} "
              f"{_fmt(r['energy_mwh_published']):>8s} {_fmt(r['energy_mwh_predicted']):>8s}")
    print("\nratio = predicted / published (throughput rows: > 1 is optimistic; wall-clock rows: "
          "< 1 is the run's unmodelled overhead)")
    for kind, s in summary(rows).items():
        print(f"{kind}: {s['rows']} rows, median ratio {s['median_ratio']:.2f}, geometric-mean "
              f"|error| {100 * s['geomean_abs_error']:.0f}%, {s['within_15pct']} within 15%")
    print("\nSources, assumptions and what the published figure includes beyond the plan:")
    for r in rows:
        print(f"  {r['run']}: {r['source']}")
        if r["assumed"]:
            print(f"      assumed: {r['assumed']}")
        if r["not_modelled"]:
            print(f"      not modelled: {r['not_modelled']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
