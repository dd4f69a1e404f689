"""Operands for the cutlass backend: seeded, exactly representable, stored as CUTLASS reads them.

cupy has no bf16 or fp8 arrays, so operands live in raw storage (``uint16`` for bf16, ``uint8``
for fp8 e4m3) and are decoded to f32 for the reference. Values are drawn uniformly from
[-1, 1) and rounded to the *math* precision (tf32 for tf32, the operand format otherwise), so
every product is exact in f32 and the only errors are accumulation and output rounding.

Layouts: A (m x k) and B (k x n) are packed column-major (``n``) or row-major (``t``); D is
column-major. Storage arrays have shape (batch, rows, cols) in memory order and the logical
matrix is their last-two-axes transpose when column-major.

Verification (:func:`verify_output`) compares sampled rows of D with ``cupy.matmul`` in f32
using the componentwise measure ``|D - ref| / (|A| |B|)`` (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed., eq. 3.5: ``|fl(x.y) - x.y| <= gamma_k |x|.|y|``) against
:func:`tolerance`, and also requires the normwise error ``||D - ref||_F / ||ref||_F`` to stay
below :data:`NORMWISE_GUARD` (catches an all-zero or transposed result where the componentwise
bound is loose).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gemmperf.collect.backend import Verification
from gemmperf.problem import GemmProblem

#: Unit of the last place of each output format (round-to-nearest adds at most half of it).
OUTPUT_ULP = {"f32": 2.0**-23, "f16": 2.0**-10, "bf16": 2.0**-7}
#: Unit of the last place of the accumulator. Tensor cores truncate while accumulating (Fasi et
#: al., "Numerical behavior of NVIDIA tensor cores", PeerJ CS 2021), so a full ulp per addition;
#: Hopper's fp8 MMA keeps about 14 bits (DeepSeek-V3 technical report, 2024, section 3.3.2).
ACCUMULATOR_ULP = {"f32": 2.0**-23, "f16": 2.0**-10, "fp8_tensor": 2.0**-13}
NORMWISE_GUARD = 0.05
MAX_ROWS = 256       # verified rows per batch entry
MAX_BATCHES = 8      # verified batch entries


#: A quiet NaN in bfloat16 (sign 0, exponent all ones, top mantissa bit set).
BF16_NAN_BITS = 0x7FC0


def e4m3_table() -> np.ndarray:
    """f32 value of each of the 256 FP8 E4M3 codes (OCP 8-bit FP spec: bias 7, no infinities,
    S.1111.111 is NaN)."""
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exponent = (codes >> 3) & 0xF
    mantissa = (codes & 0x7).astype(np.float64)
    value = np.where(exponent == 0, mantissa / 8.0 * 2.0**-6,
                     (1.0 + mantissa / 8.0) * np.exp2(exponent - 7.0))
    value = sign * value
    value[(exponent == 15) & (mantissa == 7)] = np.nan
    return value.astype(np.float32)


def tolerance(problem: GemmProblem, output: str, accumulator: str) -> float:
    """Componentwise bound: output rounding + k accumulator ulps + k f32 ulps (reference)."""
    acc = "fp8_tensor" if problem.dtype == "fp8" else accumulator
    bound = OUTPUT_ULP[output] + problem.k * (ACCUMULATOR_ULP[acc] + 2.0**-23)
    return min(bound, 1.0)


@dataclass
class Operands:
    """Device storage of A, B and D plus how to decode it (cupy arrays)."""

    a: Any
    b: Any
    d: Any
    element: str
    output: str
    layout: str
    stream_ptr: int
    cupy: Any

    def free(self) -> None:
        self.a = self.b = self.d = None

    def poison(self) -> None:
        """Fill D with NaN (bf16's 0x7FC0 in its uint16 storage), so that elements a launch
        fails to write show up in verification rather than an earlier launch's values."""
        if self.output == "bf16":
            self.d.fill(BF16_NAN_BITS)
        else:
            self.d.fill(self.cupy.nan)

    def logical(self, which: str) -> Any:
        """Decoded f32 logical view (batch, rows, cols) of ``a``, ``b`` or ``d``."""
        storage = getattr(self, which)
        column_major = {"a": self.layout[0] == "n", "b": self.layout[1] == "n", "d": True}[which]
        view = storage.transpose(0, 2, 1) if column_major else storage
        return view, (self.output if which == "d" else self.element)

    def decode(self, storage: Any, element: str) -> Any:
        cp = self.cupy
        if element == "bf16":
            return (storage.astype(cp.uint32) << 16).view(cp.float32)
        if element == "e4m3":
            return cp.asarray(e4m3_table())[storage]
        return storage.astype(cp.float32)


def _quantise(cp: Any, values: Any, element: str, math_element: str) -> Any:
    """f32 values in [-1, 1) -> storage of ``element``, exact in ``math_element``."""
    if element == "f16":
        return values.astype(cp.float16)
    if element == "bf16":
        return (values.view(cp.uint32) >> 16).astype(cp.uint16)   # truncation: exact bf16
    if math_element == "tf32":
        return (values.view(cp.uint32) & cp.uint32(0xFFFFE000)).view(cp.float32)
    return values


def make_operands(problem: GemmProblem, dspec: Any, seed: int) -> Operands:
    """Allocate and fill A and B (seeded), and D, on the current cupy device and stream."""
    import cupy as cp

    rng = cp.random.RandomState(seed)
    b, m, n, k = problem.batch, problem.m, problem.n, problem.k
    shape_a = (b, k, m) if problem.layout[0] == "n" else (b, m, k)
    shape_b = (b, n, k) if problem.layout[1] == "n" else (b, k, n)
    if dspec.element_a == "e4m3":
        table = e4m3_table()
        usable = np.flatnonzero(np.isfinite(table) & (np.abs(table) <= 1.0)).astype(np.uint8)
        pool = cp.asarray(usable)
        a = pool[rng.randint(0, usable.size, size=shape_a)]
        bb = pool[rng.randint(0, usable.size, size=shape_b)]
    else:
        a = _quantise(cp, rng.uniform(-1, 1, shape_a, dtype=cp.float32), dspec.element_a,
                      dspec.math_element)
        bb = _quantise(cp, rng.uniform(-1, 1, shape_b, dtype=cp.float32), dspec.element_b,
                       dspec.math_element)
    out_dtype = {"f32": cp.float32, "f16": cp.float16, "bf16": cp.uint16}[dspec.output]
    d = cp.zeros((b, n, m), dtype=out_dtype)
    stream = cp.cuda.get_current_stream()
    return Operands(cp.ascontiguousarray(a), cp.ascontiguousarray(bb), d, dspec.element_a,
                    dspec.output, problem.layout, int(stream.ptr), cp)


def verify_output(ops: Operands, problem: GemmProblem, dspec: Any, seed: int = 1) -> Verification:
    """Compare sampled rows of D with an f32 reference (see the module docstring)."""
    cp = ops.cupy
    cp.cuda.get_current_stream().synchronize()
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(problem.m, size=min(problem.m, MAX_ROWS), replace=False))
    batches = np.sort(rng.choice(problem.batch, size=min(problem.batch, MAX_BATCHES),
                                 replace=False))
    rows_d, bat_d = cp.asarray(rows), cp.asarray(batches)
    a_view, a_el = ops.logical("a")
    b_view, b_el = ops.logical("b")
    d_view, d_el = ops.logical("d")
    a = ops.decode(a_view[bat_d][:, rows_d, :], a_el)
    b = ops.decode(b_view[bat_d], b_el)
    d = ops.decode(d_view[bat_d][:, rows_d, :], d_el)
    ref = cp.matmul(a, b)
    scale = cp.matmul(cp.abs(a), cp.abs(b))
    diff = cp.abs(d - ref)
    tiny = np.finfo(np.float32).tiny
    componentwise = float(cp.max(diff / cp.maximum(scale, tiny)))
    normwise = float(cp.linalg.norm(diff) / max(float(cp.linalg.norm(ref)), tiny))
    tol = tolerance(problem, dspec.output, dspec.accumulator)
    finite = bool(cp.isfinite(d).all())
    ok = finite and componentwise <= tol and normwise <= NORMWISE_GUARD
    return Verification(ok=ok, max_rel_error=componentwise if finite else float("inf"),
                        tolerance=tol)
