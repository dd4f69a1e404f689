"""What the cupy backends share: the lazy cupy import, device identity, operands, verification.

cupy is imported only inside functions here, so importing gemmperf never imports cupy (or needs
a driver). The verification rule is the part a reader should check:

Verification compares the kernel's C with a reference computed by ``cupy.matmul`` in float64
from the same operands, on a row sample (all rows when m <= ``VERIFY_MAX_ROWS``; otherwise the
first and last row plus random ones, for the first and last batch). The error measure is
``max_ij |C_ij - R_ij| / (|A| |B|)_ij`` — the componentwise relative error that GEMM forward
error bounds are stated in (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed.,
sec. 3.5: ``|fl(AB) - AB| <= gamma_k |A||B|``). The tolerance is

    tol = LAMBDA * (sqrt(k) * u_acc + u_in + u_out)

with ``u`` the unit roundoff of the accumulation, input-conversion (TF32 rounds both operands:
``2 u_tf32``) and output formats. ``sqrt(k)`` rather than the worst case ``k`` is the
probabilistic bound of Higham & Mary ("A New Approach to Probabilistic Rounding Error
Analysis", SIAM J. Sci. Comput. 41(5), 2019): it holds for any summation order (split-K, tensor
core trees) with overwhelming probability at ``LAMBDA = 8`` while keeping a kernel that drops one
k term of a 16384-long product (an error near 4/k of |A||B| for data uniform in [-1, 1]) above
the tolerance.
"""

from __future__ import annotations

import importlib
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from gemmperf.collect.backend import DeviceInfo, Verification
from gemmperf.errors import BackendUnavailableError, GemmperfError
from gemmperf.problem import GemmProblem

#: Unit roundoff u = 2^-p, p = significand bits including the implicit one (IEEE 754-2019
#: binary64/32/16; TF32 keeps binary32's exponent and 10 stored mantissa bits, NVIDIA A100
#: whitepaper 2020; bfloat16 7 stored bits).
UNIT_ROUNDOFF = {
    "f64": 2.0**-53,
    "f32": 2.0**-24,
    "tf32": 2.0**-11,
    "f16": 2.0**-11,
    "bf16": 2.0**-8,
}
#: Safety multiplier of the probabilistic bound (see the module docstring).
LAMBDA = 8.0
#: Rows of C checked per verified batch when m is larger.
VERIFY_MAX_ROWS = 256
#: Columns of B converted to float64 at a time during verification (bounds its memory).
VERIFY_COLUMN_BLOCK = 2048


def import_cupy() -> Any:
    """``import cupy``, or BackendUnavailableError with the install hint."""
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailableError(
            f"cupy is not importable ({exc}): pip install 'gemmperf[gpu]' on a machine with "
            "an NVIDIA driver") from exc
    return cupy


#: Error types of cupy's library wrappers (module, class): cuBLAS and NVRTC failures.
LIBRARY_ERRORS = (("cupy_backends.cuda.libs.cublas", "CUBLASError"),
                  ("cupy_backends.cuda.libs.nvrtc", "NVRTCError"))


def cupy_errors(cupy: Any) -> tuple[type[BaseException], ...]:
    """The exception types a CUDA call through cupy raises (driver, runtime, memory, and the
    cuBLAS and NVRTC wrappers' where those libraries load)."""
    errors = [cupy.cuda.driver.CUDADriverError, cupy.cuda.runtime.CUDARuntimeError,
              cupy.cuda.memory.OutOfMemoryError]
    for module, name in LIBRARY_ERRORS:
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):   # the library is absent: it raises nothing
            continue
    return tuple(errors)


def detect_device(index: int = 0) -> DeviceInfo:
    """Identity of CUDA device ``index`` through cupy (BackendUnavailableError without one)."""
    cupy = import_cupy()
    try:
        props = cupy.cuda.runtime.getDeviceProperties(index)
    except cupy_errors(cupy) as exc:
        raise BackendUnavailableError(f"no usable CUDA device {index}: {exc}") from exc
    name = props["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    from gemmperf.hardware.specs import find_gpu

    try:
        spec = find_gpu(name)
    except GemmperfError:   # a broken spec database must not stop a measurement
        spec = None
    gpu_key = spec.key if spec is not None else None
    return DeviceInfo(name=name, compute_capability=(int(props["major"]), int(props["minor"])),
                      index=index, gpu_key=gpu_key)


def cupy_dtype(cupy: Any, dtype: str) -> Any:
    """The cupy storage dtype of a gemmperf dtype (tf32 is stored as float32)."""
    table = {"f64": cupy.float64, "f32": cupy.float32, "tf32": cupy.float32,
             "f16": cupy.float16}
    if dtype not in table:
        raise BackendUnavailableError(f"cupy has no storage type for {dtype}")
    return table[dtype]


def error_tolerance(problem: GemmProblem) -> float:
    """Tolerance on the componentwise relative error (module docstring formula)."""
    dtype = problem.dtype
    acc = problem.acc_dtype or ("f64" if dtype == "f64" else "f32")
    u_acc = UNIT_ROUNDOFF.get(acc, UNIT_ROUNDOFF["f32"])
    u_in = 2 * UNIT_ROUNDOFF["tf32"] if dtype == "tf32" else 0.0
    out = problem.out_dtype or ("f32" if dtype == "tf32" else dtype)
    u_out = UNIT_ROUNDOFF.get(out, UNIT_ROUNDOFF["f32"])
    return LAMBDA * (math.sqrt(problem.k) * u_acc + u_in + u_out)


@dataclass
class Operands:
    """Device operands in *logical* orientation: ``a`` (batch, m, k), ``b`` (batch, k, n),
    ``c`` (batch, m, n). They may be transposed views of the stored arrays (``stored``), which
    is how a backend realises a layout; ``c`` is what the kernel writes."""

    a: Any
    b: Any
    c: Any
    stored: tuple[Any, ...]


def random_operands(cupy: Any, problem: GemmProblem, seed: int, *,
                    a_transposed: bool = False, b_transposed: bool = False,
                    c_transposed: bool = False) -> Operands:
    """A, B uniform in [-1, 1) (seeded) and C uninitialised, in the problem's storage dtype.

    ``x_transposed`` stores the operand as the transpose of its logical shape (row-major), so
    the logical operand is a transposed view.
    """
    dtype = cupy_dtype(cupy, problem.dtype)
    out_dtype = cupy_dtype(cupy, problem.out_dtype or ("f32" if problem.dtype == "tf32"
                                                      else problem.dtype))
    rng = cupy.random.RandomState(seed)
    bsz, m, n, k = problem.batch, problem.m, problem.n, problem.k

    def make(shape: tuple[int, int], transposed: bool, fill: bool, dt: Any) -> tuple[Any, Any]:
        stored_shape = (bsz, shape[1], shape[0]) if transposed else (bsz, *shape)
        if fill:
            arr = rng.uniform(-1.0, 1.0, size=stored_shape, dtype=cupy.float32).astype(dt)
        else:
            arr = cupy.empty(stored_shape, dtype=dt)
        return arr, (arr.transpose(0, 2, 1) if transposed else arr)

    a_store, a = make((m, k), a_transposed, True, dtype)
    b_store, b = make((k, n), b_transposed, True, dtype)
    c_store, c = make((m, n), c_transposed, False, out_dtype)
    return Operands(a=a, b=b, c=c, stored=(a_store, b_store, c_store))


def _sample_rows(cupy: Any, m: int, seed: int) -> Any:
    if m <= VERIFY_MAX_ROWS:
        return cupy.arange(m)
    rng = cupy.random.RandomState(seed + 1)
    picks = rng.randint(0, m, size=VERIFY_MAX_ROWS - 2)
    return cupy.unique(cupy.concatenate([cupy.array([0, m - 1]), picks]))


def verify_product(cupy: Any, problem: GemmProblem, ops: Operands, seed: int = 0) -> Verification:
    """Compare ``ops.c`` with the float64 reference on sampled rows (module docstring)."""
    rows = _sample_rows(cupy, problem.m, seed)
    tiny = cupy.finfo(cupy.float64).tiny
    worst = 0.0
    for bi in sorted({0, problem.batch - 1}):
        a = ops.a[bi][rows].astype(cupy.float64)
        abs_a = cupy.abs(a)
        # B in column blocks: a float64 copy of a 16384 x 16384 B alone would take 2 GiB.
        for j0 in range(0, problem.n, VERIFY_COLUMN_BLOCK):
            b = ops.b[bi][:, j0:j0 + VERIFY_COLUMN_BLOCK].astype(cupy.float64)
            ref = cupy.matmul(a, b)
            scale = cupy.matmul(abs_a, cupy.abs(b))
            got = ops.c[bi][rows, j0:j0 + VERIFY_COLUMN_BLOCK].astype(cupy.float64)
            rel = cupy.abs(got - ref) / cupy.maximum(scale, tiny)
            # NaN (an unwritten or poisoned element) must fail: nan_to_num maps it to +inf.
            rel = cupy.nan_to_num(rel, nan=cupy.inf)
            worst = max(worst, float(rel.max()))
    tol = error_tolerance(problem)
    return Verification(ok=bool(worst <= tol), max_rel_error=worst, tolerance=tol)


def poison(cupy: Any, array: Any) -> None:
    """Fill ``array`` with NaN so elements a kernel fails to write show up in verification."""
    array.fill(cupy.nan)


def release_memory(cupy: Any) -> None:
    """Return cached device blocks to the driver (large sweeps otherwise run out of memory)."""
    cupy.get_default_memory_pool().free_all_blocks()


# ---------------------------------------------------------------------------------------------
# NVRTC without a GPU

_NVRTC_PATCH_LOCK = threading.Lock()
_COMPILER_INTERNALS = ("_compile_module_with_cache", "_get_arch_for_options_for_nvrtc",
                       "_get_nvrtc_version", "function")


def nvrtc_version() -> tuple[int, int]:
    """(major, minor) of the NVRTC library cupy loads (no GPU needed)."""
    cupy = import_cupy()
    try:
        return tuple(cupy.cuda.compiler._get_nvrtc_version())  # type: ignore[return-value]
    except Exception as exc:  # a missing or broken libnvrtc surfaces as various errors
        raise BackendUnavailableError(f"NVRTC is not loadable through cupy: {exc}") from exc


def nvrtc_compile(code: str, options: Sequence[str], arch: str,
                  name_expressions: Sequence[str],
                  log_stream: TextIO | None = None) -> tuple[bytes, dict[str, str]]:
    """Compile as ``cupy.RawModule(code, options, name_expressions).get_function`` does, without
    a GPU; returns (cubin, {name expression: mangled name}).

    RawModule reaches NVRTC through ``cupy.cuda.compiler._compile_module_with_cache``, which adds
    cupy's own options (``-ftz=true``, the ``-arch`` flag, ...). Only the two steps that need a
    device are replaced, for the duration of the call: the arch lookup
    (``_get_arch_for_options_for_nvrtc`` queries the current device; here it returns ``arch``)
    and ``Module.load`` (needs a driver; here it captures the cubin). The in-memory cache is
    used so nothing is written to ~/.cupy. These are cupy internals (checked, cupy 13-14):
    BackendUnavailableError when they change.
    """
    cupy = import_cupy()
    compiler = cupy.cuda.compiler
    missing = [n for n in _COMPILER_INTERNALS if not hasattr(compiler, n)]
    if missing:
        raise BackendUnavailableError(
            f"cupy {cupy.__version__} changed its compiler internals ({', '.join(missing)}); "
            "GPU-less NVRTC compilation needs updating")
    number = arch.removeprefix("sm_")

    class _Capture:
        def load(self, cubin: bytes) -> None:
            self.cubin = cubin

        def _set_mapping(self, mapping: dict[str, str]) -> None:
            self.mapping = mapping

    with _NVRTC_PATCH_LOCK:
        saved = (compiler._get_arch_for_options_for_nvrtc, compiler.function.Module,
                 os.environ.get("CUPY_CACHE_IN_MEMORY"))
        compiler._get_arch_for_options_for_nvrtc = lambda arch=None: (f"-arch=sm_{number}",
                                                                       "cubin")
        compiler.function.Module = _Capture
        os.environ["CUPY_CACHE_IN_MEMORY"] = "1"
        try:
            module = compiler._compile_module_with_cache(
                code, tuple(options), arch=number, name_expressions=list(name_expressions),
                backend="nvrtc", jitify=False, log_stream=log_stream)
        finally:
            compiler._get_arch_for_options_for_nvrtc, compiler.function.Module = saved[:2]
            if saved[2] is None:
                os.environ.pop("CUPY_CACHE_IN_MEMORY", None)
            else:
                os.environ["CUPY_CACHE_IN_MEMORY"] = saved[2]
    return module.cubin, dict(module.mapping)
