"""Plumbing shared by the importers: reading files with one-line errors, checks, device lookup.

Every importer returns a DataFrame in the record schema (:func:`gemmperf.records.normalize_frame`);
anything wrong with an input file is a :class:`~gemmperf.errors.DataFormatError` that names the
file and the problem, raised before any output is written.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gemmperf.errors import DataFormatError
from gemmperf.plausibility import flag_implausible
from gemmperf.records import normalize_frame

PathLike = str | os.PathLike[str]

# A device-name -> canonical-GPU-key override: one key for every row, or a mapping keyed by the
# device name as the source spells it ("a100" -> "a100-sxm4-80gb").
GpuOverride = str | Mapping[str, str] | None

_GZIP_MAGIC = b"\x1f\x8b"

# Optional column a reader adds: the name to look the GPU up by, when it differs from the
# device name the source prints (consumed by attach_gpu, never written out).
LOOKUP_NAME = "_gpu_lookup_name"


def as_paths(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """One path or many, as a list of Paths (a str is one path, not a sequence of characters)."""
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is gzip (by magic number, not by name)."""
    if not path.exists():
        raise DataFormatError(f"{path}: no such file")
    if path.is_dir():
        raise DataFormatError(f"{path}: is a folder, expected a file")
    raw = path.read_bytes()
    if not raw:
        raise DataFormatError(f"{path}: empty file")
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataFormatError(f"{path}: truncated or corrupt gzip data ({exc})") from exc
        if not raw:
            raise DataFormatError(f"{path}: empty file (inside gzip)")
    return raw


def read_text(path: Path) -> str:
    """The file's text (gunzipped if needed), UTF-8."""
    raw = read_bytes(path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def read_json(path: Path) -> Any:
    """Parse a JSON file (gzip allowed); a syntax error names the line and column."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from exc


def read_csv(path: Path, *, text: str | None = None, **kwargs: Any) -> pd.DataFrame:
    """Read a CSV file (gzip allowed) with one-line errors; an empty table is an error."""
    if text is None:
        text = read_text(path)
    if not text.strip():
        raise DataFormatError(f"{path}: empty file")
    try:
        frame = pd.read_csv(io.StringIO(text), **kwargs)
    except pd.errors.EmptyDataError as exc:
        raise DataFormatError(f"{path}: empty file") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataFormatError(f"{path}: not a readable CSV table ({_first_line(exc)})") from exc
    if frame.empty:
        raise DataFormatError(f"{path}: the table has a header but no rows")
    return frame


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def require_columns(frame: pd.DataFrame, columns: Sequence[str], path: Path, what: str) -> None:
    """Raise naming the missing columns when ``frame`` lacks any of ``columns``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataFormatError(
            f"{path}: not a {what}: missing column(s) {', '.join(missing)}"
        )


def numeric_column(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """``frame[column]`` as float; a non-numeric cell is an error naming its row."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataFormatError(
            f"{path}: column {column} has a non-numeric value {frame[column].iloc[row]!r} "
            f"(data row {row + 1})"
        )
    return values.astype(float)


def integer_column(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """``frame[column]`` as nullable Int64; a fractional or non-numeric cell is an error."""
    values = numeric_column(frame, column, path)
    frac = values.notna() & (values != np.round(values))
    if frac.any():
        row = int(np.flatnonzero(frac.to_numpy())[0])
        raise DataFormatError(
            f"{path}: column {column} must hold integers, got {values.iloc[row]} "
            f"(data row {row + 1})"
        )
    return values.round().astype("Int64")


def check_positive(
    values: pd.Series | np.ndarray, path: Path, what: str, labels: Sequence[Any] | None = None
) -> None:
    """Every value must be a finite number > 0 (a time, a power); name the first that is not."""
    arr = np.asarray(values, dtype=float)
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where = f" for {labels[i]}" if labels is not None else f" (data row {i + 1})"
        problem = "missing/NaN" if np.isnan(arr[i]) else f"{arr[i]:g}"
        raise DataFormatError(
            f"{path}: {what} must be a positive number, got {problem}{where} "
            f"({int(bad.sum())} such value(s))"
        )


def check_nonnegative(values: pd.Series | np.ndarray, path: Path, what: str) -> None:
    """Every present value must be finite and >= 0 (a standard deviation); NaN means unknown."""
    arr = np.asarray(values, dtype=float)
    bad = ~np.isnan(arr) & (~np.isfinite(arr) | (arr < 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"{path}: {what} must be >= 0, got {arr[i]:g} (data row {i + 1})"
        )


def params_records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """One params dict per row from ``columns`` (NaN cells left out, numpy scalars unwrapped)."""
    if not columns:
        return [{} for _ in range(len(frame))]
    names = [str(c) for c in columns]
    values = [frame[c].tolist() for c in columns]  # Python scalars, fast
    rows = [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
    holes = [n for n, c in zip(names, columns, strict=True) if frame[c].isna().any()]
    if holes:
        for row in rows:
            for name in holes:
                value = row[name]
                if value is None or value is pd.NA or (isinstance(value, float) and value != value):
                    del row[name]
    return rows


# ---------------------------------------------------------------------------------------------
# Device identity: map the name a source uses to the spec database's canonical key.


def _spec_lookup(name: str) -> Any:
    """The GpuSpec for ``name``, or None (also when there is no spec-database lookup).

    A spec database that exists but cannot be read is reported, not hidden behind "unknown".
    """
    try:
        from gemmperf.hardware.specs import find_gpu
    except ImportError:
        return None
    return find_gpu(name)


def _resolve_override(key: str) -> tuple[str, str | None]:
    """(canonical key, compute capability) for a user-given GPU name or key."""
    try:
        from gemmperf.hardware.specs import get_gpu
    except ImportError:
        return key, None
    spec = get_gpu(key)  # raises UnknownGpuError (a one-line message) for a name nobody knows
    return spec.key, _cc_text(spec)


def _cc_text(spec: Any) -> str | None:
    cc = getattr(spec, "compute_capability", None)
    if not cc:
        return None
    return f"{cc[0]}.{cc[1]}"


def lookup_device(name: str) -> tuple[str | None, str | None]:
    """(canonical GPU key, compute capability "8.6") for a device name; (None, None) if unknown.

    Tries the name as given, then without parenthesised notes ("GTX Titan X (Maxwell GM200)").
    """
    candidates = [name]
    stripped = re.sub(r"\s*\([^)]*\)", "", name).strip()
    if stripped and stripped != name:
        candidates.append(stripped)
    for candidate in candidates:
        spec = _spec_lookup(candidate)
        if spec is not None:
            return spec.key, _cc_text(spec)
    return None, None


def attach_gpu(frame: pd.DataFrame, override: GpuOverride = None) -> pd.DataFrame:
    """Fill ``gpu`` and ``compute_capability`` from ``device_name`` (in place; returns frame).

    A reader that knows better than the raw device name what to look up (a table that says only
    "H100" but whose peaks identify the SKU) puts that name in the :data:`LOOKUP_NAME` column,
    which this consumes. ``override`` is a key applied to every row, or a mapping from device
    name (as the source spells it) to key; rows it does not cover use the spec database lookup.
    Rows whose device is unknown keep gpu None.
    """
    names = frame["device_name"].astype(object)
    lookup = names
    if LOOKUP_NAME in frame:  # rows without a lookup name (other sources) use the device name
        given = frame.pop(LOOKUP_NAME).astype(object)
        lookup = given.where(given.notna(), names)
    present = {str(n) for n in pd.unique(names) if isinstance(n, str)}
    mapping: Mapping[str, str] = {}
    if isinstance(override, str):
        fixed = _resolve_override(override)
        frame["gpu"], frame["compute_capability"] = fixed[0], fixed[1]
        return frame
    if override:
        mapping = override
        unknown = set(mapping) - present
        if unknown:
            raise DataFormatError(
                f"--gpu names device(s) {', '.join(sorted(unknown))} that the input does not "
                f"have (it has: {', '.join(sorted(present))})"
            )
    resolved: dict[tuple[Any, Any], tuple[str | None, str | None]] = {}
    pairs = list(zip(names, lookup, strict=True))
    for name, target in set(pairs):
        if isinstance(name, str) and name in mapping:
            resolved[(name, target)] = _resolve_override(mapping[name])
        elif isinstance(target, str) and target.strip():
            resolved[(name, target)] = lookup_device(target)
        else:
            resolved[(name, target)] = (None, None)
    frame["gpu"] = [resolved[p][0] for p in pairs]
    frame["compute_capability"] = [resolved[p][1] for p in pairs]
    return frame


def finish(frame: pd.DataFrame) -> pd.DataFrame:
    """The importer's frame in the record schema (every column, schema order), with times no
    GPU could reach marked ``suspect`` (:func:`gemmperf.plausibility.flag_implausible`)."""
    return flag_implausible(normalize_frame(frame.reset_index(drop=True)))
