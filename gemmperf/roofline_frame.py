"""Roofline estimates for a records-style DataFrame (the entry point of features and benchmarks).

Rows are grouped by GPU and data types; each group goes through
:func:`gemmperf.roofline.roofline_arrays` in one vectorised call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gemmperf.errors import InvalidProblemError
from gemmperf.hardware.specs import GpuSpec
from gemmperf.problem import GemmProblem
from gemmperf.roofline import (
    default_blocks_per_sm,
    footprint_blocks_per_sm,
    resolve_split_k,
    resolve_tile,
    roofline_arrays,
)

#: Estimate columns :func:`roofline_frame` returns, in order.
FRAME_COLUMNS = (
    "flops", "compulsory_bytes", "tile_bytes", "arithmetic_intensity", "compute_time_s",
    "memory_time_s", "lower_bound_s", "tile_compute_time_s", "tile_memory_time_s", "estimate_s",
    "tiles", "waves", "tail_efficiency", "bound", "attainable_flops_s", "estimated_flops_s",
    "tile_m", "tile_n", "tile_k", "split_k", "blocks_per_sm", "peak_flops_s",
    "mem_bandwidth_bytes_s", "math_key",
)
_FOOTPRINT = ("threads_per_block", "regs_per_thread", "smem_bytes_per_block", "stages")


def _numbers(df: Any, name: str) -> np.ndarray:
    """Column ``name`` as float64 (NaN where missing or absent); text that is not a number is
    an :class:`InvalidProblemError` naming the column."""
    if name not in df.columns:
        return np.full(len(df), np.nan)
    try:
        return np.asarray(df[name].to_numpy(dtype=np.float64, na_value=np.nan))
    except (TypeError, ValueError):
        raise InvalidProblemError(f"column {name} holds values that are not numbers, e.g. "
                                  f"{_first_text(df[name])!r}") from None


def _first_text(column: Any) -> Any:
    import pandas as pd

    parsed = pd.to_numeric(column, errors="coerce")
    return column[parsed.isna() & column.notna()].iloc[0]


def _check_dims(cols: dict[str, np.ndarray]) -> None:
    """m, n, k and batch of every row are whole numbers >= 1 (as GemmProblem requires)."""
    for name in ("m", "n", "k", "batch"):
        values = cols[name]
        bad = ~(np.isfinite(values) & (values >= 1) & (values == np.round(values)))
        if bad.any():
            row = int(np.argmax(bad))
            raise InvalidProblemError(f"{name} must be a positive integer, got {values[row]:g} "
                                      f"(row {row})")


def _groups(df: Any, names: tuple[str, ...]) -> list[tuple[tuple[Any, ...], np.ndarray]]:
    """Row positions per distinct combination of the text columns ``names`` (absent/NA: None)."""
    import pandas as pd

    codes, labels = [], []
    for name in names:
        if name in df.columns:
            c, uniques = pd.factorize(df[name])   # NA -> -1
            codes.append(c.astype(np.int64) + 1)
            labels.append([None, *(str(u) for u in uniques)])
        else:
            codes.append(np.zeros(len(df), dtype=np.int64))
            labels.append([None])
    gid = np.zeros(len(df), dtype=np.int64)
    for c, lab in zip(codes, labels, strict=True):
        gid = gid * len(lab) + c
    order = np.argsort(gid, kind="stable")
    starts = np.flatnonzero(np.diff(gid[order], prepend=-1))
    out = []
    for rows in np.split(order, starts[1:]):
        first = rows[0]
        out.append((tuple(lab[c[first]] for c, lab in zip(codes, labels, strict=True)), rows))
    return out


def _blocks(rows: np.ndarray, columns: dict[str, np.ndarray], gpu: GpuSpec, math_key: str,
            tiles: tuple[np.ndarray, ...], a_bytes: int) -> np.ndarray:
    """Resident blocks per SM for ``rows``: the ``blocks_per_sm`` column, else the occupancy of the
    row's own launch footprint (gaps filled with defaults), else the default footprint."""
    blocks = columns["blocks_per_sm"][rows]
    footprint = [columns[name][rows] for name in _FOOTPRINT]
    own = np.isnan(blocks) & ~np.all([np.isnan(f) for f in footprint[:3]], axis=0)
    if own.any():
        blocks[own] = footprint_blocks_per_sm(
            gpu, math_key, *(t[own] for t in tiles), a_bytes, *(f[own] for f in footprint)
        )
    rest = np.isnan(blocks)
    if rest.any():
        blocks[rest] = default_blocks_per_sm(gpu, math_key, *(t[rest] for t in tiles), a_bytes)
    return blocks


def roofline_frame(
    df: Any,
    gpu: GpuSpec | None = None,
    *,
    lookup: Callable[[str], GpuSpec] | None = None,
    prefix: str = "",
) -> Any:
    """Roofline estimates for every row of a records-style DataFrame.

    Needs columns ``m, n, k, dtype`` and ``gpu`` (a spec key or alias, resolved with ``lookup``,
    default :func:`gemmperf.hardware.specs.get_gpu`) unless ``gpu`` applies to every row.
    Optional columns (missing or NaN means default): ``batch``, ``acc_dtype``, ``out_dtype``,
    ``tile_m``, ``tile_n``, ``tile_k``, ``split_k``, ``blocks_per_sm`` and the launch footprint
    ``threads_per_block``, ``regs_per_thread``, ``smem_bytes_per_block``, ``stages``.
    Returns a DataFrame on ``df.index`` with :data:`FRAME_COLUMNS`, each prefixed by ``prefix``;
    ``bound`` and ``math_key`` are categorical.
    """
    import pandas as pd

    missing = [c for c in ("m", "n", "k", "dtype") if c not in df.columns]
    if gpu is None and "gpu" not in df.columns:
        missing.append("gpu")
    if missing:
        raise InvalidProblemError(f"roofline needs the column(s) {', '.join(missing)}")
    if gpu is None and lookup is None:
        from gemmperf.hardware.specs import get_gpu as lookup
    if gpu is not None and not isinstance(gpu, GpuSpec):
        from gemmperf.hardware.specs import get_gpu as lookup_one

        gpu = lookup_one(gpu)   # a name or alias, as the gpu column takes
    if len(df) == 0:
        empty = pd.DataFrame({name: pd.Series(dtype=float) for name in FRAME_COLUMNS},
                             index=df.index)
        return empty.add_prefix(prefix) if prefix else empty

    numeric = ("m", "n", "k", "batch", "tile_m", "tile_n", "tile_k", "split_k", "blocks_per_sm",
               *_FOOTPRINT)
    cols = {name: _numbers(df, name) for name in numeric}
    cols["batch"] = np.nan_to_num(cols["batch"], nan=1.0)
    _check_dims(cols)
    m, n, k, batch = cols["m"], cols["n"], cols["k"], cols["batch"]
    auto_split = np.isnan(cols["tile_m"]) & np.isnan(cols["tile_n"])

    size = len(df)
    out: dict[str, Any] = {
        name: np.full(size, np.nan) for name in FRAME_COLUMNS if name not in ("bound", "math_key")
    }
    compute_bound = np.zeros(size, dtype=bool)
    key_codes = np.zeros(size, dtype=np.int8)
    math_keys: list[str] = []
    names = ("dtype", "acc_dtype", "out_dtype") + (() if gpu is not None else ("gpu",))
    for labels, rows in _groups(df, names):
        dtype, acc, out_dtype = labels[:3]
        spec = gpu if gpu is not None else lookup(labels[3])
        problem = GemmProblem(1, 1, 1, dtype=dtype, acc_dtype=acc, out_dtype=out_dtype)
        key, a_bytes = problem.peak_key, problem.element_bytes
        tiles = resolve_tile(key, m[rows], n[rows],
                             *(cols[f"tile_{d}"][rows] for d in "mnk"))
        tiles = tuple(np.broadcast_to(t, rows.shape) for t in tiles)
        blocks = _blocks(rows, cols, spec, key, tiles, a_bytes)
        split = resolve_split_k(spec, m[rows], n[rows], k[rows], batch[rows], tiles[0], tiles[1],
                                blocks, cols["split_k"][rows], auto_split[rows])
        est = roofline_arrays(
            m[rows], n[rows], k[rows], batch[rows], a_bytes=a_bytes,
            c_bytes=problem.output_bytes_per_element, gpu=spec, math_key=key,
            tile_m=tiles[0], tile_n=tiles[1], tile_k=tiles[2], blocks_per_sm=blocks,
            split_k=split,
        )
        values = {name: getattr(est, name) for name in FRAME_COLUMNS[:16] if name != "bound"}
        values.update(tile_m=tiles[0], tile_n=tiles[1], tile_k=tiles[2], split_k=split,
                      blocks_per_sm=blocks, peak_flops_s=spec.peak(key),
                      mem_bandwidth_bytes_s=spec.mem_bandwidth_bytes_s)
        for name, value in values.items():
            out[name][rows] = value
        compute_bound[rows] = est.compute_bound
        if key not in math_keys:
            math_keys.append(key)
        key_codes[rows] = math_keys.index(key)
    out["bound"] = pd.Categorical.from_codes(np.where(compute_bound, 0, 1),
                                             categories=["compute", "memory"])
    out["math_key"] = pd.Categorical.from_codes(key_codes, categories=math_keys or ["none"])
    frame = pd.DataFrame({name: out[name] for name in FRAME_COLUMNS}, index=df.index, copy=False)
    return frame.add_prefix(prefix) if prefix else frame
