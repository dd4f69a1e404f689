"""``gemmperf train | evaluate | cross-validate | predict``: the learned runtime/power/energy
model (:mod:`gemmperf.predict`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from gemmperf.cli._args import (
    add_bundle_args,
    add_force_arg,
    add_gemm_args,
    path_arg,
    refuse_overwrite,
)
from gemmperf.cli._output import print_json, print_table
from gemmperf.errors import InvalidConfigError

_DATA_HELP = ("record files (.jsonl/.parquet/.csv) or raw measurement files (Kernel Tuner caches, "
              "library tables, power tables); a folder means the data files inside it")


def register(subparsers: Any) -> None:
    """Add the ``train``, ``evaluate``, ``cross-validate`` and ``predict`` subcommands."""
    p = subparsers.add_parser("train", help="train a runtime/power/energy model on measurements",
                              description="Fit the tree-ensemble predictor on DATA and save a "
                              "safe model bundle (.npz; .pkl writes a pickle).")
    p.add_argument("data", nargs="+", metavar="DATA", help=_DATA_HELP)
    p.add_argument("-o", "--output", required=True, metavar="MODEL", type=path_arg,
                   help="bundle to write")
    add_force_arg(p, "bundle")
    _model_options(p)
    p.add_argument("--json", action="store_true", help="print the bundle metadata as JSON")
    _allow_fake_option(p)
    p.set_defaults(func=run_train)

    p = subparsers.add_parser("evaluate", help="score a model on measurements",
                              description="Predict DATA with MODEL and report MAPE, median APE, "
                              "R^2 of log runtime, within-problem Spearman and 80%% interval "
                              "coverage, per target and per GPU.")
    p.add_argument("data", nargs="+", metavar="DATA", help=_DATA_HELP)
    add_bundle_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--report", metavar="DIR", type=path_arg,
                   help="write PNG plots and a markdown summary")
    add_force_arg(p, "report (write into a folder that is not empty)")
    _allow_fake_option(p)
    p.set_defaults(func=run_evaluate)

    p = subparsers.add_parser("cross-validate", help="held-out accuracy of the model recipe",
                              description="Train on part of DATA, score the rest: random rows "
                              "(within each GPU), held-out shapes, held-out GPUs, or held-out "
                              "clocks.")
    p.add_argument("data", nargs="+", metavar="DATA", help=_DATA_HELP)
    p.add_argument("--split", required=True, choices=("random", "shape", "gpu", "clock"),
                   help="what is held out: random rows, (m, n, k) shapes, GPUs or clocks")
    p.add_argument("--folds", type=int, default=5, help="folds of the shape/clock splits")
    _model_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    _allow_fake_option(p)
    p.set_defaults(func=run_cross_validate)

    p = subparsers.add_parser("predict", help="predict runtime, power and energy of one GEMM",
                              description="Predict one GEMM on one GPU with a model bundle.")
    add_bundle_args(p)
    add_gemm_args(p, dims_required=True, acc_dtype=True)
    p.add_argument("--family", default=None,
                   help="kernel family, e.g. clblast_xgemm, cublas, xla_library (default: "
                        f"{DEFAULT_FAMILY}, the vendor library, where the model knows it and "
                        "no tile or launch option describes another kernel)")
    for name, text in (("tile-m", "thread-block tile rows"),
                       ("tile-n", "thread-block tile columns"),
                       ("tile-k", "thread-block tile depth"), ("threads", "threads per block"),
                       ("stages", "pipeline stages"), ("split-k", "split-K slices"),
                       ("regs", "registers per thread"), ("smem", "shared memory per block, B")):
        p.add_argument(f"--{name}", type=int, default=None, help=text)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="family tunable, e.g. --param VWM=4 --param SA=1 (repeatable)")
    p.add_argument("--sm-clock", type=float, default=None, help="SM clock, MHz (locked clocks)")
    p.add_argument("--mem-clock", type=float, default=None, help="memory clock, MHz")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run_predict)


def _allow_fake_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-fake", action="store_true",
                   help="accept fake-backend (simulated) records, e.g. to test a pipeline; "
                        "they are never measurements")


def _load_measurements(args: argparse.Namespace) -> Any:
    """``load_data(args.data)``, refusing fake-backend rows unless ``--allow-fake``: a model
    trained or scored on simulated times would pass synthetic numbers for measured ones."""
    from gemmperf.predict.data import load_data

    frame = load_data(args.data)
    fake = int((frame["source"] == "fake").sum()) if "source" in frame.columns else 0
    if fake and not args.allow_fake:
        raise InvalidConfigError(f"{fake} of {len(frame)} rows are fake-backend (simulated) "
                                 "records, not measurements; --allow-fake uses them anyway")
    return frame


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--targets", default="runtime,power,energy",
                   help="comma-separated targets among runtime, power, energy")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--learner", default="extra_trees", choices=("extra_trees", "random_forest"),
                   help="tree ensemble (default extra_trees; see models/MODEL_CARD.md)")
    p.add_argument("--trees", type=int, default=None, help="trees per target (default 32)")
    p.add_argument("--max-leaves", type=int, default=None, help="leaves per tree (default 16384)")
    p.add_argument("--jobs", type=int, default=-1, help="parallel jobs (default -1: all cores)")


def _make_model(args: argparse.Namespace) -> Any:
    from gemmperf.features import TARGETS
    from gemmperf.predict.forest import Predictor

    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise InvalidConfigError(f"--targets takes {', '.join(TARGETS)}, got {args.targets!r}")
    if args.trees is not None and args.trees < 1:
        raise InvalidConfigError(f"--trees {args.trees}: an ensemble needs at least 1 tree")
    if args.max_leaves is not None and args.max_leaves < 2:
        raise InvalidConfigError(f"--max-leaves {args.max_leaves}: a tree that splits has at "
                                 "least 2 leaves")
    if not 0 <= args.seed < 2**32:
        raise InvalidConfigError(f"--seed {args.seed}: give an integer from 0 to 2^32 - 1")
    if args.jobs == 0:
        raise InvalidConfigError("--jobs 0: give a number of parallel jobs, or -1 for all cores")
    params: dict[str, Any] = {"targets": targets, "random_state": args.seed,
                              "learner": args.learner, "n_jobs": args.jobs}
    if args.trees is not None:
        params["n_estimators"] = args.trees
    if args.max_leaves is not None:
        params["max_leaf_nodes"] = args.max_leaves
    return Predictor(**params)


def run_train(args: argparse.Namespace) -> int:
    """Fit and save a model."""
    from gemmperf.predict.data import describe_sources
    from gemmperf.predict.persist import check_model_path, save_model

    model = _make_model(args)   # its options checked before the data is read
    check_model_path(args.output)   # and where it goes, before it trains
    refuse_overwrite(args.output, force=args.force)
    frame = _load_measurements(args)
    start = time.perf_counter()
    model.fit(frame)
    seconds = time.perf_counter() - start
    path = save_model(model, args.output, metadata={
        "training_files": describe_sources(frame), "training_seconds": round(seconds, 1)})
    if args.json:
        from gemmperf.predict.persist import read_metadata

        print_json(read_metadata(path))
        return 0
    rows = [(t, model.n_train_[t], model.forests_[t].n_trees, model.forests_[t].n_nodes,
             model.interval_scale_[t]) for t in model.forests_]
    print_table(["target", "training rows", "trees", "nodes", "interval scale"], rows,
                title=f"trained in {seconds:.0f} s -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Score a model on data."""
    from gemmperf.predict.evaluate import evaluate_predictions
    from gemmperf.predict.persist import load_model

    if args.report:   # before any work: a report path that cannot be a folder is one line
        from gemmperf.records import RecordsPathError, check_records_folder

        check_records_folder(args.report, label=f"--report {args.report}")
        refuse_overwrite(args.report, force=args.force, folder=True)
        try:   # made now, so an unwritable place fails before the evaluation, not after
            Path(args.report).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordsPathError(f"--report {args.report}: cannot create the folder "
                                   f"({exc.strerror or exc})") from None
    model = load_model(args.model, trust_pickle=args.trust_pickle)
    frame = _load_measurements(args)
    pred = model.predict(frame)
    metrics = evaluate_predictions(frame, pred)
    if args.report:
        from gemmperf.report_predict import write_report

        metrics["report"] = [str(p) for p in write_report(args.report, frame, pred, metrics)]
    if args.json:
        print_json(metrics)
        return 0
    _print_metrics(metrics, title=f"{len(frame)} rows")
    return 0


def run_cross_validate(args: argparse.Namespace) -> int:
    """Held-out evaluation of the model recipe on data."""
    from gemmperf.predict.evaluate import cross_validate

    if args.folds < 2:
        raise InvalidConfigError(f"--folds {args.folds}: a held-out split needs at least 2 folds")
    _make_model(args)   # its options checked before the data is read
    frame = _load_measurements(args)
    result = cross_validate(frame, args.split, lambda: _make_model(args), folds=args.folds,
                            seed=args.seed)
    if args.json:
        print_json(result)
        return 0
    _print_metrics(result, title=f"--split {args.split}: pooled held-out rows")
    rows = [(f["fold"], f["train_rows"], f["test_rows"], f.get("mape"), f.get("spearman"))
            for f in result["folds"]]
    print_table(["fold", "train rows", "test rows", "runtime MAPE %", "Spearman"], rows)
    return 0


def _print_metrics(metrics: dict[str, Any], title: str) -> None:
    rows = []
    for gpu, targets in metrics["gpus"].items():
        for target, m in targets.items():
            rows.append((gpu, target, m["n"], m["mape"], m["median_ape"], m["r2_log"],
                         m["spearman"], m["coverage_80"], m.get("width_80")))
    for target, m in metrics["targets"].items():
        rows.append(("all", target, m["n"], m["mape"], m["median_ape"], m["r2_log"],
                     m["spearman"], m["coverage_80"], m.get("width_80")))
    print_table(["GPU", "target", "n", "MAPE %", "median APE %", "R2 (log)", "Spearman",
                 "coverage 80%", "width (hi/lo)"], rows, title=title)


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidConfigError(f"--param takes KEY=VALUE, got {item!r}")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


#: What ``predict`` without ``--family`` means: a GEMM through the vendor library.
DEFAULT_FAMILY = "cublas"
_CONFIG_OPTIONS = ("param", "tile_m", "tile_n", "tile_k", "threads", "stages", "split_k", "regs",
                   "smem")


def _default_family(args: Any, model: Any) -> str | None:
    """:data:`DEFAULT_FAMILY` where the model trained on it and no option describes a kernel of
    its own; else None (a row of no family: the trees route it between the ones they know)."""
    if any(getattr(args, name) for name in _CONFIG_OPTIONS):
        return None
    trained = getattr(model, "families_", {}).get("runtime", [])
    return DEFAULT_FAMILY if DEFAULT_FAMILY in trained else None


def _family_config(family: str | None, params: dict[str, Any], problem: Any, gpu: Any,
                   model: Any) -> dict[str, Any]:
    """Record columns of the config ``--family`` and ``--param`` describe: for a family with a
    space file, its tunables checked against the space (default filling the rest), the columns
    it derives and its kernel name, exactly as ``recommend`` builds the config's row (the model
    tells kernels apart by name). A family neither the model nor a space knows is an error, and
    so are a tunable for a family that has none and a dtype the family's space file excludes."""
    from gemmperf.spaces import check_space_dtype, known_families
    from gemmperf.spaces.param_space import (
        bundled_param_families,
        config_record,
        load_space_spec,
    )

    if family is None:
        if params:
            raise InvalidConfigError("--param needs --family (the tunables are a family's)")
        return {}
    if family in bundled_param_families():
        spec = load_space_spec(family)
        check_space_dtype(spec, problem)
        return config_record(spec, params, gpu)
    trained = {f for fams in getattr(model, "families_", {}).values() for f in fams}
    if family not in trained | set(known_families()):
        raise InvalidConfigError(f"unknown --family {family!r}; the model knows "
                                 f"{', '.join(sorted(trained)) or 'none'}, spaces exist for "
                                 f"{', '.join(known_families())}")
    if params:
        raise InvalidConfigError(f"--param: family {family} has no tunables the model reads "
                                 f"(tunables are for {', '.join(bundled_param_families())}); "
                                 "give its tile and launch options instead")
    return {}


def _check_launchable(args: argparse.Namespace, gpu: Any) -> None:
    """A launch footprint given with --threads/--regs/--smem must fit the GPU (the parts not
    given: the fewest resources, so only what was given can fail)."""
    from gemmperf.hardware.occupancy import occupancy

    if args.threads is None and args.regs is None and args.smem is None:
        return
    occ = occupancy(gpu, args.threads or 1, args.regs or 1, args.smem or 0)
    if not occ.launchable:
        raise InvalidConfigError(f"this launch footprint cannot run: {occ.reason}")


def run_predict(args: argparse.Namespace) -> int:
    """Predict one GEMM."""
    import pandas as pd

    from gemmperf.hardware.specs import MAX_MEM_CLOCK_MHZ, check_sm_clock, get_gpu
    from gemmperf.predict.persist import load_model
    from gemmperf.problem import GemmProblem

    gpu = get_gpu(args.gpu)
    problem = GemmProblem(args.m, args.n, args.k, batch=args.batch, dtype=args.dtype,
                          acc_dtype=args.acc_dtype)
    if args.sm_clock is not None:
        check_sm_clock(args.sm_clock, gpu, option="--sm-clock")
    if args.mem_clock is not None and not 0 < args.mem_clock <= MAX_MEM_CLOCK_MHZ:
        raise InvalidConfigError(f"--mem-clock {args.mem_clock:g}: not a memory clock (MHz, "
                                 f"above 0, up to {MAX_MEM_CLOCK_MHZ:,})")
    for name in ("tile_m", "tile_n", "tile_k", "threads", "stages", "split_k", "regs", "smem"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "smem" else 1):
            raise InvalidConfigError(f"--{name.replace('_', '-')} {value}: must be "
                                     f"{'>= 0' if name == 'smem' else 'positive'}")
    _check_launchable(args, gpu)
    model = load_model(args.model, trust_pickle=args.trust_pickle)
    family = args.family or _default_family(args, model)
    config = _family_config(family, _parse_params(args.param), problem, gpu, model)
    row = {"m": problem.m, "n": problem.n, "k": problem.k, "batch": problem.batch,
           "dtype": problem.dtype, "acc_dtype": problem.acc_dtype, "gpu": gpu.key,
           "family": family, "kernel_name": config.get("kernel_name"),
           "tile_m": args.tile_m, "tile_n": args.tile_n,
           "tile_k": args.tile_k, "threads_per_block": args.threads, "stages": args.stages,
           "split_k": args.split_k, "regs_per_thread": args.regs,
           "smem_bytes_per_block": args.smem, "sm_clock_mhz": args.sm_clock,
           "mem_clock_mhz": args.mem_clock,
           "params": json.dumps(config.get("params", {}), sort_keys=True)}
    for column, value in config.items():   # what the family derives, unless given explicitly
        if column in row and row[column] is None:
            row[column] = value
    pred = model.predict(pd.DataFrame([row])).iloc[0].to_dict()
    seen = {entry.get("gpu") for entry in model.training_data_}
    analogues = (model.analogues(gpu.key, family, math_key=problem.peak_key)
                 if family else [])
    out = {"gpu": gpu.key, "problem": f"{problem.m}x{problem.n}x{problem.k}",
           "dtype": problem.dtype, "gpu_in_training_data": gpu.key in seen,
           "family": family, "family_defaulted": family is not None and not args.family,
           "params": config.get("params", {}),
           "by_analogy_with": analogues, **pred}
    if args.json:
        print_json(out)
        return 0
    rows = []
    for column, unit in (("runtime_s", "s"), ("power_w", "W"), ("energy_j", "J")):
        if column in pred:
            rows.append((column, pred[column], pred[column + "_lo"], pred[column + "_hi"], unit))
    family_text = (f"{family} (default family)" if out["family_defaulted"]
                   else family or "(no kernel family)")
    note = "" if out["gpu_in_training_data"] else " (GPU not in the training data: " + (
        f"by analogy with {', '.join(analogues)})" if analogues else "transfer)")
    print_table(["quantity", "predicted", "80% low", "80% high", "unit"], rows,
                title=f"{out['problem']} {problem.dtype} {family_text} on {gpu.name}{note}")
    if gpu.tdp_w and pred.get("power_w_hi", 0.0) >= gpu.tdp_w * (1 - 1e-9):
        print(f"power stops at the {gpu.tdp_w:g} W power limit (the spec's TDP; the GPU clocks "
              "down to hold it)")
    return 0
