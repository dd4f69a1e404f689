"""The ``cutlass`` kernel family: GEMMs generated and compiled by NVIDIA CUTLASS's Python interface.

Stack (verified on a GPU-less machine): ``nvidia-cutlass`` 4.2.0.0 (module ``cutlass_cppgen``;
``import cutlass`` is the unrelated CuTe DSL package ``nvidia-cutlass-dsl``), ``cuda-python``
12.9.10 (13.x cannot work: it removed ``cuda.cuda``/``cuda.cudart``), nvcc 12.x or 13.0. The
version quirks and their workarounds live in :mod:`gemmperf.collect._cutlass_compat`: the
cuda-python pin, a relaxed CUDA-version check for nvcc 13, the device query at plan construction
(replaced by a GEMM-only option registry for the wanted compute capability), and the files the
library writes into the working directory.

The space. For the device's compute capability the interface's generator lists tile descriptions
per (A, B, accumulator) type and (A, B) layout; ``plan.tile_descriptions()`` repeats each tile
once per alignment and C type (f16 in, f32 acc: 132 at sm_80, 90 at sm_89, 236 at sm_90; f32 at
sm_89: 159 TensorOp, of which 126 TF32 and 33 3xTF32 ``multiply_add_fast_f32``, and 11 SIMT).
:meth:`CutlassBackend.configs` keeps the tiles generated for the widest alignment the problem's
leading dimensions allow, drops duplicates and emulated-f32 math, and crosses CUTLASS 2.x tiles
with threadblock swizzles (Identity1/2/4/8 by default); sm_90 3.x kernels carry cluster shape
and kernel/epilogue schedule instead (their swizzle is not a template parameter). Distinct tiles
at full alignment, observed: f16/bf16 15 at sm_89, 22 at sm_80, 72 at sm_90; tf32 14 at sm_89,
62 at sm_90; f32 SIMT 11 at sm_80/89 (sm_90: the interface's one generic 128x128x8 tile); fp8 72
at sm_90, layout "tn" only (``tests/test_cutlass_backend.py`` pins these). fp8 runs only on
sm_90 here: the interface generates no sm_89 fp8 kernels (its generator list is 50, 60, 61, 70,
75, 80, 90, 100).

Compiling: one nvcc run per config (about 20 s for a 2.x kernel, 1-2 min for a 3.x kernel);
compiled plans are kept in-process (keyed by config, dtypes and layouts) and CUTLASS caches cubin
and host library in ``compiled_cache.db`` under the cache directory (``$GEMMPERF_CUTLASS_CACHE``,
default ``~/.cache/gemmperf/cutlass``), so a later process reuses them. Launching reuses one
``GemmArguments`` object: :meth:`PreparedCutlassGemm.launch` is ``operation.run(arguments)``,
exactly the launch at the end of ``plan.run`` without its per-call compile check, argument
packing and workspace allocation (``cuLaunchKernel`` / ``cuLaunchKernelEx`` via cuda-python).
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemmperf.collect import _cutlass_compat as compat
from gemmperf.collect._cutlass_operands import Operands, make_operands, verify_output
from gemmperf.collect.backend import CompileError, DeviceInfo, LaunchError, Verification
from gemmperf.collect.cutlass_tiles import (
    DEFAULT_SWIZZLES,
    FAMILY,
    SWIZZLES,
    DtypeSpec,
    TileSpec,
    c_alignment,
    config_invalid_reason,
    configs_for_tiles,
    dtype_spec,
    leading_dims,
    operand_layouts,
    select_ab_alignment,
    tile_spec,
)
from gemmperf.errors import BackendUnavailableError, GemmperfError
from gemmperf.problem import GemmProblem, KernelConfig


@dataclass(frozen=True)
class _Space:
    """The enumerated configs of one (dtype spec, layouts, alignments) class of problems."""

    entries: dict[KernelConfig, tuple[TileSpec, Any]]   # config -> (spec, TileDescription)
    plan_key: tuple


_MAX_ALIGNMENT = 64  # elements; CUTLASS's widest is 128 bits of fp8 = 16
#: The variable cutlass_cppgen reads the CUDA device ordinal from (else device 0).
DEVICE_ID_VARIABLE = "CUTLASS_CUDA_DEVICE_ID"


class CutlassBackend:
    """CUTLASS GEMM kernels for one device (see the module docstring).

    ``device`` gives the compute capability (queried through cupy when omitted).
    ``swizzles`` are the 2.x rasterisations to cross tiles with; ``extra_kernel_ccs`` adds
    older kernel generations (e.g. ``(80,)`` on an H100 for CUTLASS 2.x Ampere kernels);
    ``cache_dir`` holds CUTLASS's compiled-kernel cache; ``seed`` seeds the operands.
    """

    family = FAMILY

    def __init__(self, device: DeviceInfo | None = None, *,
                 swizzles: tuple[str, ...] = DEFAULT_SWIZZLES,
                 extra_kernel_ccs: tuple[int, ...] = (), cache_dir: str | Path | None = None,
                 seed: int = 0) -> None:
        unknown = [s for s in swizzles if s not in SWIZZLES]
        if unknown or not swizzles:
            raise GemmperfError(f"unknown swizzle(s) {unknown}; use some of {', '.join(SWIZZLES)}")
        self.device = device if device is not None else _query_device()
        self.cc = tuple(self.device.compute_capability)
        self.swizzles = tuple(swizzles)
        self.extra_kernel_ccs = tuple(int(c) for c in extra_kernel_ccs)
        self.cache_dir = Path(cache_dir) if cache_dir else compat.default_cache_dir()
        self.seed = int(seed)
        self._spaces: dict[tuple, _Space] = {}
        self._plans: dict[tuple, Any] = {}
        self._compiled: dict[tuple, Any] = {}
        self._lock = threading.RLock()

    # -- enumeration ---------------------------------------------------------------------------

    @property
    def arch(self) -> int:
        return self.cc[0] * 10 + self.cc[1]

    def _cutlass(self) -> Any:
        return compat.load(self.cache_dir)

    def kernel_ccs(self) -> list[int]:
        """Kernel generations enumerated on this device: the native one plus the extras.

        The interface maps a device to the closest generator architecture at or below it, but
        sm_100 (tcgen05) kernels do not run on sm_12x, so those get the 2.x sm_80 kernels.
        """
        native = compat.generator_kernel_cc(self._cutlass(), self.arch)
        if native == 100 and self.arch not in (100, 101, 103):
            native = 80
        return sorted({native, *(c for c in self.extra_kernel_ccs if c <= self.arch)},
                      reverse=True)

    def _plan(self, kernel_cc: int, dspec: DtypeSpec, layouts: tuple[str, str, str]) -> Any:
        key = (kernel_cc, dspec, layouts)
        if key not in self._plans:
            cutlass = self._cutlass()
            plan_cc = compat.plan_cc(cutlass, self.arch, kernel_cc)
            compat.use_registry(cutlass, plan_cc, kernel_cc)
            dt, lt = cutlass.DataType, cutlass.LayoutType
            try:
                self._plans[key] = cutlass.op.Gemm(
                    element_A=getattr(dt, dspec.element_a), element_B=getattr(dt, dspec.element_b),
                    element_C=getattr(dt, dspec.output), element_D=getattr(dt, dspec.output),
                    element_accumulator=getattr(dt, dspec.accumulator),
                    layout_A=getattr(lt, layouts[0]), layout_B=getattr(lt, layouts[1]),
                    layout_C=getattr(lt, layouts[2]), cc=plan_cc, kernel_cc=kernel_cc)
            except Exception as exc:  # the interface raises bare Exceptions
                if "No kernel configuration found" not in str(exc):
                    raise GemmperfError(f"CUTLASS plan for {dspec} failed: {exc}") from exc
                self._plans[key] = None  # no kernels for this type and layout combination
        return self._plans[key]

    def _space(self, problem: GemmProblem) -> _Space | None:
        dspec, _ = dtype_spec(problem)
        if dspec is None:
            return None
        layouts = operand_layouts(problem)
        # Alignments (<= 16 elements) depend only on the power-of-two part of each leading
        # dimension, so problems share a space per class instead of per shape.
        lds = tuple(math.gcd(ld, _MAX_ALIGNMENT) for ld in leading_dims(problem))
        key = (dspec, layouts, lds)
        with self._lock:
            if key not in self._spaces:
                self._spaces[key] = self._enumerate(dspec, layouts, lds)
            return self._spaces[key]

    def _enumerate(self, dspec: DtypeSpec, layouts: tuple[str, str, str],
                   lds: tuple[int, int, int]) -> _Space:
        cutlass = self._cutlass()
        entries: dict[KernelConfig, tuple[TileSpec, Any]] = {}
        from cutlass_cppgen.utils.datatypes import td_from_profiler_op

        for kernel_cc in self.kernel_ccs():
            plan = self._plan(kernel_cc, dspec, layouts)
            op_class = getattr(cutlass.OpcodeClass, dspec.op_class)
            if plan is None or op_class not in plan.possible_op_classes:
                continue
            plan.opclass = op_class
            by_alignment = plan.possible_operations.kernels_by_alignment
            ab = select_ab_alignment(by_alignment, lds[0], lds[1])
            if ab is None:
                continue
            alignments = (*ab, c_alignment(lds[2], dspec.output))
            tds: dict[TileSpec, Any] = {}
            for key, ops in by_alignment.items():
                if tuple(int(x) for x in key.split()[:2]) != ab:
                    continue
                for op in ops:
                    td = td_from_profiler_op(op)
                    tds.setdefault(tile_spec(td, kernel_cc), td)
            for config, spec in configs_for_tiles(tds, dspec, alignments, self.swizzles):
                entries.setdefault(config, (spec, tds[spec]))
        return _Space(entries, (dspec, layouts))

    def configs(self, problem: GemmProblem) -> list[KernelConfig]:
        """CUTLASS configs for ``problem`` on this device; empty for unsupported dtypes."""
        space = self._space(problem)
        return [] if space is None else list(space.entries)

    def invalid_reason(self, problem: GemmProblem, config: KernelConfig) -> str | None:
        """None when ``config`` can run ``problem`` here, else a one-line reason."""
        return config_invalid_reason(problem, config, self.cc)

    # -- compile and launch --------------------------------------------------------------------

    def _pin_device(self) -> None:
        """Point CUTLASS at this backend's device. ``cutlass_cppgen.initialize_cuda_context``
        takes device 0 unless ``CUTLASS_CUDA_DEVICE_ID`` says otherwise (nvidia-cutlass 4.2,
        ``cutlass_cppgen/__init__.py``), and its compute-capability and SM-count queries (cluster
        launch, stream-K) would describe device 0 on a host of mixed GPUs."""
        wanted = str(self.device.index)
        given = os.environ.setdefault(DEVICE_ID_VARIABLE, wanted)
        if given != wanted:
            raise BackendUnavailableError(
                f"{DEVICE_ID_VARIABLE}={given} but the cutlass backend runs on CUDA device "
                f"{wanted}: unset it or sweep device {given}")

    def _compile(self, problem: GemmProblem, config: KernelConfig) -> tuple[Any, DtypeSpec]:
        reason = self.invalid_reason(problem, config)
        if reason:
            raise LaunchError(f"invalid config: {reason}")
        space = self._space(problem)
        if space is None or config not in space.entries:
            raise CompileError("config is not in this device's CUTLASS space for the problem "
                               "(enumerate it with configs() on the same device)")
        spec, td = space.entries[config]
        dspec, layouts = space.plan_key
        key = (config, dspec, layouts)
        with self._lock:
            if key in self._compiled:
                return self._compiled[key], dspec
            cutlass = self._cutlass()
            self._pin_device()
            try:  # what plan.compile does first; fails here without a driver or device
                with warnings.catch_warnings():  # cuda-python 12.9 deprecations (compat quirk 1)
                    warnings.simplefilter("ignore", FutureWarning)
                    cutlass.initialize_cuda_context()
                    seen = cutlass.device_cc()   # with the device pinned, the first CUDA call
            except Exception as exc:
                raise BackendUnavailableError(
                    f"CUTLASS found no usable CUDA device: {exc}") from exc
            if seen != self.arch:
                raise BackendUnavailableError(
                    f"CUTLASS sees sm_{seen} on CUDA device {self.device.index}, the sweep "
                    f"sm_{self.arch}: another device was initialised first in this process")
            plan = self._plan(spec.kernel_cc, dspec, layouts)
            plan.opclass = getattr(cutlass.OpcodeClass, spec.op_class)
            plan.swizzling_functor = getattr(
                cutlass.swizzle, _SWIZZLE_ATTR[config.get("swizzle", "Identity1")])
            if spec.api == "3x":  # the interface divides by the cluster shape (cutlass_tiles doc)
                td = td.clone_and_update({"threadblock_shape": [
                    t * c for t, c in zip(spec.tile, spec.cluster, strict=True)]})
            try:
                with compat.in_cache_dir(self.cache_dir):
                    operation = plan.compile(
                        td, alignment_A=config.get("alignment_a"),
                        alignment_B=config.get("alignment_b"),
                        alignment_C=config.get("alignment_c"))
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise CompileError(f"CUTLASS kernel did not compile: {first} (logs in "
                                   f"{self.cache_dir})") from exc
            self._compiled[key] = operation
            return operation, dspec

    def prepare(self, problem: GemmProblem, config: KernelConfig) -> PreparedCutlassGemm:
        """Compile (cached), allocate seeded operands, and bind a reusable launch."""
        operation, dspec = self._compile(problem, config)
        from cutlass_cppgen.backend.gemm_operation import GemmArguments
        from cutlass_cppgen.shape import GemmCoord
        from cutlass_library import GemmUniversalMode

        operands = make_operands(problem, dspec, seed=self.seed)
        try:
            from cuda import cuda as cuda_driver
            stream = cuda_driver.CUstream(int(operands.stream_ptr))
            batched = problem.batch > 1
            extra = {"batch": problem.batch} if batched else {"split_k_slices": 1}
            arguments = GemmArguments(
                operation=operation, problem_size=GemmCoord(problem.m, problem.n, problem.k),
                A=operands.a, B=operands.b, C=operands.d, D=operands.d,  # beta = 0: C unread
                output_op=operation.epilogue_type(1.0, 0.0),
                gemm_mode=GemmUniversalMode.Batched if batched else GemmUniversalMode.Gemm,
                stream=stream, **extra)
        except Exception as exc:
            operands.free()
            raise LaunchError(f"CUTLASS argument setup failed: {exc}") from exc
        return PreparedCutlassGemm(operation, arguments, operands, problem, dspec)


_SWIZZLE_ATTR = {
    "Identity1": "IdentitySwizzle1", "Identity2": "IdentitySwizzle2",
    "Identity4": "IdentitySwizzle4", "Identity8": "IdentitySwizzle8",
    "Horizontal": "HorizontalSwizzle", "StreamK": "ThreadblockSwizzleStreamK",
}


class PreparedCutlassGemm:
    """A compiled CUTLASS kernel bound to operands; ``launch`` enqueues it on cupy's stream."""

    def __init__(self, operation: Any, arguments: Any, operands: Operands,
                 problem: GemmProblem, dspec: DtypeSpec) -> None:
        self._operation = operation
        self._arguments = arguments
        self._operands: Operands | None = operands
        self.problem = problem
        self.dspec = dspec
        self.kernel_name = operation.procedural_name()

    @property
    def launch_config(self) -> dict[str, Any]:
        """Grid, block and dynamic shared memory of the bound launch (the compiled truth)."""
        lc = self._arguments.launch_config
        return {"grid": tuple(lc.grid), "block": tuple(lc.block),
                "smem_bytes": int(lc.shared_memory_capacity)}

    def launch(self) -> None:
        if self._operands is None:
            raise LaunchError("launch after release()")
        try:
            self._operation.run(self._arguments)
        except RuntimeError as exc:
            raise LaunchError(f"{self.kernel_name}: {exc}") from exc

    def verify(self) -> Verification:
        """Launch once on a NaN-filled D and compare sampled rows with an f32 cupy.matmul of
        the same operands."""
        if self._operands is None:
            raise LaunchError("verify after release()")
        self._operands.poison()
        self.launch()
        return verify_output(self._operands, self.problem, self.dspec)

    def release(self) -> None:
        if self._operands is not None:
            self._arguments.free()  # the workspace, if the kernel asked for one
            self._operands.free()
            self._operands = None


def _query_device() -> DeviceInfo:
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailableError(
            "the cutlass backend needs cupy to find the GPU: pip install 'gemmperf[gpu]' "
            "(or pass device=DeviceInfo(...) to enumerate configs offline)") from exc
    try:
        dev = cupy.cuda.Device()
        cc = dev.compute_capability  # "89"
        name = cupy.cuda.runtime.getDeviceProperties(dev.id)["name"]
    except Exception as exc:
        raise BackendUnavailableError(f"no usable CUDA device: {exc}") from exc
    name = name.decode() if isinstance(name, bytes) else str(name)
    return DeviceInfo(name=name, compute_capability=(int(cc[:-1]), int(cc[-1])), index=dev.id)
