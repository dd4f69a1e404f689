"""``gemmperf sweep``: measure kernel configs into records; ``gemmperf doctor``: can it sweep?"""

from __future__ import annotations

import argparse
import math
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from gemmperf.cli._args import folder_arg
from gemmperf.cli._output import print_json, print_table
from gemmperf.errors import GemmperfError

DEFAULT_KERNELS = "tiled,blocked,cutlass,cublas"


def register(subparsers: Any) -> None:
    """Add ``sweep`` and ``doctor``."""
    p = subparsers.add_parser(
        "sweep",
        help="measure GEMM kernel configs (runtime, power, energy) into append-only records",
        description="Measure every config of the chosen kernel families for every shape and "
        "dtype, appending one JSONL record per config to OUT/records.jsonl. Resumable (configs "
        "already in OUT are skipped), shardable, interruptible. Without a GPU, --backend fake "
        "runs the same pipeline on a seeded simulation whose records say source=fake.",
    )
    what = p.add_argument_group("what to measure")
    what.add_argument("--kernels", default=DEFAULT_KERNELS,
                      help=f"comma-separated families (default {DEFAULT_KERNELS})")
    what.add_argument("--shapes", metavar="SPEC",
                      help="512:8192:x2 (all of m, n, k), 256:1024:+256, 1024,2048, "
                      "MxNxK,... or a CSV file with m,n,k columns")
    what.add_argument("--m", metavar="SPEC", help="m values (with --n and --k)")
    what.add_argument("--n", metavar="SPEC", help="n values")
    what.add_argument("--k", metavar="SPEC", help="k values")
    what.add_argument("--dtypes", default="f32", help="comma-separated dtypes (default f32)")
    what.add_argument("--layout", default="nn", choices=("nn", "nt", "tn", "tt"),
                      help="A and B transposed (t) or not (n), BLAS order (default nn)")
    where = p.add_argument_group("where and how")
    where.add_argument("--out", required=True, type=folder_arg, metavar="DIR",
                       help="output folder")
    where.add_argument("--backend", choices=("real", "fake"), default="real",
                       help="real GPU (default) or the seeded fake")
    where.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    where.add_argument("--gpu", default="rtx-4070", help="fake: GPU to simulate (spec key)")
    where.add_argument("--seed", type=int, default=0, help="fake: seed (default 0)")
    where.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                       help="skip configs already recorded in DIR (default on)")
    where.add_argument("--shard", metavar="I/N", help="run shard I of N (1-based)")
    where.add_argument("--max-minutes", type=float, help="stop cleanly after this long")
    where.add_argument("--dry-run", action="store_true",
                       help="print the config count and the roofline-estimated GPU time")
    where.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                       help="one worker per GPU as Ray tasks (ADDRESS of a cluster, or local)")
    where.add_argument("--ray-workers", type=int, help="Ray workers (default: GPUs, or CPUs "
                       "with --backend fake)")
    where.add_argument("--json", action="store_true", help="print the summary as JSON")
    how = p.add_argument_group("measurement")
    how.add_argument("--l2-flush", action="store_true", help="flush L2 before each timed run")
    how.add_argument("--min-window-ms", type=float, default=100.0,
                     help="minimum timed GPU time per config (default 100)")
    how.add_argument("--min-repeats", type=int, default=10, help="minimum timed samples")
    how.add_argument("--warmup", type=int, default=3, help="warm-up launches (default 3)")
    how.add_argument("--power-window-ms", type=float, default=1000.0,
                     help="back-to-back run for power, >= the sensor's averaging period "
                     "(default 1000)")
    how.add_argument("--no-power", action="store_true", help="skip the power/energy window")
    how.add_argument("--lock-clocks", type=int, metavar="MHZ", help="lock SM clocks (root)")
    how.add_argument("--power-limit", type=float, metavar="W", help="set a power limit (root)")
    test = p.add_argument_group("fake backend fault injection (for tests)")
    test.add_argument("--fake-failures", metavar="STATUS=RATE,...",
                      help="e.g. compile_error=0.05,launch_error=0.02,wrong_result=0.02")
    test.add_argument("--fake-latency-ms", type=float, default=0.0,
                      help="really sleep this long per config")
    p.set_defaults(func=_sweep)

    d = subparsers.add_parser(
        "doctor",
        help="check driver, NVML, cupy, CUTLASS, nvcc and GPUs; non-zero if a sweep cannot run",
        description="Report what this machine can measure. Exits 1 when `gemmperf sweep` "
        "cannot run here (use --backend fake instead).",
    )
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(func=_doctor)


def _split(text: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    if not items:
        raise GemmperfError(f"empty list {text!r}")
    return items


def _failures(text: str | None) -> Any:
    if not text:
        return None
    from gemmperf.collect.fake import FailureRates

    known = ("invalid", "compile_error", "launch_error", "wrong_result")
    rates: dict[str, float] = {}
    for item in _split(text):
        name, _, value = item.partition("=")
        if name.strip() not in known:
            raise GemmperfError(f"--fake-failures: unknown status {name.strip()!r} "
                                f"(statuses: {', '.join(known)})")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            raise GemmperfError(f"--fake-failures: {item!r} is not STATUS=RATE") from None
    try:
        return FailureRates(**rates)
    except (TypeError, ValueError) as exc:
        raise GemmperfError(
            f"--fake-failures: {exc} (statuses: invalid, compile_error, launch_error, "
            "wrong_result)"
        ) from None


def _check_number(option: str, value: float | None, low: float, *, strict: bool) -> None:
    """Raise unless ``value`` (None: not given) is a finite number >= ``low`` (> when strict)."""
    if value is None:
        return
    if not (math.isfinite(value) and (value > low if strict else value >= low)):
        raise GemmperfError(f"{option} must be a number {'>' if strict else '>='} {low:g}, "
                            f"got {value:g}")


def check_numbers(args: argparse.Namespace) -> None:
    """Reject out-of-range numeric options before anything runs: a bad value must not end up
    in records (a negative fake latency failed every config as a launch error, and resume then
    skipped those configs for good)."""
    for option, value, low, strict in (
        ("--min-window-ms", args.min_window_ms, 0, True),
        ("--power-window-ms", args.power_window_ms, 0, True),
        ("--min-repeats", args.min_repeats, 1, False),
        ("--warmup", args.warmup, 0, False),
        ("--max-minutes", args.max_minutes, 0, True),
        ("--power-limit", args.power_limit, 0, True),
        ("--fake-latency-ms", args.fake_latency_ms, 0, False),
        ("--device", args.device, 0, False),
        ("--ray-workers", args.ray_workers, 1, False),
    ):
        _check_number(option, value, low, strict=strict)
    if args.lock_clocks is not None:
        _check_lock_clocks(args)


def _check_lock_clocks(args: argparse.Namespace) -> None:
    """--lock-clocks is positive and, on the fake, at most the simulated GPU's boost clock.
    A real GPU's own maximum is checked when the sweep applies the lock (before any record)."""
    from gemmperf.collect.control import check_clock_lock

    spec = None
    if args.backend == "fake":
        from gemmperf.hardware.specs import get_gpu

        spec = get_gpu(args.gpu)  # unknown GPU: one line with suggestions
    check_clock_lock(args.lock_clocks, spec.boost_clock_mhz if spec else None,
                     label="--lock-clocks", gpu=spec.key if spec else "this GPU",
                     limit="boost clock")


def build_job(args: argparse.Namespace) -> Any:
    """The :class:`~gemmperf.collect.runner.SweepJob` the arguments describe."""
    from gemmperf.collect.backend import backend_names
    from gemmperf.collect.power import PowerSettings
    from gemmperf.collect.runner import SweepJob
    from gemmperf.collect.space import Shard, resolve_shapes
    from gemmperf.collect.sweep import SweepOptions
    from gemmperf.collect.timing import TimingSettings
    from gemmperf.problem import canonical_dtype
    from gemmperf.records import check_records_folder

    check_numbers(args)
    check_records_folder(args.out, label=f"--out {args.out}")
    families = _split(args.kernels)
    unknown = [f for f in families if f not in backend_names()]
    if unknown:
        raise GemmperfError(
            f"unknown kernel famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
            f"known: {', '.join(backend_names())}"
        )
    shapes = resolve_shapes(args.shapes, m=args.m, n=args.n, k=args.k)
    dtypes = tuple(dict.fromkeys(canonical_dtype(d) for d in _split(args.dtypes)))
    if args.backend == "fake":
        from gemmperf.hardware.specs import get_gpu

        get_gpu(args.gpu)  # unknown GPU: one line with suggestions
    timing = TimingSettings(
        warmup=args.warmup, min_repeats=args.min_repeats,
        max_repeats=max(10_000, args.min_repeats), min_window_s=args.min_window_ms / 1e3,
        l2_flush=args.l2_flush,
    )
    power = None if args.no_power else PowerSettings(window_s=args.power_window_ms / 1e3)
    options = SweepOptions(
        out_dir=args.out, timing=timing, power=power, resume=args.resume,
        max_minutes=args.max_minutes, progress=not args.json,
    )
    return SweepJob(
        families=families, shapes=tuple(shapes), dtypes=dtypes, options=options,
        layout=args.layout, backend=args.backend,
        shard=Shard.parse(args.shard) if args.shard else Shard(), cuda_index=args.device,
        lock_clocks_mhz=args.lock_clocks, power_limit_w=args.power_limit, fake_gpu=args.gpu,
        seed=args.seed, fake_failures=_failures(args.fake_failures),
        fake_latency_s=args.fake_latency_ms / 1e3,
    )


def _resume_hint(args: argparse.Namespace) -> str:
    argv = sys.argv[1:] if Path(sys.argv[0]).name in ("gemmperf", "__main__.py") else None
    command = shlex.join(["gemmperf", *argv]) if argv else "the same command"
    return f"to resume, run {command} again (configs already in {args.out} are skipped)"


def _sweep(args: argparse.Namespace) -> int:
    from gemmperf.collect.runner import estimate_job, run_job, run_ray

    job = build_job(args)
    if args.dry_run:
        plan = estimate_job(job)
        if args.json:
            print_json(plan.to_dict())
        else:
            print(
                f"{plan.configs} configs to run ({plan.invalid} invalid, rejected before launch; "
                f"{plan.done} already in {args.out}); estimated GPU time "
                f"{_duration(plan.gpu_seconds)} (roofline estimate plus measurement windows)"
            )
        return 0

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        if args.ray is not None:
            address = None if args.ray in ("auto", "local") else args.ray
            summary = run_ray(job, address=address, workers=args.ray_workers)
        else:
            summary = run_job(job)
    finally:
        signal.signal(signal.SIGTERM, previous)

    if args.json:
        print_json(summary.to_dict())
    else:
        print(f"{summary.written} records -> {summary.out_file} ({summary.skipped} already "
              f"done, {_duration(summary.elapsed_s)})")
        if summary.statuses:
            print_table(("status", "records"), sorted(summary.statuses.items()))
    if summary.stopped != "complete":
        print(f"gemmperf: {summary.message}; {_resume_hint(args)}", file=sys.stderr)
    return {"complete": 0, "time_limit": 0, "interrupted": 130}.get(summary.stopped, 1)


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _doctor(args: argparse.Namespace) -> int:
    from gemmperf.collect.device import NO_GPU_HINT, doctor

    report = doctor()
    if args.json:
        print_json(report.to_dict())
    else:
        print_table(("check", "ok", "detail"),
                    [(c.name, "yes" if c.ok else "no", c.detail) for c in report.checks],
                    title="gemmperf doctor")
    if not report.can_sweep:
        print(f"gemmperf: this machine cannot sweep: {report.problem}; {NO_GPU_HINT}",
              file=sys.stderr)
        return 1
    return 0

