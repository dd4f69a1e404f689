"""``gemmperf whatif``: one plan, or one compute-optimal budget, per combination of
comma-separated --gpu, --num-gpus, --dtype and budget lists (registered with the other training
commands in :mod:`gemmperf.cli.training`, whose option checks it shares)."""

from __future__ import annotations

import argparse
import itertools
import sys
from typing import Any

from gemmperf.cli._output import print_json, print_table
from gemmperf.cli.training import check_numbers
from gemmperf.training.errors import PlanError

_PLAN_SWEEP_ONLY = ("tokens", "num_gpus", "global_batch_tokens")
_BUDGET_SWEEP_ONLY = ("gpu_hours", "usd", "law")


def run_whatif(args: argparse.Namespace) -> int:
    """Plan (with --arch) or size (without) every combination of the list options; exit 2
    when not one scenario could be planned."""
    check_numbers(args)
    for dest in ("gpu", "dtype"):
        if not getattr(args, dest):
            raise PlanError(f"--{dest} needs at least one name (comma-separated)")
    if args.plot:
        from gemmperf.report import check_figure_path

        check_figure_path(args.plot)  # before the sweep: a typo must not cost the run
    _check_sweep_options(args)
    rows = _plan_sweep(args) if args.arch else _budget_sweep(args)
    if args.json:
        print_json(rows)
    else:
        columns = list(dict.fromkeys(k for row in rows for k in row))
        print_table(columns, [[row.get(c) for c in columns] for row in rows], title="what if")
    failed = [row["error"] for row in rows if row.get("error")]
    if rows and len(failed) == len(rows):
        # Nothing was planned: a script must not read the table as an answer.
        print(f"gemmperf: error: no scenario could be planned; the first: {failed[0]}",
              file=sys.stderr)
        return 2
    if args.plot:
        _plot(rows, args.plot)
    return 0


def _check_sweep_options(args: argparse.Namespace) -> None:
    """Reject options the chosen sweep (plan with --arch, else budget) would silently ignore."""
    if not args.arch and not (args.gpu_hours or args.usd):
        raise PlanError("whatif needs --arch and --tokens, or --gpu-hours/--usd lists")
    ignored = _BUDGET_SWEEP_ONLY if args.arch else _PLAN_SWEEP_ONLY
    given = ["--" + d.replace("_", "-") for d in ignored if getattr(args, d) is not None]
    if given:
        mode = ("with --arch is a plan sweep, which does not use {} (budget sweeps, without "
                "--arch, do)" if args.arch else "without --arch is a budget sweep, which does "
                "not use {} (plan sweeps, with --arch, do)")
        raise PlanError(f"whatif {mode.format(', '.join(given))}; drop "
                        f"{'it' if len(given) == 1 else 'them'}")


def _plan_sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One plan of --arch per (GPU, cluster size, dtype); a failing scenario is a row too."""
    from gemmperf.training.config import load_arch
    from gemmperf.training.planner import plan_training

    if args.tokens is None:
        raise PlanError("whatif with --arch needs --tokens")
    if not args.num_gpus:
        raise PlanError("whatif with --arch needs --num-gpus (a list is fine)")
    arch = load_arch(args.arch)
    rows: list[dict[str, Any]] = []
    for gpu, n, dtype in itertools.product(args.gpu, args.num_gpus, args.dtype):
        try:
            p = plan_training(arch, gpu=gpu, num_gpus=n, tokens=args.tokens,
                              seq_len=args.seq, global_batch_tokens=args.global_batch_tokens,
                              dtype=dtype, price_per_gpu_hour=args.price, pue=args.pue)
        except PlanError as exc:
            rows.append({"scenario": f"{gpu} x{n} {dtype}", "error": str(exc)})
            continue
        rows.append({"scenario": f"{gpu} x{n} {dtype}", "layout": p.parallelism.describe(),
                     "mfu": p.mfu, "tokens_per_s_per_gpu": p.tokens_per_s_per_gpu,
                     "days": p.days, "gpu_hours": p.gpu_hours, "energy_mwh": p.energy_mwh,
                     "usd": p.usd})
    return rows


def _budget_sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The compute-optimal model of each (GPU, budget, dtype)."""
    from gemmperf.training.budget import compute_optimal

    budgets = [("gpu_hours", v) for v in args.gpu_hours or []] + \
        [("usd", v) for v in args.usd or []]
    seq = {} if args.seq is None else {"seq_len": args.seq}
    rows: list[dict[str, Any]] = []
    for gpu, (kind, value), dtype in itertools.product(args.gpu, budgets, args.dtype):
        r = compute_optimal(gpu=gpu, law=args.law or "epoch", dtype=dtype,
                            price_per_gpu_hour=args.price, pue=args.pue, **seq, **{kind: value})
        p = r.plan
        rows.append({"scenario": f"{gpu} {kind}={value:.3g} {dtype}",
                     "params": r.arch_params, "tokens": r.tokens, "loss": r.loss,
                     "days": p.days if p else None, "gpu_hours": p.gpu_hours if p else None,
                     "energy_mwh": p.energy_mwh if p else None})
    return rows


def _plot(rows: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gemmperf.report import save_figure

    ok = [r for r in rows if "error" not in r and r.get("days") is not None]
    if not ok:
        raise PlanError("nothing to plot: every scenario failed")
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(ok) + 2))
    names = [r["scenario"] for r in ok]
    axes[0].barh(names, [r["days"] for r in ok], color="tab:blue")
    axes[0].set_xlabel("wall-clock days")
    axes[1].barh(names, [r["energy_mwh"] for r in ok], color="tab:green")
    axes[1].set_xlabel("energy (MWh, incl. PUE)")
    axes[1].set_yticklabels([])
    fig.tight_layout()
    try:
        written = save_figure(fig, path, dpi=120)  # an OS error is one line too
    finally:
        plt.close(fig)
    print(f"wrote {written}")
