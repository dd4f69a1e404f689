"""Spaces read from files: "the configurations listed in this file".

Any file :func:`gemmperf.importers.load_dataset` reads (gemmperf records, a Kernel Tuner cache
or CSV export, a CUTLASS profiler CSV) gives a space: its distinct configurations for one problem.
Measured times are *not* part of the space (the recommender ranks by prediction only); they are
returned separately as :class:`Recording` so that ``gemmperf autotune --replay`` can play the file
back as if it were the GPU.

Validity: a configuration whose family has a space file (``data/spaces/<family>.json``) is
checked against its constraints (and the GPU's limits when a GPU is given); a configuration
every record of which failed (status invalid, compile_error, launch_error, timeout or
wrong_result) is pruned with the recorded reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gemmperf.errors import DataFormatError
from gemmperf.problem import GemmProblem
from gemmperf.records import params_frame
from gemmperf.spaces.space import COMMON_COLUMNS, Space, SpaceError

#: Statuses that mean the configuration cannot produce a usable GEMM.
FAILED = ("invalid", "compile_error", "launch_error", "timeout", "wrong_result")
_PROBLEM = ("m", "n", "k", "batch", "dtype")


@dataclass(frozen=True, eq=False)
class Recording:
    """Measurements of a file space, per config id of the space (median over repeated rows).

    ``frame`` is indexed like the space and has ``runtime_s``, ``power_w``, ``energy_j``,
    ``runtime_std_s`` (spread of the timed runs) and ``repeats`` (NaN where not measured),
    ``status`` (ok when any record of the config is ok) and ``gpu``.
    """

    frame: pd.DataFrame
    gpus: tuple[str, ...]
    paths: tuple[str, ...]

    def measured(self) -> pd.DataFrame:
        """Rows with a measured runtime."""
        return self.frame[self.frame["runtime_s"].notna()]


def _config_key(frame: pd.DataFrame) -> pd.Series:
    def text(name: str) -> np.ndarray:
        if name not in frame:
            return np.full(len(frame), "", dtype=object)
        return frame[name].to_numpy(dtype=object, na_value=None).astype(str).astype(object)

    key = text("family")
    for name in (*COMMON_COLUMNS, "params"):
        key = key + "|" + text(name)
    return pd.Series(key, index=frame.index)


def _select_problem(df: pd.DataFrame, problem: GemmProblem | None, label: str) -> pd.DataFrame:
    have = df.dropna(subset=["m", "n", "k"])
    if have.empty:
        raise SpaceError(f"{label}: no record has a GEMM problem (m, n, k)")
    if problem is not None:
        mask = ((have["m"] == problem.m) & (have["n"] == problem.n) & (have["k"] == problem.k)
                & (have["batch"].fillna(1) == problem.batch))
        if "dtype" in have and have["dtype"].notna().any():
            mask &= have["dtype"].fillna(problem.dtype) == problem.dtype
        out = have[mask]
        if out.empty:
            shapes = _shapes(have)
            raise SpaceError(f"{label} has no records of {problem.m}x{problem.n}x{problem.k} "
                             f"{problem.dtype}; it holds {shapes}")
        return out
    groups = have.groupby([have[c].astype(str) for c in _PROBLEM], sort=False).size()
    if len(groups) > 1:
        raise SpaceError(f"{label} holds {len(groups)} problems ({_shapes(have)}): "
                         "pass --m, --n, --k and --dtype to pick one")
    return have


def _shapes(df: pd.DataFrame) -> str:
    # r["dtype"], not r.dtype: on a row Series the attribute is the Series' own dtype (object).
    shapes = (df[["m", "n", "k", "dtype"]].drop_duplicates().head(4)
              .apply(lambda r: f"{int(r.m)}x{int(r.n)}x{int(r.k)} {_dtype_text(r['dtype'])}",
                     axis=1).tolist())
    more = len(df[["m", "n", "k", "dtype"]].drop_duplicates()) - len(shapes)
    return ", ".join(shapes) + (f" and {more} more" if more > 0 else "")


def _dtype_text(dtype: Any) -> str:
    return dtype if isinstance(dtype, str) else "(dtype not recorded)"


def problem_of(df: pd.DataFrame) -> GemmProblem:
    """The single problem of a records frame (first row's problem columns)."""
    row = df.iloc[0]
    return GemmProblem(
        m=int(row["m"]), n=int(row["n"]), k=int(row["k"]),
        batch=int(row["batch"]) if pd.notna(row.get("batch")) else 1,
        dtype=row["dtype"] if isinstance(row.get("dtype"), str) else "f32",
        layout=row["layout"] if isinstance(row.get("layout"), str) else "nn",
    )


def file_space(
    paths: str | Path | Iterable[str | Path],
    *,
    problem: GemmProblem | None = None,
    gpu: Any = None,
    frame: pd.DataFrame | None = None,
) -> tuple[Space, Recording]:
    """The space of configurations in ``paths`` (or an already loaded records ``frame``) and
    their recorded measurements. ``gpu`` (a GpuSpec) adds the device constraints."""
    from gemmperf.importers import load_dataset

    path_list = [str(paths)] if isinstance(paths, (str, Path)) else [str(p) for p in paths]
    label = ", ".join(Path(p).name for p in path_list) or "records"
    df = load_dataset(path_list) if frame is None else frame
    if df.empty:
        raise SpaceError(f"{label}: no records")
    if df["family"].isna().all():
        raise SpaceError(f"{label}: the records name no kernel family")
    df = _select_problem(df[df["family"].notna()], problem, label).copy()
    recorded_on = df["gpu"].dropna().unique()
    if gpu is not None and len(recorded_on) > 1 and gpu.key in set(recorded_on):
        df = df[df["gpu"] == gpu.key]  # several GPUs' records: keep the target's
    df["_key"] = _config_key(df).to_numpy()
    first = df.drop_duplicates("_key").reset_index(drop=True)
    params = params_frame(first)
    clash = [c for c in params.columns if c in first.columns]
    if clash:
        raise DataFormatError(f"{label}: params repeat record column(s) {', '.join(clash)}")
    space_frame = pd.concat([first[["family", "kernel_name", *COMMON_COLUMNS, "params"]],
                             params], axis=1)
    for name in COMMON_COLUMNS:
        space_frame[name] = pd.to_numeric(space_frame[name], errors="coerce").astype("Int64")
    varying = [c for c in COMMON_COLUMNS if space_frame[c].nunique(dropna=True) > 1]
    names = tuple(dict.fromkeys([*varying, *params.columns]))
    reasons, codes, explainer = _validity(space_frame, df, gpu)
    space_frame["valid"] = [r is None for r in reasons]
    space_frame["reason"] = pd.Series(reasons, dtype=object)
    space_frame["_constraint"] = codes
    families = sorted(space_frame["family"].unique())
    family = families[0] if len(families) == 1 else "+".join(families)
    space = Space(family=family, name=f"configs in {label}", frame=space_frame,
                  param_names=names, problem=problem_of(df),
                  description=f"the {len(space_frame)} distinct configurations in {label}",
                  explainer=explainer)
    if len(families) == 1:
        space = _with_default(space, family)
    return space, _recording(df, space_frame, path_list)


def _with_default(space: Space, family: str) -> Space:
    from gemmperf.spaces.families import family_defaults, resolve_default
    from gemmperf.spaces.param_space import bundled_param_families, load_space_spec

    candidates = list(family_defaults(family))
    if family in bundled_param_families():
        spec = load_space_spec(family)
        if spec.default:
            candidates.insert(0, {"values": spec.default, "source": spec.default_source})
    return resolve_default(space, candidates)


def _validity(space_frame: pd.DataFrame, records: pd.DataFrame, gpu: Any) -> tuple[
        list[str | None], np.ndarray, Any]:
    from gemmperf.spaces.param_space import (
        bundled_param_families,
        first_violations,
        load_space_spec,
        make_explainer,
        short_reasons,
    )

    reasons: list[str | None] = [None] * len(space_frame)
    codes = np.full(len(space_frame), -1, dtype=np.int64)
    explainer = None
    families = space_frame["family"].unique()
    if len(families) == 1 and families[0] in bundled_param_families():
        spec = load_space_spec(families[0])
        codes = first_violations(spec, space_frame, gpu)
        reasons = list(short_reasons(spec, codes))
        from gemmperf.spaces.param_space import device_values

        explainer = make_explainer(spec, device_values(gpu) if gpu is not None else {})
    # Configs no record of which succeeded: pruned with what the recording says.
    summary = _per_config(records)
    for i, (status, reason, where) in enumerate(zip(summary["status"], summary["reason"],
                                                   summary["gpu"], strict=True)):
        if reasons[i] is None and status in FAILED:
            on = f" on {where}" if isinstance(where, str) else ""
            reasons[i] = f"recorded as {status}{on}: {reason or 'no reason given'}"
    return reasons, codes, explainer


def _per_config(records: pd.DataFrame) -> pd.DataFrame:
    """Per config key (in order of first appearance): status (ok if any record is ok, else the
    first record's), the first failure reason, the GPU, and medians of the ok measurements."""
    codes, _ = pd.factorize(records["_key"])
    count = codes.max() + 1
    is_ok = (records["status"] == "ok").to_numpy(dtype=bool)
    first = np.full(count, -1, dtype=np.int64)
    order = np.arange(len(records))[::-1]
    first[codes[order]] = order                       # the smallest position per key wins
    any_ok = np.zeros(count, dtype=bool)
    np.logical_or.at(any_ok, codes, is_ok)
    status = np.where(any_ok, "ok", records["status"].to_numpy(dtype=object)[first])
    reasons = records["reason"].to_numpy(dtype=object)
    gpu = records["gpu"].to_numpy(dtype=object)[first]
    out = pd.DataFrame({"status": status, "reason": reasons[first], "gpu": gpu})
    for name in ("runtime_s", "power_w", "energy_j", "runtime_std_s", "repeats"):
        values = pd.to_numeric(records[name], errors="coerce").to_numpy(dtype=float) \
            if name in records else np.full(len(records), np.nan)
        values = np.where(is_ok, values, np.nan)
        frame = pd.DataFrame({"code": codes, "v": values})
        med = frame.groupby("code")["v"].median()
        column = np.full(count, np.nan)
        column[med.index.to_numpy()] = med.to_numpy()
        out[name] = column
    return out


def _recording(df: pd.DataFrame, space_frame: pd.DataFrame, paths: list[str]) -> Recording:
    summary = _per_config(df)
    out = summary[["runtime_s", "power_w", "energy_j", "runtime_std_s", "repeats", "status",
                   "gpu"]].set_axis(space_frame.index)
    return Recording(out, tuple(sorted({g for g in out["gpu"] if isinstance(g, str)})),
                     tuple(paths))
