"""``gemmperf roofline``: roofline bound and tile-aware estimate of one GEMM on one GPU."""

from __future__ import annotations

import argparse
from typing import Any

from gemmperf.cli._args import add_gemm_args, path_arg
from gemmperf.cli._output import print_json, print_table
from gemmperf.hardware.specs import get_gpu
from gemmperf.problem import GemmProblem, KernelConfig


def register(subparsers: Any) -> None:
    """Add the ``roofline`` subcommand."""
    p = subparsers.add_parser(
        "roofline",
        help="roofline lower bound and tile-aware estimate of one GEMM",
        description="Roofline of C[b] = A[b] @ B[b] (A: m x k, B: k x n) on a GPU from the spec "
        "database: FLOPs, DRAM bytes, intensity, the strict lower bound and a wave/tile-aware "
        "estimate (see gemmperf.roofline).",
    )
    add_gemm_args(p, dims_required=True, acc_dtype=True)
    p.add_argument("--tile-m", type=int, default=None, help="thread-block tile rows")
    p.add_argument("--tile-n", type=int, default=None, help="thread-block tile columns")
    p.add_argument("--tile-k", type=int, default=None, help="thread-block tile depth")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--plot", metavar="FILE.png", default=None, type=path_arg,
                   help="save a roofline chart")
    p.set_defaults(func=run)


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:,.4g} {prefix}{unit}"
    return f"{value:,.4g} {unit}"


def _seconds(value: float) -> str:
    if value == float("inf"):
        return "inf (config cannot launch)"
    for factor, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if value >= factor:
            return f"{value / factor:,.4g} {unit}"
    return f"{value / 1e-9:,.4g} ns"


def _unlaunchable_tile_note(args: argparse.Namespace, gpu: Any, math_key: str,
                           tile: tuple[int, ...], a_bytes: int) -> str | None:
    """A note where a tile the user gave cannot launch with the default footprint (its stage
    buffers exceed the shared memory per block): the estimate then assumes 1 block per SM."""
    from gemmperf.roofline_defaults import footprint_blocks_per_sm

    if all(t is None for t in (args.tile_m, args.tile_n, args.tile_k)):
        return None
    if footprint_blocks_per_sm(gpu, math_key, *tile, a_bytes).item() > 0:
        return None
    return (f"a {tile[0]}x{tile[1]}x{tile[2]} tile's stage buffers do not fit the shared "
            f"memory of one block on {gpu.sm_arch}: no such kernel launches; the estimate "
            "assumes 1 block per SM")


def run(args: argparse.Namespace) -> int:
    """Compute and print the roofline of the requested GEMM."""
    import pandas as pd

    from gemmperf.roofline import roofline
    from gemmperf.roofline_frame import roofline_frame

    if args.plot:
        from gemmperf.report import check_figure_path

        check_figure_path(args.plot)
    gpu = get_gpu(args.gpu)
    problem = GemmProblem(args.m, args.n, args.k, batch=args.batch, dtype=args.dtype,
                          acc_dtype=args.acc_dtype)
    key = problem.peak_key
    config = KernelConfig.make("roofline", tile_m=args.tile_m, tile_n=args.tile_n,
                               tile_k=args.tile_k)
    est = roofline(problem, gpu, config)
    # The frame entry point reports the tile, split-K and occupancy the estimate resolved to.
    row = roofline_frame(pd.DataFrame([{
        "m": problem.m, "n": problem.n, "k": problem.k, "batch": problem.batch,
        "dtype": problem.dtype, "acc_dtype": problem.acc_dtype, "tile_m": args.tile_m,
        "tile_n": args.tile_n, "tile_k": args.tile_k,
    }]), gpu=gpu).iloc[0]
    values = est.as_dict()
    tile = tuple(int(row[f"tile_{d}"]) for d in "mnk")
    launch_note = _unlaunchable_tile_note(args, gpu, key, tile, problem.element_bytes)
    split, blocks = int(row["split_k"]), int(row["blocks_per_sm"])
    shape = f"{problem.m}x{problem.n}x{problem.k}" + (
        f" x{problem.batch}" if problem.batch > 1 else "")

    if args.plot:
        from gemmperf.report import roofline_chart

        roofline_chart(gpu, est, args.plot, math_key=key, labels=[f"{problem.dtype} {shape}"])

    if args.json:
        print_json({
            "gpu": gpu.key,
            "problem": {"m": problem.m, "n": problem.n, "k": problem.k, "batch": problem.batch,
                        "dtype": problem.dtype, "acc_dtype": problem.acc_dtype},
            "math_key": key,
            "peak_flops_s": gpu.peak(key),
            "mem_bandwidth_bytes_s": gpu.mem_bandwidth_bytes_s,
            "tile": {"m": tile[0], "n": tile[1], "k": tile[2]},
            "split_k": split,
            "blocks_per_sm": blocks,
            "note": launch_note,
            **values,
            "plot": args.plot,
        })
        return 0

    tiles = f"{values['tiles']:,.0f} of {tile[0]}x{tile[1]}x{tile[2]}"
    rows = [
        ("FLOPs", _si(values["flops"], "FLOP")),
        ("compulsory DRAM bytes", _si(values["compulsory_bytes"], "B")),
        ("tile-model DRAM bytes", _si(values["tile_bytes"], "B")),
        ("arithmetic intensity", f"{values['arithmetic_intensity']:,.4g} FLOP/B"),
        ("compute time at peak", _seconds(values["compute_time_s"])),
        ("memory time (compulsory)", _seconds(values["memory_time_s"])),
        ("bound", values["bound"]),
        ("lower bound", _seconds(values["lower_bound_s"])),
        ("tile-aware estimate", _seconds(values["estimate_s"])),
        ("attainable (roofline)", f"{values['attainable_flops_s'] / 1e12:,.4g} TFLOP/s"),
        ("estimated throughput", f"{values['estimated_flops_s'] / 1e12:,.4g} TFLOP/s"),
        ("tiles", tiles + (f", split-K {split}" if split > 1 else "")),
        ("waves", f"{values['waves']:,.3g} ({blocks} block(s)/SM x {gpu.sm_count} SMs)"),
        ("tail efficiency", f"{values['tail_efficiency']:.1%}"),
    ]
    if launch_note:
        rows.append(("note", launch_note))
    if args.plot:
        rows.append(("chart", args.plot))
    title = (f"{problem.dtype} GEMM {shape} on {gpu.name} "
             f"({key}: {gpu.peak(key) / 1e12:,.1f} TFLOP/s, "
             f"{gpu.mem_bandwidth_bytes_s / 1e12:.2f} TB/s)")
    print_table(("quantity", "value"), rows, title=title)
    return 0
