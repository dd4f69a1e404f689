"""CUTLASS tile descriptions as gemmperf kernel configurations, and their validity rules.

Pure Python: nothing here imports CUTLASS. :func:`tile_spec` reads any object shaped like
``cutlass_cppgen.backend.library.TileDescription`` (``threadblock_shape``, ``warp_count``,
``stages``, ``cluster_shape``, ``kernel_schedule``, ``epilogue_schedule``, ``tile_scheduler``,
``math_instruction`` with ``instruction_shape``, ``element_a``, ``opcode_class``,
``math_operation``), so the mapping is tested on plain stand-ins without the library.

Conventions:

* ``GemmProblem.layout`` is the BLAS pair in column-major terms: ``n`` = column-major operand,
  ``t`` = row-major. C/D are column-major (as cuBLAS and the CUTLASS profiler write them).
* ``tile_m/n/k`` is the tile one CTA computes. CUTLASS 3.x (sm_90) tile descriptions from the
  generator already hold the CTA tile (``sm90_utils.generate_tile_descriptions_sm90``), but the
  4.2 Python interface divides ``threadblock_shape`` by the cluster shape before emitting
  (``to_blackwell_threadblock_shape``); the backend passes ``tile * cluster`` so the compiled
  kernel has the generator's (and the profiler's) CTA tile.
* ``stages`` is None for 3.x kernels whose stage count the collective builder picks
  (``StageCountAutoCarveout``: as many as fit in shared memory after the epilogue).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gemmperf.errors import UnknownGpuError
from gemmperf.problem import GemmProblem, KernelConfig

FAMILY = "cutlass"

#: 2.x threadblock rasterisations (``cutlass/gemm/threadblock/threadblock_swizzle.h``): IdentityN
#: walks N-wide column strips of CTAs for L2 reuse. ``Horizontal`` and ``StreamK`` may be added.
DEFAULT_SWIZZLES = ("Identity1", "Identity2", "Identity4", "Identity8")
SWIZZLES = (*DEFAULT_SWIZZLES, "Horizontal", "StreamK")

#: Bits per element of the CUTLASS DataType names used here (cutlass_library.DataTypeSize).
ELEMENT_BITS = {"f32": 32, "tf32": 32, "f16": 16, "bf16": 16, "e4m3": 8, "e5m2": 8}

#: Bytes per stage beyond the A and B tiles in CUTLASS's estimate (pipeline barriers);
#: ``cutlass_cppgen/utils/check.py: calculate_smem_usage_per_stage``.
STAGE_BARRIER_BYTES = 32

#: Threads per CTA of the sm_90 warp-specialised kernels, by kernel schedule: one producer
#: (load) warp group of 128 threads plus one or two consumer (MMA) warp groups. Sources:
#: ``MaxThreadsPerBlock`` in cutlass/gemm/kernel/sm90_gemm_tma_warpspecialized{,_pingpong,
#: _cooperative}.hpp and sm90_gemm_warpspecialized{,_pingpong,_cooperative}.hpp (CUTLASS 4.2).
SM90_THREADS = {"Pingpong": 384, "Cooperative": 384, "WarpSpecialized": 256}

#: TMA needs 16-byte aligned rows (``detail::tma_alignment_bytes``, sm90_gmma_builder.inl).
TMA_ALIGNMENT_BYTES = 16


@dataclass(frozen=True)
class DtypeSpec:
    """How a gemmperf dtype maps onto CUTLASS element types, op class and math operation."""

    element_a: str
    element_b: str
    accumulator: str
    output: str
    op_class: str              # "Simt" (CUDA cores) or "TensorOp"
    math_element: str          # element of the math instruction (tf32 for f32-on-tensor-cores)


_OPERANDS = {  # gemmperf dtype -> (operand element, op class, math instruction element)
    "f32": ("f32", "Simt", "f32"),
    "tf32": ("f32", "TensorOp", "tf32"),
    "f16": ("f16", "TensorOp", "f16"),
    "bf16": ("bf16", "TensorOp", "bf16"),
    "fp8": ("e4m3", "TensorOp", "e4m3"),
}
_DEFAULT_OUTPUT = {"f32": "f32", "tf32": "f32", "f16": "f16", "bf16": "bf16", "fp8": "bf16"}
_OUTPUTS = ("f32", "f16", "bf16")
SUPPORTED_DTYPES = tuple(_OPERANDS)


def dtype_spec(problem: GemmProblem) -> tuple[DtypeSpec | None, str | None]:
    """(spec, None) for a dtype the backend runs, else (None, reason)."""
    if problem.dtype not in _OPERANDS:
        return None, (f"the cutlass backend runs {', '.join(SUPPORTED_DTYPES)}, not "
                      f"{problem.dtype}")
    element, op_class, math_element = _OPERANDS[problem.dtype]
    output = problem.out_dtype or _DEFAULT_OUTPUT[problem.dtype]
    if output == "tf32":
        output = "f32"
    if output not in _OUTPUTS:
        return None, f"output dtype {output} is not supported (use one of {', '.join(_OUTPUTS)})"
    acc = problem.acc_dtype or "f32"
    if acc == "tf32":
        acc = "f32"
    if acc not in ("f32", "f16") or (acc == "f16" and problem.dtype != "f16"):
        return None, f"accumulation in {acc} is not available for {problem.dtype} inputs"
    return DtypeSpec(element, element, acc, output, op_class, math_element), None


def operand_layouts(problem: GemmProblem) -> tuple[str, str, str]:
    """CUTLASS LayoutType names of A, B and C for ``problem.layout`` (C is column-major)."""
    names = {"n": "ColumnMajor", "t": "RowMajor"}
    return names[problem.layout[0]], names[problem.layout[1]], "ColumnMajor"


def leading_dims(problem: GemmProblem) -> tuple[int, int, int]:
    """Leading dimensions (elements) of packed A (m x k), B (k x n) and column-major C (m x n)."""
    lda = problem.m if problem.layout[0] == "n" else problem.k
    ldb = problem.k if problem.layout[1] == "n" else problem.n
    return lda, ldb, problem.m


def _name(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "name", value))


def _triple(values: Sequence[int] | None) -> tuple[int, int, int] | None:
    return None if values is None else (int(values[0]), int(values[1]), int(values[2]))


@dataclass(frozen=True)
class TileSpec:
    """The tunables of one CUTLASS tile description, library-free."""

    kernel_cc: int
    api: str                               # "2x" (CUTLASS 2.x kernels) or "3x" (sm_90+ CuTe)
    tile: tuple[int, int, int]             # per-CTA tile (M, N, K)
    warps: tuple[int, int, int] | None     # 2.x warp arrangement; None for 3.x
    stages: int | None                     # None: chosen by the 3.x collective builder
    cluster: tuple[int, int, int]
    instruction: tuple[int, int, int] | None   # None: the 3.x builder picks the wgmma shape
    op_class: str
    math_op: str
    math_element: str
    kernel_schedule: str | None = None
    epilogue_schedule: str | None = None
    tile_scheduler: str | None = None


def api_version(kernel_cc: int, op_class: str) -> str:
    """3.x for tensor-core kernels on sm_90/sm_100 (as ``cutlass_cppgen.backend.library``)."""
    return "3x" if kernel_cc in (90, 100, 101, 103) and op_class == "TensorOp" else "2x"


def tile_spec(td: Any, kernel_cc: int) -> TileSpec:
    """Read a TileDescription-like object (see the module docstring)."""
    mi = td.math_instruction
    op_class = _name(mi.opcode_class) or "?"
    api = api_version(kernel_cc, op_class)
    cluster = _triple(td.cluster_shape) or (1, 1, 1)
    tile = _triple(td.threadblock_shape)
    instruction = _triple(mi.instruction_shape)
    stages = int(td.stages) if td.stages else None
    schedules: dict[str, str | None] = {}
    if api == "3x":
        schedules = {
            "kernel_schedule": _name(td.kernel_schedule),
            "epilogue_schedule": _name(td.epilogue_schedule),
            "tile_scheduler": _name(td.tile_scheduler),
        }
    return TileSpec(
        kernel_cc=kernel_cc, api=api, tile=tile, cluster=cluster, stages=stages,
        warps=_triple(td.warp_count) if api == "2x" else None,
        instruction=None if instruction is None or instruction == (0, 0, 0) else instruction,
        op_class=op_class, math_op=_name(mi.math_operation) or "?",
        math_element=_name(mi.element_a) or "?", **schedules,
    )


def select_ab_alignment(keys: Iterable[str], lda: int, ldb: int) -> tuple[int, int] | None:
    """The widest generated (A, B) alignment that divides both leading dimensions.

    ``keys`` are the interface's ``"alignA alignB alignC"`` strings
    (``KernelsForDataType.kernels_by_alignment``). Returns None when no kernel fits.
    """
    pairs = {tuple(int(x) for x in key.split()[:2]) for key in keys}
    fitting = [(a, b) for a, b in pairs if lda % a == 0 and ldb % b == 0]
    return max(fitting, key=lambda ab: (min(ab), ab)) if fitting else None


def c_alignment(ldc: int, output: str) -> int:
    """Widest power-of-two C/D alignment <= 128 bits that divides ``ldc`` (vector stores)."""
    alignment = 128 // ELEMENT_BITS[output]
    while alignment > 1 and ldc % alignment:
        alignment //= 2
    return alignment


def threads_per_block(spec: TileSpec, alignment_bytes: int) -> int | None:
    """Threads per CTA: warps x 32 for 2.x; by kernel schedule for sm_90 (see SM90_THREADS)."""
    if spec.api == "2x":
        return None if spec.warps is None else math.prod(spec.warps) * 32
    if spec.kernel_cc != 90:
        return None
    schedule = spec.kernel_schedule or "ScheduleAuto"
    if schedule == "ScheduleAuto":
        # sm90_gmma_builder.inl: TMA-aligned operands get Pingpong (CTA M == 64) or Cooperative,
        # both 384 threads; otherwise the non-persistent CpAsyncWarpSpecialized (256).
        return 384 if alignment_bytes >= TMA_ALIGNMENT_BYTES else 256
    for key, threads in SM90_THREADS.items():
        if key in schedule:
            return threads
    return None


def smem_bytes(spec: TileSpec) -> int | None:
    """CUTLASS's mainloop shared-memory estimate: stages x (A tile + B tile + barrier) bytes.

    None when the stage count is automatic (the kernel then fills the SM's shared memory).
    """
    if spec.stages is None:
        return None
    m, n, k = spec.tile
    bits = ELEMENT_BITS.get(spec.math_element, 32)
    per_stage = bits * m * k // 8 + bits * k * n // 8 + STAGE_BARRIER_BYTES
    return per_stage * spec.stages


def make_config(spec: TileSpec, swizzle: str | None, alignments: tuple[int, int, int],
                element_bits: int) -> KernelConfig:
    """The KernelConfig for one tile spec, swizzle and (A, B, C) alignment."""
    values: dict[str, Any] = {
        "tile_m": spec.tile[0], "tile_n": spec.tile[1], "tile_k": spec.tile[2],
        "stages": spec.stages, "split_k": 1,
        "threads_per_block": threads_per_block(
            spec, min(alignments[:2]) * element_bits // 8),
        "smem_bytes_per_block": smem_bytes(spec),
        "op_class": spec.op_class, "math_op": spec.math_op,
        "math_inst": "x".join(map(str, spec.instruction)) if spec.instruction else "auto",
        "cluster_m": spec.cluster[0], "cluster_n": spec.cluster[1],
        "kernel_cc": spec.kernel_cc, "api": spec.api,
        "alignment_a": alignments[0], "alignment_b": alignments[1], "alignment_c": alignments[2],
    }
    if spec.warps is not None:
        values.update(warp_m=spec.warps[0], warp_n=spec.warps[1], warp_k=spec.warps[2])
    if swizzle is not None:
        values["swizzle"] = swizzle
    for name in ("kernel_schedule", "epilogue_schedule", "tile_scheduler"):
        if getattr(spec, name) is not None:
            values[name] = getattr(spec, name)
    return KernelConfig.make(FAMILY, **values)


def configs_for_tiles(
    specs: Iterable[TileSpec], dspec: DtypeSpec, alignments: tuple[int, int, int],
    swizzles: Sequence[str] = DEFAULT_SWIZZLES,
) -> list[tuple[KernelConfig, TileSpec]]:
    """Deduplicated (config, spec) pairs: tiles of the wanted math x swizzles (2.x only)."""
    out: dict[KernelConfig, TileSpec] = {}
    bits = ELEMENT_BITS[dspec.element_a]
    for spec in specs:
        if spec.op_class != dspec.op_class or spec.math_element != dspec.math_element:
            continue  # e.g. the 3xTF32 "multiply_add_fast_f32" tiles listed under f32
        if spec.math_op not in ("multiply_add", "multiply_add_saturate"):
            continue
        for swizzle in (swizzles if spec.api == "2x" else (None,)):
            if swizzle == "StreamK" and spec.op_class != "TensorOp":
                continue  # CUTLASS: stream-K only with TensorOp 2.x kernels
            out.setdefault(make_config(spec, swizzle, alignments, bits), spec)
    return list(out.items())


def config_invalid_reason(problem: GemmProblem, config: KernelConfig,
                          cc: tuple[int, int]) -> str | None:
    """Why ``config`` cannot run ``problem`` on a device of compute capability ``cc``, or None."""
    if config.family != FAMILY:
        return f"config of family {config.family!r} given to the cutlass backend"
    _, reason = dtype_spec(problem)
    if reason:
        return reason
    arch = cc[0] * 10 + cc[1]
    kernel_cc = int(config.get("kernel_cc", 0))
    api = config.get("api", "2x")
    if kernel_cc > arch:
        return f"kernel built for sm_{kernel_cc} cannot run on sm_{arch}"
    if api == "3x" and kernel_cc == 90 and arch != 90:
        return "sm_90a kernels (wgmma, TMA) run only on compute capability 9.0"
    if api == "3x" and kernel_cc == 100 and arch not in (100, 101, 103):
        return "sm_100a kernels (tcgen05) run only on compute capability 10.x"
    if problem.dtype == "fp8" and arch < 89:
        return f"fp8 tensor cores need sm_89 or newer, the device is sm_{arch}"
    if max(config.get("cluster_m", 1), config.get("cluster_n", 1)) > 1 and arch < 90:
        return f"thread-block clusters need sm_90 or newer, the device is sm_{arch}"
    schedule = config.get("kernel_schedule") or ""
    if "Cooperative" in schedule and (config.tile_m or 0) < 128:
        return (f"the cooperative schedule needs a CTA tile M >= 128, got {config.tile_m} "
                "(sm90_gemm_tma_warpspecialized_cooperative.hpp)")
    swizzle = config.get("swizzle")
    if swizzle is not None and swizzle not in SWIZZLES:
        return f"unknown swizzle {swizzle!r}; use one of {', '.join(SWIZZLES)}"
    if swizzle == "StreamK" and problem.batch > 1:
        # GemmArguments2xStreamK.initialize passes its workspace only in Gemm mode, so a
        # batched stream-K kernel would run without one (nvidia-cutlass 4.2).
        return ("stream-K runs unbatched problems only here (CUTLASS gives batched mode no "
                "workspace)")
    for name, ld, align in zip(("A", "B", "C"), leading_dims(problem),
                               (config.get(f"alignment_{x}", 1) for x in "abc"), strict=True):
        if ld % int(align):
            return (f"{name}'s leading dimension {ld} is not a multiple of the kernel's "
                    f"{align}-element alignment: pad it or pick a lower-alignment config")
    return _limit_reason(config, cc)


def _limit_reason(config: KernelConfig, cc: tuple[int, int]) -> str | None:
    from gemmperf.collect.space import limit_reason
    from gemmperf.hardware.occupancy import cc_limits

    try:
        limits = cc_limits(cc)
    except UnknownGpuError:
        return None
    return limit_reason(config, limits)
