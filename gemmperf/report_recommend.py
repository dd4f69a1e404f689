"""Plots of the recommender: the predicted time-energy Pareto front, regret against budget,
and a GEMM's runtime, power and energy against the locked SM clock.

All draw on an Agg canvas through :func:`gemmperf.report._new_figure` (no display, no pyplot
state) and return the path written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from gemmperf.report import _new_figure, save_figure


def pareto_mask(time: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """True for points no other point beats in both time and energy (ties kept)."""
    t = np.asarray(time, dtype=float)
    e = np.asarray(energy, dtype=float)
    order = np.lexsort((e, t))               # by time, then energy
    mask = np.zeros(len(t), dtype=bool)
    best = np.inf
    for i in order:
        if e[i] < best:
            mask[i] = True
            best = e[i]
    return mask


def pareto_chart(ranked: pd.DataFrame, path: str | Path, *, picks: Sequence[int] = (),
                 clock_curves: Sequence[pd.DataFrame] = (), title: str | None = None) -> Path:
    """Predicted runtime vs energy of every ranked config at the boost clock, the picks
    (positions in ``ranked``) and the default config highlighted, and for each pick its
    locked-clock curve (``clock_curves``: frames with ``runtime_s``, ``energy_j``,
    ``clock_mhz``). The Pareto front is taken over configs and clocks together: per-config
    power differences are what the model knows, the clock is what trades time for energy."""
    path = Path(path)
    fig = _new_figure()
    ax = fig.add_subplot()
    t = ranked["runtime_s"].to_numpy(dtype=float) * 1e3
    e = ranked["energy_j"].to_numpy(dtype=float)
    ax.scatter(t, e, s=4, color="0.75", label=f"{len(ranked):,} valid configs (boost clock)",
               rasterized=True)
    all_t, all_e = [t], [e]
    for i, curve in enumerate(clock_curves):
        ct = curve["runtime_s"].to_numpy(dtype=float) * 1e3
        ce = curve["energy_j"].to_numpy(dtype=float)
        ax.plot(ct, ce, color="tab:orange", lw=0.8, alpha=0.7,
                label="locked SM clock, top picks" if i == 0 else None)
        all_t.append(ct)
        all_e.append(ce)
    t_all, e_all = np.concatenate(all_t), np.concatenate(all_e)
    front = pareto_mask(t_all, e_all)
    order = np.argsort(t_all[front])
    ax.plot(t_all[front][order], e_all[front][order], "-o", color="tab:blue", ms=3, lw=1.2,
            label=f"Pareto front ({int(front.sum())} points)")
    if "is_default" in ranked and ranked["is_default"].any():
        d = np.flatnonzero(ranked["is_default"].to_numpy(dtype=bool))
        ax.scatter(t[d], e[d], marker="s", s=60, facecolor="none", edgecolor="black",
                   label="family default", zorder=4)
    if len(picks):
        p = np.asarray(picks, dtype=int)
        ax.scatter(t[p], e[p], marker="*", s=110, color="tab:red", zorder=5,
                   label=f"top {len(p)} picks")
    from matplotlib.ticker import ScalarFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("predicted runtime (ms)")
    ax.set_ylabel("predicted energy per call (J)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def regret_chart(curves: Mapping[str, Mapping[str, np.ndarray]], path: str | Path, *,
                 title: str | None = None, target: float | None = None) -> Path:
    """Regret (best-found / best) against measurements: one panel per GPU, one line per
    strategy (median over seeds, shaded 25-75 %). ``curves[gpu][strategy]`` is seeds x budget."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    path = Path(path)
    gpus = list(curves)
    fig = _new_figure(width=4.2 * len(gpus), height=3.8)
    axes = fig.subplots(1, len(gpus), squeeze=False)[0]
    colors = {"model": "tab:red", "random": "tab:gray", "greedy": "tab:green"}
    for ax, gpu in zip(axes, gpus, strict=True):
        for strategy, runs in curves[gpu].items():
            runs = np.asarray(runs, dtype=float)
            steps = np.arange(1, runs.shape[1] + 1)
            median = np.median(runs, axis=0)
            color = colors.get(strategy)
            ax.plot(steps, median, label=strategy, color=color, lw=1.6)
            ax.fill_between(steps, np.percentile(runs, 25, axis=0),
                            np.percentile(runs, 75, axis=0), color=color, alpha=0.15, lw=0)
        if target is not None:
            ax.axhline(target, color="black", lw=0.8, ls="--", label=f"target {target:g}")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(gpu, fontsize=10)
        ax.set_xlabel("measurements")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("regret (best found / best)")
    axes[-1].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def clock_chart(curve: pd.DataFrame, path: str | Path, *, chosen_mhz: float, boost_mhz: float,
                objective: str = "energy", title: str | None = None) -> Path:
    """Predicted runtime, power and energy of one GEMM against the locked SM clock (a
    :class:`~gemmperf.tune.clocks.ClockAnswer`'s ``curve``), relative to the boost clock, with
    the chosen clock marked."""
    path = Path(path)
    fig = _new_figure(width=6.4, height=4.0)
    ax = fig.subplots()
    at_boost = curve.iloc[int(np.argmin(np.abs(curve["clock_mhz"].to_numpy() - boost_mhz)))]
    for column, label, color in (("runtime_s", "runtime", "tab:blue"),
                                 ("power_w", "power", "tab:orange"),
                                 ("energy_j", "energy per call", "tab:green")):
        ax.plot(curve["clock_mhz"], curve[column] / at_boost[column], label=label, color=color,
                lw=1.6)
    ax.axvline(chosen_mhz, color="black", lw=0.9, ls="--",
               label=f"lowest {objective}: {chosen_mhz:.0f} MHz")
    ax.axvline(boost_mhz, color="0.5", lw=0.9, ls=":", label=f"boost {boost_mhz:.0f} MHz")
    from matplotlib.ticker import ScalarFormatter

    ax.axhline(1.0, color="0.8", lw=0.6)
    ax.set_yscale("log")   # runtime grows ~1/f at low clocks; the energy dip stays visible
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.set_xlabel("locked SM clock (MHz)")
    ax.set_ylabel("relative to the boost clock (log)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, path)
