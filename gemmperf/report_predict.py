"""Plots and a markdown summary of a model evaluation (``gemmperf evaluate --report DIR``).

* ``predicted_vs_measured_<target>.png``: log-log scatter per GPU with the y = x line and +-10%;
* ``error_by_size.png``: runtime |error| against GEMM FLOPs (median and 90th percentile per bin);
* ``summary.md``: the metrics table per target and per GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gemmperf.features import TARGET_COLUMNS, resolve_gpus
from gemmperf.report import _new_figure, save_figure

_UNITS = {"runtime": "s", "power": "W", "energy": "J"}


def predicted_vs_measured(frame: pd.DataFrame, pred: pd.DataFrame, path: str | Path,
                          target: str = "runtime") -> Path:
    """Save the log-log predicted-vs-measured scatter of ``target`` (one colour per GPU)."""
    column = TARGET_COLUMNS[target]
    true = pd.to_numeric(frame[column], errors="coerce").to_numpy(float)
    p = pred[column].to_numpy(float)
    ok = np.isfinite(true) & (true > 0) & np.isfinite(p) & (p > 0)
    gpus = resolve_gpus(frame)
    fig = _new_figure(6.5, 6.0)
    ax = fig.add_subplot()
    for gpu in sorted(pd.unique(gpus[ok])):
        rows = ok & (gpus == gpu)
        ax.scatter(true[rows], p[rows], s=4, alpha=0.35, label=f"{gpu} ({rows.sum()})",
                   rasterized=True)
    if ok.any():
        lo, hi = min(true[ok].min(), p[ok].min()), max(true[ok].max(), p[ok].max())
        line = np.array([lo, hi])
        ax.plot(line, line, color="black", lw=1, label="y = x")
        for factor in (0.9, 1.1):
            ax.plot(line, line * factor, color="grey", lw=0.6, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    unit = _UNITS[target]
    ax.set_xlabel(f"measured {target} ({unit})")
    ax.set_ylabel(f"predicted {target} ({unit})")
    ax.set_title(f"{target}: predicted vs measured (dashed: +-10%)")
    ax.legend(fontsize=7, markerscale=3)
    return save_figure(fig, path)


def error_by_size(frame: pd.DataFrame, pred: pd.DataFrame, path: str | Path) -> Path:
    """Save runtime |error| (%) against GEMM FLOPs, with binned median and 90th percentile."""
    true = pd.to_numeric(frame["runtime_s"], errors="coerce").to_numpy(float)
    p = pred["runtime_s"].to_numpy(float)
    m, n, k = (pd.to_numeric(frame[c], errors="coerce").to_numpy(float) if c in frame
               else np.full(len(frame), np.nan) for c in ("m", "n", "k"))
    batch = pd.to_numeric(frame["batch"], errors="coerce").fillna(1).to_numpy(float) \
        if "batch" in frame else np.ones(len(frame))
    flops = 2 * m * n * k * batch
    ok = np.isfinite(true) & (true > 0) & np.isfinite(p) & np.isfinite(flops)
    ape = np.abs(p / true - 1) * 100
    fig = _new_figure(7.5, 4.5)
    ax = fig.add_subplot()
    ax.scatter(flops[ok], ape[ok], s=3, alpha=0.2, color="tab:blue", rasterized=True)
    if ok.sum() >= 10:
        edges = np.logspace(np.log10(flops[ok].min()), np.log10(flops[ok].max()) + 1e-9, 16)
        which = np.digitize(flops[ok], edges)
        centers, med, p90 = [], [], []
        for b in np.unique(which):
            sel = which == b
            if sel.sum() >= 5:
                centers.append(np.exp(np.log(flops[ok][sel]).mean()))
                med.append(np.median(ape[ok][sel]))
                p90.append(np.quantile(ape[ok][sel], 0.9))
        ax.plot(centers, med, color="black", marker="o", label="median")
        ax.plot(centers, p90, color="tab:red", marker="s", label="90th percentile")
        ax.legend()
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("GEMM FLOPs (2 b m n k)")
    ax.set_ylabel("|predicted / measured - 1| (%)")
    ax.set_title("runtime error by problem size")
    return save_figure(fig, path)


def summary_markdown(metrics: Mapping[str, Any]) -> str:
    """The metrics of :func:`gemmperf.predict.evaluate.evaluate_predictions` as markdown."""

    def cell(value: Any, pct: bool = False) -> str:
        if value is None:
            return "-"
        return f"{value:.2f}%" if pct else f"{value:.3f}"

    lines = ["# Model evaluation", "",
             "| GPU | target | n | MAPE | median APE | R^2 (log) | Spearman (within problem) "
             "| 80% coverage | 80% width (hi/lo) |", "|---|---|---|---|---|---|---|---|---|"]
    entries = [(gpu, t, m) for gpu, ts in metrics["gpus"].items() for t, m in ts.items()]
    entries += [("all", t, m) for t, m in metrics["targets"].items()]
    for gpu, target, m in entries:
        lines.append(f"| {gpu} | {target} | {m['n']} | {cell(m['mape'], True)} | "
                     f"{cell(m['median_ape'], True)} | {cell(m['r2_log'])} | "
                     f"{cell(m['spearman'])} | {cell(m['coverage_80'])} | "
                     f"{cell(m.get('width_80'))} |")
    return "\n".join(lines) + "\n"


def write_report(directory: str | Path, frame: pd.DataFrame, pred: pd.DataFrame,
                 metrics: Mapping[str, Any]) -> list[Path]:
    """Write the plots and ``summary.md`` into ``directory``; return the files written."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for target, column in TARGET_COLUMNS.items():
        if column in pred.columns and column in frame.columns and target in metrics["targets"]:
            files.append(predicted_vs_measured(frame, pred, out / f"predicted_vs_measured_"
                                               f"{target}.png", target))
    if "runtime" in metrics["targets"]:
        files.append(error_by_size(frame, pred, out / "error_by_size.png"))
    summary = out / "summary.md"
    summary.write_text(summary_markdown(metrics)
                       + "\n" + "\n".join(f"![{f.stem}]({f.name})" for f in files) + "\n")
    files.append(summary)
    return files
