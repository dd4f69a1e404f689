"""Parameter spaces of the hand-written kernels (``kernels/tiled.cu``, ``kernels/blocked.cu``).

For each family: the configurations that exist, why a configuration is invalid (one actionable
line), the template instantiation that implements it (the cupy name expression and the nvcc
explicit instantiation use the same text), its static shared memory, and its launch geometry.
Everything here is pure Python on shapes; nothing touches a GPU.

Configurations::

    KernelConfig.make("tiled", tile_m=T, tile_n=T, tile_k=T, threads_per_block=T * T)
    KernelConfig.make("blocked", tile_m=BM, tile_n=BN, tile_k=BK, threads_per_block=threads,
                      stages=S, thread_m=TM, thread_n=TN)

Device-dependent limits (shared memory per block, registers) are checked by the backends with
``gemmperf.hardware.occupancy`` and the ptxas table (``gemmperf.collect.kernel_resources``).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

from gemmperf._paths import kernels_dir
from gemmperf.errors import InvalidConfigError
from gemmperf.problem import GemmProblem, KernelConfig

FAMILIES = ("tiled", "blocked")

#: tiled: TILE x TILE threads, one output per thread (GPPerf's naive kernel used {1,4,8,16,32}).
TILED_TILES = (1, 2, 4, 8, 16, 32)

#: blocked: block tile BM x BN x BK, thread tile TM x TN, 1 or 2 shared-memory buffers.
BLOCKED_BLOCK_TILES = (32, 64, 128)
BLOCKED_K_TILES = (8, 16, 32)
BLOCKED_THREAD_TILES = (4, 8)
BLOCKED_STAGES = (1, 2)
#: Threads per block the blocked space admits: at least one warp; at most the per-block limit of
#: every CUDA GPU (the device check repeats it against the device's own limit).
BLOCKED_MIN_THREADS = 32
BLOCKED_MAX_THREADS = 1024

#: Grid size limits, the same for every compute capability since 3.0 (CUDA C++ Programming
#: Guide, "Technical Specifications per Compute Capability": maximum x-dimension of a grid
#: 2^31 - 1, maximum y- or z-dimension 65535).
MAX_GRID_X = 2**31 - 1
MAX_GRID_YZ = 65535
#: The kernels take M, N, K as 32-bit ints (offsets are 64-bit).
MAX_DIM = 2**31 - 1

FLOAT_BYTES = 4
FLOAT4_FLOATS = 4
KERNEL_ARGS = "const float*, const float*, float*, int, int, int, float, float"


@dataclass(frozen=True)
class TiledParams:
    """``tiled_sgemm<TILE>``."""

    tile: int

    family = "tiled"

    @property
    def threads(self) -> int:
        return self.tile * self.tile

    @property
    def smem_bytes(self) -> int:
        """Static shared memory: one TILE x TILE tile of A and one of B."""
        return 2 * self.tile * self.tile * FLOAT_BYTES

    @property
    def template_args(self) -> tuple[int, ...]:
        return (self.tile,)

    @property
    def block_tile(self) -> tuple[int, int]:
        return (self.tile, self.tile)

    def config(self) -> KernelConfig:
        t = self.tile
        return KernelConfig.make("tiled", tile_m=t, tile_n=t, tile_k=t, threads_per_block=t * t)


@dataclass(frozen=True)
class BlockedParams:
    """``blocked_sgemm<BM, BN, BK, TM, TN, STAGES>``."""

    bm: int
    bn: int
    bk: int
    tm: int
    tn: int
    stages: int

    family = "blocked"

    @property
    def threads(self) -> int:
        return (self.bm // self.tm) * (self.bn // self.tn)

    @property
    def smem_bytes(self) -> int:
        """Static shared memory: STAGES buffers of the BK x BM (A^T) and BK x BN (B) tiles."""
        return self.stages * (self.bm + self.bn) * self.bk * FLOAT_BYTES

    @property
    def template_args(self) -> tuple[int, ...]:
        return (self.bm, self.bn, self.bk, self.tm, self.tn, self.stages)

    @property
    def block_tile(self) -> tuple[int, int]:
        return (self.bm, self.bn)

    def config(self) -> KernelConfig:
        return KernelConfig.make(
            "blocked", tile_m=self.bm, tile_n=self.bn, tile_k=self.bk,
            threads_per_block=self.threads, stages=self.stages,
            thread_m=self.tm, thread_n=self.tn,
        )

    def invalid_reason(self) -> str | None:
        """Why this parameter tuple cannot be instantiated (mirrors the kernel's static_asserts)."""
        name = kernel_name_of(self)
        if self.tm not in BLOCKED_THREAD_TILES or self.tn not in BLOCKED_THREAD_TILES:
            return (f"{name}: thread tile {self.tm}x{self.tn} is not in "
                    f"{BLOCKED_THREAD_TILES} x {BLOCKED_THREAD_TILES} (float4 groups): "
                    "use thread_m, thread_n of 4 or 8")
        if self.bm % self.tm or self.bn % self.tn:
            return (f"{name}: the {self.tm}x{self.tn} thread tile does not divide the "
                    f"{self.bm}x{self.bn} block tile: use tile sizes that are multiples of it")
        if self.bk % FLOAT4_FLOATS:
            return f"{name}: tile_k {self.bk} is not a multiple of 4 (float4 loads of A)"
        if self.stages not in BLOCKED_STAGES:
            return f"{name}: stages must be 1 or 2, got {self.stages}"
        threads = self.threads
        if threads < BLOCKED_MIN_THREADS:
            return (f"{name}: ({self.bm}/{self.tm})*({self.bn}/{self.tn}) = {threads} threads "
                    f"per block, fewer than one warp ({BLOCKED_MIN_THREADS}): use a smaller "
                    "thread tile or a larger block tile")
        if threads > BLOCKED_MAX_THREADS:
            return (f"{name}: ({self.bm}/{self.tm})*({self.bn}/{self.tn}) = {threads} threads "
                    f"per block, more than {BLOCKED_MAX_THREADS}: use a larger thread tile or a "
                    "smaller block tile")
        limit = static_smem_limit_bytes()
        if self.smem_bytes > limit:
            return (f"{name}: uses {self.smem_bytes // 1024} KiB static shared memory, the limit "
                    f"is {limit // 1024} KiB per block (static __shared__ cannot opt in to more): "
                    "use stages=1 or a smaller tile_k")
        for operand, vectors in (("A", self.bm * self.bk // 4), ("B", self.bk * self.bn // 4)):
            if vectors % threads:
                return (f"{name}: the {vectors} float4 loads of the {operand} tile do not divide "
                        f"among {threads} threads: raise tile_k or use a larger thread tile")
        return None


KernelParams = TiledParams | BlockedParams


@functools.lru_cache(maxsize=1)
def static_smem_limit_bytes() -> int:
    """The largest static ``__shared__`` footprint every compute capability accepts.

    Static shared memory cannot use the per-block opt-in, so its limit is the default per-block
    size (``smem_per_block_default_bytes`` in ``data/compute_capabilities.json``; 48 KiB on
    every architecture listed there). ptxas rejects a kernel above it.
    """
    from gemmperf.hardware.occupancy import compute_capabilities

    return min(c.smem_per_block_default_bytes for c in compute_capabilities())


def kernel_name_of(params: KernelParams) -> str:
    """The template instantiation, e.g. ``"blocked_sgemm<128, 128, 8, 8, 8, 2>"``.

    This exact text is the cupy ``name_expressions`` entry and the key of the ptxas table.
    """
    return f"{params.family}_sgemm<{', '.join(str(a) for a in params.template_args)}>"


def _int(config: KernelConfig, name: str) -> int:
    value = config.get(name)
    if value is None:
        raise InvalidConfigError(f"{config.family} config lacks {name}: {config.key()}")
    if isinstance(value, bool) or int(value) != value or int(value) <= 0:
        raise InvalidConfigError(f"{config.family} config: {name} must be a positive integer, "
                                 f"got {value!r}")
    return int(value)


def kernel_params(config: KernelConfig) -> KernelParams:
    """Parse a tiled/blocked config into its template parameters (InvalidConfigError if it can't).

    Consistency of the redundant fields (tile_k and threads_per_block of tiled, threads of
    blocked) is checked here; whether the tuple is in the space is :func:`invalid_reason`'s job.
    """
    if config.family == "tiled":
        tile = _int(config, "tile_m")
        for name, expected in (("tile_n", tile), ("tile_k", tile), ("threads_per_block",
                                                                     tile * tile)):
            value = config.get(name)
            if value is not None and value != expected:
                raise InvalidConfigError(
                    f"tiled config: {name} is {value} but TILE={tile} implies {expected} "
                    "(the tiled kernel is square: tile_m = tile_n = tile_k, TILE*TILE threads)")
        return TiledParams(tile)
    if config.family == "blocked":
        params = BlockedParams(
            bm=_int(config, "tile_m"), bn=_int(config, "tile_n"), bk=_int(config, "tile_k"),
            tm=_int(config, "thread_m"), tn=_int(config, "thread_n"),
            stages=int(config.get("stages", 1)),
        )
        given = config.get("threads_per_block")
        if given is not None and params.bm % params.tm == 0 and params.bn % params.tn == 0 \
                and given != params.threads:
            raise InvalidConfigError(
                f"blocked config: threads_per_block is {given} but (tile_m/thread_m)*"
                f"(tile_n/thread_n) = {params.threads}")
        return params
    raise InvalidConfigError(f"family {config.family!r} is not a hand-written kernel; "
                             f"known: {', '.join(FAMILIES)}")


def kernel_name(config: KernelConfig) -> str:
    """The template instantiation implementing ``config`` (see :func:`kernel_name_of`)."""
    return kernel_name_of(kernel_params(config))


def tiled_space() -> list[KernelConfig]:
    """Every tiled configuration (TILE in :data:`TILED_TILES`)."""
    return [TiledParams(t).config() for t in TILED_TILES]


def blocked_candidates() -> list[BlockedParams]:
    """The full blocked grid, valid or not (3 x 3 x 3 x 2 x 2 x 2 = 216 tuples)."""
    return [
        BlockedParams(bm, bn, bk, tm, tn, s)
        for bm, bn, bk, tm, tn, s in itertools.product(
            BLOCKED_BLOCK_TILES, BLOCKED_BLOCK_TILES, BLOCKED_K_TILES,
            BLOCKED_THREAD_TILES, BLOCKED_THREAD_TILES, BLOCKED_STAGES)
    ]


def blocked_space() -> list[KernelConfig]:
    """The blocked configurations that instantiate (device limits are checked separately)."""
    return [p.config() for p in blocked_candidates() if p.invalid_reason() is None]


def family_space(family: str) -> list[KernelConfig]:
    """:func:`tiled_space` or :func:`blocked_space`."""
    if family == "tiled":
        return tiled_space()
    if family == "blocked":
        return blocked_space()
    raise InvalidConfigError(f"family {family!r} is not a hand-written kernel; "
                             f"known: {', '.join(FAMILIES)}")


def family_params(family: str) -> list[KernelParams]:
    """Template parameters of every configuration in the family's space."""
    return [kernel_params(c) for c in family_space(family)]


def source_path(family: str):
    """Path of the family's CUDA source (``kernels/<family>.cu``)."""
    if family not in FAMILIES:
        raise InvalidConfigError(f"no CUDA source for family {family!r}")
    return kernels_dir() / f"{family}.cu"


def launch_geometry(
    params: KernelParams, problem: GemmProblem
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(grid, block) for the kernel on ``problem``: x walks N tiles, y walks M tiles, z batches."""
    tm, tn = params.block_tile
    grid = (-(-problem.n // tn), -(-problem.m // tm), problem.batch)
    if isinstance(params, TiledParams):
        return grid, (params.tile, params.tile, 1)
    return grid, (params.threads, 1, 1)


def invalid_reason(problem: GemmProblem, config: KernelConfig) -> str | None:
    """Device-independent reasons ``config`` cannot run ``problem``; None when it can."""
    try:
        params = kernel_params(config)
    except InvalidConfigError as exc:
        return str(exc)
    name = kernel_name_of(params)
    if isinstance(params, TiledParams):
        if params.tile not in TILED_TILES:
            return f"{name}: TILE must be one of {TILED_TILES}, got {params.tile}"
    else:
        reason = params.invalid_reason()
        if reason:
            return reason
    if problem.dtype != "f32":
        return (f"{name} is an SGEMM (f32 on CUDA cores); problem dtype is {problem.dtype}: "
                "use the cublas or cutlass backend")
    if problem.acc_dtype not in (None, "f32") or problem.out_dtype not in (None, "f32"):
        return (f"{name} accumulates and writes f32; the problem asks for accumulation in "
                f"{problem.acc_dtype or 'f32'} and output in {problem.out_dtype or 'f32'}: use "
                "the cutlass backend")
    if problem.layout != "nn":
        return (f"{name} reads row-major, untransposed A and B (layout nn); problem layout is "
                f"{problem.layout}: use the cublas or cutlass backend")
    if max(problem.m, problem.n, problem.k) > MAX_DIM:
        return f"{name} takes M, N, K as 32-bit ints; the problem has a dimension > {MAX_DIM}"
    (gx, gy, gz), _ = launch_geometry(params, problem)
    if gy > MAX_GRID_YZ:
        return (f"{name}: grid y = ceil(m / {params.block_tile[0]}) = {gy} exceeds "
                f"{MAX_GRID_YZ}: use a larger tile_m")
    if gz > MAX_GRID_YZ:
        return f"{name}: batch {gz} exceeds the grid z limit {MAX_GRID_YZ}: split the batch"
    if gx > MAX_GRID_X:
        return f"{name}: grid x = {gx} exceeds {MAX_GRID_X}: use a larger tile_n"
    return None
