"""Predicted vs published training runs (GPU-hours, days, throughput per GPU, MFU, energy).

Run: ``python benchmarks/training_validation.py [--json]``. Every published figure below names
its source. Where a paper does not state the number of GPUs of a run, the count used is marked
"assumed". The planner runs with its defaults (one calibration for every model, no per-model
factor); layouts are fixed only where the paper states them.

Conventions of the published throughput figures differ and are matched per row:

* ``tflops_megatron``: Megatron-LM's formula (Narayanan et al. 2021, eq. 3), full attention,
  recomputation included when the run recomputed -- also what Megatron-DeepSpeed (BLOOM) prints;
* ``mfu_palm``: 6N + 12 L H Q T per token (PaLM; also llm-foundry's MFU);
* ``mfu``: gemmperf's own (causal attention counted as the unmasked pairs, no recomputation).

Published GPU-hours cover whole runs (restarts, failures, evaluation, checkpointing, ramp-up), so
a steady-state model predicting fewer GPU-hours is expected; the ratio says by how much.
Published energies are GPU TDP x GPU-hours (the model cards' and BLOOM's convention), so the
comparison uses the predicted GPU energy without PUE.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from gemmperf.training.config import load_arch
from gemmperf.training.gemms import step_flops
from gemmperf.training.planner import TrainingPlan, plan_training


@dataclass(frozen=True)
class PublishedRun:
    name: str
    arch: str
    gpu: str
    num_gpus: int
    gpus_assumed: bool
    tokens: float
    metric: str                 # gpu_hours | days | tflops_megatron | mfu_palm | mfu
    published: float
    source: str
    plan_kwargs: dict[str, Any] = field(default_factory=dict)
    energy_mwh: float | None = None   # published (TDP x GPU-hours) energy, where given


RUNS = (
    PublishedRun("Llama 2 7B", "llama-2-7b", "a100-sxm4-80gb", 1024, True, 2.0e12, "gpu_hours",
                 184_320, "Llama 2 model card / Touvron et al. 2023 Table 2 (A100-80GB, 400 W)",
                 energy_mwh=184_320 * 0.4 / 1e3),
    PublishedRun("Llama 2 13B", "llama-2-13b", "a100-sxm4-80gb", 1024, True, 2.0e12, "gpu_hours",
                 368_640, "Llama 2 model card", energy_mwh=368_640 * 0.4 / 1e3),
    PublishedRun("Llama 2 70B", "llama-2-70b", "a100-sxm4-80gb", 2048, True, 2.0e12, "gpu_hours",
                 1_720_320, "Llama 2 model card", energy_mwh=1_720_320 * 0.4 / 1e3),
    PublishedRun("Llama 3 8B", "llama-3-8b", "h100-sxm", 2048, True, 15e12, "gpu_hours",
                 1.3e6, "Meta Llama 3 model card (H100-80GB, 700 W, 15T+ tokens)",
                 energy_mwh=1.3e6 * 0.7 / 1e3),
    PublishedRun("Llama 3 70B", "llama-3-70b", "h100-sxm", 4096, True, 15e12, "gpu_hours",
                 6.4e6, "Meta Llama 3 model card", energy_mwh=6.4e6 * 0.7 / 1e3),
    PublishedRun("Llama 3.1 405B", "llama-3.1-405b", "h100-sxm", 16384, False, 15.6e12,
                 "gpu_hours", 30.84e6, "Llama 3.1 model card (30.84M H100 GPU-hours); "
                 "16,384 GPUs: Llama Team 2024 Sec. 3.3", energy_mwh=30.84e6 * 0.7 / 1e3),
    PublishedRun("Llama 3.1 405B MFU", "llama-3.1-405b", "h100-sxm", 16384, False, 15.6e12,
                 "mfu", 0.405, "Llama Team 2024, Table 4: 38-43 % BF16 MFU (midpoint)"),
    PublishedRun("BLOOM 176B", "bloom-176b", "a100-sxm4-80gb", 384, False, 366e9, "gpu_hours",
                 1_082_990, "BigScience 2022 (arXiv 2211.05100) Sec. 3.5; 48 nodes x 8 A100-80GB; "
                 "TP4 PP12 DP8", {"tp": 4, "pp": 12, "flash_attention": False},
                 energy_mwh=433.0),
    PublishedRun("BLOOM 176B throughput", "bloom-176b", "a100-sxm4-80gb", 384, False, 366e9,
                 "tflops_megatron", 150.0, "BigScience model card: ~150 TFLOP/s per GPU "
                 "(Megatron-DeepSpeed formula)", {"tp": 4, "pp": 12, "flash_attention": False}),
    PublishedRun("OPT-175B throughput", "opt-175b", "a100-sxm4-80gb", 992, False, 180e9,
                 "tflops_megatron", 147.0, "Zhang et al. 2022 Sec. 2.4: 147 TFLOP/s per GPU on "
                 "992 A100-80GB", {"flash_attention": False}),
    PublishedRun("MPT-7B", "mpt-7b", "a100-sxm4-40gb", 440, False, 1e12, "days", 9.5,
                 "MosaicML 2023, Introducing MPT-7B: 9.5 days on 440 A100-40GB"),
    PublishedRun("Megatron 1T throughput", "megatron-1t", "a100-sxm4-80gb", 3072, False, 1e12,
                 "tflops_megatron", 163.0, "Narayanan et al. 2021 Table 1 (TP8 PP64, batch 3072, "
                 "full recomputation)", {"tp": 8, "pp": 64, "recompute": True,
                                         "flash_attention": False}),
    PublishedRun("Megatron 530B throughput", "megatron-530b", "a100-sxm4-80gb", 2520, False,
                 1e12, "tflops_megatron", 163.0, "Narayanan et al. 2021 Table 1 (TP8 PP35, batch "
                 "2520)", {"tp": 8, "pp": 35, "recompute": True, "flash_attention": False}),
    PublishedRun("MPT-7B llm-foundry H100", "mpt-7b", "h100-sxm", 8, True, 1e12, "mfu_palm", 0.464,
                 "REFERENCES.md: MosaicML llm-foundry BF16 on H100, 7B 46.4 % MFU",
                 {"global_batch_tokens": 2048 * 512}),
)


def _value(run: PublishedRun, plan: TrainingPlan) -> float:
    if run.metric == "gpu_hours":
        return plan.gpu_hours
    if run.metric == "days":
        return plan.days
    if run.metric == "mfu":
        return plan.mfu
    if run.metric == "mfu_palm":
        return plan.mfu_palm
    if run.metric == "tflops_megatron":
        arch = load_arch(run.arch)
        flops = step_flops(arch, seq_len=plan.seq_len,
                           global_batch=plan.global_batch_tokens // plan.seq_len, causal=False,
                           flash_attention=False, recompute=plan.parallelism.recompute).hardware
        return flops / (plan.step_time_s * plan.num_gpus) / 1e12
    raise ValueError(run.metric)


def evaluate() -> list[dict[str, Any]]:
    rows = []
    for run in RUNS:
        start = time.perf_counter()
        plan = plan_training(run.arch, gpu=run.gpu, num_gpus=run.num_gpus, tokens=run.tokens,
                             pue=1.0, **run.plan_kwargs)
        predicted = _value(run, plan)
        rows.append({
            "run": run.name, "gpu": run.gpu,
            "gpus": f"{run.num_gpus}{' (assumed)' if run.gpus_assumed else ''}",
            "layout": plan.parallelism.describe(), "metric": run.metric,
            "published": run.published, "predicted": predicted,
            "ratio": predicted / run.published, "mfu": plan.mfu,
            "energy_mwh_published": run.energy_mwh,
            "energy_mwh_predicted": plan.energy_mwh if run.energy_mwh else None,
            "seconds": time.perf_counter() - start, "source": run.source,
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = evaluate()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    header = (f"{'run':26s} {'GPUs':>15s} {'layout (predicted)':36s} {'metric':16s} "
              f"{'published':>12s} {'predicted':>12s} {'ratio':>6s} {'MWh pub':>8s} "
              f"{'MWh pred':>8s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        def fmt(v: float | None) -> str:
            if v is None:
                return "-"
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"
        print(f"{r['run']:26s} {r['gpus']:>15s} {r['layout']:36s} {r['metric']:16s} "
              f"{fmt(r['published']):>12s} {fmt(r['predicted']):>12s} {r['ratio']:6.2f} "
              f"{fmt(r['energy_mwh_published']):>8s} {fmt(r['energy_mwh_predicted']):>8s}")
    print("\nratio = predicted / published. Sources:")
    for r in rows:
        print(f"  {r['run']}: {r['source']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
