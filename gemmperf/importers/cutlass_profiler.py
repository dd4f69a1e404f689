"""CUTLASS profiler CSV (``cutlass_profiler --output=x.csv``, written as ``x.gemm.csv``) -> records.

Format (tools/profiler/src/performance_report.cpp): optional ``--tags`` pivot columns, then
``Problem,Provider,OperationKind,Operation,Disposition,Status``, then the operation's arguments
(for GEMM: gemm_kind, m, n, k, A, B, C[, D], alpha, beta[, split_k_mode], split_k_slices,
batch_count[, raster_order, swizzle_size, ...], op_class, accum, cta_m/n/k[, cluster_m/n/k],
stages, warps_m/n/k, inst_m/n/k, min_cc, max_cc; bracketed ones appear in newer releases), then
``Bytes,Flops,Flops/Byte,Runtime,GB/s,GFLOPs``. Runtime is the mean over the profiling
iterations in ms; GB/s and GFLOPs are empty when the run did not succeed. Tensors are
``type:layout`` ("f16:column"). The profiler's FLOP count is 2*(M*N*K + M*N)*batch (epilogue
included; gemm_operation_profiler.cu). The console's "CSV Results:" block works too: text
before the header line is skipped.

Disposition -> status: passed and not_verified are measurements (ok); incorrect is
wrong_result; failed is launch_error; not_run, not_supported, invalid_problem are invalid.
The CSV carries no device name: pass ``device_name``/``gpu``, or tag the run
(``--tags=gpu:<name>``) and the tag column is used.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gemmperf.errors import DataFormatError, InvalidProblemError
from gemmperf.importers._common import (
    GpuOverride,
    PathLike,
    as_paths,
    attach_gpu,
    check_positive,
    finish,
    integer_column,
    numeric_column,
    params_records,
    read_csv,
    read_text,
    require_columns,
)
from gemmperf.problem import canonical_dtype

SOURCE = "cutlass_profiler"
HEADER_START = ("Problem", "Provider", "OperationKind", "Operation", "Disposition", "Status")
REQUIRED = ("Provider", "OperationKind", "Operation", "Disposition", "Status", "m", "n", "k",
            "A", "B", "Runtime")

# Disposition strings as the profiler writes them (tools/profiler/src/enumerated_types.cpp).
DISPOSITION_STATUS = {
    "passed": "ok",
    "not_verified": "ok",
    "incorrect": "wrong_result",
    "failed": "launch_error",
    "not_run": "invalid",
    "not_supported": "invalid",
    "invalid_problem": "invalid",
    "invalid": "invalid",
}
# Operation kinds whose CSV has m, n, k and A/B tensors.
GEMM_KINDS = ("gemm", "spgemm", "block_scaled_gemm", "blockwise_gemm")

# Columns consumed into schema columns (everything else is kept in params).
_MAPPED = {"Problem", "Provider", "OperationKind", "Operation", "Disposition", "Status", "m", "n",
           "k", "A", "B", "C", "D", "accum", "batch_count", "split_k_slices", "cta_m", "cta_n",
           "cta_k", "stages", "Runtime", "GB/s", "GFLOPs", "Flops/Byte"}
# Pivot-tag column names taken as the device name.
_DEVICE_TAGS = ("gpu", "device", "device_name", "GPU", "Device")


def import_cutlass_profiler(
    paths: PathLike | Iterable[PathLike],
    *,
    device_name: str | None = None,
    gpu: GpuOverride = None,
) -> pd.DataFrame:
    """Records from CUTLASS profiler GEMM CSV files.

    ``device_name`` names the GPU the profiler ran on (the CSV does not); a ``gpu``/``device``
    pivot-tag column, when present, wins. ``gpu`` overrides the canonical GPU key.
    """
    frames = [read_profiler_csv(p, device_name=device_name) for p in as_paths(paths)]
    if not frames:
        raise DataFormatError("no input files given")
    return finish(attach_gpu(pd.concat(frames, ignore_index=True), gpu))


def find_header(text: str) -> int | None:
    """Index of the profiler's CSV header line in ``text`` (after any pivot-tag columns)."""
    start = ",".join(HEADER_START)
    for i, line in enumerate(text.splitlines()):
        cells = line.strip()
        if cells.startswith(start) or f",{start}" in cells:
            return i
    return None


def read_profiler_csv(path: PathLike, *, device_name: str | None = None) -> pd.DataFrame:
    """Records (not yet normalised) from one CUTLASS profiler CSV."""
    path = Path(path)
    text = read_text(path)
    header = find_header(text)
    if header is None:
        raise DataFormatError(
            f"{path}: not a CUTLASS profiler CSV (no header line with "
            f"{','.join(HEADER_START)})"
        )
    body = "\n".join(text.splitlines()[header:])
    frame = read_csv(path, text=body, dtype=str, keep_default_na=False, na_values=[""])
    frame.columns = [str(c).strip() for c in frame.columns]
    require_columns(frame, REQUIRED, path, "CUTLASS profiler GEMM CSV")
    frame = frame[frame["Problem"].astype(str).str.strip() != "Problem"].reset_index(drop=True)
    kinds = set(frame["OperationKind"].str.strip())
    if not kinds <= set(GEMM_KINDS):
        raise DataFormatError(
            f"{path}: operation kind(s) {', '.join(sorted(kinds - set(GEMM_KINDS)))} are not "
            f"GEMMs (supported: {', '.join(GEMM_KINDS)})"
        )
    disposition = frame["Disposition"].str.strip().str.lower()
    unknown = sorted(set(disposition) - set(DISPOSITION_STATUS))
    if unknown:
        raise DataFormatError(
            f"{path}: unknown Disposition {unknown[0]!r} (known: {', '.join(DISPOSITION_STATUS)})"
        )
    status = disposition.map(DISPOSITION_STATUS).to_numpy(object)
    ok = status == "ok"
    runtime_ms = numeric_column(frame, "Runtime", path).to_numpy(float, copy=True)
    labels = [f"data row {i + 1} ({op})" for i, op in enumerate(frame["Operation"])]
    check_positive(runtime_ms[ok], path, "Runtime (ms)", [labels[i] for i in np.flatnonzero(ok)])
    runtime_ms[~ok] = np.nan

    out = pd.DataFrame(index=frame.index)
    out["source"] = SOURCE
    out["status"] = status
    lib_status = frame["Status"].str.strip()
    out["reason"] = np.where(
        ok, None, "cutlass_profiler: disposition " + disposition + ", status " + lib_status
    )
    for column in ("m", "n", "k"):
        out[column] = integer_column(frame, column, path)
    out["batch"] = _optional_int(frame, "batch_count", path, default=1)
    a_type, a_layout = _split_tensor(frame["A"])
    _, b_layout = _split_tensor(frame["B"])
    op_class = frame["op_class"].str.strip() if "op_class" in frame else pd.Series("", frame.index)
    out["dtype"] = [_operand_dtype(t, c) for t, c in zip(a_type, op_class, strict=True)]
    out["acc_dtype"] = [_other_dtype(t) for t in frame.get("accum", pd.Series(None, frame.index))]
    out_tensor = frame["D"] if "D" in frame else frame.get("C", pd.Series(None, frame.index))
    out["out_dtype"] = [_other_dtype(t) for t in _split_tensor(out_tensor)[0]]
    out["layout"] = [_blas_layout(a, b) for a, b in zip(a_layout, b_layout, strict=True)]
    provider = frame["Provider"].str.strip()
    is_cutlass = provider.str.lower() == "cutlass"
    out["family"] = provider.str.lower().str.replace(r"[^a-z0-9]+", "_", regex=True)
    out["kernel_name"] = frame["Operation"].str.strip()
    # Tile shape, stages and warps describe the CUTLASS kernel; a library provider's row
    # (cuBLAS) repeats the CUTLASS op's arguments, which say nothing about the library's kernel.
    for src, dst in (("cta_m", "tile_m"), ("cta_n", "tile_n"), ("cta_k", "tile_k"),
                     ("stages", "stages")):
        out[dst] = _optional_int(frame, src, path).where(is_cutlass)
    warps = [c for c in ("warps_m", "warps_n", "warps_k") if c in frame]
    if len(warps) == 3:
        counts = pd.concat([integer_column(frame, c, path) for c in warps], axis=1)
        out["threads_per_block"] = (counts.prod(axis=1) * 32).astype("Int64").where(is_cutlass)
    out["split_k"] = _optional_int(frame, "split_k_slices", path, default=1)
    extra = [c for c in frame.columns if c not in _MAPPED and c not in _DEVICE_TAGS]
    params_src = frame[extra].apply(lambda col: col.map(_scalar))
    params_src["A"] = frame["A"].str.strip()
    params_src["B"] = frame["B"].str.strip()
    out["params"] = params_records(params_src, [*extra, "A", "B"])
    tag = next((c for c in _DEVICE_TAGS if c in frame.columns), None)
    out["device_name"] = frame[tag].str.strip() if tag else device_name
    out["runtime_s"] = runtime_ms * 1e-3
    out["runtime_mean_s"] = runtime_ms * 1e-3
    return out


def _optional_int(
    frame: pd.DataFrame, column: str, path: Path, default: int | None = None
) -> pd.Series:
    if column not in frame:
        return pd.Series(default, index=frame.index, dtype="Int64")
    values = integer_column(frame, column, path)
    return values.fillna(default) if default is not None else values


def _split_tensor(column: pd.Series) -> tuple[list[str | None], list[str | None]]:
    types: list[str | None] = []
    layouts: list[str | None] = []
    for cell in column:
        if not isinstance(cell, str) or not cell.strip():
            types.append(None)
            layouts.append(None)
            continue
        element, _, layout = cell.strip().partition(":")
        types.append(element or None)
        layouts.append(layout or None)
    return types, layouts


def _operand_dtype(element: str | None, op_class: str) -> str | None:
    """Canonical operand dtype; f32 on tensor cores is TF32 math (CUTLASS's tf32 kernels)."""
    if element is None:
        return None
    if element == "f32" and op_class.lower() == "tensorop":
        return "tf32"
    return _other_dtype(element)


def _other_dtype(element: Any) -> str | None:
    """Canonical dtype when there is one ("s8" -> int8), else CUTLASS's own name ("s32")."""
    if not isinstance(element, str) or not element.strip():
        return None
    name = element.strip().partition(":")[0]
    try:
        return canonical_dtype(name)
    except InvalidProblemError:
        return name


# CUTLASS layout names (library/src/util.cu) -> BLAS transpose letter (column-major view).
_LAYOUT_LETTER = {"column": "n", "col": "n", "n": "n", "row": "t", "t": "t"}


def _blas_layout(a: str | None, b: str | None) -> str | None:
    la, lb = _LAYOUT_LETTER.get((a or "").lower()), _LAYOUT_LETTER.get((b or "").lower())
    return la + lb if la and lb else None  # interleaved layouts (column32, ...) stay in params


def _scalar(value: Any) -> Any:
    """A CSV cell as int, float or text (params keep the profiler's values typed)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text
