"""``gemmperf demo``: the main job on a built-in default, offline and without a GPU.

It shows what gemmperf answers for well-known GEMMs of transformer training on a few GPUs
(roofline bound and tile-aware estimate from the published specs). Each section is one library
call; nothing here is a measurement.
"""

from __future__ import annotations

import argparse

from gemmperf.cli._output import print_json, print_table
from gemmperf.hardware.specs import get_gpu
from gemmperf.problem import GemmProblem
from gemmperf.roofline import roofline

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


def roofline_section(dtype: str) -> list[dict]:
    """Roofline bound and tile-aware estimate of the demo shapes on the demo GPUs."""
    rows = []
    for gpu_name in DEMO_GPUS:
        gpu = get_gpu(gpu_name)
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


def run(args: argparse.Namespace) -> int:
    rows = roofline_section(args.dtype)
    if args.json:
        print_json({"roofline": rows})
        return 0
    columns = ["gpu", "gemm", "m", "n", "k", "bound", "lower_bound_us", "estimate_us",
               "estimate_tflops", "waves", "tail_efficiency"]
    headers = ["GPU", "GEMM", "M", "N", "K", "bound", "bound µs", "estimate µs", "TFLOP/s",
               "waves", "tail eff."]
    print_table(headers, ([r[c] for c in columns] for r in rows),
                title=f"Roofline of common training GEMMs ({args.dtype}, published peak specs)")
    print("Next: `gemmperf gpus`, `gemmperf roofline --gpu h100-sxm --m 8192 --n 8192 --k 8192 "
          "--dtype bf16 --plot roofline.png`, `gemmperf import ...` (see README).")
    return 0
