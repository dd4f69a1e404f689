"""``gemmperf autotune``: measure promising configs, adapt the model, re-rank, until the budget.

Measurements come from the GPU through the collector (``--backend real``, the default; every
record is appended to ``--out``), from the seeded fake (``--backend fake``: synthetic numbers
that exercise the loop, never measurements), or from a recorded space (``--replay FILE``: records
or a Kernel Tuner cache play the GPU, so strategies can be compared offline).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gemmperf.cli._args import path_arg
from gemmperf.cli._output import format_cell, print_json, print_table
from gemmperf.errors import GemmperfError


def register_autotune(subparsers: Any) -> None:
    """Add ``autotune`` (called by :func:`gemmperf.cli.recommend.register`)."""
    from gemmperf.cli.recommend import add_model_args, add_problem_args

    p = subparsers.add_parser(
        "autotune", help="measure, adapt the model, re-rank until the budget is spent",
        description="Model-guided autotuning: rank the space with the predictor, measure the "
        "most promising config, fit a few-shot correction of the model to the measurements, "
        "re-rank, repeat. --replay FILE uses a recorded space (records or a Kernel Tuner "
        "cache) as the GPU.")
    add_problem_args(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--family", help="kernel family: clblast_xgemm, tiled, blocked, cutlass")
    group.add_argument("--space", metavar="FILE", help="tune over the configs this file lists")
    add_model_args(p)
    p.add_argument("--budget", type=int, required=True, help="measurements to spend")
    p.add_argument("--replay", metavar="FILE", default=None,
                   help="replay a recorded space as the GPU (records or Kernel Tuner cache)")
    p.add_argument("--replay-noise", action="store_true",
                   help="draw replayed times from the recorded run-to-run spread (seeded)")
    p.add_argument("--strategy", default="model", choices=("model", "random", "greedy"),
                   help="model-guided (default), random search, or greedy local search")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--per-round", type=int, default=1, help="configs proposed per round")
    p.add_argument("--reference-gpus", default=None, metavar="G1,G2",
                   help="GPUs whose predictions anchor the few-shot model (default: those the "
                        "model saw this family on)")
    p.add_argument("--backend", default="real", choices=("real", "fake"),
                   help="measure on the GPU (real) or the seeded fake (synthetic)")
    p.add_argument("--out", default="autotune-records", metavar="DIR", type=path_arg,
                   help="folder for the measured records (default ./autotune-records)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run_autotune)


def _replay_setup(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    from gemmperf.cli.recommend import problem_from_args
    from gemmperf.hardware.specs import get_gpu
    from gemmperf.spaces import file_space
    from gemmperf.tune.measure import ReplayMeasurer

    if args.family:
        raise GemmperfError("--replay tunes over the configs the file lists: drop --family")
    if args.space and Path(args.space).resolve() != Path(args.replay).resolve():
        raise GemmperfError("--space and --replay must name the same file")
    gpu = get_gpu(args.gpu) if args.gpu else None
    hint = problem_from_args(args) if args.m is not None else None
    space, recording = file_space(args.replay, problem=hint, gpu=gpu)
    if gpu is None:
        if len(recording.gpus) != 1:
            raise GemmperfError(f"{args.replay}: give --gpu (the file names "
                                f"{', '.join(recording.gpus) or 'no known GPU'})")
        gpu = get_gpu(recording.gpus[0])
    elif recording.gpus and gpu.key not in recording.gpus:
        # The model would predict one GPU while the file plays another: the result means nothing.
        raise GemmperfError(f"--gpu {gpu.key}, but {args.replay} was recorded on "
                            f"{', '.join(recording.gpus)}: drop --gpu or replay that GPU's file")
    _check_replay_dtype(args, space.problem)
    import numpy as np

    measurer = ReplayMeasurer(recording, noise=args.replay_noise,
                              rng=np.random.default_rng(args.seed + 1))
    return space, problem_from_args(args, fallback=space.problem), gpu, measurer


def _check_replay_dtype(args: argparse.Namespace, recorded: Any) -> None:
    """--dtype without --m/--n/--k would be ignored (the file's problem is used): refuse one
    that differs from what the file recorded. With --m/--n/--k the file lookup matches it."""
    if args.dtype is None:
        return
    from gemmperf.problem import canonical_dtype

    if canonical_dtype(args.dtype) != recorded.dtype:
        raise GemmperfError(f"--dtype {args.dtype}, but {args.replay} holds "
                            f"{recorded.m}x{recorded.n}x{recorded.k} {recorded.dtype} records")


def _collector_setup(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    from gemmperf.cli.recommend import _space_and_problem
    from gemmperf.hardware.specs import get_gpu
    from gemmperf.records import check_records_folder
    from gemmperf.tune.measure import CollectorMeasurer

    if not args.gpu:
        raise GemmperfError("give --gpu")
    check_records_folder(args.out, label=f"--out {args.out}")  # before any measurement
    gpu = get_gpu(args.gpu)
    if not (args.family or args.space):
        raise GemmperfError("give --family (or --space FILE, or --replay FILE)")
    space, problem = _space_and_problem(args, gpu)
    families = sorted(set(space.candidates["family"]))
    from gemmperf.collect.backend import backend_names

    unmeasurable = [f for f in families if f not in backend_names()]
    if unmeasurable:
        raise GemmperfError(
            f"no collector backend measures {', '.join(unmeasurable)} (backends: "
            f"{', '.join(backend_names())}); tune it offline with --replay FILE")
    if args.backend == "fake":
        from gemmperf.collect.rig import fake_rig

        print("gemmperf: note: --backend fake measures a simulated GPU: the numbers are "
              "synthetic (records say source=fake)", file=sys.stderr)
        rig = fake_rig(families, gpu=gpu.key, seed=args.seed, power=None)
    else:
        from gemmperf.collect.rig import real_rig

        rig = real_rig(families)
        if rig.device.gpu_key and rig.device.gpu_key != gpu.key:
            raise GemmperfError(f"--gpu {gpu.key} but the device is {rig.device.name} "
                                f"({rig.device.gpu_key})")
    return space, problem, gpu, CollectorMeasurer(rig, problem, args.out)


def run_autotune(args: argparse.Namespace) -> int:
    """Run the loop and print every measurement and the best config."""
    from gemmperf.cli.recommend import load_model_arg
    from gemmperf.tune.autotune import autotune

    if args.budget < 1:
        raise GemmperfError(f"--budget must be at least 1, got {args.budget}")
    if args.per_round < 1:  # autotune() calls it batch, which is another option here
        raise GemmperfError(f"--per-round must be at least 1, got {args.per_round}")
    if args.seed < 0:  # numpy seeds must be non-negative
        raise GemmperfError(f"--seed must be at least 0, got {args.seed}")
    setup = _replay_setup if args.replay else _collector_setup
    space, problem, gpu, measurer = setup(args)
    model = load_model_arg(args) if args.strategy == "model" else None
    refs = [g.strip() for g in args.reference_gpus.split(",") if g.strip()] \
        if args.reference_gpus else None
    try:
        result = autotune(space, problem, gpu, measurer, budget=args.budget,
                          strategy=args.strategy, model=model, objective=args.objective,
                          seed=args.seed, references=refs, batch=args.per_round)
    finally:
        close = getattr(measurer, "close", None)
        if close is not None:
            close()
    doc = result.to_dict()
    if hasattr(measurer, "path"):
        doc["records"] = str(measurer.path)
    if args.replay:
        doc["replay"] = args.replay
        best_recorded = measurer.recording.measured()["runtime_s"].min()
        best = result.best
        if best is not None and args.objective == "time":
            doc["regret_vs_recorded_best"] = float(
                measurer.recording.frame.at[best["config_id"], "runtime_s"] / best_recorded)
    if args.json:
        print_json(doc)
        return 0
    tunables = [n for n in space.param_names
                if space.candidates[n].nunique(dropna=False) > 1]
    rows = []
    for _, r in result.history.iterrows():
        rows.append([int(r["step"]), " ".join(f"{n}={format_cell(r[n])}" for n in tunables),
                     r["status"], r["runtime_s"] * 1e3 if r["runtime_s"] == r["runtime_s"]
                     else None, r["predicted_objective"], r["objective"]])
    print(f"{result.strategy} autotuning of {space.name} on {gpu.key}, objective "
          f"{result.objective}, budget {result.budget}"
          + (f" (model: {result.model}; reference GPUs: "
             f"{', '.join(result.reference_gpus) or 'none'})" if result.model else ""))
    unit = {"time": "s", "energy": "J", "edp": "J s"}[result.objective]
    print_table(["step", "config", "status", "ms", f"predicted {result.objective} ({unit})",
                 f"measured {result.objective} ({unit})"], rows)
    for note in result.notes:
        print(f"note: {note}")
    best = result.best
    if best is None:
        print("every measurement failed")
        return 1
    print(f"best: {' '.join(f'{n}={format_cell(best[n])}' for n in tunables)} "
          f"({best['runtime_s'] * 1e3:.4g} ms)")
    if "regret_vs_recorded_best" in doc:
        print(f"regret against the best recorded config: {doc['regret_vs_recorded_best']:.4f}")
    if "records" in doc:
        print(f"records: {doc['records']}")
    return 0
