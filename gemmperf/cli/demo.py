"""``gemmperf demo``: the main job on a built-in default, offline and without a GPU.

It shows what gemmperf answers: the roofline of well-known GEMMs of transformer training on a few
GPUs (from the published specs), a training plan for a preset model, and a compute-optimal budget.
Each section is one library call; nothing here is a measurement.
"""

from __future__ import annotations

import argparse
import sys

from gemmperf.cli._output import print_json, print_table
from gemmperf.errors import InvalidProblemError
from gemmperf.hardware.specs import GpuSpec, get_gpu
from gemmperf.problem import GemmProblem
from gemmperf.recommend import recommend
from gemmperf.roofline import roofline
from gemmperf.training import compute_optimal, plan_training

DEMO_GPUS = ("a100-sxm-80gb", "h100-sxm", "l40s", "rtx4090")

# (label, m, n, k): the GEMMs of one Llama-2-7B layer for 4096 tokens (hidden 4096, MLP 11008,
# config.json of meta-llama/Llama-2-7b-hf), plus the square shape everyone benchmarks.
DEMO_SHAPES = (
    ("llama2-7b qkv", 4096, 12288, 4096),
    ("llama2-7b attn-out", 4096, 4096, 4096),
    ("llama2-7b mlp gate+up", 4096, 22016, 4096),
    ("llama2-7b mlp down", 4096, 4096, 11008),
    ("decode-like skinny", 16, 4096, 4096),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="show what gemmperf answers, offline, on built-in defaults",
        description=__doc__,
    )
    parser.add_argument("--dtype", default="bf16", help="operand dtype (default bf16)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(func=run)


def _has_math_path(gpu: GpuSpec, key: str) -> bool:
    """Whether ``gpu`` has the ``key`` math path (GpuSpec.peak, with its fallbacks)."""
    try:
        gpu.peak(key)
    except KeyError:
        return False
    return True


def roofline_section(dtype: str) -> list[dict]:
    """Roofline bound and tile-aware estimate of the demo shapes on the demo GPUs."""
    rows = []
    key = GemmProblem(1, 1, 1, dtype=dtype).peak_key
    gpus = [get_gpu(name) for name in DEMO_GPUS]
    able = [gpu for gpu in gpus if _has_math_path(gpu, key)]
    if not able:
        raise InvalidProblemError(f"none of the demo GPUs has a {dtype} math path")
    if len(able) < len(gpus):   # e.g. fp8 without the A100: say which GPUs are left out
        left_out = ", ".join(gpu.name for gpu in gpus if gpu not in able)
        print(f"gemmperf: note: {left_out} left out: no {dtype} math path", file=sys.stderr)
    for gpu in able:
        for label, m, n, k in DEMO_SHAPES:
            problem = GemmProblem(m, n, k, dtype=dtype)
            est = roofline(problem, gpu)
            rows.append({
                "gpu": gpu.key, "gemm": label, "m": m, "n": n, "k": k, "dtype": problem.dtype,
                "bound": str(est.bound), "lower_bound_us": float(est.lower_bound_s) * 1e6,
                "estimate_us": float(est.estimate_s) * 1e6,
                "estimate_tflops": problem.flops / float(est.estimate_s) / 1e12,
                "waves": float(est.waves), "tail_efficiency": float(est.tail_efficiency),
            })
    return rows


# A published run to plan (Llama 3 8B: 15T tokens on H100s, Meta's model card) and a budget.
DEMO_PLAN = {"arch": "llama-3-8b", "tokens": 15e12, "gpu": "h100-sxm", "num_gpus": 1024}
DEMO_BUDGET = {"gpu": "h100-sxm", "gpu_hours": 1e6, "law": "epoch"}


# A tile recommendation on a GPU the shipped model has no measurements of (CLBlast Xgemm space).
DEMO_RECOMMEND = {"gpu": "rtx-4090", "m": 4096, "n": 4096, "k": 4096, "dtype": "f32",
                  "family": "clblast_xgemm", "top": 3}


def recommend_section() -> dict:
    """Top configs of the demo recommendation (predicted, zero-shot) as dicts, and the GPUs the
    model predicts the demo GPU by analogy with."""
    from gemmperf.tune.models import analogy_gpus, load_default_model

    r = DEMO_RECOMMEND
    model = load_default_model()
    problem = GemmProblem(r["m"], r["n"], r["k"], dtype=r["dtype"])
    table = recommend(problem, r["gpu"], family=r["family"], top=r["top"], model=model)
    analogues = analogy_gpus(model, get_gpu(r["gpu"]).key, r["family"], problem.peak_key)
    picks = [
        {"params": row.params, "runtime_s": row.runtime_s, "power_w": row.power_w,
         "energy_j": row.energy_j, "speedup_vs_default": row.speedup_vs_default}
        for row in table.itertuples()
    ]
    return {"picks": picks, "by_analogy_with": analogues}


def plan_section() -> dict:
    """The demo training plan as a flat dict."""
    plan = plan_training(DEMO_PLAN["arch"], tokens=DEMO_PLAN["tokens"], gpu=DEMO_PLAN["gpu"],
                         num_gpus=DEMO_PLAN["num_gpus"])
    return {
        **DEMO_PLAN, "step_time_s": plan.step_time_s,
        "tokens_per_s_per_gpu": plan.tokens_per_s_per_gpu, "mfu": plan.mfu,
        "days": plan.days, "gpu_hours": plan.gpu_hours, "energy_mwh": plan.energy_mwh,
        "gemm_source": plan.gemm_source,
    }


def budget_section() -> dict:
    """The demo compute-optimal budget as a flat dict."""
    answer = compute_optimal(**DEMO_BUDGET)
    return {
        **DEMO_BUDGET, "flops": answer.flops, "n_opt": answer.optimum.n_params,
        "d_opt": answer.optimum.tokens, "loss": answer.loss,
        "layers": answer.arch.num_layers, "hidden": answer.arch.hidden_size,
        "days": answer.plan.days if answer.plan else None,
        "energy_mwh": answer.plan.energy_mwh if answer.plan else None,
    }


def run(args: argparse.Namespace) -> int:
    rows = roofline_section(args.dtype)
    picks = recommend_section()
    plan = plan_section()
    budget = budget_section()
    if args.json:
        print_json({"roofline": rows, "recommend": picks["picks"],
                    "recommend_by_analogy_with": picks["by_analogy_with"], "plan": plan,
                    "budget": budget})
        return 0
    columns = ["gpu", "gemm", "m", "n", "k", "bound", "lower_bound_us", "estimate_us",
               "estimate_tflops", "waves", "tail_efficiency"]
    headers = ["GPU", "GEMM", "M", "N", "K", "bound", "bound µs", "estimate µs", "TFLOP/s",
               "waves", "tail eff."]
    print_table(headers, ([r[c] for c in columns] for r in rows),
                title=f"Roofline of common training GEMMs ({args.dtype}, published peak specs)")
    r = DEMO_RECOMMEND
    print(f"\nRecommended {r['family']} configs for {r['m']}x{r['n']}x{r['k']} {r['dtype']} on "
          f"{r['gpu']} (predicted, no measurements of this GPU in the model"
          + (f"; by analogy with {', '.join(picks['by_analogy_with'])}"
             if picks["by_analogy_with"] else "") + "):")
    for rank, pick in enumerate(picks["picks"], start=1):
        print(f"  {rank}. {pick['params']}: {pick['runtime_s'] * 1e3:.2f} ms predicted, "
              f"{pick['speedup_vs_default']:.2f}x CLBlast's default config")
    print(f"\nTraining plan: {plan['arch']} on {plan['num_gpus']} x {plan['gpu']} for "
          f"{plan['tokens']:.3g} tokens: step {plan['step_time_s']:.2f} s, MFU {plan['mfu']:.1%}, "
          f"{plan['days']:.1f} days, {plan['gpu_hours']:,.0f} GPU-hours, "
          f"{plan['energy_mwh']:.0f} MWh (GEMM times from {plan['gemm_source']}).")
    print(f"Budget: {budget['gpu_hours']:,.0f} {budget['gpu']} GPU-hours = {budget['flops']:.3g} "
          f"FLOPs -> N_opt {budget['n_opt']:.3g} params, D_opt {budget['d_opt']:.3g} tokens "
          f"({budget['law']} law), e.g. {budget['layers']} layers x {budget['hidden']} wide, "
          f"predicted loss {budget['loss']:.3f}.")
    print("\nNext: `gemmperf gpus`, `gemmperf roofline --gpu h100-sxm --m 8192 --n 8192 --k 8192 "
          "--dtype bf16 --plot roofline.png`, `gemmperf import ...` (see README).")
    return 0
