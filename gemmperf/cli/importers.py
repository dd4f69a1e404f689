"""``gemmperf import SOURCE FILE... -o OUT``: convert other tools' measurements into records.

SOURCE is ``kernel-tuner``, ``cutlass-profiler``, ``table`` or ``auto`` (detect each file by
content). OUT's extension picks the format (.parquet, .jsonl, .csv); it is written atomically,
after every input has been read and checked, so a bad input never leaves a partial OUT.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

import pandas as pd

from gemmperf.cli._args import add_force_arg, path_arg, refuse_overwrite
from gemmperf.errors import DataFormatError

SOURCES = ("kernel-tuner", "cutlass-profiler", "table", "auto")
OUTPUT_SUFFIXES = (".parquet", ".jsonl", ".csv")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import",
        help="convert Kernel Tuner caches, CUTLASS profiler CSVs or measurement tables to records",
        description=__doc__.split("\n\n", 1)[1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", choices=SOURCES, help="input format (auto: detect per file)")
    parser.add_argument("files", nargs="+", metavar="FILE", help="input file(s)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", type=path_arg,
                        help="output records file: .parquet, .jsonl or .csv")
    add_force_arg(parser, "output file")
    parser.add_argument("--gpu", action="append", default=[], metavar="[DEVICE=]GPU",
                        help="canonical GPU for the rows: one GPU for all rows, or DEVICE=GPU "
                             "for rows whose device name is DEVICE (repeatable), "
                             "e.g. a100=a100-pcie-80gb")
    parser.add_argument("--device-name", metavar="NAME",
                        help="cutlass-profiler: the GPU the profiler ran on (the CSV does not say)")
    parser.add_argument("--problem-size", metavar="MxNxK",
                        help="kernel-tuner: GEMM size, when the file does not say it")
    parser.add_argument("--table-kind", metavar="KIND",
                        help="table: force a table kind instead of detecting it from the header")
    parser.set_defaults(func=run)


def parse_gpu_override(values: list[str]) -> str | Mapping[str, str] | None:
    """``["h100-sxm"]`` -> "h100-sxm"; ``["a100=a100-pcie-80gb", ...]`` -> a mapping."""
    if not values:
        return None
    pairs = [v.partition("=") for v in values]
    if len(values) == 1 and not pairs[0][1]:
        return values[0].strip()
    if any(not sep or not name.strip() or not key.strip() for name, sep, key in pairs):
        raise DataFormatError(
            "--gpu takes one GPU for all rows, or one or more DEVICE=GPU pairs; got "
            + ", ".join(repr(v) for v in values)
        )
    return {name.strip(): key.strip() for name, _, key in pairs}


def parse_problem_size(text: str | None) -> tuple[int, int, int] | None:
    """"4096x4096x4096" (or "4096,4096,4096") -> (4096, 4096, 4096)."""
    if text is None:
        return None
    parts = text.lower().replace(",", "x").split("x")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
    if len(sizes) != 3 or min(sizes) <= 0:
        raise DataFormatError(f"--problem-size must be MxNxK with positive integers, got {text!r}")
    return sizes  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    from gemmperf.importers import (
        import_cutlass_profiler,
        import_kernel_tuner,
        import_table,
        load_dataset,
    )
    from gemmperf.records import write_frame

    out_path = args.output
    if not str(out_path).endswith(OUTPUT_SUFFIXES):
        raise DataFormatError(
            f"{out_path}: unknown output format (use {', '.join(OUTPUT_SUFFIXES)})"
        )
    refuse_overwrite(out_path, force=args.force)
    gpu = parse_gpu_override(args.gpu)
    problem_size = parse_problem_size(args.problem_size)
    if problem_size is not None and args.source != "kernel-tuner":
        raise DataFormatError(f"--problem-size is for Kernel Tuner caches (import kernel-tuner); "
                              f"{args.source} files state their own shapes")
    for option, value, source in (("--device-name", args.device_name, "cutlass-profiler"),
                                  ("--table-kind", args.table_kind, "table")):
        if value is not None and args.source != source:
            raise DataFormatError(f"{option} is for import {source}; it would do nothing "
                                  f"with import {args.source}")
    kwargs: dict[str, Any] = {"gpu": gpu}
    if args.source == "kernel-tuner":
        frame = import_kernel_tuner(args.files, problem_size=problem_size, **kwargs)
    elif args.source == "cutlass-profiler":
        frame = import_cutlass_profiler(args.files, device_name=args.device_name, **kwargs)
    elif args.source == "table":
        frame = import_table(args.files, kind=args.table_kind, **kwargs)
    else:
        frame = load_dataset(args.files, **kwargs)
    path = write_frame(frame, out_path)
    print(summary(frame, path))
    return 0


def summary(frame: pd.DataFrame, path: Any) -> str:
    """One line: rows, ok/suspect/failed, the devices and their canonical keys, the output
    path."""
    ok = int((frame["status"] == "ok").sum())
    suspect = int((frame["status"] == "suspect").sum())
    failed = len(frame) - ok - suspect
    devices = frame[["device_name", "gpu"]].astype(object).drop_duplicates()
    names = []
    for name, key in devices.itertuples(index=False):
        label = str(name) if isinstance(name, str) else "unnamed device"
        names.append(f"{label} -> {key}" if isinstance(key, str) else f"{label} (unknown GPU)")
    return (
        f"wrote {len(frame):,} rows ({ok:,} ok, "
        + (f"{suspect:,} suspect, " if suspect else "")
        + f"{failed:,} failed) to {path}; "
        f"devices: {'; '.join(names) or 'none'}"
    )


if __name__ == "__main__":  # pragma: no cover
    from gemmperf.cli import main

    sys.exit(main(["import", *sys.argv[1:]]))
