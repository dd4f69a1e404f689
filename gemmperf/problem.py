"""The two nouns of gemmperf: a GEMM problem and a kernel configuration.

``GemmProblem`` is C[b] = A[b] @ B[b] with A m x k and B k x n, ``batch`` independent products.
``KernelConfig`` is one point of a kernel family's tuning space (tile sizes and family tunables).
Both are frozen and hashable so they can key caches, resume sets and shard assignment.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gemmperf.errors import InvalidConfigError, InvalidProblemError

# Canonical data types. "tf32" means f32 operands multiplied on tensor cores in TF32 (CUTLASS and
# XLA name it this way); "f32" means f32 on the SIMT (CUDA-core) pipeline.
# Each maps to (bytes per operand element, the GpuSpec peak key used for its math).
DTYPES: dict[str, tuple[int, str]] = {
    "f64": (8, "fp64"),
    "f32": (4, "fp32"),
    "tf32": (4, "tf32"),
    "f16": (2, "fp16"),
    "bf16": (2, "bf16"),
    "fp8": (1, "fp8"),
    "int8": (1, "int8"),
}

_DTYPE_ALIASES = {
    "float64": "f64", "fp64": "f64", "double": "f64",
    "float32": "f32", "fp32": "f32", "float": "f32", "s": "f32", "sgemm": "f32",
    "tensorfloat32": "tf32",
    "float16": "f16", "fp16": "f16", "half": "f16", "h": "f16",
    "bfloat16": "bf16",
    "f8": "fp8", "float8": "fp8", "e4m3": "fp8", "f8e4m3": "fp8", "fp8e4m3": "fp8",
    "f8e4m3fn": "fp8", "e5m2": "fp8", "f8e5m2": "fp8", "fp8e5m2": "fp8",
    "i8": "int8", "s8": "int8",
}

LAYOUTS = ("nn", "nt", "tn", "tt")


def canonical_dtype(name: str) -> str:
    """Return the canonical dtype name for ``name`` (e.g. ``"float16" -> "f16"``)."""
    key = str(name).strip().lower().replace("_", "").replace("-", "")
    key = _DTYPE_ALIASES.get(key, key)
    if key not in DTYPES:
        raise InvalidProblemError(
            f"unknown dtype {name!r}; use one of {', '.join(DTYPES)}"
        )
    return key


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of an operand of ``dtype``."""
    return DTYPES[canonical_dtype(dtype)][0]


def peak_key(dtype: str, acc_dtype: str | None = None) -> str:
    """The GpuSpec peak-throughput key for multiplying ``dtype`` operands.

    f16 with f16 accumulation has its own (on GeForce parts, doubled) peak: ``fp16_acc16``.
    """
    dtype = canonical_dtype(dtype)
    if dtype == "f16" and acc_dtype is not None and canonical_dtype(acc_dtype) == "f16":
        return "fp16_acc16"
    return DTYPES[dtype][1]


@dataclass(frozen=True)
class GemmProblem:
    """C = A @ B with A: m x k, B: k x n, repeated ``batch`` times.

    ``layout`` is the BLAS transpose pair of (A, B) in column-major terms, as the CUTLASS profiler
    and cuBLAS name it ("nn", "nt", "tn", "tt"); the roofline does not depend on it.
    ``out_dtype`` defaults to the input dtype (f32 for tf32).
    """

    m: int
    n: int
    k: int
    batch: int = 1
    dtype: str = "f32"
    acc_dtype: str | None = None
    out_dtype: str | None = None
    layout: str = "nn"

    def __post_init__(self) -> None:
        for name in ("m", "n", "k", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise InvalidProblemError(f"{name} must be an integer, got {value!r}")
            if int(value) <= 0:
                raise InvalidProblemError(f"{name} must be positive, got {value}")
            object.__setattr__(self, name, int(value))
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
        if self.acc_dtype is not None:
            object.__setattr__(self, "acc_dtype", canonical_dtype(self.acc_dtype))
        if self.out_dtype is not None:
            object.__setattr__(self, "out_dtype", canonical_dtype(self.out_dtype))
        layout = str(self.layout).lower()
        if layout not in LAYOUTS:
            raise InvalidProblemError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        object.__setattr__(self, "layout", layout)

    @property
    def flops(self) -> int:
        """Multiply-add count x 2: 2 * batch * m * n * k."""
        return 2 * self.batch * self.m * self.n * self.k

    @property
    def element_bytes(self) -> int:
        return dtype_bytes(self.dtype)

    @property
    def output_bytes_per_element(self) -> int:
        out = self.out_dtype or ("f32" if self.dtype == "tf32" else self.dtype)
        if out in ("fp8", "int8") and self.out_dtype is None:
            # fp8/int8 GEMMs conventionally write a wider output (bf16 / int32).
            return 2 if out == "fp8" else 4
        return dtype_bytes(out)

    @property
    def peak_key(self) -> str:
        return peak_key(self.dtype, self.acc_dtype)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.m, self.n, self.k)


def _freeze(params: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    if not params:
        return ()
    return tuple(sorted((str(k), v) for k, v in params.items()))


@dataclass(frozen=True)
class KernelConfig:
    """One configuration of a kernel family.

    Common tunables are attributes (``None`` when a family has no such notion); family-specific
    tunables (e.g. CLBlast's ``VWM``, ``SA``) live in ``params``, a sorted tuple of (name, value)
    pairs so the config stays hashable. Build with ``KernelConfig.make(family, tile_m=..., VWM=2)``.
    """

    family: str
    tile_m: int | None = None
    tile_n: int | None = None
    tile_k: int | None = None
    threads_per_block: int | None = None
    stages: int | None = None
    split_k: int | None = None
    regs_per_thread: int | None = None
    smem_bytes_per_block: int | None = None
    params: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    COMMON = (
        "tile_m", "tile_n", "tile_k", "threads_per_block", "stages", "split_k",
        "regs_per_thread", "smem_bytes_per_block",
    )

    def __post_init__(self) -> None:
        for name in self.COMMON:   # whole numbers: 128.0 from a frame is 128, 64.5 is an error
            value = getattr(self, name)
            if value is None:
                continue
            low = 0 if name == "smem_bytes_per_block" else 1
            whole = isinstance(value, numbers.Integral) or (
                isinstance(value, numbers.Real) and math.isfinite(value) and value == int(value))
            if isinstance(value, bool) or not whole or value < low:
                raise InvalidConfigError(f"{name} must be an integer >= {low}, got {value!r}")
            object.__setattr__(self, name, int(value))

    @classmethod
    def make(cls, family: str, **values: Any) -> KernelConfig:
        """Build a config, sorting keyword values into common attributes and ``params``."""
        common = {k: values.pop(k) for k in list(values) if k in cls.COMMON}
        return cls(family=family, params=_freeze(values), **common)

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def get(self, name: str, default: Any = None) -> Any:
        """A common attribute or a family param by name."""
        if name in self.COMMON:
            value = getattr(self, name)
            return default if value is None else value
        return self.param_dict.get(name, default)

    def key(self) -> str:
        """A stable text key (used for resume and sharding)."""
        payload = {"family": self.family, **{k: getattr(self, k) for k in self.COMMON}}
        payload["params"] = [list(p) for p in self.params]
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
