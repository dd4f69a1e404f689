"""One entry point for any supported file: detect what it is from its content, import it."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from gemmperf.errors import DataFormatError
from gemmperf.importers._common import GpuOverride, PathLike, as_paths, attach_gpu, finish
from gemmperf.importers.cutlass_profiler import find_header, read_profiler_csv
from gemmperf.importers.kernel_tuner import XGEMM_KEYS, read_kernel_tuner_file
from gemmperf.importers.tables import TABLE_KINDS, read_table
from gemmperf.records import read_records

# What detect_source can answer, and what each means.
SOURCES = {
    "records": "gemmperf records (.jsonl, .parquet, or a CSV with the record columns)",
    "kernel_tuner": "Kernel Tuner cache (JSON, .json.gz) or a CSV export of one",
    "cutlass_profiler": "CUTLASS profiler CSV (cutlass_profiler --output)",
    "table": "a measurement table (" + ", ".join(t.name for t in TABLE_KINDS) + ")",
}
_HEAD_BYTES = 1 << 16
# File names a folder argument expands to (other files, like a README, are not data).
DATA_SUFFIXES = (".json", ".json.gz", ".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".parquet")
_RECORD_MARKERS = {"source", "status", "schema_version"}


def detect_source(path: PathLike) -> str:
    """Which importer reads ``path`` (a key of :data:`SOURCES`), from its name and first bytes."""
    path = Path(path)
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() == ".parquet" or suffixes in (".jsonl", ".jsonl.gz") \
            or path.suffix.lower() == ".jsonl":
        return "records"
    head = _head_text(path)
    if head.lstrip().startswith("{"):
        return "kernel_tuner"
    if find_header(head) is not None:
        return "cutlass_profiler"
    header = {c.strip() for c in head.splitlines()[0].split(",")} if head.strip() else set()
    if header >= _RECORD_MARKERS:
        return "records"
    if {"gpu", "time_ms"} <= header and set(XGEMM_KEYS) <= header:
        return "kernel_tuner"
    if any(set(t.columns) <= header for t in TABLE_KINDS):
        return "table"
    kinds = "; ".join(SOURCES.values())
    raise DataFormatError(f"{path}: unrecognised file; supported: {kinds}")


def _head_text(path: Path) -> str:
    if not path.exists():
        raise DataFormatError(f"{path}: no such file")
    if path.is_dir():
        raise DataFormatError(f"{path}: is a folder, expected a file")
    with open(path, "rb") as f:
        raw = f.read(_HEAD_BYTES)
    if not raw:
        raise DataFormatError(f"{path}: empty file")
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as f:
                raw = f.read(_HEAD_BYTES)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataFormatError(f"{path}: truncated or corrupt gzip data ({exc})") from exc
    # The last line may be cut by the byte limit: detection only looks at the start.
    return raw.decode("utf-8-sig", errors="replace")


def load_dataset(paths: PathLike | Iterable[PathLike], *, gpu: GpuOverride = None) -> pd.DataFrame:
    """Records from any mix of supported files, each detected by content (:func:`detect_source`).

    A folder stands for the data files directly inside it (:data:`DATA_SUFFIXES`). ``gpu``
    overrides the canonical GPU key for imported (not already-record) rows.
    """
    files: list[Path] = []
    for path in as_paths(paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file()
                                and not p.name.startswith(".")
                                and p.name.lower().endswith(DATA_SUFFIXES)))
        else:
            files.append(path)
    if not files:
        raise DataFormatError("no input files given")
    imported: list[pd.DataFrame] = []
    records: list[pd.DataFrame] = []
    for path in files:
        source = detect_source(path)
        if source == "records":
            records.append(read_records(path))
        elif source == "kernel_tuner":
            imported.append(read_kernel_tuner_file(path))
        elif source == "cutlass_profiler":
            imported.append(read_profiler_csv(path))
        else:
            imported.append(read_table(path))
    frames = records
    if imported:
        frames = [*frames, finish(attach_gpu(pd.concat(imported, ignore_index=True), gpu))]
    return finish(pd.concat(frames, ignore_index=True))
