"""Sweep spaces: shape specs, the sweep plan, stable keys for resume and shards, validity limits.

Shape specs (per dimension, comma-separated items):

- ``512:8192:x2``   geometric: 512, 1024, ..., 8192 (any factor > 1)
- ``256:1024:+256`` arithmetic: 256, 512, 768, 1024
- ``1024,2048``     a list (items may mix: ``128,512:2048:x2``)

``--m/--n/--k`` take one spec each (the plan is their product); ``--shapes`` takes a dimension
spec applied to all three, a list ``MxNxK,...`` (``BxMxNxK`` for batched), or a CSV file with
``m``, ``n``, ``k`` (optional ``batch``) columns.

The plan is the product shapes x dtypes x families x each family's configs, generated lazily (a
100,000-config sweep never holds its plan in memory). Each item carries ``invalid_reason`` from
the backend, so invalid configs are recorded with status ``invalid`` and never launched.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemmperf.errors import GemmperfError
from gemmperf.problem import GemmProblem, KernelConfig

MAX_SPEC_VALUES = 100_000  # a typo like 1:1000000:+1 should fail fast, not enumerate forever


class SpecError(GemmperfError, ValueError):
    """A shape, dtype or shard spec that cannot be parsed."""


def parse_dim_spec(text: str) -> list[int]:
    """Values of one dimension spec (see the module docstring), in order, without repeats."""
    values: list[int] = []
    for raw in str(text).split(","):
        item = raw.strip()
        if not item:
            raise SpecError(f"empty item in dimension spec {text!r}")
        values.extend(_parse_range(item, text))
        if len(values) > MAX_SPEC_VALUES:
            raise SpecError(f"dimension spec {text!r} has more than {MAX_SPEC_VALUES} values")
    return list(dict.fromkeys(values))


def _parse_int(token: str, spec: str) -> int:
    try:
        value = int(token.replace("_", ""))
    except ValueError:
        raise SpecError(f"{token!r} in {spec!r} is not an integer") from None
    if value <= 0:
        raise SpecError(f"sizes must be positive, got {value} in {spec!r}")
    return value


def _parse_range(item: str, spec: str) -> list[int]:
    parts = item.split(":")
    if len(parts) == 1:
        return [_parse_int(parts[0], spec)]
    if len(parts) != 3:
        raise SpecError(
            f"{item!r} in {spec!r}: use START:STOP:xFACTOR or START:STOP:+STEP (e.g. 512:8192:x2)"
        )
    start, stop = _parse_int(parts[0], spec), _parse_int(parts[1], spec)
    step = parts[2].strip().lower()
    if stop < start:
        raise SpecError(f"{item!r}: stop {stop} is below start {start}")
    out: list[int] = []
    if step.startswith("x") or step.startswith("*"):
        try:
            factor = float(step[1:])
        except ValueError:
            raise SpecError(f"{item!r}: factor {step[1:]!r} is not a number") from None
        if factor <= 1:
            raise SpecError(f"{item!r}: a geometric factor must be > 1, got {factor:g}")
        value = float(start)
        while round(value) <= stop:
            if not out or round(value) != out[-1]:
                out.append(round(value))
            value *= factor
            if len(out) > MAX_SPEC_VALUES:
                break
    elif step.startswith("+"):
        increment = _parse_int(step[1:], spec)
        if (stop - start) // increment + 1 > MAX_SPEC_VALUES:
            raise SpecError(f"{item!r} has more than {MAX_SPEC_VALUES} values")
        out = list(range(start, stop + 1, increment))
    else:
        raise SpecError(f"{item!r}: step must be xFACTOR or +STEP, got {parts[2]!r}")
    if len(out) > MAX_SPEC_VALUES:
        raise SpecError(f"{item!r} has more than {MAX_SPEC_VALUES} values")
    return out


Shape = tuple[int, int, int, int]  # (m, n, k, batch)

_LIST_ITEM = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*[xX]\s*(\d+)(?:\s*[xX]\s*(\d+))?\s*$")


def parse_shape_list(text: str) -> list[Shape]:
    """``MxNxK[,MxNxK...]`` (or ``BxMxNxK`` items) into (m, n, k, batch) tuples."""
    shapes: list[Shape] = []
    for item in text.split(","):
        match = _LIST_ITEM.match(item)
        if not match:
            raise SpecError(f"{item.strip()!r} is not MxNxK (e.g. 4096x4096x1024)")
        a, b, c, d = match.groups()
        nums = [int(a), int(b), int(c)] + ([int(d)] if d else [])
        if any(v <= 0 for v in nums):
            raise SpecError(f"{item.strip()!r}: sizes must be positive")
        shapes.append((nums[1], nums[2], nums[3], nums[0]) if d else (nums[0], nums[1], nums[2], 1))
    return list(dict.fromkeys(shapes))


def read_shape_csv(path: str | Path) -> list[Shape]:
    """Shapes from a CSV with ``m``, ``n``, ``k`` columns (case-insensitive; ``batch`` optional)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = {name.strip().lower(): name for name in (reader.fieldnames or [])}
            missing = [c for c in ("m", "n", "k") if c not in columns]
            if missing:
                raise SpecError(f"{path}: shape CSV needs columns m, n, k (missing {missing})")
            shapes: list[Shape] = []
            for line, row in enumerate(reader, start=2):
                texts = [row[columns[c]] for c in ("m", "n", "k")]
                texts.append(row.get(columns.get("batch", ""), "") or "1")
                try:
                    numbers = [float(t) for t in texts]
                    if not all(math.isfinite(x) and x.is_integer() for x in numbers):
                        raise ValueError
                except (TypeError, ValueError):
                    raise SpecError(f"{path}:{line}: m, n, k and batch must be integers, got "
                                    f"{', '.join(map(str, texts))}") from None
                *values, batch = (int(x) for x in numbers)
                if min(*values, batch) <= 0:
                    raise SpecError(f"{path}:{line}: sizes must be positive")
                shapes.append((values[0], values[1], values[2], batch))
    except OSError as exc:
        raise SpecError(f"{path}: cannot read shape CSV ({exc.strerror})") from exc
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a UTF-8 text CSV (a compressed file?)") from None
    if not shapes:
        raise SpecError(f"{path}: no shapes")
    return list(dict.fromkeys(shapes))


def resolve_shapes(
    shapes: str | None = None, *, m: str | None = None, n: str | None = None, k: str | None = None
) -> list[Shape]:
    """Shapes from ``--shapes`` or from ``--m/--n/--k`` (see the module docstring)."""
    per_dim = (m, n, k)
    if shapes is not None and any(s is not None for s in per_dim):
        raise SpecError("give either --shapes or --m/--n/--k, not both")
    if shapes is None:
        if any(s is None for s in per_dim):
            raise SpecError("give --shapes SPEC, or all of --m, --n and --k")
        dims = [parse_dim_spec(s) for s in per_dim]  # type: ignore[arg-type]
        return [(a, b, c, 1) for a, b, c in itertools.product(*dims)]
    text = shapes.strip()
    if text.lower().endswith(".csv") or Path(text).is_file():
        return read_shape_csv(text)
    if re.search(r"\d\s*[xX]\s*\d", text) and ":" not in text:
        return parse_shape_list(text)
    values = parse_dim_spec(text)
    return [(a, b, c, 1) for a, b, c in itertools.product(values, repeat=3)]


def make_problems(
    shapes: Sequence[Shape], dtypes: Iterable[str], *, layout: str = "nn"
) -> list[GemmProblem]:
    """One problem per shape and dtype (dtype-major order, so one dtype finishes first)."""
    return [
        GemmProblem(m=s[0], n=s[1], k=s[2], batch=s[3], dtype=d, layout=layout)
        for d in dtypes
        for s in shapes
    ]


# ---------------------------------------------------------------------------------------------
# Keys and shards


def problem_key(problem: GemmProblem) -> str:
    """Stable text of a problem (every field, JSON with sorted keys)."""
    fields = ("m", "n", "k", "batch", "dtype", "acc_dtype", "out_dtype", "layout")
    values = {f: getattr(problem, f) for f in fields}
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def item_key(problem: GemmProblem, config: KernelConfig) -> str:
    """Stable key of one (problem, config): device-independent, used for shards."""
    return problem_key(problem) + "|" + config.key()


def stable_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same in every process (unlike ``hash()``)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def record_item_key(row: Mapping[str, Any]) -> str | None:
    """:func:`item_key` of a stored record, or None when the row lacks a problem or config."""
    try:
        problem = GemmProblem(
            m=row["m"], n=row["n"], k=row["k"], batch=row.get("batch") or 1,
            dtype=row["dtype"], acc_dtype=row.get("acc_dtype"), out_dtype=row.get("out_dtype"),
            layout=row.get("layout") or "nn",
        )
        common = {c: row.get(c) for c in KernelConfig.COMMON if row.get(c) is not None}
        params = row.get("params") or {}
        if isinstance(params, str):
            params = json.loads(params)
        config = KernelConfig.make(row["family"], **common, **params)
    except (KeyError, TypeError, ValueError, GemmperfError):
        return None
    return item_key(problem, config)


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``; items split by :func:`stable_hash` of their key."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` with 1 <= i <= n (``"1/4"`` is the first of four shards)."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise SpecError(f"shard must be i/n (e.g. 1/4), got {text!r}")
        i, n = int(match[1]), int(match[2])
        if not 1 <= i <= n:
            raise SpecError(f"shard {text!r}: need 1 <= i <= n")
        return cls(i - 1, n)

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}"

    def owns(self, key: str) -> bool:
        return self.count == 1 or stable_hash(key) % self.count == self.index


# ---------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class PlanItem:
    """One config to measure (or to record as invalid)."""

    problem: GemmProblem
    config: KernelConfig
    invalid_reason: str | None
    key: str


class SweepPlan:
    """Problems x families x configs, filtered to one shard; iterate it as often as needed.

    ``backends`` maps family name to an object with ``configs(problem)`` and
    ``invalid_reason(problem, config)`` (the :class:`~gemmperf.collect.backend.GemmBackend`
    protocol).
    """

    def __init__(
        self,
        problems: Sequence[GemmProblem],
        backends: Mapping[str, Any],
        *,
        shard: Shard = Shard(),
    ) -> None:
        self.problems = list(problems)
        self.backends = dict(backends)
        self.shard = shard

    def __iter__(self) -> Iterator[PlanItem]:
        for problem in self.problems:
            for backend in self.backends.values():
                for config in backend.configs(problem):
                    key = item_key(problem, config)
                    if not self.shard.owns(key):
                        continue
                    yield PlanItem(problem, config, backend.invalid_reason(problem, config), key)


def roofline_time_s(problem: GemmProblem, spec: Any, config: KernelConfig | None = None) -> float:
    """Tile-aware roofline estimate of ``problem``'s runtime on ``spec`` (seconds; inf when the
    config cannot launch). See :func:`gemmperf.roofline.roofline`."""
    from gemmperf.roofline import roofline

    return float(roofline(problem, spec, config).estimate_s)


def limit_reason(config: KernelConfig, spec: Any) -> str | None:
    """An actionable reason when ``config`` exceeds a GPU's per-block limits, else None.

    ``spec`` is a :class:`~gemmperf.hardware.specs.GpuSpec` (threads, shared memory, registers).
    """
    arch = getattr(spec, "sm_arch", "this GPU")
    threads = config.threads_per_block
    if threads is not None and threads > spec.max_threads_per_block:
        return (
            f"uses {threads} threads per block, the limit is {spec.max_threads_per_block} on "
            f"{arch}: use a smaller tile or fewer threads"
        )
    smem = config.smem_bytes_per_block
    if smem is not None and smem > spec.smem_per_block_bytes:
        return (
            f"uses {smem / 1024:.0f} KiB shared memory, the limit is "
            f"{spec.smem_per_block_bytes / 1024:.0f} KiB on {arch}: reduce stages or tile size"
        )
    regs = config.regs_per_thread
    if regs is not None and threads is not None and regs * threads > spec.regs_per_sm:
        return (
            f"needs {regs * threads} registers per block ({regs} x {threads} threads), an SM has "
            f"{spec.regs_per_sm} on {arch}: use fewer threads or a smaller thread tile"
        )
    return None
