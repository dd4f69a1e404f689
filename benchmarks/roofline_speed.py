"""Throughput of the vectorised roofline: rows per second for 1M (problem, config) rows.

Rows are synthetic shapes and configs (seeded; log-uniform m, n, k in [1, 16384], batch 1..8, tiles
from CUTLASS-like sets, 1..4 resident blocks per SM): this measures the model's speed, not any GPU.
Three paths: ``roofline_arrays`` with every config given, the same with library defaults (default
tile, occupancy and split-K), and ``roofline_frame`` on a records-style DataFrame over three GPUs
and two dtypes. Prints the median wall and CPU time of several runs (target: >= 2M rows/s on 2
cores).

Run: .venv/bin/python benchmarks/roofline_speed.py [--rows N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from gemmperf.hardware.specs import get_gpu
from gemmperf.roofline import roofline_arrays
from gemmperf.roofline_frame import roofline_frame


def make_rows(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def log_uniform(hi: int) -> np.ndarray:
        return np.floor(np.exp(rng.uniform(0, np.log(hi), count))).astype(np.int64) + 1

    return {
        "m": log_uniform(16384), "n": log_uniform(16384), "k": log_uniform(16384),
        "batch": rng.integers(1, 9, count),
        "tile_m": rng.choice([64, 128, 256], count), "tile_n": rng.choice([64, 128, 256], count),
        "tile_k": rng.choice([32, 64], count), "blocks_per_sm": rng.integers(1, 5, count),
    }


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and CPU (process) seconds. The model runs on one thread, so CPU time is the
    wall time an idle machine would show; on a shared box the wall time also counts waiting."""
    fn()  # warm-up (imports, data file loads)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    rows = make_rows(args.rows)
    h100 = get_gpu("h100-sxm")

    def explicit() -> object:
        return roofline_arrays(rows["m"], rows["n"], rows["k"], rows["batch"], a_bytes=2,
                               c_bytes=2, gpu=h100, math_key="bf16", tile_m=rows["tile_m"],
                               tile_n=rows["tile_n"], tile_k=rows["tile_k"],
                               blocks_per_sm=rows["blocks_per_sm"])

    def defaults() -> object:
        return roofline_arrays(rows["m"], rows["n"], rows["k"], rows["batch"], a_bytes=2,
                               c_bytes=2, gpu=h100, math_key="bf16")

    frame = pd.DataFrame(rows)
    rng = np.random.default_rng(1)
    frame["gpu"] = rng.choice(["h100-sxm", "a100-sxm4-80gb", "a40"], args.rows)
    frame["dtype"] = rng.choice(["bf16", "f32"], args.rows)

    def records() -> object:
        return roofline_frame(frame)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"{args.rows:,} rows, median of {args.repeats} runs, {cores} cores{load}, "
          f"numpy {np.__version__}, pandas {pd.__version__}\n")
    print("| path | wall s | rows/s (wall) | CPU s | rows/s (CPU) |")
    print("|---|---|---|---|---|")
    for name, fn in (("roofline_arrays, explicit configs", explicit),
                     ("roofline_arrays, library defaults", defaults),
                     ("roofline_frame, 3 GPUs x 2 dtypes", records)):
        wall, cpu = timed(fn, args.repeats)
        print(f"| {name} | {wall:.3f} | {args.rows / wall / 1e6:.2f} M | {cpu:.3f} | "
              f"{args.rows / cpu / 1e6:.2f} M |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
