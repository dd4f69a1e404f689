"""Training and evaluation data: any mix of record files and raw measurement files, as records.

A folder stands for the data files directly inside it (documentation such as ``README.md`` is
skipped); each file is detected by content and imported (:func:`gemmperf.importers.load_dataset`).
Only ``status == "ok"`` rows with a GPU the spec database knows are used for learning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from gemmperf.errors import DataFormatError, GemmperfError
from gemmperf.features import resolve_gpus
from gemmperf.records import COLUMNS, TEXT_COLUMNS

#: Files in a data folder that are documentation, not data.
SKIPPED_SUFFIXES = (".md", ".txt", ".rst", ".html", ".pdf", ".py")


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files named by ``paths``; a folder gives its data files (sorted, documentation skipped)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file()
                                and not p.name.startswith(".")
                                and p.suffix.lower() not in SKIPPED_SUFFIXES))
        elif path.exists():
            files.append(path)
        else:
            raise DataFormatError(f"{path}: no such file or folder")
    if not files:
        raise DataFormatError("no data files given")
    return files


def load_data(paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
              *, ok_only: bool = True) -> pd.DataFrame:
    """Records from files and folders; with ``ok_only``, failed measurements are dropped, so are
    suspect ones with a warning, and every row gets its canonical ``gpu`` key (rows of GPUs the
    database does not know are an error)."""
    from gemmperf.importers import load_dataset

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = expand_paths(paths)
    parts = []
    for file in files:
        part = load_dataset([file])
        part["data_file"] = file.name
        parts.append(part)
    frame = _numbers_as_numbers(pd.concat(parts, ignore_index=True))
    if not ok_only:
        return frame
    if "status" in frame.columns:
        status = frame["status"].fillna("ok")
        suspect = status == "suspect"
        if suspect.any():   # measured, unlike the failures: say what is left out and why
            reason = frame.loc[suspect, "reason"].dropna()
            warnings.warn(f"{int(suspect.sum()):,} rows with status 'suspect' left out"
                          + (f" (e.g. {reason.iloc[0]})" if len(reason) else ""), stacklevel=2)
        frame = frame[status == "ok"]
    frame = frame.reset_index(drop=True)
    try:
        frame["gpu"] = resolve_gpus(frame)
    except GemmperfError as exc:
        raise DataFormatError(f"{exc}") from None
    return frame


def describe_sources(frame: pd.DataFrame) -> list[dict[str, object]]:
    """Row counts per input file, source and GPU: the provenance a bundle records."""
    keys = [c for c in ("data_file", "source", "gpu") if c in frame.columns]
    counts = frame.groupby(keys, dropna=False).size()
    return [{**dict(zip(keys, map(str, key if isinstance(key, tuple) else (key,)), strict=True)),
             "rows": int(c)} for key, c in counts.items()]


def _numbers_as_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """The numeric schema columns as numbers (int64 where whole and complete, else float64 with
    NaN): importers fill a field a source lacks with None, which leaves an object column that
    every consumer converts again (measured: ~50 ms of a 100k-row prediction)."""
    for name in COLUMNS:
        if name in frame.columns and name not in TEXT_COLUMNS and frame[name].dtype == object:
            try:
                frame[name] = pd.to_numeric(frame[name])
            except (TypeError, ValueError):
                continue   # not all numbers: kept as imported (the features parse what parses)
    return frame
