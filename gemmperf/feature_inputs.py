"""Reading the predictor's inputs from a records frame: numeric and text columns, data-type
facts, family tunables from the ``params`` JSON, and the CLBlast Xgemm launch footprint.

All functions are vectorised over rows (a Python loop runs only over *distinct* values, e.g.
distinct params texts), so that a 100k-row frame converts in well under a second.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import numpy as np
import pandas as pd

from gemmperf.errors import DataFormatError
from gemmperf.problem import GemmProblem

#: GpuSpec math keys in a fixed order (the ``math_code`` feature is an index into it).
MATH_KEYS = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp16_acc16", "fp8", "int8")
#: Math keys on the CUDA-core (SIMT) pipeline; every other key runs on tensor cores.
SIMT_KEYS = ("fp64", "fp32")
#: CLBlast Xgemm tunables (CLBlast src/kernels/level3/xgemm_part1.opencl); numeric features.
XGEMM_PARAMS = ("MWG", "NWG", "KWG", "MDIMC", "NDIMC", "MDIMA", "NDIMB", "KWI", "VWM", "VWN",
                "STRM", "STRN", "SA", "SB", "GEMMK", "KREG")
#: Per-thread registers the CLBlast Xgemm kernel needs beyond its register tiles (indices,
#: pointers, loop counters): an estimate; nvcc caps a thread at 255 registers and spills the rest.
XGEMM_REG_OVERHEAD = 24
MAX_REGS = 255
REG_GRANULE = 8   # registers per thread are allocated per warp in units of 256 = 32 x 8
_SMALL = 64       # up to this many distinct params texts, a Python table beats pandas' overhead


class Columns:
    """Column access to a records frame. A frame of a few rows is converted to plain object arrays
    once: pandas' fixed cost per column access would otherwise dominate a single prediction."""

    def __init__(self, frame: pd.DataFrame | Columns) -> None:
        if isinstance(frame, Columns):
            self.__dict__.update(frame.__dict__)
            return
        self.frame = frame
        self.n = len(frame)
        self.names = set(map(str, frame.columns))
        self.small: dict[str, np.ndarray] | None = None
        if self.n <= _SMALL and frame.columns.is_unique:
            table = frame.to_numpy(dtype=object)   # one conversion for every column
            self.small = {str(name): table[:, j] for j, name in enumerate(frame.columns)}

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def __len__(self) -> int:
        return self.n

    def objects(self, name: str) -> np.ndarray:
        """The column as an object array (the column must exist)."""
        if self.small is not None:
            return self.small[name]
        return self.frame[name].to_numpy(dtype=object)


def numeric_column(frame: pd.DataFrame | Columns, name: str) -> np.ndarray:
    """A column as float64 (NaN where missing, non-numeric or absent)."""
    cols = frame if isinstance(frame, Columns) else Columns(frame)
    if name not in cols:
        return np.full(len(cols), np.nan)
    if cols.small is not None:
        return np.array([_number(v) for v in cols.small[name]], dtype=np.float64)
    col = cols.frame[name]
    if col.dtype.kind in "fiub":
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def text_column(frame: pd.DataFrame | Columns, name: str) -> np.ndarray:
    """A column as Python strings ("" where missing or absent)."""
    cols = frame if isinstance(frame, Columns) else Columns(frame)
    if name not in cols:
        return np.full(len(cols), "", dtype=object)
    return np.array(["" if v is None or v != v else str(v) for v in cols.objects(name)],
                    dtype=object)


def family_params(frame: pd.DataFrame | Columns, names: tuple[str, ...]
                  ) -> dict[str, np.ndarray]:
    """Family tunables from columns of the same name or from the ``params`` JSON, plus a
    ``_flops`` count where params carry one. Each distinct params text is parsed once, and only
    texts that mention a name whose column is absent or incomplete (keeps 100k-row frames fast;
    a frame with every tunable as a column parses nothing)."""
    cols = frame if isinstance(frame, Columns) else Columns(frame)
    out = {name: numeric_column(cols, name) for name in names}
    out["_flops"] = numeric_column(cols, "flops")
    if "params" not in cols or not len(cols):
        return out
    needed = tuple(n for n in names if np.isnan(out[n]).any())
    if not needed and not np.isnan(out["_flops"]).any():
        return out
    codes, uniques = pd.factorize(cols.objects("params"), sort=False)
    uniques = list(uniques)
    mentions = _mentions(needed)
    wanted = [i for i, text in enumerate(uniques)
              if isinstance(text, str) and mentions(text) is not None]
    if not wanted:
        return out
    parsed = []
    for i in wanted:
        try:
            value = json.loads(uniques[i])
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"params is not JSON: {uniques[i][:60]!r} ({exc.msg})") from exc
        parsed.append(value if isinstance(value, dict) else {})
    columns = [*names, "flops"]
    if len(parsed) <= _SMALL:
        table = np.array([[_number(d.get(c)) for c in columns] for d in parsed], dtype=np.float64)
    else:   # pandas builds the table in C; non-numbers (rare) take the slow path
        frame_ = pd.DataFrame.from_records(parsed, columns=columns)
        try:
            table = frame_.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            table = frame_.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    lookup = np.full(len(uniques) + 1, len(wanted))      # the extra row is all-NaN
    lookup[wanted] = np.arange(len(wanted))
    table = np.vstack([table, np.full((1, table.shape[1]), np.nan)])
    rows = lookup[np.where(codes >= 0, codes, len(uniques))]
    for j, name in enumerate((*names, "_flops")):
        out[name] = np.where(np.isnan(out[name]), table[rows, j], out[name])
    return out


@functools.lru_cache(maxsize=8)
def _mentions(names: tuple[str, ...]) -> Any:
    """``search`` of a regex matching any of ``names`` (or "flops") as a JSON key."""
    keys = "|".join(re.escape(name) for name in (*names, "flops"))
    return re.compile(f'"(?:{keys})"').search


def _number(value: object) -> float:
    """A JSON/record value as float: numbers (and numpy numbers) as is, text parsed, else NaN."""
    if isinstance(value, (bool, int, float, np.number)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return np.nan
    return np.nan


@functools.lru_cache(maxsize=256)
def _dtype_combo(dtype: str, acc: str, out: str) -> tuple[int, str, int]:
    """(operand bytes, GpuSpec math key, output bytes) of a dtype/accumulator/output triple."""
    problem = GemmProblem(1, 1, 1, dtype=dtype, acc_dtype=acc or None, out_dtype=out or None)
    return problem.element_bytes, problem.peak_key, problem.output_bytes_per_element


def dtype_info(frame: pd.DataFrame | Columns) -> tuple[np.ndarray, ...]:
    """Per row: operand bytes, math-key code, tensor-core flag, output bytes (NaN: no dtype) and
    a combo code grouping rows of one (dtype, acc, out) triple (-1: none)."""
    cols = frame if isinstance(frame, Columns) else Columns(frame)
    n = len(cols)
    size, code, tensor, out_bytes = (np.full(n, np.nan) for _ in range(4))
    combo = np.full(n, -1, dtype=np.int64)
    if "dtype" not in cols:
        return size, code, tensor, out_bytes, combo
    texts = [text_column(cols, c) for c in ("dtype", "acc_dtype", "out_dtype")]
    joined = np.char.add(np.char.add(texts[0].astype(str), "|"),
                         np.char.add(np.char.add(texts[1].astype(str), "|"), texts[2].astype(str)))
    codes, uniques = pd.factorize(joined)
    for i, triple in enumerate(uniques):
        dtype, acc, out = str(triple).split("|")
        if not dtype:
            continue
        rows = codes == i
        elem, key, c_bytes = _dtype_combo(dtype, acc, out)
        size[rows], out_bytes[rows] = elem, c_bytes
        code[rows] = MATH_KEYS.index(key)
        tensor[rows] = float(key not in SIMT_KEYS)
        combo[rows] = i
    return size, code, tensor, out_bytes, combo


def xgemm_footprint(p: dict[str, np.ndarray], elem: np.ndarray, threads: np.ndarray,
                     regs_per_block: np.ndarray) -> dict[str, np.ndarray]:
    """Per-thread work, registers and shared memory of CLBlast Xgemm rows (NaN elsewhere).

    Register tiles (xgemm_part1.opencl): cpm holds MWI x NWI accumulators, apm MWI and bpm NWI
    values of A and B; shared memory: alm (KWG x MWG) when SA, blm (KWG x NWG) when SB. The
    kernel declares its work-group size (reqd_work_group_size, i.e. launch bounds), so the
    compiler fits the registers into the block's share of the register file and spills the rest.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        mwi = p["MWG"] / p["MDIMC"]
        nwi = p["NWG"] / p["NDIMC"]
        need = mwi * nwi + mwi + nwi + XGEMM_REG_OVERHEAD
        fit = np.floor(regs_per_block / threads / REG_GRANULE) * REG_GRANULE
        regs = np.minimum(need, np.fmin(fit, MAX_REGS))
        sa = np.nan_to_num(p["SA"], nan=0.0)
        sb = np.nan_to_num(p["SB"], nan=0.0)
        smem = (sa * p["MWG"] + sb * p["NWG"]) * p["KWG"] * np.nan_to_num(elem, nan=4.0)
        loads = (mwi / np.nan_to_num(p["VWM"], nan=1.0) + nwi / np.nan_to_num(p["VWN"], nan=1.0))
        return {"MWI": mwi, "NWI": nwi, "regs": regs, "spill": np.maximum(need - regs, 0.0),
                "smem": smem, "fragment_loads_per_fma": loads / (mwi * nwi)}
