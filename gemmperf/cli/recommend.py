"""``gemmperf recommend``, ``gemmperf autotune`` and ``gemmperf clocks``.

recommend: rank a family's configs (or the configs a file lists) for a problem on a GPU by
predicted time, energy or energy-delay; ``--explain`` says why configs were pruned, ``--plot``
draws the predicted time-energy Pareto front with the picks. autotune: measure the most promising
configs, adapt the model, repeat (``--replay FILE`` plays a recorded space as the GPU; see
:mod:`gemmperf.cli.autotune`). clocks: the locked SM clock that minimises energy, with its time
cost.
"""

from __future__ import annotations

import argparse
from typing import Any

from gemmperf.cli._args import add_bundle_args, add_gemm_args, path_arg
from gemmperf.cli._output import format_cell, print_json, print_table
from gemmperf.errors import InvalidConfigError, InvalidProblemError
from gemmperf.problem import GemmProblem


def add_problem_args(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    """--gpu (required with ``required``), --m/--n/--k/--batch, --dtype, --layout."""
    add_gemm_args(p, dims_required=False, gpu_required=required, layout=True,
                  dtype_default="the family's")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model, --trust-pickle and --objective."""
    add_bundle_args(p, without_model="the roofline")
    p.add_argument("--objective", default="time", choices=("time", "energy", "edp"),
                   help="rank by predicted runtime, energy per call, or energy x runtime")


def register(subparsers: Any) -> None:
    """Add ``recommend``, ``autotune`` and ``clocks``."""
    from gemmperf.cli.autotune import register_autotune

    p = subparsers.add_parser(
        "recommend", help="rank kernel configs for a GEMM on a GPU by predicted time/energy",
        description="Rank the valid configs of a kernel family (or the configs a records file or "
        "Kernel Tuner cache lists; its measured times are ignored) for one GEMM on one GPU: "
        "predicted runtime with its interval, power, energy, roofline bound and speedup over "
        "the family's default config.")
    add_problem_args(p, required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--family", help="kernel family: clblast_xgemm, tiled, blocked, cutlass")
    group.add_argument("--space", metavar="FILE", help="rank the configs this file lists")
    add_model_args(p)
    p.add_argument("--top", type=int, default=10, help="configs to list (default 10)")
    p.add_argument("--explain", action="store_true", help="say why configs were pruned")
    p.add_argument("--examples", type=int, default=1,
                   help="with --explain: example configs per reason (default 1)")
    p.add_argument("--plot", metavar="FILE.png", default=None, type=path_arg,
                   help="save the predicted time-energy Pareto front with the picks")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run_recommend)
    register_autotune(subparsers)

    c = subparsers.add_parser(
        "clocks", help="locked SM clock that minimises a GEMM's energy, with its time cost",
        description="Predict the GEMM's runtime at the boost clock (best config of --family, or "
        "the roofline's default tile), scale it with the SM clock (compute part 1/f, DRAM part "
        "fixed) and price it with the DVFS power model calibrated on measured power-vs-clock "
        "sweeps; print the clock with the lowest energy (or energy-delay) and its time cost.")
    add_problem_args(c, required=True)
    c.add_argument("--family", default=None, help="kernel family whose best config to use")
    add_model_args(c)
    c.set_defaults(objective="energy")
    c.add_argument("--json", action="store_true", help="print one JSON document")
    c.add_argument("--plot", metavar="FILE.png", default=None, type=path_arg,
                   help="save runtime, power and energy against the locked clock")
    c.set_defaults(func=run_clocks)


def load_model_arg(args: argparse.Namespace) -> Any:
    from gemmperf.tune.models import load_default_model

    if args.model and args.model.endswith(".pkl"):
        from gemmperf.predict.persist import load_model

        return load_model(args.model, trust_pickle=args.trust_pickle)
    return load_default_model(args.model)   # its fallback warning: one line (gemmperf.cli)


def problem_from_args(args: argparse.Namespace, *, family: str | None = None,
                      fallback: GemmProblem | None = None) -> GemmProblem:
    """The GEMM the flags describe; a file's own problem when --m/--n/--k are not given."""
    from gemmperf.spaces import space_problem_defaults

    fixed = space_problem_defaults(family) if family else {}
    dims = (args.m, args.n, args.k)
    if any(d is not None for d in dims):
        if any(d is None for d in dims):
            raise InvalidProblemError("give all of --m, --n and --k")
        dtype = args.dtype or fixed.get("dtype") or (fallback.dtype if fallback else None)
        if dtype is None:
            raise InvalidProblemError("give --dtype (e.g. f16)")
        layout = args.layout or fixed.get("layout") or "nn"
        return GemmProblem(args.m, args.n, args.k, batch=args.batch, dtype=dtype, layout=layout)
    if fallback is not None:
        _check_matches_file(args, fallback)
        return fallback
    raise InvalidProblemError("give --m, --n and --k (and --dtype) of the GEMM")


def _check_matches_file(args: argparse.Namespace, problem: GemmProblem) -> None:
    """Refuse --dtype/--layout/--batch that differ from the file's own problem (without
    --m/--n/--k the file's problem is used, and they would be silently ignored)."""
    from gemmperf.problem import canonical_dtype

    given = {"dtype": args.dtype and canonical_dtype(args.dtype),
             "layout": getattr(args, "layout", None),
             "batch": args.batch if args.batch != 1 else None}
    for name, value in given.items():
        if value is not None and value != getattr(problem, name):
            raise InvalidProblemError(
                f"--{name} {value} differs from the file's problem ({problem.m}x{problem.n}x"
                f"{problem.k}, batch {problem.batch}, {problem.dtype} {problem.layout}); "
                "give --m, --n and --k too to rank another problem")


def _space_and_problem(args: argparse.Namespace, gpu: Any) -> tuple[Any, GemmProblem]:
    from gemmperf.spaces import file_space, get_space

    if getattr(args, "space", None):
        from pathlib import Path

        from gemmperf.errors import DataFormatError

        if not Path(args.space).exists():   # before asking for a dtype the file might supply
            raise DataFormatError(f"--space {args.space}: no such file")
        hint = problem_from_args(args) if args.m is not None else None
        space, _ = file_space(args.space, problem=hint, gpu=gpu)
        return space, problem_from_args(args, fallback=space.problem)
    check_family(args.family)
    problem = problem_from_args(args, family=args.family)
    return get_space(args.family, problem, gpu), problem


def check_family(family: str) -> None:
    """An unknown family is the first thing to report (before asking for a dtype)."""
    from pathlib import Path

    from gemmperf.spaces import SpaceError, known_families

    if family not in known_families() and not (family.endswith(".json") and Path(family).is_file()):
        raise SpaceError(f"unknown kernel family {family!r}; known: "
                         f"{', '.join(known_families())} (or --space FILE)")


def config_text(row: Any, tunables: list[str]) -> str:
    return " ".join(f"{n}={format_cell(row[n])}" for n in tunables if n in row.index)


def run_recommend(args: argparse.Namespace) -> int:
    """Rank and print the configs."""
    from gemmperf.hardware.specs import get_gpu
    from gemmperf.recommend import rank_space
    from gemmperf.tune.models import analogy_gpus, model_for_family, model_name

    if args.top < 1:
        raise InvalidProblemError(f"--top must be at least 1, got {args.top}")
    if args.examples < 0:
        raise InvalidProblemError(f"--examples must be 0 or more, got {args.examples}")
    if args.examples != 1 and not args.explain:
        raise InvalidProblemError("--examples sets how many pruned configs --explain shows: "
                                  "add --explain")
    if args.plot:
        from gemmperf.report import check_figure_path

        check_figure_path(args.plot)   # before the ranking, so a typo costs no run
    gpu = get_gpu(args.gpu)
    space, problem = _space_and_problem(args, gpu)
    if space.candidates.empty and args.explain:   # nothing to rank: the reasons are the answer
        pruned = explain_pruned(space, args.examples)
        if args.json:
            print_json({"gpu": gpu.key, "space": space.summary(), "recommendations": [],
                        "pruned": pruned})
        else:
            _print_pruned(pruned)
        raise InvalidConfigError(f"{space.name} has no valid configuration for this problem on "
                                 f"{gpu.key}: all {len(space.pruned):,} pruned (reasons above)")
    model = model_for_family(load_model_arg(args), space.family)
    ranked = rank_space(space, problem, gpu, model, objective=args.objective)
    top = ranked.head(args.top)
    candidates = space.candidates
    tunables = [n for n in space.param_names if candidates[n].nunique(dropna=False) > 1]
    if args.plot:
        from gemmperf.report_recommend import pareto_chart
        from gemmperf.tune.clocks import recommend_clock

        curves = [recommend_clock(gpu, runtime_s=r["runtime_s"], compute_s=r["compute_time_s"],
                                  memory_s=r["memory_time_s"],
                                  roofline_fraction=r["roofline_fraction"],
                                  power_at_boost_w=r["power_w"]).curve
                  for _, r in top.iterrows()]
        pareto_chart(ranked, args.plot, picks=list(range(len(top))), clock_curves=curves,
                     title=f"{space.family} {problem.m}x{problem.n}x{problem.k} {problem.dtype} "
                           f"on {gpu.key}")
    default = ranked[ranked["is_default"]]
    doc = {
        "gpu": gpu.key,
        "problem": {k: getattr(problem, k) for k in ("m", "n", "k", "batch", "dtype", "layout")},
        "objective": args.objective, "model": model_name(model), "space": space.summary(),
        "by_analogy_with": analogy_gpus(model, gpu.key, space.family, problem.peak_key),
        "default": None if default.empty else {
            "rank": int(default["rank"].iloc[0]), "config": _config(default.iloc[0], space),
            "runtime_s": float(default["runtime_s"].iloc[0]), "source": space.default_source},
        "recommendations": [_recommendation(row, space) for _, row in top.iterrows()],
    }
    if args.explain:
        doc["pruned"] = explain_pruned(space, args.examples)
    if args.plot:
        doc["plot"] = args.plot
    if args.json:
        print_json(doc)
        return 0
    _print_recommendations(doc, top, tunables, space)
    return 0


def _config(row: Any, space: Any) -> dict[str, Any]:
    return {n: row[n] for n in space.param_names if n in row.index}


def _recommendation(row: Any, space: Any) -> dict[str, Any]:
    out = {"rank": int(row["rank"]), "config_id": row.name, "config": _config(row, space)}
    for name in ("runtime_s", "runtime_s_lo", "runtime_s_hi", "power_w", "energy_j",
                 "energy_j_lo", "energy_j_hi", "edp_js", "bound", "roofline_fraction",
                 "speedup_vs_default", "objective_gain_vs_default", "power_source"):
        out[name] = row[name]
    return out


def explain_pruned(space: Any, examples: int) -> dict[str, Any]:
    """Pruned configs grouped by reason, with ``examples`` explained configs per reason."""
    pruned = space.pruned
    groups = []
    for reason, part in pruned.groupby("reason", sort=False):
        sample = part.head(max(examples, 0))
        explained = space.explain(sample)
        groups.append({"reason": reason, "count": len(part), "examples": [
            {"config": _config(row, space), "explanation": explained[i]}
            for i, row in sample.iterrows()]})
    groups.sort(key=lambda g: -g["count"])
    return {"total": len(pruned), "by_reason": groups}


def _print_recommendations(doc: dict[str, Any], top: Any, tunables: list[str],
                           space: Any) -> None:
    summary = doc["space"]
    print(f"{summary['space']}: {summary['valid']:,} valid of {summary['total']:,} configs; "
          f"model: {doc['model']}; objective: {doc['objective']}")
    if doc["by_analogy_with"]:
        print(f"{doc['gpu']} is not in the model's training data: predicted by analogy with "
              f"{', '.join(doc['by_analogy_with'])}")
    rows = []
    for _, r in top.iterrows():
        interval = (f"{r['runtime_s_lo'] * 1e3:.3g}-{r['runtime_s_hi'] * 1e3:.3g}"
                    if r["runtime_s_lo"] == r["runtime_s_lo"] else "-")
        rows.append([int(r["rank"]), config_text(r, tunables), r["runtime_s"] * 1e3, interval,
                     r["power_w"], r["energy_j"] * 1e3, r["bound"],
                     f"{100 * r['roofline_fraction']:.0f}%", r["speedup_vs_default"]])
    print_table(["#", "config", "ms", "80% interval", "W", "mJ", "bound", "of roofline",
                 "vs default"], rows)
    if doc["default"]:
        d = doc["default"]
        print(f"default config (rank {d['rank']}): {d['runtime_s'] * 1e3:.4g} ms predicted "
              f"[{d['source']}]")
    if "pruned" in doc:
        print()
        _print_pruned(doc["pruned"])
    if "plot" in doc:
        print(f"wrote {doc['plot']}")


def _print_pruned(pruned: dict[str, Any]) -> None:
    """The ``--explain`` groups; an example's config is named where its explanation alone
    would repeat another's (reasons that quote no tunable values)."""
    print(f"pruned {pruned['total']:,} configs:")
    for group in pruned["by_reason"]:
        print(f"  {group['count']:>7,}  {group['reason']}")
        texts = [example["explanation"] for example in group["examples"]]
        for example, text in zip(group["examples"], texts, strict=True):
            if texts.count(text) > 1:
                config = " ".join(f"{k}={v}" for k, v in example["config"].items())
                text = f"{config}: {text}" if config else text
            print(f"           e.g. {text}")


def run_clocks(args: argparse.Namespace) -> int:
    """Print the energy-optimal locked clock."""
    import pandas as pd

    from gemmperf.hardware.specs import get_gpu
    from gemmperf.roofline_frame import roofline_frame
    from gemmperf.tune.clocks import recommend_clock
    from gemmperf.tune.models import model_for_family

    if args.objective == "time":
        raise InvalidProblemError("clocks --objective time: the fastest clock is the highest; "
                                  "clocks answers --objective energy or edp")
    if args.plot is not None:
        from gemmperf.report import check_figure_path

        check_figure_path(args.plot)   # before the work, so a typo costs no run
    if args.model and not args.family:
        raise InvalidProblemError("clocks --model needs --family: without one the roofline's "
                                  "default tile is timed and no model is used")
    gpu = get_gpu(args.gpu)
    objective = args.objective
    if args.family:
        check_family(args.family)
    problem = problem_from_args(args, family=args.family)
    row: dict[str, Any] = {k: getattr(problem, k) for k in ("m", "n", "k", "batch", "dtype",
                                                              "acc_dtype")}
    config_note = "roofline default tile"
    if args.family:
        from gemmperf.recommend import rank_space, resolve_space

        space = resolve_space(problem, gpu, family=args.family)
        best = rank_space(space, problem, gpu,
                          model_for_family(load_model_arg(args), space.family)).iloc[0]
        # The config's whole footprint, so the roofline below times what the ranking timed.
        row.update({c: best[c] for c in ("tile_m", "tile_n", "tile_k", "threads_per_block",
                                         "regs_per_thread", "smem_bytes_per_block", "stages")
                    if c in best.index and pd.notna(best[c])})
        runtime, fraction = float(best["runtime_s"]), float(best["roofline_fraction"])
        power_at_boost = float(best["power_w"])   # what recommend reports for this config
        config_note = f"best predicted {args.family} config (rank 1)"
    roof = roofline_frame(pd.DataFrame([row]), gpu).iloc[0]
    if not args.family:
        power_at_boost = None   # the DVFS model's own power at the boost clock
        runtime = float(roof["estimate_s"])
        fraction = float(roof["lower_bound_s"] / runtime)
    answer = recommend_clock(gpu, runtime_s=runtime, compute_s=float(roof["tile_compute_time_s"]),
                             memory_s=float(roof["tile_memory_time_s"]),
                             roofline_fraction=fraction, objective=objective,
                             power_at_boost_w=power_at_boost)
    doc = answer.to_dict()
    doc["config"] = config_note
    doc["calibration"] = "own" if answer.calibrated else "generic (mean of calibrated GPUs)"
    if args.plot is not None:
        from gemmperf.report_recommend import clock_chart

        doc["plot"] = str(clock_chart(
            answer.curve, args.plot, chosen_mhz=answer.clock_mhz,
            boost_mhz=answer.boost_clock_mhz, objective=objective,
            title=f"{problem.m}x{problem.n}x{problem.k} {problem.dtype} on {gpu.name}"))
    if args.json:
        print_json(doc)
        return 0
    basis = f"({config_note}; DVFS calibration: {doc['calibration']})"
    at_boost = answer.clock_mhz >= answer.boost_clock_mhz
    if at_boost:
        print(f"{gpu.key}: the boost clock ({answer.boost_clock_mhz:.0f} MHz) already gives the "
              f"lowest {objective}; a lower locked clock does not pay {basis}")
    else:
        print(f"{gpu.key}: lock the SM clock at {answer.clock_mhz:.0f} MHz (boost "
              f"{answer.boost_clock_mhz:.0f}) for the lowest {objective}: "
              f"{100 * answer.energy_saving:.1f}% less energy, "
              f"{100 * (answer.time_cost - 1):.1f}% more time {basis}")
    marks = {answer.boost_clock_mhz: "boost",
             answer.clock_mhz: f"lowest {objective}" + (" (boost)" if at_boost else "")}
    print_table(["MHz", "ms", "W", "mJ", "time cost", "energy saving", ""],
                [[r.clock_mhz, r.runtime_s * 1e3, r.power_w, r.energy_j * 1e3, r.time_cost,
                  f"{100 * r.energy_saving:.1f}%", marks.get(r.clock_mhz, "")]
                 for r in answer.summary_rows().itertuples()])
    if "plot" in doc:
        print(f"wrote {doc['plot']}")
    return 0
