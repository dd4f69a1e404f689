"""The :class:`Space`: every configuration of a kernel family considered for one problem and GPU.

A space is a DataFrame with one row per configuration, in the record schema's config columns
(``family``, ``tile_m``, ... and ``params`` as canonical JSON text) plus one column per tunable
(e.g. ``MWG``) so that rankers and search strategies can work on numbers, and ``valid`` /
``reason``: pruned configurations stay in the frame with the reason they cannot run, so that
``--explain`` can say why. The row index is the configuration's id within the space.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gemmperf._grouping import group_codes
from gemmperf.errors import GemmperfError, InvalidConfigError
from gemmperf.problem import GemmProblem, KernelConfig

#: The record schema's common config columns (KernelConfig.COMMON).
COMMON_COLUMNS: tuple[str, ...] = KernelConfig.COMMON


class SpaceError(GemmperfError, ValueError):
    """A search space that cannot be built (unknown family, empty space, bad space file)."""


def _json_scalar(value: Any) -> str:
    if value is None or value is pd.NA:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return "null"
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return json.dumps(value)


#: Tunables formatted together: their distinct value combinations stay few (a few per tunable).
_JSON_CHUNK = 4


def params_json_column(frame: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """Canonical params JSON (sorted keys, compact; as :func:`gemmperf.records.params_json`
    writes it) for every row. Tunables take few distinct values, so the text of each distinct
    combination of 4 tunables is formatted once and rows join their chunks' texts (about 1 us
    a row for the 16 Xgemm tunables)."""
    names = sorted(names)
    if not names:
        return ["{}"] * len(frame)
    out: Any = None
    for start in range(0, len(names), _JSON_CHUNK):
        chunk = names[start:start + _JSON_CHUNK]
        columns, formatted = [], []
        for name in chunk:
            codes, uniques = pd.factorize(frame[name], use_na_sentinel=False)
            columns.append((codes, len(uniques)))
            prefix = json.dumps(name) + ":"
            formatted.append([prefix + _json_scalar(u) for u in uniques])
        rows, combos = group_codes(columns)
        texts = [",".join(f[d] for f, d in zip(formatted, digits, strict=True))
                 for digits in combos]
        lead = "{" if start == 0 else ","
        tail = "}" if start + _JSON_CHUNK >= len(names) else ""
        part = np.array([lead + t + tail for t in texts], dtype=object)[rows]
        out = part if out is None else out + part
    return list(out)


@dataclass(frozen=True, eq=False)
class Space:
    """Configurations of one kernel family (see the module docstring).

    ``param_names`` are the tunables (columns of ``frame``); ``default`` the family's default
    configuration as tunable values (None when the family has none), with its ``default_source``.
    ``explain`` turns invalid rows into full, actionable reasons (``reason`` holds a short form).
    ``problem`` is set for spaces read from a file of measurements of one problem.
    """

    family: str
    name: str
    frame: pd.DataFrame
    param_names: tuple[str, ...]
    default: Mapping[str, Any] | None = None
    default_source: str | None = None
    problem: GemmProblem | None = None
    description: str = ""
    explainer: Callable[[pd.DataFrame], list[str]] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def candidates(self) -> pd.DataFrame:
        """The valid configurations (index = config id)."""
        return self.frame[self.frame["valid"].to_numpy(dtype=bool)]

    @property
    def pruned(self) -> pd.DataFrame:
        """The invalid configurations with ``reason``."""
        return self.frame[~self.frame["valid"].to_numpy(dtype=bool)]

    def explain(self, rows: pd.DataFrame | None = None) -> pd.Series:
        """Full reasons for pruned rows (default: all of them), on the rows' index."""
        rows = self.pruned if rows is None else rows
        if self.explainer is None or rows.empty:
            return rows["reason"].astype(object)
        return pd.Series(self.explainer(rows), index=rows.index, dtype=object)

    def summary(self) -> dict[str, Any]:
        """Counts: total, valid, pruned, and pruned per short reason (most frequent first)."""
        pruned = self.pruned
        counts = pruned["reason"].value_counts(sort=True)
        return {
            "space": self.name,
            "family": self.family,
            "total": len(self.frame),
            "valid": len(self.frame) - len(pruned),
            "pruned": len(pruned),
            "pruned_by_reason": {str(k): int(v) for k, v in counts.items()},
        }

    def config(self, config_id: Any) -> KernelConfig:
        """The :class:`KernelConfig` of one row."""
        row = self.frame.loc[config_id]
        common = {c: _plain(row[c]) for c in COMMON_COLUMNS
                  if c in row.index and _plain(row[c]) is not None}
        params = json.loads(row["params"]) if isinstance(row.get("params"), str) else {}
        family = row["family"] if isinstance(row.get("family"), str) else self.family
        return KernelConfig.make(family, **common, **params)

    def find(self, values: Mapping[str, Any], *, valid_only: bool = False) -> Any | None:
        """Id of the row whose tunables equal ``values`` (names not given are free), or None."""
        frame = self.candidates if valid_only else self.frame
        unknown = [k for k in values if k not in frame.columns]
        if unknown:
            raise InvalidConfigError(
                f"{self.name} has no tunable(s) {', '.join(unknown)}; "
                f"its tunables are {', '.join(self.param_names)}")
        mask = np.ones(len(frame), dtype=bool)
        for name, value in values.items():
            mask &= (frame[name] == value).to_numpy(dtype=bool)
        hits = frame.index[mask]
        return hits[0] if len(hits) else None

    @property
    def default_id(self) -> Any | None:
        """Row id of the default config when it is in the space and valid, else None."""
        if not self.default:
            return None
        present = {k: v for k, v in self.default.items() if k in self.frame.columns}
        return self.find(present, valid_only=True)

    def subset(self, ids: Iterable[Any]) -> Space:
        """A space holding only the rows ``ids`` (same family, tunables and default)."""
        frame = self.frame.loc[list(ids)]
        return Space(self.family, self.name, frame, self.param_names, self.default,
                     self.default_source, self.problem, self.description, self.explainer)


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def frame_from_configs(
    configs: Sequence[KernelConfig], reasons: Sequence[str | None]
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """A space frame from KernelConfig objects and their invalid reasons (None = valid)."""
    if not configs:
        raise SpaceError("the space is empty")
    names = sorted({k for c in configs for k in c.param_dict})
    rows = []
    for config in configs:
        row: dict[str, Any] = {"family": config.family}
        for name in COMMON_COLUMNS:
            row[name] = getattr(config, name)
        row.update(config.param_dict)
        rows.append(row)
    frame = pd.DataFrame(rows)
    for name in COMMON_COLUMNS:
        frame[name] = pd.array(frame[name], dtype="Int64") if frame[name].notna().any() \
            else pd.array([pd.NA] * len(frame), dtype="Int64")
    frame["params"] = [json.dumps(c.param_dict, sort_keys=True, separators=(",", ":"),
                                  default=str) for c in configs]
    frame["valid"] = [r is None for r in reasons]
    frame["reason"] = pd.Series(list(reasons), dtype=object)
    varying = [c for c in COMMON_COLUMNS if frame[c].nunique(dropna=True) > 1]
    return frame, tuple(dict.fromkeys([*varying, *names]))
