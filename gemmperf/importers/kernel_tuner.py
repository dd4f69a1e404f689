"""Kernel Tuner results -> records: the JSON cache (plain or gzip) and a CSV export of one.

The cache (kernel_tuner/util.py, ``store_cache``/``read_cache``) is a JSON object with
``device_name``, ``kernel_name``, ``problem_size``, ``tune_params_keys``, ``tune_params`` and
``cache``: a mapping from "v1,v2,..." (tunable values in ``tune_params_keys`` order) to a result
holding every tunable, ``time`` (ms, the mean of the timed runs), ``times`` (ms, each run) and
whatever else the run recorded (``GFLOP/s``, compile time, observer readings). A configuration
that could not be measured has ``time`` set to an error class name (``InvalidConfig``,
``CompilationFailedConfig``, ``RuntimeFailedConfig``); releases before those classes wrote 1e20.
Those become rows with a failure ``status``, never dropped. During a run Kernel Tuner appends
entries to an unclosed file; like ``read_cache``, this importer closes such a file (with a warning).

CLBlast's ``Xgemm`` kernel (family ``clblast_xgemm``) gets the common columns tile_m = MWG,
tile_n = NWG, tile_k = KWG, threads_per_block = MDIMC * NDIMC; every tunable is also in params.
Its operands are column-major A (M x K, ``A[k*M + m]``) and B stored as N x K (``B[k*N + n]``),
i.e. BLAS layout "nt" (CLBlast xgemm kernel notes; shared/data/README.md).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gemmperf.errors import DataFormatError
from gemmperf.importers._common import (
    GpuOverride,
    PathLike,
    as_paths,
    attach_gpu,
    check_positive,
    finish,
    read_bytes,
)
from gemmperf.importers._kt_common import (
    ERROR_STATUS,
    LEGACY_FAILURE_TIME_MS,
    SOURCE,
    XGEMM_FAMILY,
    XGEMM_KEYS,
    XGEMM_LAYOUT,
    base_frame,
    family_name,
    is_xgemm,
    run_statistics,
    set_problem,
    set_runtime,
    solve_integer,
    statuses,
)
from gemmperf.importers.kernel_tuner_csv import read_csv_export

__all__ = ["ERROR_STATUS", "LEGACY_FAILURE_TIME_MS", "SOURCE", "XGEMM_FAMILY", "XGEMM_KEYS",
           "XGEMM_LAYOUT", "import_kernel_tuner", "load_cache_json", "read_cache",
           "read_csv_export", "read_kernel_tuner_file"]

# Observer readings Kernel Tuner stores per configuration -> record column (units as named).
_OBSERVER_COLUMNS = {
    "nvml_power": "power_w",          # NVMLObserver, W
    "nvml_energy": "energy_j",        # NVMLObserver, J per kernel call
    "ps_energy": "energy_j",          # PowerSensorObserver, J per kernel call
    "core_freq": "sm_clock_mhz",      # NVMLObserver, MHz (observed, not requested)
    "mem_freq": "mem_clock_mhz",
    "temperature": "temperature_c",
}


def import_kernel_tuner(
    paths: PathLike | Iterable[PathLike],
    *,
    problem_size: tuple[int, int, int] | None = None,
    gpu: GpuOverride = None,
) -> pd.DataFrame:
    """Records from Kernel Tuner cache files (JSON, .json.gz) or CSV exports of them.

    ``problem_size`` (M, N, K) overrides what the file says or implies; without it, M and N come
    from the cache's ``problem_size`` and K from its GFLOP/s (see :func:`read_cache`). ``gpu``
    overrides the canonical GPU key (one key, or a mapping device name -> key).
    """
    frames = [read_kernel_tuner_file(p, problem_size=problem_size) for p in as_paths(paths)]
    if not frames:
        raise DataFormatError("no input files given")
    frame = pd.concat(frames, ignore_index=True)
    return finish(attach_gpu(frame, gpu))


def read_kernel_tuner_file(
    path: PathLike, *, problem_size: tuple[int, int, int] | None = None
) -> pd.DataFrame:
    """One file, by content: a JSON cache (JSON text) or a CSV export."""
    path = Path(path)
    raw = read_bytes(path)
    if raw.lstrip()[:1] in (b"{", b"["):
        return read_cache(path, raw=raw, problem_size=problem_size)
    return read_csv_export(path, raw=raw, problem_size=problem_size)


# ---------------------------------------------------------------------------------------------
# JSON cache


def load_cache_json(path: Path, raw: bytes) -> dict[str, Any]:
    """Parse a cache, closing one left open by an interrupted or running tuning session."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        doc = _close_open_cache(text)
        if doc is None:
            raise DataFormatError(
                f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
            ) from exc
        warnings.warn(
            f"{path}: the cache was not closed (tuning run interrupted or still running); "
            f"read the {len(doc.get('cache', {}))} complete entries",
            stacklevel=3,
        )
    if not isinstance(doc, dict) or "cache" not in doc:
        raise DataFormatError(
            f"{path}: not a Kernel Tuner cache (a JSON object with a 'cache' mapping)"
        )
    if not isinstance(doc["cache"], Mapping):
        raise DataFormatError(f"{path}: 'cache' must map config keys to results")
    return doc


def _close_open_cache(text: str) -> dict[str, Any] | None:
    """The document an unclosed cache would be, or None when ``text`` is not such a cache."""
    body = text.rstrip()
    if not body.startswith("{") or '"cache"' not in body:
        return None
    # Entries are appended as `"key": {...},`; try closing after the last one, then after the
    # one before it (the last may be torn mid-write).
    for _ in range(2):
        candidate = body.rstrip().rstrip(",")
        try:
            doc = json.loads(candidate + "}}")
        except json.JSONDecodeError:
            cut = candidate.rfind("},")
            if cut < 0:
                return None
            body = candidate[: cut + 1]
            continue
        return doc if isinstance(doc, dict) else None
    return None


def read_cache(
    path: PathLike,
    *,
    raw: bytes | None = None,
    problem_size: tuple[int, int, int] | None = None,
) -> pd.DataFrame:
    """Records (not yet normalised) from one Kernel Tuner JSON cache.

    For Xgemm, M and N are the cache's 2-D ``problem_size`` (the kernel's grid spans M x N) and K
    is solved from the cache's own GFLOP/s, which counts 2*M*N*K + 2*M*K flops per call
    (shared/data/README.md), so K = flops / (2*M*(N + 1)); the solution must be the same integer
    for every measured configuration or the import stops and asks for ``problem_size``.
    """
    path = Path(path)
    doc = load_cache_json(path, read_bytes(path) if raw is None else raw)
    entries = list(doc["cache"].values())
    keys = list(doc["cache"].keys())
    if not entries:
        raise DataFormatError(f"{path}: the Kernel Tuner cache has no entries")
    if not all(isinstance(e, Mapping) for e in entries):
        raise DataFormatError(f"{path}: every cache entry must be a JSON object")
    tunables = [str(t) for t in doc.get("tune_params_keys") or doc.get("tune_params") or []]
    if not tunables:
        raise DataFormatError(f"{path}: the cache names no tunable parameters (tune_params_keys)")
    missing = [t for t in tunables if t not in entries[0]]
    if missing:
        raise DataFormatError(
            f"{path}: cache entry {keys[0]!r} lacks tunable(s) {', '.join(missing)}"
        )
    frame = pd.DataFrame({t: [e.get(t) for e in entries] for t in tunables})
    time_raw = [e.get("time") for e in entries]
    status, reason = statuses(time_raw, path, keys)
    ok = status == "ok"
    time_ms = np.full(len(entries), np.nan)
    time_ms[ok] = [time_raw[i] for i in np.flatnonzero(ok)]
    labels = [f"config {keys[i]}" for i in np.flatnonzero(ok)]
    check_positive(time_ms[ok], path, "time (ms)", labels)
    stats = run_statistics([e.get("times") for e in entries], ok, path, keys)
    out = base_frame(frame, tunables, status, reason)
    out["device_name"] = doc.get("device_name")
    out["kernel_name"] = doc.get("kernel_name")
    out["timestamp"] = [e.get("timestamp") for e in entries]
    set_runtime(out, time_ms, stats)
    for field, column in _OBSERVER_COLUMNS.items():
        values = [e.get(field) for e in entries]
        if any(isinstance(v, (int, float)) for v in values):
            out[column] = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
            out.loc[~ok, column] = np.nan
    if is_xgemm(tunables):
        gflops = pd.to_numeric(pd.Series([e.get("GFLOP/s") for e in entries], dtype=object),
                               errors="coerce").to_numpy(float)
        m, n, k = _xgemm_problem(doc.get("problem_size"), gflops, time_ms, ok, path, problem_size)
        set_problem(out, frame, m, n, k)
    elif problem_size is not None:
        out["m"], out["n"], out["k"] = problem_size
    out["family"] = family_name(doc.get("kernel_name"), tunables)
    return out


def _xgemm_problem(
    grid: Any,
    gflops: np.ndarray,
    time_ms: np.ndarray,
    ok: np.ndarray,
    path: Path,
    override: tuple[int, int, int] | None,
) -> tuple[int, int, int]:
    stated = isinstance(grid, list) and len(grid) >= 2 and all(isinstance(v, int) for v in grid)
    if override is not None:
        if stated and tuple(grid[:2]) != tuple(override[:2]):
            raise DataFormatError(
                f"{path}: problem_size {override[0]}x{override[1]}x{override[2]} contradicts the "
                f"cache's own problem_size {grid!r} (M, N); drop it, or give the cache's M and N")
        return override
    if not stated:
        raise DataFormatError(
            f"{path}: cannot tell M and N: problem_size is {grid!r}; pass problem_size=(M, N, K)"
        )
    m, n = int(grid[0]), int(grid[1])
    flops = gflops * 1e9 * time_ms * 1e-3
    k = solve_integer(flops[ok] / (2.0 * m * (n + 1)))
    if k is None:
        raise DataFormatError(
            f"{path}: cannot infer K from the cache's GFLOP/s and time; pass problem_size=(M, N, K)"
        )
    return m, n, k


