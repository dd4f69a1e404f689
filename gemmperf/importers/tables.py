"""Measurement tables -> records: library-GEMM throughput tables and power/energy tables.

A table's kind is detected from its header (:data:`TABLE_KINDS`); an unknown header is an error
that lists the supported kinds and the columns each needs. The library-GEMM kinds live here;
the power/energy kinds in :mod:`gemmperf.importers.energy_tables`.

- ``xla_matmul``: XLA's matmul performance table (b, m, n, k, dtype "AxB->C", flops_per_s,
  time_us_derived, nominal_dense_peak_tflops, ...). Family ``xla_library``. The table names the
  GPU only as "H100"; the SKU is the spec-database entry whose dense peak for each dtype equals
  the table's ``nominal_dense_peak_tflops`` (989.4 bf16, 494.7 tf32, 1978.9 fp8 TFLOP/s are the
  H100 SXM5 figures). XLA runs f32 dots on tensor cores as TF32 by default, so "f32xf32" is tf32.
  A data type whose block has rows the table flags ``exceeds_peak`` (faster than the dense peak
  allows: 87 fp8 rows, the largest fp8 shapes at 1.28x, where bf16 reaches 0.80) is imported
  with status ``suspect``, block and all: a timing that breaks the peak at some shapes is not
  trusted at the others (the data README: "treat the fp8 block as suspect"), so no model learns
  from it; the training calibration leaves it out for the same reason.
- ``vidur``: Vidur's per-layer linear (cuBLAS via PyTorch) timings, gpu "a100"/"a40". Family
  ``cublas``; M = num_tokens, N and K as given; layout "tn" (nn.Linear: y = x W^T with x and W
  row-major, i.e. A transposed and B = W^T not, in column-major BLAS terms).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from gemmperf.errors import DataFormatError, InvalidProblemError
from gemmperf.importers import energy_tables
from gemmperf.importers._common import (
    LOOKUP_NAME,
    GpuOverride,
    PathLike,
    as_paths,
    attach_gpu,
    check_nonnegative,
    check_positive,
    finish,
    integer_column,
    lookup_device,
    numeric_column,
    params_records,
    read_csv,
    read_text,
    require_columns,
)
from gemmperf.problem import canonical_dtype, peak_key

# The device Vidur's profiling data was measured on, per its `gpu` label: the Vidur README lists
# the profiled SKUs as "A100 80GB DGX" (SXM4) and "8xA40 Pairwise NVLink Node"
# (microsoft/vidur README, "Supported Models"; vidur/config/device_sku_config.py: A100 80 GB).
# An assumption about the data, so the CLI's --gpu can override it.
VIDUR_DEVICES = {"a100": "NVIDIA A100-SXM4-80GB", "a40": "NVIDIA A40"}


@dataclass(frozen=True)
class TableKind:
    """One supported table layout: the header columns that identify it and its reader."""

    name: str
    description: str
    columns: tuple[str, ...]
    reader: Callable[[Path, pd.DataFrame], pd.DataFrame]


def import_table(
    paths: PathLike | Iterable[PathLike], *, gpu: GpuOverride = None, kind: str | None = None
) -> pd.DataFrame:
    """Records from measurement tables (CSV, .csv.gz), each kind detected from its header.

    ``gpu`` overrides the canonical GPU key (one key, or a mapping device name -> key);
    ``kind`` forces a table kind instead of detecting it.
    """
    frames = [read_table(p, kind=kind) for p in as_paths(paths)]
    if not frames:
        raise DataFormatError("no input files given")
    return finish(attach_gpu(pd.concat(frames, ignore_index=True), gpu))


def read_table(path: PathLike, *, kind: str | None = None) -> pd.DataFrame:
    """Records (not yet normalised) from one table file."""
    path = Path(path)
    text = read_text(path)
    if text.lstrip().startswith("{"):
        raise DataFormatError(
            f"{path}: is JSON, not a table (for a Kernel Tuner cache use `gemmperf import "
            "kernel-tuner`, or `auto` to detect)"
        )
    frame = read_csv(path, text=text)
    frame.columns = [str(c).strip() for c in frame.columns]
    table = table_kind(kind) if kind else detect_table_kind(frame.columns, path)
    require_columns(frame, table.columns, path, f"{table.name} table")
    return table.reader(path, frame)


def table_kind(name: str) -> TableKind:
    """The table kind called ``name``."""
    for table in TABLE_KINDS:
        if table.name == name:
            return table
    raise DataFormatError(
        f"unknown table kind {name!r}; supported: {', '.join(t.name for t in TABLE_KINDS)}"
    )


def detect_table_kind(columns: Iterable[str], path: Path | str = "<table>") -> TableKind:
    """The kind whose identifying columns the header has; an error listing all kinds if none."""
    header = {str(c).strip() for c in columns}
    for table in TABLE_KINDS:
        if set(table.columns) <= header:
            return table
    kinds = "; ".join(f"{t.name} ({t.description}: {', '.join(t.columns)})" for t in TABLE_KINDS)
    raise DataFormatError(f"{path}: unrecognised table header; supported kinds: {kinds}")


# ---------------------------------------------------------------------------------------------
# XLA matmul table


def read_xla_matmul(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Records from XLA's matmul performance table (see the module docstring)."""
    out = pd.DataFrame(index=frame.index)
    out["source"] = "xla_matmul"
    out["status"] = "ok"
    for src, dst in (("b", "batch"), ("m", "m"), ("n", "n"), ("k", "k")):
        out[dst] = integer_column(frame, src, path)
        check_positive(out[dst].astype(float), path, f"column {src}")
    parsed = [_xla_dtype(str(d), path) for d in frame["dtype"]]
    out["dtype"] = [p[0] for p in parsed]
    out["out_dtype"] = [p[1] for p in parsed]
    out["family"] = "xla_library"
    time_us = numeric_column(frame, "time_us_derived", path)
    check_positive(time_us, path, "time_us_derived")
    out["runtime_s"] = time_us.to_numpy(float) * 1e-6
    params = pd.DataFrame(index=frame.index)
    params["xla_dtype"] = frame["dtype"].astype(str)
    params["a_dtype"] = [p[2] for p in parsed]
    params["b_dtype"] = [p[3] for p in parsed]
    if "source" in frame:
        params["table_version"] = frame["source"].astype(str)
    if "exceeds_peak" in frame:
        params["exceeds_peak"] = over = frame["exceeds_peak"].astype(str).str.lower() == "true"
        _mark_suspect_blocks(out, over, frame["dtype"].astype(str))
    out["params"] = params_records(params, list(params.columns))
    out["device_name"] = frame["gpu"].astype(str) if "gpu" in frame else None
    out[LOOKUP_NAME] = _sku_by_peak(out, frame, path)
    return out


def _mark_suspect_blocks(out: pd.DataFrame, over_peak: pd.Series, dtype: pd.Series) -> None:
    """Status ``suspect`` (with a reason) on every row of a dtype block that has rows above
    the dense peak (module doc), in place."""
    for name, block in over_peak.groupby(dtype):
        if block.any():
            out.loc[block.index, "status"] = "suspect"
            out.loc[block.index, "reason"] = (
                f"the table's {name} block has {int(block.sum())} of {len(block)} rows above "
                f"the dense peak (exceeds_peak): its timings are not trusted")


def _xla_dtype(text: str, path: Path) -> tuple[str, str | None, str, str]:
    """"bf16xbf16->bf16" -> (operand dtype, out dtype, A type, B type)."""
    operands, _, result = text.partition("->")
    a, sep, b = operands.partition("x")
    if not sep or not result:
        raise DataFormatError(f"{path}: dtype {text!r} is not of the form 'AxB->C'")
    try:
        a_dtype, b_dtype = canonical_dtype(a), canonical_dtype(b)
        out_dtype = canonical_dtype(result)
    except InvalidProblemError as exc:
        raise DataFormatError(f"{path}: dtype {text!r}: {exc}") from exc
    if a_dtype != b_dtype:
        raise DataFormatError(f"{path}: dtype {text!r} mixes operand types")
    # f32 dots run on tensor cores as TF32 under XLA's default precision (the table's f32 peak
    # is the TF32 one).
    return ("tf32" if a_dtype == "f32" else a_dtype), out_dtype, a.strip(), b.strip()


def _sku_by_peak(out: pd.DataFrame, frame: pd.DataFrame, path: Path) -> list[str | None]:
    """Canonical GPU key per row: the spec whose dense peaks match the table's nominal ones."""
    if "nominal_dense_peak_tflops" not in frame or "gpu" not in frame:
        return [None] * len(frame)
    nominal = numeric_column(frame, "nominal_dense_peak_tflops", path) * 1e12
    keys: dict[str, str | None] = {}
    for name in pd.unique(frame["gpu"].astype(str)):
        rows = (frame["gpu"].astype(str) == name).to_numpy()
        peaks = {
            peak_key(dtype): float(value)
            for dtype, value in zip(out["dtype"][rows], nominal[rows], strict=True)
            if value == value
        }
        keys[name] = match_sku(name, peaks)
    return [keys[str(n)] for n in frame["gpu"]]


def match_sku(name: str, peaks: Mapping[str, float], rel_tol: float = 0.01) -> str | None:
    """Key of the GPU named like ``name`` whose dense peak FLOP/s match ``peaks`` (per math key).

    Candidates are every spec-database entry whose name or aliases contain ``name``; None when
    no candidate matches every peak (or the database is not available).
    """
    try:
        from gemmperf.hardware import specs
    except ImportError:
        return None
    listing = getattr(specs, "all_gpus", None) or getattr(specs, "list_gpus", None)
    if listing is None:
        return lookup_device(name)[0]
    token = name.strip().lower()
    for spec in listing():
        labels = [spec.key, spec.name, *spec.aliases]
        if not any(token in str(label).lower() for label in labels):
            continue
        try:
            if all(abs(spec.peak(k) - v) <= rel_tol * v for k, v in peaks.items()):
                return spec.key
        except KeyError:
            continue
    return None


# ---------------------------------------------------------------------------------------------
# Vidur linear-layer table


def read_vidur(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Records from Vidur's compute profiling table (see the module docstring)."""
    out = pd.DataFrame(index=frame.index)
    out["source"] = "vidur"
    out["status"] = "ok"
    for src, dst in (("M", "m"), ("N", "n"), ("K", "k")):
        out[dst] = integer_column(frame, src, path)
        check_positive(out[dst].astype(float), path, f"column {src}")
    out["batch"] = 1
    try:
        names = {d: canonical_dtype(d) for d in pd.unique(frame["dtype"].astype(str))}
    except InvalidProblemError as exc:
        raise DataFormatError(f"{path}: column dtype: {exc}") from exc
    out["dtype"] = frame["dtype"].astype(str).map(names)
    out["layout"] = "tn"
    out["family"] = "cublas"
    median = numeric_column(frame, "time_ms_median", path)
    check_positive(median, path, "time_ms_median")
    out["runtime_s"] = median.to_numpy(float) * 1e-3
    for src, dst in (("time_ms_mean", "runtime_mean_s"), ("time_ms_min", "runtime_min_s"),
                     ("time_ms_max", "runtime_max_s")):
        if src in frame:
            values = numeric_column(frame, src, path)
            check_positive(values, path, src)
            out[dst] = values.to_numpy(float) * 1e-3
    if "time_ms_std" in frame:
        std = numeric_column(frame, "time_ms_std", path)
        check_nonnegative(std, path, "time_ms_std")
        out["runtime_std_s"] = std.to_numpy(float) * 1e-3
    params = frame[["model", "op", "tp", "num_tokens"]].copy()
    out["params"] = params_records(params, list(params.columns))
    labels = frame["gpu"].astype(str).str.strip()
    out["device_name"] = labels
    out[LOOKUP_NAME] = labels.map(lambda g: VIDUR_DEVICES.get(g.lower(), g))
    return out


TABLE_KINDS: tuple[TableKind, ...] = (
    TableKind("xla_matmul", "XLA matmul performance table",
              ("b", "m", "n", "k", "dtype", "time_us_derived"), read_xla_matmul),
    TableKind("vidur", "Vidur linear-layer profiling",
              ("gpu", "model", "op", "num_tokens", "tp", "M", "N", "K", "dtype",
               "time_ms_median"), read_vidur),
    TableKind("kt_fp32_power", "Kernel Tuner FP32 FMA power vs clock",
              energy_tables.FP32_POWER_COLUMNS, energy_tables.read_fp32_power),
    TableKind("gpuptxmodel_dvfs", "gpuPTXModel benchmarks at DVFS clocks",
              energy_tables.DVFS_COLUMNS, energy_tables.read_gpuptxmodel_dvfs),
    TableKind("kt_vector_add_energy", "Kernel Tuner vector-add energy",
              energy_tables.VECTOR_ADD_COLUMNS, energy_tables.read_vector_add_energy),
)

__all__ = ["TABLE_KINDS", "TableKind", "detect_table_kind", "import_table", "match_sku",
           "read_table", "table_kind"]
