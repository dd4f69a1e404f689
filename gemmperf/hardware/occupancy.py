"""Occupancy: how many thread blocks of a kernel can be resident on one SM at once.

This follows the CUDA occupancy calculator, ``cudaOccMaxActiveBlocksPerMultiprocessor`` in
``cuda_occupancy.h`` (CUDA 13.0), for the default carve-out preference and no partitioned global
caching. Per SM, the resident blocks are the minimum of four limits:

* warps:      ``max_warps_per_sm // ceil(threads / 32)``;
* blocks:     the architecture's cap on resident blocks per SM;
* registers:  registers are allocated per warp, ``ceil(regs * 32 / 256) * 256``; the register
  file is split evenly among the SM's sub-partitions, so warps per SM =
  ``(regs_per_sm / sub_partitions) // regs_per_warp * sub_partitions`` and blocks = that // warps;
* shared memory: ``ceil((smem + reserved) / unit) * unit`` per block (``reserved`` is the 1 KiB the
  driver keeps in every block from sm_80 on), blocks = largest carve-out // that.

A block that cannot launch at all (too many threads, more than 255 registers per thread, more
registers or shared memory per block than the per-block limit) gets 0 blocks and a reason.
Occupancy is resident warps / ``max_warps_per_sm``. The limits per compute capability live in
``data/compute_capabilities.json`` with their sources.

Two entry points: :func:`occupancy` for one kernel (a frozen :class:`Occupancy` with an actionable
reason) and :func:`occupancy_arrays` for many rows at once (numpy, no Python loop per row).
"""

from __future__ import annotations

import functools
import json
import numbers
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from gemmperf._paths import data_dir
from gemmperf.errors import InvalidConfigError, UnknownGpuError

WARP_SIZE = 32
#: Stand-in for "this resource does not limit" (cuda_occupancy.h uses INT_MAX the same way).
UNLIMITED = np.iinfo(np.int32).max

#: Limiter names; an :class:`OccupancyArrays` stores an index into this tuple. The first four
#: bound how many blocks are resident (ties resolve in this order: a kernel at the warp limit has
#: nothing to gain from using fewer registers); the last four mean the block cannot launch.
LIMITERS = (
    "warps",
    "blocks",
    "registers",
    "shared_memory",
    "threads_per_block",
    "registers_per_thread",
    "registers_per_block",
    "shared_memory_per_block",
)


@dataclass(frozen=True)
class CCLimits:
    """Occupancy-relevant limits of one compute capability (``data/compute_capabilities.json``)."""

    compute_capability: str
    architecture: str
    chips: str
    warp_size: int
    max_threads_per_block: int
    max_threads_per_sm: int
    max_warps_per_sm: int
    max_blocks_per_sm: int
    regs_per_sm: int
    max_regs_per_block: int
    max_regs_per_thread: int
    reg_alloc_unit: int
    reg_alloc_granularity: str
    warp_alloc_granularity: int
    smem_per_sm_bytes: int
    smem_per_block_bytes: int
    smem_per_block_default_bytes: int
    smem_alloc_unit_bytes: int
    reserved_smem_per_block_bytes: int
    smem_carveouts_bytes: tuple[int, ...]
    sources: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    @property
    def sm_arch(self) -> str:
        """nvcc arch name, e.g. ``"sm_89"``."""
        return "sm_" + self.compute_capability.replace(".", "")


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, CCLimits]:
    path = data_dir() / "compute_capabilities.json"
    doc = json.loads(path.read_text())
    names = {f.name for f in fields(CCLimits)}
    table: dict[str, CCLimits] = {}
    for entry in doc["compute_capabilities"]:
        values = {k: v for k, v in entry.items() if k in names}
        for key in ("smem_carveouts_bytes", "sources", "aliases"):
            values[key] = tuple(values.get(key, ()))
        limits = CCLimits(**values)
        for name in (limits.compute_capability, *limits.aliases):
            table[name] = limits
    return table


def compute_capabilities() -> tuple[CCLimits, ...]:
    """Every compute capability in the table, oldest first."""
    unique = {id(v): v for v in _table().values()}

    def version(c: CCLimits) -> tuple[int, ...]:
        return tuple(int(part) for part in c.compute_capability.split("."))

    return tuple(sorted(unique.values(), key=version))


def _cc_key(target: Any) -> str:
    if hasattr(target, "compute_capability") and not isinstance(target, CCLimits):
        target = target.compute_capability  # a GpuSpec
    if isinstance(target, CCLimits):
        return target.compute_capability
    if isinstance(target, tuple) and len(target) == 2:
        return f"{int(target[0])}.{int(target[1])}"
    text = str(target).strip().lower()
    for prefix in ("sm_", "sm", "compute_"):
        if text.startswith(prefix):
            text = text[len(prefix):].rstrip("af")
            break
    if isinstance(target, numbers.Integral) or (text.isdigit() and "." not in text):
        return f"{text[:-1]}.{text[-1]}" if len(text) >= 2 else text
    return text


def cc_limits(target: Any) -> CCLimits:
    """Limits for a compute capability: a GpuSpec or GPU name, ``(8, 9)``, ``"8.9"``,
    ``"sm_89"`` or ``89``."""
    key = _cc_key(target)
    table = _table()
    if key not in table and isinstance(target, str) and not key[:1].isdigit():
        from gemmperf.hardware.specs import get_gpu  # a GPU name: its compute capability

        key = _cc_key(get_gpu(target))
    if key not in table:
        known = ", ".join(c.compute_capability for c in compute_capabilities())
        raise UnknownGpuError(f"unknown compute capability {target!r}; known: {known}")
    return table[key]


@dataclass(frozen=True)
class OccupancyArrays:
    """Vectorised occupancy of many (threads, registers, shared memory) rows on one architecture.

    All arrays have the broadcast shape of the inputs. ``limiter`` indexes :data:`LIMITERS`; the
    ``blocks_by_*`` arrays hold each resource's own limit (:data:`UNLIMITED` where it never binds).
    """

    blocks_per_sm: np.ndarray
    warps_per_sm: np.ndarray
    occupancy: np.ndarray
    limiter: np.ndarray
    blocks_by_warps: np.ndarray
    blocks_by_registers: np.ndarray
    blocks_by_shared_memory: np.ndarray
    regs_per_block: np.ndarray       # registers allocated to one block
    smem_per_block: np.ndarray       # shared memory allocated to one block, reserve included

    @property
    def limiter_names(self) -> np.ndarray:
        """The limiter of each row as a string array."""
        return np.asarray(LIMITERS)[self.limiter]


def _as_int_array(name: str, value: Any, minimum: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.floor(arr)):
            raise InvalidConfigError(f"{name} must be whole numbers, got {value!r}")
    elif arr.dtype.kind not in "iub":
        raise InvalidConfigError(f"{name} must be integers, got {value!r}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < minimum:
        raise InvalidConfigError(f"{name} must be >= {minimum}, got {int(arr.min())}")
    return arr


def _round_up(x: np.ndarray, unit: int) -> np.ndarray:
    return -(-x // unit) * unit


def occupancy_arrays(
    target: Any, threads_per_block: Any, regs_per_thread: Any, smem_per_block: Any = 0
) -> OccupancyArrays:
    """Resident blocks per SM for arrays of kernels on one compute capability (see module doc).

    ``target`` is anything :func:`cc_limits` accepts; the other arguments broadcast against each
    other. ``smem_per_block`` is static plus dynamic shared memory in bytes, without the driver's
    reserve (that is added here).
    """
    lim = cc_limits(target)
    threads = _as_int_array("threads_per_block", threads_per_block, 1)
    regs = _as_int_array("regs_per_thread", regs_per_thread, 0)
    smem = _as_int_array("smem_per_block", smem_per_block, 0)
    threads, regs, smem = np.broadcast_arrays(threads, regs, smem)

    warps = -(-threads // lim.warp_size)
    fits_threads = threads <= lim.max_threads_per_block
    by_warps = np.where(fits_threads, lim.max_warps_per_sm // warps, 0)

    # Registers (cudaOccMaxBlocksPerSMRegsLimit): allocated per warp in reg_alloc_unit steps; the
    # hardware's per-block check rounds the warp count up to the sub-partition count.
    subs = lim.warp_alloc_granularity
    regs_per_warp = _round_up(regs * lim.warp_size, lim.reg_alloc_unit)
    regs_block = regs_per_warp * warps
    regs_assumed = regs_per_warp * _round_up(warps, subs)
    fits_regs_thread = regs <= lim.max_regs_per_thread
    fits_regs_block = (regs_assumed <= lim.max_regs_per_block) & (
        regs_block <= lim.max_regs_per_block
    )
    warps_per_sub = (lim.regs_per_sm // subs) // np.maximum(regs_per_warp, 1)
    by_regs = np.where(regs_per_warp > 0, warps_per_sub * subs // warps, UNLIMITED)
    if lim.compute_capability == "6.0":
        # GP100 has 2 sub-partitions, GP10x 4; for forward compatibility within Pascal the
        # calculator refuses on sm_60 what would not fit on GP10x (cuda_occupancy.h).
        gp10x_per_sub = (lim.regs_per_sm // 4) // np.maximum(regs_per_warp, 1)
        fits_regs_block &= regs_per_warp * _round_up(warps, 4) <= lim.max_regs_per_block
        fits_regs_block &= (regs_per_warp == 0) | (gp10x_per_sub * 4 // warps > 0)
    by_regs = np.where(fits_regs_thread & fits_regs_block, by_regs, 0)

    # Shared memory (cudaOccMaxBlocksPerSMSmemLimit, default carve-out preference = the maximum).
    smem_alloc = _round_up(smem + lim.reserved_smem_per_block_bytes, lim.smem_alloc_unit_bytes)
    fits_smem = smem_alloc <= lim.smem_per_block_bytes + lim.reserved_smem_per_block_bytes
    by_smem = lim.smem_per_sm_bytes // np.maximum(smem_alloc, 1)
    by_smem = np.where(smem_alloc > 0, by_smem, UNLIMITED)
    by_smem = np.where(fits_smem, by_smem, 0)

    by_blocks = np.full_like(by_warps, lim.max_blocks_per_sm)
    stacked = np.stack([by_warps, by_blocks, by_regs, by_smem])
    blocks = stacked.min(axis=0)
    limiter = np.argmax(stacked == blocks, axis=0).astype(np.int8)  # first tie in LIMITERS order
    invalid = np.stack([~fits_threads, ~fits_regs_thread, ~fits_regs_block, ~fits_smem])
    limiter = np.where(invalid.any(axis=0), 4 + np.argmax(invalid, axis=0), limiter).astype(np.int8)

    resident_warps = blocks * warps
    return OccupancyArrays(
        blocks_per_sm=blocks,
        warps_per_sm=resident_warps,
        occupancy=resident_warps / lim.max_warps_per_sm,
        limiter=limiter,
        blocks_by_warps=by_warps,
        blocks_by_registers=by_regs,
        blocks_by_shared_memory=by_smem,
        regs_per_block=regs_block,
        smem_per_block=smem_alloc,
    )


@dataclass(frozen=True)
class Occupancy:
    """Occupancy of one kernel on one compute capability, with the limiting factor explained."""

    compute_capability: str
    threads_per_block: int
    regs_per_thread: int
    smem_per_block: int
    blocks_per_sm: int
    warps_per_sm: int
    occupancy: float                 # resident warps / max warps per SM, in [0, 1]
    limiter: str                     # one of LIMITERS
    limiters: tuple[str, ...]        # every resource at the binding limit (ties)
    reason: str                      # one line, actionable
    blocks_by_warps: int | None      # None: this resource does not limit
    blocks_by_registers: int | None
    blocks_by_shared_memory: int | None
    blocks_by_block_limit: int
    allocated_regs_per_block: int
    allocated_smem_per_block: int

    @property
    def launchable(self) -> bool:
        """True when at least one block fits on an SM."""
        return self.blocks_per_sm > 0


def max_launchable_regs(target: Any, threads_per_block: Any) -> np.ndarray:
    """The most registers per thread with which a block of ``threads_per_block`` threads still
    launches on ``target`` (0 where the thread count itself exceeds the per-block limit).

    The inverse of the register checks in :func:`occupancy_arrays`: the per-block register
    budget over the warps (rounded up to the sub-partitions), in whole allocation units, at
    most ``max_regs_per_thread``. A compiler fits a kernel launched with more threads into
    this many registers (``__launch_bounds__``, ``-maxrregcount``) or the launch fails.
    """
    lim = cc_limits(target)
    threads = _as_int_array("threads_per_block", threads_per_block, 1)
    warps = _round_up(-(-threads // lim.warp_size), lim.warp_alloc_granularity)
    per_warp = lim.max_regs_per_block // warps // lim.reg_alloc_unit * lim.reg_alloc_unit
    regs = np.minimum(per_warp // lim.warp_size, lim.max_regs_per_thread)
    return np.where(threads <= lim.max_threads_per_block, regs, 0)


def _kib(nbytes: int) -> str:
    return f"{nbytes / 1024:.4g} KiB"


def _reason(lim: CCLimits, limiter: str, threads: int, regs: int, smem: int,
            res: OccupancyArrays) -> str:
    """One actionable line explaining ``limiter`` (see LIMITERS)."""
    arch = lim.sm_arch
    blocks = int(res.blocks_per_sm)
    warps = -(-threads // lim.warp_size)
    percent = 100 * blocks * warps / lim.max_warps_per_sm
    occ = f"{blocks} block{'s' if blocks != 1 else ''}/SM ({percent:.4g}% occupancy)"
    regs_block = int(res.regs_per_block)
    if limiter == "threads_per_block":
        return (f"uses {threads} threads per block, the limit is {lim.max_threads_per_block} "
                f"on {arch}: use fewer threads per block")
    if limiter == "registers_per_thread":
        return (f"uses {regs} registers per thread, the limit is {lim.max_regs_per_thread} "
                f"on {arch}: reduce the per-thread tile or cap registers "
                "(__launch_bounds__, -maxrregcount)")
    if limiter == "registers_per_block":
        return (f"needs {regs_block} registers per block ({threads} threads x {regs}, allocated "
                f"per warp), the limit is {lim.max_regs_per_block} on {arch}: use fewer threads "
                "or registers per thread")
    if limiter == "shared_memory_per_block":
        return (f"uses {_kib(smem)} shared memory, the limit is "
                f"{_kib(lim.smem_per_block_bytes)} per block on {arch}: reduce stages or tile size")
    if limiter == "shared_memory":
        reserve = lim.reserved_smem_per_block_bytes
        detail = f" ({_kib(smem)} + {_kib(reserve)} reserved)" if reserve else ""
        return (f"{occ}, limited by shared memory: each block takes "
                f"{_kib(int(res.smem_per_block))}{detail} of {_kib(lim.smem_per_sm_bytes)} per SM "
                f"on {arch}: reduce stages or tile size to fit more blocks")
    if limiter == "registers":
        return (f"{occ}, limited by registers: {regs} x {threads} threads take {regs_block} "
                f"(allocated per warp) of {lim.regs_per_sm} per SM on {arch}: use fewer registers "
                "per thread (__launch_bounds__, -maxrregcount) to fit more blocks")
    if limiter == "blocks":
        return (f"{occ}, limited by the {lim.max_blocks_per_sm} resident blocks per SM of "
                f"{arch}: use more threads per block")
    text = (f"{occ}, limited by warps: {warps} warps per block, {lim.max_warps_per_sm} per SM "
            f"on {arch}")
    if blocks * warps < lim.max_warps_per_sm:
        text += f": a block of warps dividing {lim.max_warps_per_sm} would fill the SM"
    return text


def occupancy(target: Any, threads_per_block: int, regs_per_thread: int,
              smem_per_block: int = 0) -> Occupancy:
    """Occupancy of one kernel: resident blocks, warps, occupancy fraction and the limiting factor.

    >>> occupancy("8.0", 256, 64, 48 * 1024).blocks_per_sm  # A100: 3 x (48 + 1) KiB <= 164 KiB
    3
    """
    lim = cc_limits(target)
    res = occupancy_arrays(lim, threads_per_block, regs_per_thread, smem_per_block)
    blocks = int(res.blocks_per_sm)
    limiter = LIMITERS[int(res.limiter)]
    per_resource = {
        "warps": int(res.blocks_by_warps),
        "blocks": lim.max_blocks_per_sm,
        "registers": int(res.blocks_by_registers),
        "shared_memory": int(res.blocks_by_shared_memory),
    }
    ties = tuple(name for name, value in per_resource.items() if value == blocks and blocks > 0)

    def opt(v: int) -> int | None:
        return None if v >= UNLIMITED else v

    return Occupancy(
        compute_capability=lim.compute_capability,
        threads_per_block=int(threads_per_block),
        regs_per_thread=int(regs_per_thread),
        smem_per_block=int(smem_per_block),
        blocks_per_sm=blocks,
        warps_per_sm=int(res.warps_per_sm),
        occupancy=float(res.occupancy),
        limiter=limiter,
        limiters=ties or (limiter,),
        reason=_reason(lim, limiter, int(threads_per_block), int(regs_per_thread),
                       int(smem_per_block), res),
        blocks_by_warps=opt(per_resource["warps"]),
        blocks_by_registers=opt(per_resource["registers"]),
        blocks_by_shared_memory=opt(per_resource["shared_memory"]),
        blocks_by_block_limit=lim.max_blocks_per_sm,
        allocated_regs_per_block=int(res.regs_per_block),
        allocated_smem_per_block=int(res.smem_per_block),
    )
