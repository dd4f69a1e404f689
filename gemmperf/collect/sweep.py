"""The sweep: plan -> skip what is done -> measure -> verify -> append, one record per config
(measuring one config: :mod:`gemmperf.collect.measurement`).

Durability: records go to an append-only JSONL file through
:class:`~gemmperf.records.RecordWriter`, one line per config, flushed as it is written. A
``kill -9`` loses at most the config in flight (a torn last line is trimmed on the next open).
Resume (on by default) reads every ``*.jsonl`` in the output folder and skips a config whose
(device name, problem, config key, measurement conditions) already has a record, so a resumed
sweep writes no duplicates while a rerun under other conditions (:data:`CONDITION_FIELDS`: clock
lock, power limit, L2 flush) measures again. A line that is not JSON is skipped with a warning
(its config counts as not done); a torn last line is the config that was in flight. Shards
split the plan by a stable hash of (problem, config), the same on every machine, so the union
of ``--shard 1/n`` ... ``n/n`` is exactly the unsharded sweep.

Failures are records too: ``invalid`` (rejected before launch, with the backend's reason),
``compile_error``, ``launch_error``, ``timeout``, ``wrong_result`` (measured, but the output
did not match the reference; runtime fields are kept, the status marks them) and ``suspect``
(faster than the GPU's compute peak allows, :mod:`gemmperf.plausibility`). A launch
error that poisons the CUDA context (``LaunchError(fatal=True)``) stops the sweep after
recording it; a resumed sweep starts a fresh context and moves past it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemmperf.collect.measurement import measure_item
from gemmperf.collect.power import PowerSettings
from gemmperf.collect.rig import Rig
from gemmperf.collect.space import PlanItem, Shard, SweepPlan, record_item_key
from gemmperf.collect.timing import TimingSettings
from gemmperf.records import RecordsPathError, RecordWriter


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs (what it measures is the :class:`~gemmperf.collect.space.SweepPlan`)."""

    out_dir: Path
    timing: TimingSettings = field(default_factory=TimingSettings)
    power: PowerSettings | None = field(default_factory=PowerSettings)
    resume: bool = True
    max_minutes: float | None = None
    file_name: str | None = None       # default: records.jsonl, or per-shard name
    progress: bool = False


@dataclass
class SweepSummary:
    """What a sweep did; ``stopped`` is complete, time_limit, interrupted or fatal_error."""

    out_file: Path
    planned: int = 0
    skipped: int = 0
    written: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    stopped: str = "complete"
    message: str | None = None
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_file": str(self.out_file),
            "planned": self.planned,
            "skipped_done": self.skipped,
            "written": self.written,
            "statuses": dict(self.statuses),
            "stopped": self.stopped,
            "message": self.message,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def output_file(out_dir: Path, shard: Shard, *, tag: str = "shard") -> Path:
    """``records.jsonl``, or ``records.<tag>-<i>-of-<n>.jsonl`` for one shard."""
    if shard.count == 1:
        return Path(out_dir) / "records.jsonl"
    return Path(out_dir) / f"records.{tag}-{shard.index + 1}-of-{shard.count}.jsonl"


# Record fields that state the conditions a config was measured under (the rig's clock lock and
# power limit settings, the timing's L2 flush). They are part of the resume key: the same config
# under another condition is another measurement. Precision settings (window, repeats, warm-up)
# are not conditions: a rerun with a longer window does not redo a finished sweep.
CONDITION_FIELDS = ("locked_sm_clock_mhz", "power_limit_setting_w", "l2_flush")
# A condition a record does not state matches any value: a field missing from the record
# (written before the field existed, or by another tool) or an l2_flush of null (never timed).
# Resuming older records therefore skips exactly what it skipped before.
ANY = "*"
# Configs that failed before any launch: their outcome does not depend on the conditions.
NEVER_LAUNCHED = ("invalid", "compile_error")
MAX_BAD_LINES_NAMED = 3  # line numbers quoted per file in the corrupt-line warning


def _condition_text(value: Any) -> str:
    """Canonical text of a condition value (the CLI's 1000 and JSON's 1000.0 are one clock)."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(float(value))
    return json.dumps(str(value))


def run_conditions(rig: Rig, options: SweepOptions) -> tuple[str, ...]:
    """Condition texts of the records ``rig`` writes under ``options`` (see CONDITION_FIELDS)."""
    values = {**rig.fields, "l2_flush": options.timing.l2_flush}
    return tuple(_condition_text(values.get(name)) for name in CONDITION_FIELDS)


def record_conditions(row: Mapping[str, Any]) -> tuple[str, ...]:
    """Condition texts a stored record states, :data:`ANY` where it states none."""
    if row.get("status") in NEVER_LAUNCHED:
        return (ANY,) * len(CONDITION_FIELDS)
    out = []
    for name in CONDITION_FIELDS:
        unstated = name not in row or (name == "l2_flush" and row[name] is None)
        out.append(ANY if unstated else _condition_text(row[name]))
    return tuple(out)


def done_digest(device_name: str, key: str, conditions: Sequence[str] = ()) -> bytes:
    """Compact resume key: 16-byte digest of (device name, item key, condition texts)."""
    text = f"{device_name}|{key}|{','.join(conditions)}"
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def record_digest(row: Mapping[str, Any]) -> bytes | None:
    """:func:`done_digest` of a stored record as it stands (None: no problem or config)."""
    key = record_item_key(row)
    if key is None:
        return None
    return done_digest(str(row.get("device_name")), key, record_conditions(row))


class DoneSet:
    """Resume keys of recorded configs (memory ~100 B per record: one digest each).

    A record that leaves conditions unstated is stored under that pattern (``ANY`` in those
    places); a lookup tries each pattern seen (a handful), with the run's conditions filled in.
    """

    def __init__(self) -> None:
        self._digests: set[bytes] = set()
        self._patterns: set[tuple[bool, ...]] = set()  # True where a condition is ANY

    def __len__(self) -> int:
        return len(self._digests)

    def add(self, row: Mapping[str, Any]) -> None:
        """Count the config of stored record ``row`` as done (rows without one are ignored)."""
        digest = record_digest(row)
        if digest is not None:
            self._digests.add(digest)
            self._patterns.add(tuple(c == ANY for c in record_conditions(row)))

    def has(self, device_name: str, key: str, conditions: Sequence[str]) -> bool:
        """Is item ``key`` recorded on ``device_name`` under ``conditions`` (or unstated ones)?"""
        for pattern in self._patterns:
            filled = [ANY if any_ else c for any_, c in zip(pattern, conditions, strict=True)]
            if done_digest(device_name, key, filled) in self._digests:
                return True
        return False


def stored_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The records of JSONL file ``path``, streamed, for resume and merges.

    Like :func:`gemmperf.records.iter_jsonl` but lenient: a line that is not a JSON object is
    skipped with one warning per file naming its line numbers (``gemmperf train`` rejects such a
    file, so the user should know). A torn last line (no newline: a writer killed mid-line) is
    the config that was in flight; it is skipped silently, and the next
    :class:`~gemmperf.records.RecordWriter` on the file trims it with its own warning.
    """
    bad: list[int] = []
    # errors="replace": a corrupt byte must not hide the records after it (as in iter_jsonl).
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
                if not line.endswith("\n"):
                    continue  # only the last line can lack its newline
            if isinstance(row, dict):
                yield row
            else:
                bad.append(number)
    if bad:
        warnings.warn(_bad_lines_message(path, bad), stacklevel=2)


def _bad_lines_message(path: Path, bad: list[int]) -> str:
    named = ", ".join(str(n) for n in bad[:MAX_BAD_LINES_NAMED])
    more = len(bad) - MAX_BAD_LINES_NAMED
    where = f"line {named}" if len(bad) == 1 else f"lines {named}" + (
        f" and {more} more" if more > 0 else "")
    return (f"{path}: skipped {where}: not a JSON record (its config counts as not done; "
            "remove the line, gemmperf train rejects the file)")


def check_source(out_dir: Path, source: str) -> None:
    """Refuse to add records of ``source`` to a folder whose records come from the other kind of
    backend (the fake's simulated times among measurements, or measurements among them): the
    first record of each ``*.jsonl`` file says (a folder is written by one backend)."""
    fake = source == "fake"
    for path in sorted(Path(out_dir).glob("*.jsonl")) if Path(out_dir).is_dir() else ():
        if not path.is_file():
            raise RecordsPathError(f"{path} is not a file: move it away from the records folder")
        with open(path, "rb") as f:
            start = f.read(64).lstrip()
        if start and not start.startswith(b"{"):
            raise RecordsPathError(f"{path} is not a JSONL records file (a gzip or CSV file?): "
                                   "move it away from the records folder")
        first = next(stored_rows(path), None)
        theirs = None if first is None else first.get("source")
        if theirs is not None and (theirs == "fake") != fake:
            what = "fake-backend (simulated)" if theirs == "fake" else f"{theirs!r} (measured)"
            raise RecordsPathError(
                f"{path} holds {what} records; a {source} sweep would mix simulated and "
                "measured times in one folder: give another --out")


def load_done(out_dir: Path) -> DoneSet:
    """Resume keys of every record in ``out_dir/*.jsonl`` (streamed: memory ~ 100 B/record)."""
    done = DoneSet()
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return done
    for path in sorted(out_dir.glob("*.jsonl")):
        for row in stored_rows(path):
            done.add(row)
    return done


def _progress(enabled: bool, total: int) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]sweep[/]"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=Console(stderr=True), disable=not enabled, transient=False,
    )


def run_sweep(
    plan: SweepPlan | Iterable[PlanItem], rig: Rig, options: SweepOptions
) -> SweepSummary:
    """Run ``plan`` on ``rig`` into ``options.out_dir``; returns a summary (never half a file).

    Ctrl-C ends the sweep with ``stopped="interrupted"``: the file holds every finished config
    and a rerun of the same command resumes.
    """
    started = time.monotonic()
    shard = getattr(plan, "shard", Shard())
    out_file = Path(options.out_dir) / (options.file_name or output_file(Path(), shard).name)
    summary = SweepSummary(out_file=out_file)
    check_source(options.out_dir, rig.source)
    done = load_done(options.out_dir) if options.resume else DoneSet()
    device_name, conditions = rig.device.name, run_conditions(rig, options)

    def is_done(item: PlanItem) -> bool:
        return bool(done) and done.has(device_name, item.key, conditions)

    def todo() -> Iterable[PlanItem]:
        return (item for item in plan if not is_done(item))

    for item in plan:
        summary.planned += 1
        if is_done(item):
            summary.skipped += 1
    total = summary.planned - summary.skipped
    deadline = None if options.max_minutes is None else started + 60.0 * options.max_minutes
    control = rig.control if rig.control is not None else contextlib.nullcontext()
    try:
        with control, RecordWriter(out_file) as writer, _progress(
            options.progress and sys.stderr.isatty(), total
        ) as bar:
            task = bar.add_task("", total=total)
            for item in todo():
                if deadline is not None and time.monotonic() >= deadline:
                    summary.stopped = "time_limit"
                    summary.message = f"stopped at the {options.max_minutes:g}-minute limit"
                    break
                row, fatal = measure_item(rig, item, options)
                writer.write(row)
                summary.written += 1
                summary.statuses[row["status"]] += 1
                bar.update(task, advance=1, description=f"{item.config.family} "
                           f"{item.problem.m}x{item.problem.n}x{item.problem.k}")
                if fatal:
                    summary.stopped = "fatal_error"
                    summary.message = (
                        f"the CUDA context was lost ({row['reason']}); the failing config is "
                        "recorded, rerun the same command to resume in a fresh process"
                    )
                    break
    except KeyboardInterrupt:
        summary.stopped = "interrupted"
        summary.message = "interrupted; every finished config is saved"
    summary.elapsed_s = time.monotonic() - started
    return summary
