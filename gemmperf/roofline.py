"""Roofline model of GEMM, vectorised over many (problem, kernel config) rows.

Pure numpy math on shapes and a :class:`~gemmperf.hardware.specs.GpuSpec`; no Python loop per row.
For C[b] = A[b] @ B[b] with A m x k and B k x n (element sizes ``a_bytes`` for A and B, ``c_bytes``
for C), on a GPU with ``P`` FLOP/s for the math key, ``BW`` bytes/s of DRAM bandwidth and ``S`` SMs:

Strict lower bound (Williams, Waterman, Patterson, "Roofline", CACM 2009)::

    flops            = 2 b m n k                                  (one multiply-add = 2 FLOPs)
    compulsory_bytes = b (m k + k n) a_bytes + b m n c_bytes      (A, B read once, C written once)
    lower_bound_s    = max(flops / P, compulsory_bytes / BW)

No kernel can beat it with a cold L2 at the rated peak: every FLOP must run and every input and
output byte must cross the DRAM interface at least once (C is written, not read: beta = 0). Two
caveats: a benchmark that re-runs a GEMM whose operands stay in L2 can move fewer DRAM bytes, and
vendors quote peaks at a rated clock that boost can exceed (H100 SXM's 989.4 TFLOP/s is
132 SMs x 4096 FLOP/clk at 1830 MHz; its maximum boost is 1980 MHz).

Tile-aware estimate (the wave model of NeuSight, ASPLOS 2025, and of CUTLASS tile quantisation)::

    tiles   = b ceil(m / tile_m) ceil(n / tile_n) split_k
    slots   = S x resident blocks per SM                   (tiles one wave runs concurrently)
    waves   = tiles / slots;  tail_efficiency = tiles / (ceil(waves) slots)
    tile_compute_s = ceil(waves) slots (2 tile_m tile_n ceil(k / split_k)) / P
    estimate_s     = max(tile_compute_s, tile_bytes / BW)

Each resident tile gets 1/B of its SM's throughput, so a partial last wave costs a full wave and
edge tiles cost full tiles (tensor cores compute the padding).

DRAM traffic of the tile model (``tile_bytes``). Without caches, output tile (i, j) reads a
tile_m x k slab of A and a k x tile_n slab of B, so A is read ceil(n / tile_n) times and B
ceil(m / tile_m) times. Two L2 effects cut that, per batch instance:

1. *Wave sharing.* Tiles of one wave run concurrently and walk K roughly in lockstep, so a slab used
   by several tiles of the wave is fetched from DRAM once and served to the rest from L2 (this needs
   only the wave's current K slices in L2, a few MB at most). Tiles are assumed launched in grouped
   order, ``RASTER_GROUP_M`` tile rows at a time, column by column within a group (Triton's matmul
   tutorial ordering; cuBLAS and CUTLASS swizzle likewise for L2 reuse). A wave then covers
   ``w_m = min(grid_m, G, slots)`` rows and ``w_n = min(grid_n, ceil(slots / w_m))`` columns, or,
   when it spans whole groups (``slots >= G grid_n``), all ``grid_n`` columns of
   ``min(grid_m, ceil(slots / grid_n))`` rows. A is streamed ``ceil(grid_n / w_n)`` times and B
   ``ceil(grid_m / w_m)`` times.
2. *Residency.* An operand that stays in L2 between waves is read from DRAM once. If A and B
   together fit in ``L2_RESIDENT_FRACTION`` of the L2 both are read once; otherwise the smaller
   one is, if it fits alone; the other keeps its wave re-reads.

So ``tile_bytes = A_bytes x passes_A + B_bytes x passes_B + C_bytes >= compulsory_bytes``. C
read-back (beta != 0), epilogue fusion and fixed launch latency are not modelled.

Split-K ``s`` multiplies the tiles by ``s``, each walking ``ceil(k / s)`` of K, and adds an fp32
partial-sum workspace (``s b m n x 4`` bytes, written and read back) to the DRAM traffic unless it
fits in the resident share of L2.

Whatever the caller leaves out (tile, resident blocks per SM, split-K) takes the library-like
defaults of :mod:`gemmperf.roofline_defaults`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from gemmperf.errors import InvalidProblemError
from gemmperf.hardware.specs import GpuSpec, get_gpu
from gemmperf.problem import GemmProblem, KernelConfig
from gemmperf.roofline_defaults import (
    check_positive,
    default_blocks_per_sm,
    default_tile,
    footprint_blocks_per_sm,
    missing,
    resolve_blocks,
    resolve_split_k,
    resolve_tile,
)

__all__ = [
    "FLOPS_PER_FMA", "L2_RESIDENT_FRACTION", "RooflineEstimate", "default_blocks_per_sm",
    "default_tile", "footprint_blocks_per_sm", "resolve_split_k", "resolve_tile", "roofline",
    "roofline_arrays",
]

FLOPS_PER_FMA = 2
#: Share of the L2 an operand may occupy and still count as resident between waves. A100/H100
#: split the L2 into two partitions whose lines can be duplicated, and the other operand and C
#: stream through the same cache, so only part of the nominal capacity holds a reused operand.
L2_RESIDENT_FRACTION = 0.5
ACC_BYTES = 4                       # fp32 partial sums in the split-K workspace
RASTER_GROUP_M = 8                  # tile rows per launch group (Triton GROUP_SIZE_M default)


@dataclass(frozen=True)
class RooflineEstimate:
    """Roofline quantities for one or many GEMM rows (numpy arrays, SI units).

    Every stored field is additive, so ``a + b`` (and ``sum([...])``) gives the estimate of running
    the kernels one after another, like jax's ``RooflineResult``; the ratios (intensity, tail
    efficiency, bound, attainable FLOP/s) are derived properties and stay consistent under ``+``.
    """

    flops: np.ndarray
    compulsory_bytes: np.ndarray       # A + B read once, C written once
    tile_bytes: np.ndarray             # DRAM traffic of the tile model with L2 reuse
    compute_time_s: np.ndarray         # flops / peak
    memory_time_s: np.ndarray          # compulsory_bytes / bandwidth
    lower_bound_s: np.ndarray          # max(compute_time_s, memory_time_s): strict
    tile_compute_time_s: np.ndarray    # wave-quantised compute time
    tile_memory_time_s: np.ndarray     # tile_bytes / bandwidth
    estimate_s: np.ndarray             # max(tile_compute_time_s, tile_memory_time_s)
    tiles: np.ndarray                  # output tiles (thread blocks)
    waves: np.ndarray                  # tiles / (SMs x resident blocks per SM)
    tile_slots: np.ndarray             # ceil(waves) x SMs x resident blocks per SM

    def __add__(self, other: RooflineEstimate) -> RooflineEstimate:
        if not isinstance(other, RooflineEstimate):
            return NotImplemented
        return RooflineEstimate(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def __radd__(self, other: Any) -> RooflineEstimate:
        if isinstance(other, (int, float)) and other == 0:  # sum() starts from 0
            return self
        return NotImplemented

    def total(self) -> RooflineEstimate:
        """All rows summed into one estimate (0-d arrays): kernels run back to back."""
        return RooflineEstimate(**{f.name: np.sum(getattr(self, f.name)) for f in fields(self)})

    def __len__(self) -> int:
        return int(np.size(self.flops))

    @property
    def arithmetic_intensity(self) -> np.ndarray:
        """FLOPs per compulsory DRAM byte."""
        return self.flops / self.compulsory_bytes

    @property
    def tile_intensity(self) -> np.ndarray:
        """FLOPs per DRAM byte of the tile model."""
        return self.flops / self.tile_bytes

    @property
    def tail_efficiency(self) -> np.ndarray:
        """Fraction of the launched wave slots doing work, in (0, 1]."""
        return self.tiles / self.tile_slots

    @property
    def compute_bound(self) -> np.ndarray:
        """True where the compute time at peak is at least the compulsory memory time."""
        return self.compute_time_s >= self.memory_time_s

    @property
    def bound(self) -> np.ndarray:
        """``"compute"`` or ``"memory"`` per row (the classical roofline verdict)."""
        return np.where(self.compute_bound, "compute", "memory")

    @property
    def attainable_flops_s(self) -> np.ndarray:
        """Roofline attainable FLOP/s: min(peak, intensity x bandwidth) = flops / lower bound."""
        return self.flops / self.lower_bound_s

    @property
    def estimated_flops_s(self) -> np.ndarray:
        """Throughput the tile-aware estimate implies."""
        return self.flops / self.estimate_s

    def as_dict(self) -> dict[str, Any]:
        """Stored fields and derived properties; Python scalars for a single row."""
        names = [f.name for f in fields(self)] + [
            "arithmetic_intensity", "tile_intensity", "tail_efficiency", "bound",
            "attainable_flops_s", "estimated_flops_s",
        ]
        out: dict[str, Any] = {}
        for name in names:
            value = np.asarray(getattr(self, name))
            out[name] = value.item() if value.size == 1 else value
        return out


def roofline_arrays(
    m: Any, n: Any, k: Any, batch: Any = 1, *, a_bytes: Any, c_bytes: Any, gpu: GpuSpec,
    math_key: str, tile_m: Any = None, tile_n: Any = None, tile_k: Any = None,
    blocks_per_sm: Any = None, split_k: Any = None,
) -> RooflineEstimate:
    """Roofline estimate for arrays of GEMMs on one GPU and math path (see module doc).

    Array arguments broadcast together. Tile sizes, ``blocks_per_sm`` and ``split_k`` may be None
    or hold NaN for "use the default" (split-K defaults to the heuristic of
    :func:`resolve_split_k` where the tile is defaulted too, else 1). ``blocks_per_sm`` 0 means the
    config cannot launch: its estimate is inf.
    """
    try:
        peak = float(gpu.peak(math_key))
    except KeyError as exc:
        raise InvalidProblemError(str(exc.args[0]) if exc.args else str(exc)) from None
    bandwidth = float(gpu.mem_bandwidth_bytes_s)
    m = check_positive("m", m, InvalidProblemError)
    n = check_positive("n", n, InvalidProblemError)
    k = check_positive("k", k, InvalidProblemError)
    b = check_positive("batch", batch, InvalidProblemError)
    a_bytes = check_positive("a_bytes", a_bytes, InvalidProblemError)
    c_bytes = check_positive("c_bytes", c_bytes, InvalidProblemError)
    auto = missing(tile_m) & missing(tile_n)
    tm, tn, tk = resolve_tile(math_key, m, n, tile_m, tile_n, tile_k)
    blocks = resolve_blocks(gpu, math_key, tm, tn, tk, a_bytes, blocks_per_sm)
    split = resolve_split_k(gpu, m, n, k, b, tm, tn, blocks, split_k, auto)
    m, n, k, b, a_bytes, c_bytes, tm, tn, tk, blocks, split = np.broadcast_arrays(
        m, n, k, b, a_bytes, c_bytes, tm, tn, tk, blocks, split
    )

    # Strict roofline.
    flops = FLOPS_PER_FMA * b * m * n * k
    a_one, b_one = m * k * a_bytes, k * n * a_bytes          # one batch instance
    c_total = b * m * n * c_bytes
    compulsory = b * (a_one + b_one) + c_total
    compute_time = flops / peak
    memory_time = compulsory / bandwidth

    # Tiles and waves (split-K multiplies the tiles, each walking ceil(k / split) of K).
    grid_m, grid_n = np.ceil(m / tm), np.ceil(n / tn)
    tiles = b * grid_m * grid_n * split
    slots = gpu.sm_count * blocks
    with np.errstate(divide="ignore", invalid="ignore"):
        waves = tiles / slots                                 # inf where nothing can launch
        tile_slots = np.where(slots > 0, np.ceil(waves) * slots, np.inf)

    # Tile-model DRAM traffic: wave sharing, then L2 residency (module doc).
    wave = np.maximum(slots, 1)
    whole_groups = wave >= RASTER_GROUP_M * grid_n
    wave_m = np.where(whole_groups, np.minimum(grid_m, np.ceil(wave / grid_n)),
                      np.minimum(np.minimum(grid_m, RASTER_GROUP_M), wave))
    wave_n = np.where(whole_groups, grid_n, np.minimum(grid_n, np.ceil(wave / wave_m)))
    passes_a = np.ceil(grid_n / wave_n)
    passes_b = np.ceil(grid_m / wave_m)
    resident = L2_RESIDENT_FRACTION * gpu.l2_bytes
    both_fit = a_one + b_one <= resident
    a_fits = both_fit | ((a_one <= b_one) & (a_one <= resident))
    b_fits = both_fit | ((b_one < a_one) & (b_one <= resident))
    # Split-K partial sums: an fp32 workspace written and read back, from DRAM only if it
    # does not stay in L2.
    workspace = np.where(split > 1, split * b * m * n * ACC_BYTES, 0.0)
    tile_bytes = (b * a_one * np.where(a_fits, 1.0, passes_a)
                  + b * b_one * np.where(b_fits, 1.0, passes_b) + c_total
                  + np.where(workspace > resident, 2 * workspace, 0.0))

    tile_compute = tile_slots * (FLOPS_PER_FMA * tm * tn * np.ceil(k / split)) / peak
    tile_memory = tile_bytes / bandwidth
    return RooflineEstimate(
        flops=flops,
        compulsory_bytes=compulsory,
        tile_bytes=tile_bytes,
        compute_time_s=compute_time,
        memory_time_s=memory_time,
        lower_bound_s=np.maximum(compute_time, memory_time),
        tile_compute_time_s=tile_compute,
        tile_memory_time_s=tile_memory,
        estimate_s=np.maximum(tile_compute, tile_memory),
        tiles=tiles,
        waves=waves,
        tile_slots=tile_slots,
    )


def roofline(problem: GemmProblem, gpu: GpuSpec | str, config: KernelConfig | None = None
             ) -> RooflineEstimate:
    """Roofline estimate of one GEMM (fields are 0-d arrays; ``float(est.estimate_s)`` works).

    The config's tile sizes and split-K replace the defaults; its launch footprint (threads,
    registers, shared memory, stages), where any is given, sets the resident blocks per SM through
    the occupancy calculator, else the default footprint does (module doc).
    """
    if not isinstance(gpu, GpuSpec):
        gpu = get_gpu(gpu)   # a key, alias or device name
    math_key = problem.peak_key
    names = ("tile_m", "tile_n", "tile_k")
    given = [None if config is None else getattr(config, name) for name in names]
    defaults = default_tile(math_key, problem.m, problem.n)
    tile = [int(d if g is None else g) for g, d in zip(given, defaults, strict=True)]
    blocks = None
    footprint = ("threads_per_block", "regs_per_thread", "smem_bytes_per_block")
    if config is not None and any(getattr(config, name) is not None for name in footprint):
        blocks = footprint_blocks_per_sm(
            gpu, math_key, *tile, problem.element_bytes,
            *(getattr(config, name) for name in (*footprint, "stages")),
        )
    return roofline_arrays(
        problem.m, problem.n, problem.k, problem.batch,
        a_bytes=problem.element_bytes, c_bytes=problem.output_bytes_per_element, gpu=gpu,
        math_key=math_key, tile_m=given[0], tile_n=given[1], tile_k=given[2], blocks_per_sm=blocks,
        split_k=None if config is None else config.split_k,
    )

