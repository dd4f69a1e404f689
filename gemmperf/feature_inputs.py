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

from gemmperf._grouping import group_codes
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
        names = [str(name) for name in frame.columns.tolist()]   # (iterating an Index is slow)
        self.names = set(names)
        self.small: dict[str, np.ndarray] | None = None
        if self.n <= _SMALL and len(self.names) == len(names):
            table = frame.to_numpy(dtype=object)   # one conversion for every column
            self.small = {name: table[:, j] for j, name in enumerate(names)}

    @classmethod
    def from_objects(cls, columns: dict[str, np.ndarray]) -> Columns:
        """Columns of a few rows given as equal-length object arrays (no frame built)."""
        self = cls.__new__(cls)
        self.frame = None
        self.n = len(next(iter(columns.values()))) if columns else 0
        self.names = set(columns)
        self.small = dict(columns)
        return self

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def __len__(self) -> int:
        return self.n

    def objects(self, name: str) -> np.ndarray:
        """The column as an object array (the column must exist)."""
        if self.small is not None:
            return self.small[name]
        return self.frame[name].to_numpy(dtype=object)

    def factorize(self, name: str) -> tuple[np.ndarray, list[Any]]:
        """(code per row, -1 where missing; the distinct values) of a column that exists."""
        if self.small is not None:
            return factorize(self.small[name])
        codes, uniques = pd.factorize(self.frame[name])   # pyarrow-backed text: in C
        return codes, uniques.tolist()

    def is_text(self, name: str) -> bool:
        """Whether the column has a text dtype (every value a str or missing; object: no)."""
        return self.small is None and isinstance(self.frame[name].dtype, pd.StringDtype)


def factorize(values: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """``pd.factorize`` of a 1-d array (codes, -1 where missing; distinct values in order of
    appearance), with a plain dict for a few rows, where pandas' fixed cost dominates."""
    if len(values) > _SMALL:
        codes, uniques = pd.factorize(values)
        return codes, list(uniques)
    index: dict[Any, int] = {}
    codes = [-1 if v is None or v is pd.NA or v != v else index.setdefault(v, len(index))
             for v in values]
    return np.array(codes, dtype=np.int64).reshape(len(values)), list(index)


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
    try:   # numbers and None in an object column (records frames): numpy's C loop, None -> NaN
        return np.asarray(col.to_numpy(dtype=object), dtype=np.float64)
    except (TypeError, ValueError):   # text or pd.NA among them: parse what parses
        return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def text_column(frame: pd.DataFrame | Columns, name: str) -> np.ndarray:
    """A column as Python strings ("" where missing or absent)."""
    cols = frame if isinstance(frame, Columns) else Columns(frame)
    if name not in cols:
        return np.full(len(cols), "", dtype=object)
    values = cols.objects(name)
    if cols.small is None and pd.api.types.infer_dtype(values, skipna=True) in ("string",
                                                                               "empty"):
        return np.where(pd.isna(values), "", values).astype(object)
    return np.array(["" if v is None or v != v else str(v) for v in values], dtype=object)


def family_params(frame: pd.DataFrame | Columns, names: tuple[str, ...]
                  ) -> dict[str, np.ndarray]:
    """Family tunables from columns of the same name or from the ``params`` JSON, plus a
    ``_flops`` count where params carry one. Only where a column is absent or incomplete, and
    each distinct params text once: many texts by pyarrow's JSON reader (only these fields, in
    C), a few, or texts it does not take exactly, with :mod:`json` (only texts that mention one
    of the names). A frame with every tunable as a column parses nothing."""
    cols = frame if isinstance(frame, Columns) else Columns(frame)
    columns = [*names, "flops"]
    values = np.vstack([numeric_column(cols, name) for name in columns]).reshape(
        len(columns), len(cols))                                 # row j: columns[j] per row
    absent = np.isnan(values)
    if "params" in cols and absent.any():
        codes, uniques = cols.factorize("params")
        table = None
        if len(uniques) > _SMALL and (cols.is_text("params")
                                      or pd.api.types.infer_dtype(uniques) == "string"):
            table = _parse_params_arrow(uniques, columns)
        if table is not None:
            wanted = list(range(len(uniques)))
        else:
            needed = tuple(n for n, gap in zip(names, absent.any(axis=1), strict=False) if gap)
            wanted, table = _parse_params_python(uniques, needed, columns)
        if wanted:
            lookup = np.full(len(uniques) + 1, len(wanted))      # the extra entry is all-NaN
            lookup[wanted] = np.arange(len(wanted))
            by_name = np.full((len(columns), len(wanted) + 1), np.nan)
            by_name[:, :-1] = table.T
            rows = lookup[np.where(codes >= 0, codes, len(uniques))]
            values = np.where(absent, by_name[:, rows], values)
    out = dict(zip(names, values, strict=False))
    out["_flops"] = values[-1]
    return out


def _parse_params_arrow(texts: list[str], columns: list[str]) -> np.ndarray | None:
    """``columns`` of the JSON objects ``texts`` as a float table (NaN where absent), parsed by
    pyarrow's JSON reader in C, reading only those fields. None where the fast path does not
    apply exactly (a value that is not a number, a text that is not one object on one line,
    a duplicate key): the Python parser then gives the exact answer or the error."""
    import pyarrow as pa
    import pyarrow.json as pa_json

    joined = "\n".join(texts)
    if joined.count("\n") != len(texts) - 1:   # a text spanning lines
        return None
    schema = pa.schema([(c, pa.float64()) for c in columns])
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        parsed = pa_json.read_json(pa.py_buffer(joined.encode()), parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError):
        return None
    if parsed.num_rows != len(texts):      # e.g. a blank text, or two objects in one
        return None
    return np.column_stack([parsed.column(c).to_numpy(zero_copy_only=False) for c in columns]
                           ).astype(np.float64)


def _parse_params_python(uniques: list[Any], needed: tuple[str, ...], columns: list[str]
                         ) -> tuple[list[int], np.ndarray]:
    """(indices into ``uniques``, float table) of the texts that mention a name of ``needed``
    (or "flops"), parsed with :mod:`json`. A DataFormatError: any text that is not a JSON
    object (``VWM=2``, a list; checked on every text by its braces, parsed where it mentions a
    name), and a tunable whose value is not a number (``"VWM": "two"``): both would otherwise
    leave the tunable missing, and the prediction at the family's defaults, without a word."""
    for text in uniques:
        if isinstance(text, str) and text.strip() and not (
                text.lstrip().startswith("{") and text.rstrip().endswith("}")):
            raise DataFormatError(f"params is not a JSON object: {text[:60]!r} (write it as "
                                  '\'{"VWM": 2, "SA": 1}\')')
    mentions = _mentions(needed)
    wanted = [i for i, text in enumerate(uniques)
              if isinstance(text, str) and mentions(text) is not None]
    parsed = []
    for i in wanted:
        try:
            value = json.loads(uniques[i])
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"params is not JSON: {uniques[i][:60]!r} ({exc.msg})") from exc
        parsed.append(value if isinstance(value, dict) else {})
    table = np.array([[_number(d.get(c)) for c in columns] for d in parsed], dtype=np.float64)
    table = table.reshape(len(parsed), len(columns))
    given = np.array([[d.get(c) is not None for c in columns] for d in parsed], dtype=bool
                     ).reshape(table.shape)
    if (bad := given & np.isnan(table)).any():
        row, col = map(int, np.argwhere(bad)[0])
        raise DataFormatError(f"params {columns[col]}={parsed[row][columns[col]]!r} is not a "
                              f"number (in {uniques[wanted[row]][:60]!r})")
    return wanted, table


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


def group_rows(frame: pd.DataFrame | Columns, names: tuple[str, ...]
               ) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """(group code per row, the distinct tuples) of the text columns ``names`` taken together
    (missing text is "")."""
    cols = frame if isinstance(frame, Columns) else Columns(frame)
    if cols.small is not None:   # a dict per row beats pandas' fixed cost
        texts = [text_column(cols, name) for name in names]
        groups: dict[tuple[str, ...], int] = {}
        rows = [groups.setdefault(t, len(groups)) for t in zip(*texts, strict=True)]
        return np.array(rows, dtype=np.int64).reshape(len(cols)), list(groups)
    # Each column's codes on the column itself (no text conversion; code 0: missing), grouped
    # together; tuples that come out equal ("" and missing) are merged.
    columns, values = [], []
    for name in names:
        if name in cols:
            column_codes, column_values = cols.factorize(name)
            texts = ["", *("" if v is None or v != v else str(v) for v in column_values)]
            columns.append((column_codes + 1, len(texts)))
        else:
            texts = [""]
            columns.append((np.zeros(len(cols), dtype=np.int64), 1))
        values.append(texts)
    codes, groups = group_codes(columns)
    merged: dict[tuple[str, ...], int] = {}
    remap = [merged.setdefault(tuple(v[d] for v, d in zip(values, digits, strict=True)),
                               len(merged)) for digits in groups]
    return np.asarray(remap, dtype=np.int64)[codes], list(merged)


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
    codes, triples = group_rows(cols, ("dtype", "acc_dtype", "out_dtype"))
    for i, (dtype, acc, out) in enumerate(triples):
        if not dtype:
            continue
        rows = codes == i
        elem, key, c_bytes = _dtype_combo(dtype, acc, out)
        size[rows], out_bytes[rows] = elem, c_bytes
        code[rows] = MATH_KEYS.index(key)
        tensor[rows] = float(key not in SIMT_KEYS)
        combo[rows] = i
    return size, code, tensor, out_bytes, combo


def math_keys_of(codes: np.ndarray) -> np.ndarray:
    """The :data:`MATH_KEYS` entry of each math-path code, as an object array (None for NaN or
    MISSING: a row that is not a GEMM)."""
    known = (codes >= 0) & (codes < len(MATH_KEYS))     # False for NaN too
    table = np.array([*MATH_KEYS, None], dtype=object)
    return table[np.where(known, codes, len(MATH_KEYS)).astype(np.int64)]


def math_keys(frame: pd.DataFrame | Columns) -> np.ndarray:
    """Per row, its math path (:func:`math_keys_of`) from its data types alone: no GPU
    involved."""
    return math_keys_of(dtype_info(frame)[1])


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
