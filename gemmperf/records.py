"""One record schema for every source, an append-only JSONL writer, and readers.

A record is one row per (problem, kernel config, device, run). Units are in the column names and
values are SI (``runtime_s``, ``power_w``, ``energy_j``). Failures are rows too: ``status`` is one
of :data:`STATUSES` and ``reason`` says why; ``suspect`` rows hold a measurement the source itself
calls into doubt (kept, never learned from). Family-specific tunables live in ``params`` (a mapping;
in a DataFrame, a JSON string with sorted keys so that it round-trips through CSV and Parquet).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from gemmperf.errors import DataFormatError, RecordsPathError
from gemmperf.jsonl_tail import trim_torn_tail
from gemmperf.record_checks import check_row, check_values

SCHEMA_VERSION = 1

STATUSES = ("ok", "invalid", "compile_error", "launch_error", "wrong_result", "timeout",
            "suspect")


@dataclass(frozen=True)
class Record:
    """One measurement (or one failure to measure). All fields but ``source`` are optional."""

    source: str
    status: str = "ok"
    reason: str | None = None
    schema_version: int = SCHEMA_VERSION
    timestamp: str | None = None
    # problem
    m: int | None = None
    n: int | None = None
    k: int | None = None
    batch: int = 1
    dtype: str | None = None
    acc_dtype: str | None = None
    out_dtype: str | None = None
    layout: str | None = None
    # kernel configuration
    family: str | None = None
    kernel_name: str | None = None
    tile_m: int | None = None
    tile_n: int | None = None
    tile_k: int | None = None
    threads_per_block: int | None = None
    stages: int | None = None
    split_k: int | None = None
    regs_per_thread: int | None = None
    smem_bytes_per_block: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    # device identity and state
    gpu: str | None = None                # canonical GpuSpec key, when known
    device_name: str | None = None        # as the source names it (NVML name, cache device_name)
    compute_capability: str | None = None  # "8.6"
    driver_version: str | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    power_limit_w: float | None = None
    temperature_c: float | None = None
    throttle_reasons: str | None = None
    # measurement
    # runtime_s is the median over repeats; a source that reports only a mean (the CUTLASS
    # profiler, a Kernel Tuner CSV export) gives the mean here and in runtime_mean_s.
    runtime_s: float | None = None
    runtime_iqr_s: float | None = None
    runtime_min_s: float | None = None
    runtime_max_s: float | None = None
    runtime_mean_s: float | None = None
    runtime_std_s: float | None = None    # sample standard deviation (ddof=1) over repeats
    repeats: int | None = None
    window_s: float | None = None         # length of the timed window
    l2_flush: bool | None = None
    power_w: float | None = None          # mean board power while the kernel ran
    energy_j: float | None = None         # energy per GEMM call
    idle_power_w: float | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise DataFormatError(f"status must be one of {', '.join(STATUSES)}, "
                                  f"got {self.status!r}")
        if not isinstance(self.params, Mapping):
            raise DataFormatError(f"params is a mapping of tunables, got {self.params!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``params`` stays a mapping)."""
        out = asdict(self)
        out["params"] = dict(self.params)
        if out["timestamp"] is None:
            out["timestamp"] = utc_now()
        return out


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Record))
PROBLEM_COLUMNS = ("m", "n", "k", "batch", "dtype", "acc_dtype", "out_dtype", "layout")
CONFIG_COLUMNS = (
    "family", "kernel_name", "tile_m", "tile_n", "tile_k", "threads_per_block", "stages",
    "split_k", "regs_per_thread", "smem_bytes_per_block", "params",
)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


#: Columns that hold numbers (the Record fields typed int or float).
NUMERIC_COLUMNS = tuple(f.name for f in fields(Record)
                        if str(f.type).split(" |")[0] in ("int", "float"))
#: Measured quantities an ``ok`` row must have positive where it has them.
MEASURED_COLUMNS = ("runtime_s", "power_w", "energy_j")

# Schema columns that hold text; CSV readers must not turn "8.6" or "535" into numbers.
TEXT_COLUMNS = (
    "source", "status", "reason", "timestamp", "dtype", "acc_dtype", "out_dtype", "layout",
    "family", "kernel_name", "params", "gpu", "device_name", "compute_capability",
    "driver_version", "throttle_reasons",
)


def params_json(params: Mapping[str, Any] | str | None) -> str:
    """Canonical JSON text of a params mapping (sorted keys, compact)."""
    if params is None or (not isinstance(params, (str, Mapping)) and _is_missing(params)):
        return "{}"
    if isinstance(params, str):
        try:
            params = json.loads(params) if params else {}
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"params is not a JSON object: {params[:80]!r}") from exc
        if not isinstance(params, dict):
            raise DataFormatError(f"params is not a JSON object: {params!r}")
    try:  # fast path: plain JSON values
        return _PARAMS_ENCODER.encode(params)
    except (TypeError, ValueError):  # NaN/inf, pandas NA or non-str keys: clean, then dump
        return _PARAMS_ENCODER.encode({str(k): _json_value(v) for k, v in dict(params).items()})


def _json_value(value: Any) -> Any:
    """``value`` made JSON-safe: numpy scalars unwrapped, NaN/inf and pandas NA become None."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        with contextlib.suppress(TypeError, ValueError):  # e.g. a multi-element array
            value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is not None and not isinstance(value, (list, tuple, dict, str)) and _is_missing(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    # numpy scalars and similar
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


# One encoder for every params dump (json.dumps builds a new encoder per call with these options).
_PARAMS_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), default=_json_default, allow_nan=False
)


def normalize_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with every schema column present, in schema order, params as JSON text.

    Extra columns a source carries are kept after the schema columns.
    """
    out = frame.copy()
    for name in COLUMNS:
        if name not in out.columns:
            out[name] = None
    out["params"] = [params_json(p) for p in out["params"]]
    if out["schema_version"].isna().any():
        out["schema_version"] = out["schema_version"].fillna(SCHEMA_VERSION)
    out["batch"] = out["batch"].fillna(1)
    extra = [c for c in out.columns if c not in COLUMNS]
    return out[list(COLUMNS) + extra]


def params_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``params`` column of mappings (a frame built by hand: ``params={"VWM":
    2}``) as canonical JSON text, the form records store and the feature code reads; the frame
    itself when its params are text already (checked without converting: a prediction's
    fixed cost)."""
    if "params" not in frame.columns or frame["params"].dtype != object:
        return frame
    values = frame["params"].to_numpy(dtype=object)
    if not any(isinstance(v, Mapping) for v in values):
        return frame
    return frame.assign(params=[params_json(v) for v in values])


def params_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``params`` column expanded to one column per tunable (NaN where a row lacks one)."""
    parsed = [json.loads(p) if isinstance(p, str) else dict(p or {}) for p in frame["params"]]
    return pd.DataFrame(parsed, index=frame.index)


def check_records_folder(path: str | os.PathLike[str], *, label: str | None = None) -> None:
    """Raise :class:`RecordsPathError` when ``path`` cannot be (or become) a folder because
    it, or a folder above it, is a file. Creates nothing (a dry run must leave no trace).

    ``label`` names the path in the message (e.g. ``"--out afile"``).
    """
    path = Path(path)
    label = label or str(path)
    for existing in (path, *path.parents):
        if existing.exists():
            if existing.is_dir():
                return
            if existing == path:
                raise RecordsPathError(f"{label} is a file; give a folder")
            raise RecordsPathError(f"{label}: {existing} is a file, so it cannot hold a folder")


class RecordWriter:
    """Append-only JSONL writer: one record per line, flushed as soon as it is written.

    A process killed at any moment leaves at most one torn last line; opening the file again
    trims that torn tail (with a warning) before appending, so the file stays valid JSONL.
    ``fsync=True`` also survives power loss, at the cost of a disk sync per record.
    A path that cannot be written raises :class:`RecordsPathError` before any byte is written.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise RecordsPathError(f"a records path is a str or Path, got {path!r}")
        self.path = Path(path)
        check_records_folder(self.path.parent)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            trim_torn_tail(self.path)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - see close()
        except RecordsPathError:
            raise
        except OSError as exc:  # permissions, a folder named like the file, a full disk
            raise RecordsPathError(
                f"{self.path}: cannot append records ({exc.strerror or exc})"
            ) from exc
        self._fsync = fsync
        self.written = 0

    def write(self, record: Record | Mapping[str, Any]) -> None:
        """Append one record. NaN and infinite values are written as null (unknown)."""
        if not isinstance(record, (Record, Mapping)):
            raise DataFormatError(f"a record is a Record or a mapping, got "
                                  f"{type(record).__name__}")
        row = record.to_dict() if isinstance(record, Record) else dict(record)
        check_row(row)
        row.setdefault("schema_version", SCHEMA_VERSION)
        row = {k: _json_value(v) for k, v in row.items()}
        if isinstance(row.get("params"), Mapping):
            row["params"] = {str(k): _json_value(v) for k, v in row["params"].items()}
        line = json.dumps(row, separators=(",", ":"), default=_json_default, allow_nan=False)
        self._file.write(line + "\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        self.written += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSONL file.

    A torn last line (a crash mid-write) is skipped with a warning; a malformed line anywhere
    else is a :class:`DataFormatError` naming the file and line.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        # errors="replace": a torn multi-byte character at the tail must not hide the records
        # before it (it then fails to parse and is reported as a torn last line).
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except (OSError, EOFError) as exc:
        raise DataFormatError(f"{path}: cannot read ({exc})") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines) and not line.endswith("\n"):
                warnings.warn(
                    f"{path}: skipped a torn last line {number} (interrupted writer)",
                    stacklevel=2,
                )
                return
            raise DataFormatError(f"{path}:{number}: not a JSON record ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise DataFormatError(
                f"{path}:{number}: expected a JSON object, got {type(row).__name__}"
            )
        yield row


def read_records(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """Read records from JSONL, Parquet or CSV files (by extension) into one DataFrame.

    A folder stands for every ``*.jsonl``, ``*.parquet`` and ``*.csv`` file inside it.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths) if isinstance(paths, Iterable) else [paths]
    if any(not isinstance(p, (str, os.PathLike)) for p in paths):
        raise DataFormatError(f"read_records takes paths (str or Path), got {paths!r}")
    frames = []
    for path in _expand(paths):
        frames.append(_read_one(path))
    if not frames:
        return normalize_frame(pd.DataFrame(columns=list(COLUMNS)))
    return normalize_frame(pd.concat(frames, ignore_index=True))


def _expand(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for ext in ("*.jsonl", "*.parquet", "*.csv"):
                yield from sorted(path.glob(ext))
        elif not path.exists():
            raise DataFormatError(f"{path}: no such file")
        else:
            yield path


def _read_one(path: Path) -> pd.DataFrame:
    return check_values(_read_table(path), path)


def _read_table(path: Path) -> pd.DataFrame:
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    try:
        if suffix in (".jsonl", ".jsonl.gz"):
            return pd.DataFrame(list(iter_jsonl(path)))
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".csv", ".csv.gz"):
            header = pd.read_csv(path, nrows=0).columns
            text = {c: str for c in TEXT_COLUMNS if c in header}
            return pd.read_csv(path, dtype=text)
    except DataFormatError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types; name the file
        raise DataFormatError(f"{path}: cannot read as {suffix} ({exc})") from exc
    raise DataFormatError(f"{path}: unknown record format {suffix!r} (use .jsonl, .parquet, .csv)")


def write_frame(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a records DataFrame to ``path`` in the format its extension names.

    Writes to a temporary file and renames it into place, so a failure never leaves a partial
    file that looks complete.
    """
    path = Path(path)
    suffix = path.suffix
    if suffix not in (".parquet", ".csv", ".jsonl"):
        raise DataFormatError(
            f"{path}: unknown output format {suffix!r} (use .parquet, .jsonl or .csv)"
        )
    frame = check_values(normalize_frame(frame), path)   # nothing read_records would refuse
    check_records_folder(path.parent)
    # A unique temporary name in the target folder (same file system, so the rename is atomic;
    # created by the writer, so it gets the usual permissions); the ".partial" suffix marks what
    # a killed process leaves behind as incomplete.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for row in frame.to_dict(orient="records"):
                    row["params"] = json.loads(row["params"])
                    clean = {k: _json_value(v) for k, v in row.items()}
                    f.write(json.dumps(clean, default=_json_default, allow_nan=False) + "\n")
        with open(tmp, "rb") as f:  # data on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:   # no permission, a full disk, a read-only or virtual file system
        raise RecordsPathError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
