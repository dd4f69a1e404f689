"""Parameter spaces declared as data: ``data/spaces/<family>.json`` (e.g. CLBlast's Xgemm).

A space file lists each tunable's values, constraints that hold for any device (``constraints``)
and constraints against the GPU's limits (``device_constraints``), each a safe expression (see
:mod:`gemmperf.spaces._expr`) with a reason template; ``columns`` derives the record schema's
common columns (tile_m, threads_per_block, ...) from the tunables; ``default`` is the family's
default configuration with its source.

Enumeration is vectorised: the full product (82,944 configurations for Xgemm) is built as index
arrays and every constraint is evaluated once over all of them, so building the space takes a
few tens of milliseconds. A configuration is pruned by the first constraint it violates.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gemmperf._paths import data_dir
from gemmperf.errors import DataFormatError
from gemmperf.spaces._expr import compile_expr, expr_names, format_reason
from gemmperf.spaces.space import COMMON_COLUMNS, Space, SpaceError, params_json_column

#: Largest product a space file may declare (a typo should fail, not exhaust memory).
MAX_PRODUCT = 5_000_000


@dataclass(frozen=True)
class Constraint:
    """One rule: ``expr`` must hold; ``reason`` is the message template when it does not."""

    expr: str
    reason: str
    device: bool = False

    @property
    def short(self) -> str:
        return f"violates {self.expr}"


@dataclass(frozen=True)
class ParamSpaceSpec:
    """A parsed space file."""

    family: str
    description: str
    parameters: dict[str, tuple[Any, ...]]
    constraints: tuple[Constraint, ...]
    columns: dict[str, str]
    default: dict[str, Any] | None
    default_source: str | None
    dtype: str | None
    layout: str | None
    kernel_name: str | None
    path: Path

    @property
    def product_size(self) -> int:
        return int(np.prod([len(v) for v in self.parameters.values()], dtype=np.int64))


def _parse(path: Path) -> ParamSpaceSpec:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"{path}: cannot read space file ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("parameters"), dict):
        raise DataFormatError(f"{path}: a space file needs a 'parameters' object")
    params: dict[str, tuple[Any, ...]] = {}
    for name, entry in doc["parameters"].items():
        values = entry.get("values") if isinstance(entry, dict) else entry
        if not isinstance(values, list) or not values:
            raise DataFormatError(f"{path}: parameter {name!r} needs a non-empty 'values' list")
        if len(set(values)) != len(values):
            raise DataFormatError(f"{path}: parameter {name!r} repeats a value")
        params[str(name)] = tuple(values)
    constraints = []
    for key, device in (("constraints", False), ("device_constraints", True)):
        for item in doc.get(key, []):
            if not isinstance(item, dict) or "expr" not in item:
                raise DataFormatError(f"{path}: each of {key} needs an 'expr'")
            compile_expr(item["expr"])  # reject unsafe or malformed text at load time
            if not device:
                unknown = expr_names(item["expr"]) - set(params)
                if unknown:
                    raise DataFormatError(
                        f"{path}: constraint {item['expr']!r} uses unknown parameter(s) "
                        f"{', '.join(sorted(unknown))}")
            constraints.append(Constraint(item["expr"], item.get("reason") or
                                          f"violates {item['expr']}", device))
    columns = {str(k): str(v) for k, v in doc.get("columns", {}).items()}
    bad = [c for c in columns if c not in COMMON_COLUMNS]
    if bad:
        raise DataFormatError(f"{path}: 'columns' may only derive {', '.join(COMMON_COLUMNS)}; "
                              f"got {', '.join(bad)}")
    default = doc.get("default") or None
    spec = ParamSpaceSpec(
        family=str(doc.get("family") or path.stem),
        description=str(doc.get("description", "")),
        parameters=params,
        constraints=tuple(constraints),
        columns=columns,
        default=dict(default["values"]) if default else None,
        default_source=default.get("source") if default else None,
        dtype=doc.get("dtype"),
        layout=doc.get("layout"),
        kernel_name=doc.get("kernel_name"),
        path=path,
    )
    if spec.product_size > MAX_PRODUCT:
        raise DataFormatError(f"{path}: the product of the parameter values is "
                              f"{spec.product_size:,}, above the limit {MAX_PRODUCT:,}")
    if spec.default is not None:
        missing = set(params) - set(spec.default)
        if missing:
            raise DataFormatError(f"{path}: default lacks {', '.join(sorted(missing))}")
    return spec


def space_file(family: str) -> Path:
    """Path of the bundled space file of ``family`` (``data/spaces/<family>.json``)."""
    return data_dir() / "spaces" / f"{family}.json"


@functools.lru_cache(maxsize=16)
def _load_cached(path: str, mtime: float) -> ParamSpaceSpec:
    return _parse(Path(path))


def load_space_spec(family_or_path: str | Path) -> ParamSpaceSpec:
    """The parsed space file of a bundled family name or a path to a space file."""
    path = Path(family_or_path)
    if not path.suffix:
        path = space_file(str(family_or_path))
    if not path.is_file():
        raise SpaceError(f"no space file {path}")
    return _load_cached(str(path), path.stat().st_mtime)


def bundled_param_families() -> list[str]:
    """Families with a bundled space file."""
    folder = data_dir() / "spaces"
    return sorted(p.stem for p in folder.glob("*.json") if p.stem != "defaults")


def device_values(gpu: Any) -> dict[str, float]:
    """Names the device constraints may use, from a GpuSpec and its compute capability."""
    from gemmperf.hardware.occupancy import cc_limits

    limits = cc_limits(gpu.compute_capability)
    return {
        "max_threads_per_block": float(gpu.max_threads_per_block),
        "smem_per_block_bytes": float(gpu.smem_per_block_bytes),
        "smem_per_block_default_bytes": float(limits.smem_per_block_default_bytes),
        "regs_per_sm": float(gpu.regs_per_sm),
        "max_regs_per_thread": float(limits.max_regs_per_thread),
        "sm_count": float(gpu.sm_count),
    }


def _product_frame(spec: ParamSpaceSpec) -> pd.DataFrame:
    names = list(spec.parameters)
    sizes = [len(spec.parameters[n]) for n in names]
    index = np.indices(sizes).reshape(len(sizes), -1)
    data = {}
    for row, name in zip(index, names, strict=True):
        values = np.asarray(spec.parameters[name])
        data[name] = values[row]
    return pd.DataFrame(data)


def first_violations(spec: ParamSpaceSpec, frame: pd.DataFrame, gpu: Any = None) -> np.ndarray:
    """Index of the first constraint each row of ``frame`` (one column per tunable) violates,
    -1 where it satisfies all (device constraints only when ``gpu``, a GpuSpec, is given)."""
    missing = [n for n in spec.parameters if n not in frame.columns]
    if missing:
        raise SpaceError(f"{spec.family} configurations need the tunable(s) "
                         f"{', '.join(missing)}")
    env: dict[str, Any] = {n: pd.to_numeric(frame[n], errors="coerce").to_numpy(dtype=float)
                           for n in spec.parameters}
    env.update(device_values(gpu) if gpu is not None else {})
    first = np.full(len(frame), -1, dtype=np.int64)
    for i, constraint in enumerate(spec.constraints):
        if constraint.device and gpu is None:
            continue
        ok = np.broadcast_to(np.asarray(compile_expr(constraint.expr)(env), dtype=bool),
                             (len(frame),))
        first[(first < 0) & ~ok] = i
    return first


def short_reasons(spec: ParamSpaceSpec, codes: np.ndarray) -> np.ndarray:
    """Short reason per row ("violates EXPR"), None where the code is -1."""
    short = np.array([c.short for c in spec.constraints] + [None], dtype=object)
    return short[codes]


def _reason_categorical(spec: ParamSpaceSpec, codes: np.ndarray) -> pd.Categorical:
    """:func:`short_reasons` as a categorical built from the codes (no per-row text)."""
    shorts, inverse = np.unique(np.array([c.short for c in spec.constraints] or [""],
                                         dtype=object), return_inverse=True)
    mapped = np.where(codes >= 0, inverse[np.maximum(codes, 0)], -1)
    return pd.Categorical.from_codes(mapped, categories=list(shorts))


def enumerate_space(spec: ParamSpaceSpec, gpu: Any = None) -> Space:
    """Every configuration of the product, each marked valid or pruned by its first violated
    constraint (device constraints only when ``gpu``, a GpuSpec, is given)."""
    frame = _product_frame(spec)
    env: dict[str, Any] = {n: frame[n].to_numpy() for n in spec.parameters}
    device = device_values(gpu) if gpu is not None else {}
    env.update(device)
    first_violation = first_violations(spec, frame, gpu)
    valid = first_violation < 0
    # Constant and few-valued text columns as categoricals: 160k rows stay a few MB.
    frame.insert(0, "family", pd.Categorical.from_codes(np.zeros(len(frame), dtype=np.int8),
                                                        [spec.family]))
    frame.insert(1, "kernel_name", pd.Categorical.from_codes(
        np.zeros(len(frame), dtype=np.int8), [spec.kernel_name or ""]))
    for column, expr in spec.columns.items():
        values = np.asarray(compile_expr(expr)(env), dtype=np.float64)
        ints = np.broadcast_to(values, (len(frame),)).round().astype(np.int64)
        frame[column] = pd.arrays.IntegerArray(ints, np.zeros(len(frame), dtype=bool))
    for column in COMMON_COLUMNS:
        if column not in frame:
            frame[column] = pd.arrays.IntegerArray(np.zeros(len(frame), dtype=np.int64),
                                                   np.ones(len(frame), dtype=bool))
    # params JSON of the valid rows only (what gets ranked); pruned rows keep their tunables in
    # columns, and explain() reports those.
    params = np.full(len(frame), None, dtype=object)
    params[valid] = params_json_column(frame[valid], list(spec.parameters))
    # Plain object dtype: pandas' default string dtype would copy 100k+ texts into Arrow.
    frame["params"] = pd.Series(params, index=frame.index, dtype=object)
    frame["valid"] = valid
    frame["reason"] = _reason_categorical(spec, first_violation)
    frame["_constraint"] = first_violation

    gpu_note = f" on {gpu.key}" if gpu is not None else ""
    return Space(
        family=spec.family,
        name=f"{spec.family} ({spec.path.name}{gpu_note})",
        frame=frame,
        param_names=tuple(spec.parameters),
        default=spec.default,
        default_source=spec.default_source,
        description=spec.description,
        explainer=make_explainer(spec, device),
    )


def make_explainer(spec: ParamSpaceSpec, device: Mapping[str, float]) -> Any:
    """A function giving the full reason for rows that carry a ``_constraint`` code."""

    def explainer(rows: pd.DataFrame) -> list[str]:
        return _explain(spec, rows, device)

    return explainer


def _explain(spec: ParamSpaceSpec, rows: pd.DataFrame, device: Mapping[str, float]) -> list[str]:
    out: list[str] = []
    for _, row in rows.iterrows():
        code = row.get("_constraint", -1)
        code = -1 if pd.isna(code) else int(code)
        if code < 0:
            out.append(row.get("reason") or "")
            continue
        values = {n: row[n] for n in spec.parameters}
        values.update(device)
        out.append(format_reason(spec.constraints[code].reason, values))
    return out


def derive_columns(spec: ParamSpaceSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (one column per tunable) with the record columns the space file derives
    (tile_m, threads_per_block, ...) and its kernel_name filled in."""
    out = frame.copy()
    env = {n: pd.to_numeric(out[n], errors="coerce").to_numpy(dtype=float)
           for n in spec.parameters if n in out}
    for column, expr in spec.columns.items():
        if all(n in env for n in expr_names(expr)):
            out[column] = np.broadcast_to(np.asarray(compile_expr(expr)(env), dtype=float),
                                          (len(out),))
    if spec.kernel_name and "kernel_name" not in out:
        out["kernel_name"] = spec.kernel_name
    return out


def check_values(spec: ParamSpaceSpec, values: Mapping[str, Any], gpu: Any = None) -> str | None:
    """Reason a single configuration (tunable values) is invalid, or None (used by pruners)."""
    unknown = [k for k in values if k not in spec.parameters]
    if unknown:
        return f"unknown tunable(s) {', '.join(unknown)} for {spec.family}"
    env: dict[str, Any] = {**(spec.default or {}), **values}
    missing = [n for n in spec.parameters if n not in env]
    if missing:
        return f"missing tunable(s) {', '.join(missing)}"
    device = device_values(gpu) if gpu is not None else {}
    env.update(device)
    for constraint in spec.constraints:
        if constraint.device and gpu is None:
            continue
        if not bool(np.asarray(compile_expr(constraint.expr)(env))):
            return format_reason(constraint.reason, env)
    return None


def config_record(spec: ParamSpaceSpec, values: Mapping[str, Any], gpu: Any = None
                  ) -> dict[str, Any]:
    """The record columns of one configuration given by (some of) its tunables: the tunables
    with the space's default filling the rest (``params``), the columns the space file derives
    (tile_m, threads_per_block, ...) and its kernel_name, so that one config predicts alike
    whether it comes from ``predict`` or from ranking the space. :class:`SpaceError` for an
    unknown or non-numeric tunable, a missing one without a default, or a violated constraint."""
    text = [name for name, value in values.items()
            if isinstance(value, bool) or not isinstance(value, (int, float))]
    if text:
        raise SpaceError(f"tunable(s) {', '.join(text)} of {spec.family} take numbers")
    reason = check_values(spec, values, gpu)   # the default fills what values leave out
    full = {**(spec.default or {}), **values}
    if reason is not None:
        raise SpaceError(f"{spec.family} config: {reason} (tunables: "
                         f"{', '.join(spec.parameters)})")
    derived = derive_columns(spec, pd.DataFrame([full]))
    out = {column: derived[column].iloc[0] for column in spec.columns if column in derived}
    if spec.kernel_name:
        out["kernel_name"] = spec.kernel_name
    out["params"] = {name: full[name] for name in spec.parameters}
    return out
