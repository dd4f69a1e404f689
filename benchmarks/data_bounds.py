"""What the measurements themselves allow, as references for three unmet targets: how far
two GPUs' measured times carry to a third (issue 4: Spearman >= 0.95; issue 5: zero-shot top-1
regret <= 1.05), and how well other benchmarks' power predicts an unseen one's (issue 4: power of
held-out DVFS benchmarks, median error <= 3 %). No model is involved.

*GPU transfer.* For each Kernel Tuner GPU held out, the configs both other GPUs measured are
ranked by the geometric mean of their measured times, each relative to that GPU's best (the
GPUs weighted equally): what a model reproducing the training GPUs perfectly and transferring
their relative times unchanged would predict. Per held-out GPU: Spearman rank correlation of
that score with the held-out measured times; top-1 regret (measured time of the pick / best
measured time) and the pick's rank among the held-out GPU's configs, best of the top 5 and
top 16; the top-1 regret of a minimax pick (best worst relative time over the two GPUs); and
the mean absolute percentage error of that score as a
prediction of the held-out times once scaled by the best constant for that GPU (chosen on the
held-out times themselves: an oracle for the GPU's level, so a floor for any model that
transfers the relative times; issue 4: MAPE <= 12 %). Across all three GPUs: the best
worst-case regret one config reaches, and how many configs are within 5 % of the best on every
GPU (none: a pick meeting 1.05 everywhere must differ between GPUs).

*Power of an unseen benchmark.* On the GTX Titan X DVFS table (24 benchmark names x 32 clock
pairs; the two stencil2d variants share a name and their median is taken), each benchmark's
power at each clock pair is predicted as the geometric mean of the other benchmarks' power at
the same clocks; the table holds nothing else about a kernel.

A model beats these only by knowing something the measurements do not show (e.g. why the RTX
3090 alone prefers staging A in shared memory, or a kernel's instruction mix).

Run: .venv/bin/python benchmarks/data_bounds.py [--data DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gemmperf._paths import shared_data_dir
from gemmperf.importers import import_kernel_tuner

CACHES = {"rtx-2080-ti": "kernel_tuner_xgemm_RTX_2080_Ti.json.gz",
          "rtx-3060-laptop": "kernel_tuner_xgemm_RTX_3060_laptop.json.gz",
          "rtx-3090": "kernel_tuner_xgemm_RTX_3090.json.gz"}


def measured_table(data: str) -> pd.DataFrame:
    """Measured runtime per config (rows: params text) and GPU (columns)."""
    parts = []
    for gpu, name in CACHES.items():
        frame = import_kernel_tuner([Path(data) / name])
        frame = frame[frame["status"] == "ok"]
        parts.append(frame.assign(gpu=gpu)[["params", "gpu", "runtime_s"]])
    table = pd.concat(parts).pivot_table(index="params", columns="gpu", values="runtime_s",
                                         aggfunc="median")
    return table[list(CACHES)]


def transfer(table: pd.DataFrame, held: str) -> dict[str, float]:
    """The module doc's figures for one held-out GPU."""
    train = [g for g in table.columns if g != held]
    both = table.dropna(subset=[*train, held])
    relative = both[train] / both[train].min()
    score = np.exp(np.log(relative).mean(axis=1))
    worst = relative.max(axis=1)
    truth = both[held]
    best = float(truth.min())
    top = score.sort_values(kind="stable").index
    return {
        "configs": len(both),
        "spearman": float(score.rank().corr(truth.rank())),
        "top1_regret": float(truth[top[0]] / best),
        "top1_rank": int(truth.rank(method="min")[top[0]]),
        "best_of_top5": float(truth[top[:5]].min() / best),
        "best_of_top16": float(truth[top[:16]].min() / best),
        "minimax_top1_regret": float(truth[worst.idxmin()] / best),
        "mape_level_known": level_known_mape(score.to_numpy(), truth.to_numpy()),
    }


def one_config_for_all(table: pd.DataFrame, within: float = 1.05) -> dict[str, float]:
    """Whether one config serves every GPU: over the configs all GPUs measured, the smallest
    worst-case regret (max over GPUs of time / that GPU's best) and how many configs are within
    ``within`` of the best on every GPU. A zero-shot pick that reaches 1.05 on each GPU must
    then differ between GPUs, by knowledge the other GPUs' times do not carry."""
    both = table.dropna()
    worst = (both / both.min()).max(axis=1)
    return {"configs": len(both), "best_worst_case_regret": float(worst.min()),
            "within": within, "configs_within_on_every_gpu": int((worst <= within).sum())}


def level_known_mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    """MAPE (%) of ``c * predicted`` with the ``c`` that minimises it: sum |c r_i - 1| with
    r = predicted / measured is sum r_i |c - 1 / r_i|, minimised by the median of 1 / r
    weighted by r."""
    ratio = predicted / measured
    order = np.argsort(1.0 / ratio)
    weights = np.cumsum(ratio[order])
    scale = (1.0 / ratio[order])[np.searchsorted(weights, 0.5 * weights[-1])]
    return float(100 * np.mean(np.abs(scale * ratio - 1)))


DVFS_TABLE = "gpuptxmodel_gtxtitanx_dvfs.csv"


def unseen_benchmark_power(table: pd.DataFrame) -> dict[str, float]:
    """Median and mean absolute error (%) of predicting each benchmark's power at each clock
    pair by the geometric mean of the other benchmarks' power there (module doc)."""
    clocks = table["mem_clock_mhz"].astype(str) + "/" + table["core_clock_mhz"].astype(str)
    power = table.assign(clocks=clocks).pivot_table(index="benchmark", columns="clocks",
                                                    values="avg_power_w", aggfunc="median")
    errors = []
    for benchmark in power.index:
        others = np.exp(np.log(power.drop(index=benchmark)).mean())
        errors.append(np.abs(others / power.loc[benchmark] - 1).to_numpy())
    flat = np.concatenate(errors)
    flat = flat[np.isfinite(flat)]
    return {"benchmarks": len(power), "rows": len(flat),
            "median_ape": float(100 * np.median(flat)), "mape": float(100 * np.mean(flat))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(shared_data_dir()))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    missing = [n for n in (*CACHES.values(), DVFS_TABLE) if not (Path(args.data) / n).exists()]
    if missing:
        print(f"error: not found in {args.data}: {', '.join(missing)}", file=sys.stderr)
        return 2
    table = measured_table(args.data)
    results = {held: transfer(table, held) for held in CACHES}
    common = one_config_for_all(table)
    power = unseen_benchmark_power(pd.read_csv(Path(args.data) / DVFS_TABLE))
    if args.json:
        print(json.dumps({"gpu_transfer": results, "one_config_for_all": common,
                          "unseen_benchmark_power": power}, indent=1))
        return 0
    print("Ranking a held-out GPU's configs by the two other GPUs' measured times "
          "(geometric mean of time / that GPU's best):")
    print(f"{'held-out GPU':16s} {'configs':>7s} {'Spearman':>9s} {'top-1':>7s} {'top-5':>7s} "
          f"{'top-16':>7s} {'minimax':>8s} {'MAPE, level known':>18s} {'pick rank':>10s}")
    for gpu, r in results.items():
        print(f"{gpu:16s} {r['configs']:7d} {r['spearman']:9.3f} {r['top1_regret']:7.3f} "
              f"{r['best_of_top5']:7.3f} {r['best_of_top16']:7.3f} "
              f"{r['minimax_top1_regret']:8.3f} {r['mape_level_known']:17.1f}% "
              f"{r['top1_rank']:10d}")
    print(f"\nOne config for all three GPUs: the best worst-case regret over the "
          f"{common['configs']} configs all measured is {common['best_worst_case_regret']:.3f}; "
          f"{common['configs_within_on_every_gpu']} are within {common['within']:.2f} of the "
          "best on every GPU")
    print(f"\nPower of an unseen GTX Titan X DVFS benchmark from the other "
          f"{power['benchmarks'] - 1} at the same clocks: median error "
          f"{power['median_ape']:.1f} %, mean {power['mape']:.1f} % "
          f"({power['rows']} benchmark x clock rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
