"""GPU backends through cupy: the hand-written kernels (tiled, blocked) and cuBLAS.

* ``TiledBackend`` / ``BlockedBackend`` compile ``kernels/<family>.cu`` with NVRTC through
  ``cupy.RawModule(code, options, name_expressions=[name])``, one module per template
  instantiation, cached in-process (cupy's on-disk kernel cache also applies), and launch it with
  the geometry of ``kernel_space.launch_geometry``. They run f32, layout nn (row-major A and B).
* ``CublasBackend`` runs ``cupy.matmul`` with ``out=``, for which cupy issues one
  ``cublasGemmEx``; a batched problem is issued as ``cublasGemmStridedBatchedEx`` directly
  (:mod:`gemmperf.collect.cublas_batched`: cupy's batched matmul would run f16 and tf32 as
  FP32). f64, f32, tf32 and f16 (f32 accumulation) run; cupy has no bfloat16/fp8 dtype and
  wraps int8 results, so those are invalid. The four BLAS layouts are realised with transposed
  views (batched: leading dimensions and ops) so cuBLAS sees exactly
  ``gemm(opA, opB, m, n, k)``.

TF32: cupy documents ``CUPY_TF32=1``, which it reads once per process to seed the float32 compute
type of its matmul routines; a sweep that mixes f32 and tf32 switches that setting per launch
with ``cupy._core.set_compute_type`` (the function the variable feeds), which selects
``CUBLAS_COMPUTE_32F_FAST_TF32`` versus ``CUBLAS_COMPUTE_32F``.

Importing this module does not import cupy; constructing a backend with ``device=None`` does
(to detect the device), and so does ``prepare``. The families are registered lazily in
``collect.backend`` (``create_backend("tiled", device=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gemmperf.collect import cupy_support as cs
from gemmperf.collect import kernel_resources, kernel_space
from gemmperf.collect.backend import (
    CompileError,
    DeviceInfo,
    LaunchError,
    Verification,
)
from gemmperf.collect.cublas_batched import StridedBatchedGemm
from gemmperf.errors import (
    BackendUnavailableError,
    DataFormatError,
    GemmperfError,
    InvalidConfigError,
)
from gemmperf.problem import GemmProblem, KernelConfig

#: NVRTC options of every RawModule (cupy adds its own, e.g. -ftz=true and the -arch flag).
NVRTC_OPTIONS = ("--std=c++17",)


def raw_module_arguments(family: str, name: str) -> dict[str, Any]:
    """Keyword arguments of the ``cupy.RawModule`` that compiles instantiation ``name``.

    One function for the backend and for the GPU-less NVRTC test, so the test compiles exactly
    what the backend will.
    """
    code = kernel_space.source_path(family).read_text()
    return {"code": code, "options": NVRTC_OPTIONS, "name_expressions": [name]}


class _CupyBackendBase:
    """Device identity and the lazily imported cupy module, shared by the three backends."""

    family = ""

    def __init__(self, device: DeviceInfo | None = None, *, seed: int = 0,
                 device_index: int = 0, **options: object) -> None:
        if options:
            raise InvalidConfigError(
                f"{self.family} backend: unknown options {', '.join(sorted(options))}")
        self.seed = int(seed)
        self.device = device if device is not None else cs.detect_device(device_index)
        self._cupy_module: Any = None

    @property
    def _cupy(self) -> Any:
        if self._cupy_module is None:
            cupy = cs.import_cupy()
            # Kernels, operands and events live on this backend's device (cupy's current one).
            cupy.cuda.Device(self.device.index).use()
            self._cupy_module = cupy
        return self._cupy_module

    @property
    def _cc(self) -> tuple[int, int]:
        return tuple(self.device.compute_capability)  # type: ignore[return-value]

    @property
    def arch(self) -> str:
        """nvcc arch name of the device, e.g. ``"sm_89"``."""
        return "sm_{}{}".format(*self._cc)


# --------------------------------------------------------------------------------------------
# Hand-written kernels

@dataclass
class RawKernelGemm:
    """A compiled tiled/blocked instantiation bound to operands (implements PreparedGemm)."""

    cupy: Any
    problem: GemmProblem
    kernel: Any                       # cupy.RawKernel
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    operands: cs.Operands
    seed: int = 0
    args: tuple[Any, ...] = field(init=False)

    def __post_init__(self) -> None:
        a, b, c = self.operands.stored
        p = self.problem
        # alpha = 1, beta = 0: the same product cuBLAS computes; C is write-only then.
        self.args = (a, b, c, np.int32(p.m), np.int32(p.n), np.int32(p.k),
                     np.float32(1.0), np.float32(0.0))

    @property
    def kernel_attributes(self) -> dict[str, int]:
        """What the driver reports for the loaded kernel (registers, static smem, ...)."""
        k = self.kernel
        return {"regs_per_thread": int(k.num_regs), "smem_bytes": int(k.shared_size_bytes),
                "local_bytes": int(k.local_size_bytes),
                "max_threads_per_block": int(k.max_threads_per_block)}

    def launch(self) -> None:
        try:
            self.kernel(self.grid, self.block, self.args)
        except cs.cupy_errors(self.cupy) as exc:
            raise LaunchError(f"launch of {self.kernel.name} failed: {exc}") from exc

    def verify(self) -> Verification:
        cs.poison(self.cupy, self.operands.c)
        self.launch()
        try:
            self.cupy.cuda.get_current_stream().synchronize()
        except cs.cupy_errors(self.cupy) as exc:
            raise LaunchError(f"{self.kernel.name} failed while running: {exc}") from exc
        return cs.verify_product(self.cupy, self.problem, self.operands, self.seed)

    def release(self) -> None:
        self.operands = cs.Operands(None, None, None, ())
        self.args = ()
        cs.release_memory(self.cupy)


class _RawKernelBackend(_CupyBackendBase):
    """tiled / blocked: kernel_space for the space, NVRTC for compilation."""

    def __init__(self, device: DeviceInfo | None = None, **options: object) -> None:
        super().__init__(device, **options)
        self._kernels: dict[str, Any] = {}

    def configs(self, problem: GemmProblem) -> list[KernelConfig]:
        return kernel_space.family_space(self.family)

    def invalid_reason(self, problem: GemmProblem, config: KernelConfig) -> str | None:
        if config.family != self.family:
            return f"{config.family} config given to the {self.family} backend"
        reason = kernel_space.invalid_reason(problem, config)
        if reason:
            return reason
        return self._device_reason(kernel_space.kernel_params(config))

    def _device_reason(self, params: kernel_space.KernelParams) -> str | None:
        """Threads, static shared memory and registers against this device's limits."""
        from gemmperf.hardware.occupancy import cc_limits, occupancy

        name = kernel_space.kernel_name_of(params)
        try:
            lim = cc_limits(self._cc)
        except GemmperfError:
            return None        # a device newer than the table: the driver will tell at launch
        if params.threads > lim.max_threads_per_block:
            return (f"{name}: {params.threads} threads per block, the limit is "
                    f"{lim.max_threads_per_block} on {self.arch}")
        if params.smem_bytes > lim.smem_per_block_default_bytes:
            return (f"{name}: {params.smem_bytes} B static shared memory, the limit is "
                    f"{lim.smem_per_block_default_bytes} B per block on {self.arch}: "
                    "use fewer stages or a smaller tile")
        try:
            res = kernel_resources.lookup(name, self.arch, same_major=True)
        except DataFormatError:
            res = None
        if res is None:
            return None
        occ = occupancy(self._cc, params.threads, res.registers, res.smem_bytes)
        if not occ.launchable:
            return f"{name} ({res.registers} registers on {res.arch}): {occ.reason}"
        return None

    def kernel(self, config: KernelConfig) -> Any:
        """The compiled ``cupy.RawKernel`` of ``config`` (compiled once per process)."""
        name = kernel_space.kernel_name(config)
        if name not in self._kernels:
            cupy = self._cupy
            try:
                module = cupy.RawModule(**raw_module_arguments(self.family, name))
                self._kernels[name] = module.get_function(name)
            except cupy.cuda.compiler.CompileException as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise CompileError(f"NVRTC failed on {name}: {first}") from exc
            except cs.cupy_errors(cupy) as exc:
                raise CompileError(f"loading {name} failed: {exc}") from exc
        return self._kernels[name]

    def prepare(self, problem: GemmProblem, config: KernelConfig) -> RawKernelGemm:
        reason = self.invalid_reason(problem, config)
        if reason:
            raise InvalidConfigError(reason)
        params = kernel_space.kernel_params(config)
        kernel = self.kernel(config)
        grid, block = kernel_space.launch_geometry(params, problem)
        if params.threads > int(kernel.max_threads_per_block):
            raise LaunchError(
                f"{kernel_space.kernel_name_of(params)}: {params.threads} threads per block, the "
                f"compiled kernel allows {int(kernel.max_threads_per_block)} (registers)")
        cupy = self._cupy
        try:
            ops = cs.random_operands(cupy, problem, self.seed)
        except cs.cupy_errors(cupy) as exc:
            raise LaunchError(f"allocating operands for {problem.shape} failed: {exc}") from exc
        return RawKernelGemm(cupy, problem, kernel, grid, block, ops, self.seed)


class TiledBackend(_RawKernelBackend):
    """``kernels/tiled.cu``: TILE x TILE shared-memory tiled SGEMM, TILE in 1..32."""

    family = "tiled"


class BlockedBackend(_RawKernelBackend):
    """``kernels/blocked.cu``: register-blocked SGEMM with float4 loads (see kernel_space)."""

    family = "blocked"


# --------------------------------------------------------------------------------------------
# cuBLAS through cupy.matmul

CUBLAS_DTYPES = ("f64", "f32", "tf32", "f16")


def _compute_type_api(cupy: Any) -> tuple[Any, Any, Any, Any]:
    """(get_compute_type, set_compute_type, COMPUTE_TYPE_DEFAULT, COMPUTE_TYPE_TF32)."""
    try:
        from cupy._core import _routines_linalg as linalg

        return (linalg.get_compute_type, linalg.set_compute_type,
                linalg.COMPUTE_TYPE_DEFAULT, linalg.COMPUTE_TYPE_TF32)
    except (ImportError, AttributeError) as exc:
        raise BackendUnavailableError(
            f"this cupy ({cupy.__version__}) lacks cupy._core.set_compute_type; "
            "the cublas backend needs it to switch TF32 per problem") from exc


@dataclass
class CublasGemm:
    """One cupy.matmul call with preallocated output (implements PreparedGemm)."""

    cupy: Any
    problem: GemmProblem
    operands: cs.Operands
    seed: int = 0
    x: Any = field(init=False)        # matmul(x, y, out=z) == cuBLAS gemm(opA, opB, m, n, k)
    y: Any = field(init=False)
    z: Any = field(init=False)

    def __post_init__(self) -> None:
        # Row-major out Z = X @ Y is column-major Z^T = Y^T X^T: with Y = A^T, X = B^T and
        # Z = C^T (all logical), cupy hands cuBLAS A, B, C with the problem's own m, n, k.
        ops = self.operands
        a_t, b_t, c_t = (v.transpose(0, 2, 1) for v in (ops.a, ops.b, ops.c))
        if self.problem.batch == 1:
            a_t, b_t, c_t = a_t[0], b_t[0], c_t[0]
        self.x, self.y, self.z = b_t, a_t, c_t
        self._batched = StridedBatchedGemm(self.problem, ops.stored) \
            if self.problem.batch > 1 else None
        get_type, set_type, default, tf32 = _compute_type_api(self.cupy)
        self._set_type = set_type
        self._previous_mode = get_type(self.cupy.float32)   # restored by release()
        self._mode = tf32 if self.problem.dtype == "tf32" else default

    def launch(self) -> None:
        cupy = self.cupy
        try:
            if self._batched is not None:
                self._batched()
                return
            if self.problem.dtype in ("f32", "tf32"):
                self._set_type(cupy.float32, self._mode)
            cupy.matmul(self.x, self.y, out=self.z)
        except cs.cupy_errors(cupy) as exc:
            call = "cublasGemmStridedBatchedEx" if self._batched else "cupy.matmul"
            raise LaunchError(f"{call} {self.problem.shape} x{self.problem.batch} failed: "
                              f"{exc}") from exc

    def verify(self) -> Verification:
        cs.poison(self.cupy, self.operands.c)
        self.launch()
        self.cupy.cuda.get_current_stream().synchronize()
        return cs.verify_product(self.cupy, self.problem, self.operands, self.seed)

    def release(self) -> None:
        self._set_type(self.cupy.float32, self._previous_mode)
        self.operands = cs.Operands(None, None, None, ())
        self.x = self.y = self.z = None
        cs.release_memory(self.cupy)


class CublasBackend(_CupyBackendBase):
    """cuBLAS GEMM via ``cupy.matmul`` (one configuration: the library's own heuristic)."""

    family = "cublas"

    def configs(self, problem: GemmProblem) -> list[KernelConfig]:
        return [KernelConfig.make("cublas")]

    def invalid_reason(self, problem: GemmProblem, config: KernelConfig) -> str | None:
        if config.family != "cublas":
            return f"{config.family} config given to the cublas backend"
        if config != KernelConfig.make("cublas"):
            return ("cublas has no tunables here (cupy.matmul lets cuBLAS pick the algorithm): "
                    "use KernelConfig.make('cublas')")
        dtype = problem.dtype
        if dtype not in CUBLAS_DTYPES:
            why = {"bf16": "cupy has no bfloat16 dtype",
                   "fp8": "cupy has no fp8 dtype",
                   "int8": "cupy.matmul wraps int8 results to int8 with an extra copy kernel"}
            return (f"cublas via cupy cannot run {dtype}: {why.get(dtype, 'unsupported')}; "
                    "use the cutlass backend")
        natural_acc = "f64" if dtype == "f64" else "f32"
        if problem.acc_dtype not in (None, natural_acc):
            return (f"cupy.matmul accumulates {dtype} in {natural_acc} (cublasGemmEx compute "
                    f"type), not {problem.acc_dtype}: use the cutlass backend")
        expected_out = "f32" if dtype == "tf32" else dtype
        if problem.out_dtype not in (None, expected_out):
            return (f"cupy.matmul writes {expected_out} for {dtype} inputs, not "
                    f"{problem.out_dtype}: use the cutlass backend")
        if dtype == "tf32" and self._cc < (8, 0):
            return f"TF32 needs compute capability 8.0+, the device is {self.arch}"
        return None

    def prepare(self, problem: GemmProblem, config: KernelConfig) -> CublasGemm:
        reason = self.invalid_reason(problem, config)
        if reason:
            raise InvalidConfigError(reason)
        cupy = self._cupy
        try:
            # Column-major "n" for A (m x k) is a row-major (k, m) array: store transposed.
            ops = cs.random_operands(cupy, problem, self.seed,
                                     a_transposed=problem.layout[0] == "n",
                                     b_transposed=problem.layout[1] == "n",
                                     c_transposed=True)
        except cs.cupy_errors(cupy) as exc:
            raise LaunchError(f"allocating operands for {problem.shape} failed: {exc}") from exc
        return CublasGemm(cupy, problem, ops, self.seed)

