"""The end of an append-only JSONL records file after a crash.

:class:`gemmperf.records.RecordWriter` writes one JSON object per line and flushes it, so a
writer killed at any moment leaves at most one torn last line. Before appending again, that
tail is repaired here; a file that is not such JSONL (a gzip file, a CSV named ``.jsonl``) is
refused instead, since trimming would destroy it and appending would corrupt it.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from gemmperf.errors import RecordsPathError


def trim_torn_tail(path: Path) -> None:
    """Make ``path`` end at a record boundary before appending: a last record that lacks only
    its newline gets one; a torn last line is dropped (with a warning); a file whose end is
    not this JSONL at all raises :class:`~gemmperf.errors.RecordsPathError` untouched."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        data_end = f.seek(0, os.SEEK_END)
        # Walk back to the last newline; everything after it is a torn record.
        pos = data_end
        chunk = 4096
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            block = f.read(pos - start)
            idx = block.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            pos = start
        else:
            keep = 0
        f.seek(keep)
        tail = f.read()
        if _is_json_object(tail):
            # The writer got the whole record out but not its newline: keep the record.
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
            return
        if not (tail.startswith(b"{") and _last_line_is_record(f, keep)):
            # Not the JSONL this writer makes (a gzip file, a CSV named .jsonl): trimming would
            # destroy it, and appending would corrupt it.
            raise RecordsPathError(f"{path} is not a JSONL records file (its end is neither a "
                                   "record nor a torn one): nothing was written to it")
        warnings.warn(
            f"{path}: dropped a torn last record ({data_end - keep} bytes) left by an interrupted "
            "writer",
            stacklevel=3,
        )
        f.truncate(keep)


def _last_line_is_record(f: Any, end: int, window: int = 1 << 20) -> bool:
    """Is the complete line that ends at byte ``end`` of ``f`` a JSON object (True where there
    is none, ``end`` == 0, or it is longer than ``window``)?"""
    if end == 0:
        return True
    start = max(0, end - window)
    f.seek(start)
    block = f.read(end - start).rstrip(b"\n")
    cut = block.rfind(b"\n")
    if cut < 0 and start > 0:
        return True
    return _is_json_object(block[cut + 1:]) if block else True


def _is_json_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data.decode("utf-8")), dict)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
