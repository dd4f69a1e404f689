"""Library-like defaults for the roofline's kernel config, and input validation.

When a caller gives no kernel config, :func:`gemmperf.roofline.roofline_arrays` assumes what a
GEMM library would pick:

* tile: 128x128x32 on tensor cores and 128x128x8 on the SIMT path (fp32, fp64), the CUTLASS default
  threadblock shapes, with tile_m (tile_n) cut to the next power of two >= m (n), at least 16, for
  skinny problems;
* resident blocks per SM: the occupancy calculator on a CUTLASS-like multistage footprint,
  ``DEFAULT_THREADS_PER_BLOCK`` threads, ``DEFAULT_REGS_PER_THREAD`` registers (fewer where a
  given thread count could not launch with that many) and
  ``stages x (tile_m + tile_n) x tile_k x a_bytes`` shared memory (1 block per SM where even that
  does not fit);
* split-K: when the output tiles cannot fill one wave and K is long, split K to fill it
  (:func:`resolve_split_k`), as cuBLAS and CUTLASS do for small-grid, long-K GEMMs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gemmperf.errors import InvalidConfigError
from gemmperf.hardware.occupancy import max_launchable_regs, occupancy_arrays
from gemmperf.hardware.specs import GpuSpec

#: Math keys that run on the SIMT (CUDA-core) pipeline; every other key uses tensor cores.
SIMT_MATH_KEYS = frozenset({"fp32", "fp64"})
TENSOR_CORE_TILE = (128, 128, 32)   # CUTLASS default threadblock shape for tensor-core GEMM
SIMT_TILE = (128, 128, 8)           # CUTLASS SIMT SGEMM threadblock shape (128x128_8x2)
MIN_TILE_MN = 16                    # smallest default tile side (one MMA tile's M)
DEFAULT_THREADS_PER_BLOCK = 256     # 8 warps, CUTLASS's usual 128x128 warp arrangement
DEFAULT_REGS_PER_THREAD = 128       # 64 fp32 accumulators per thread plus fragments and addresses
TENSOR_CORE_STAGES = 3              # cp.async multistage pipeline depth (sm_80+ CUTLASS default)
SIMT_STAGES = 2                     # double buffering
#: Default split-K keeps at least this much of K per split (16 mainloop steps of a 32-deep tile),
#: so the partial-sum reduction stays small next to the work it parallelises.
SPLIT_K_MIN_DEPTH = 512


def default_tile(math_key: str, m: Any = None, n: Any = None) -> tuple[Any, Any, Any]:
    """Default (tile_m, tile_n, tile_k): SIMT for fp32/fp64, else tensor cores.

    Given ``m``/``n``, a tile side longer than the problem shrinks to the next power of two at or
    above it (at least ``MIN_TILE_MN``), as libraries pick narrow tiles for skinny GEMMs.
    """
    base_m, base_n, base_k = SIMT_TILE if math_key in SIMT_MATH_KEYS else TENSOR_CORE_TILE

    def fit(base: int, size: Any) -> Any:
        if size is None:
            return base
        pow2 = 2.0 ** np.ceil(np.log2(np.maximum(np.asarray(size, dtype=np.float64), 1)))
        return np.clip(pow2, MIN_TILE_MN, base)

    return fit(base_m, m), fit(base_n, n), base_k


def fill(value: Any, default: Any) -> np.ndarray:
    """``value`` as a float array with None/NaN replaced by ``default`` (broadcast)."""
    if value is None:
        return np.asarray(default, dtype=np.float64)
    arr = np.asarray(value, dtype=np.float64)
    return np.where(np.isnan(arr), default, arr)


def footprint_blocks_per_sm(
    gpu: GpuSpec, math_key: str, tile_m: Any, tile_n: Any, tile_k: Any, a_bytes: Any,
    threads_per_block: Any = None, regs_per_thread: Any = None, smem_bytes_per_block: Any = None,
    stages: Any = None,
) -> np.ndarray:
    """Resident blocks per SM of a launch footprint; None/NaN parts take the defaults.

    Shared memory defaults to ``stages x (tile_m + tile_n) x tile_k x a_bytes`` (the A and B
    stage buffers of a multistage mainloop); 0 means the footprint cannot launch.
    """
    simt = math_key in SIMT_MATH_KEYS
    stages = fill(stages, SIMT_STAGES if simt else TENSOR_CORE_STAGES)
    buffers = stages * (np.asarray(tile_m) + np.asarray(tile_n)) * np.asarray(tile_k)
    smem = fill(smem_bytes_per_block, buffers * np.asarray(a_bytes))
    threads = fill(threads_per_block, DEFAULT_THREADS_PER_BLOCK).astype(np.int64)
    # Unknown registers: the default, or fewer where the block would not launch with it (a
    # 1024-thread block that ran cannot have used more than 64 registers per thread).
    cap = max_launchable_regs(gpu, np.maximum(threads, 1))
    regs = fill(regs_per_thread, np.minimum(DEFAULT_REGS_PER_THREAD, cap)).astype(np.int64)
    smem = np.ceil(smem).astype(np.int64)
    if threads.size == 1 and regs.size == 1 and smem.size > 1:
        # Many rows, few distinct footprints: run the calculator once per distinct value.
        values, inverse = np.unique(smem, return_inverse=True)
        blocks = occupancy_arrays(gpu, threads, regs, values).blocks_per_sm
        return blocks[inverse.reshape(smem.shape)]
    return occupancy_arrays(gpu, threads, regs, smem).blocks_per_sm


def default_blocks_per_sm(gpu: GpuSpec, math_key: str, tile_m: Any, tile_n: Any, tile_k: Any,
                          a_bytes: Any) -> np.ndarray:
    """Resident blocks per SM of the default footprint (module doc); 1 where it cannot launch
    (a library would pick a smaller config there)."""
    return np.maximum(footprint_blocks_per_sm(gpu, math_key, tile_m, tile_n, tile_k, a_bytes), 1)


def check_positive(name: str, value: Any, error: type[Exception]) -> np.ndarray:
    """``value`` as a float array; raises ``error`` naming ``name`` unless all finite and > 0."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.size and not (np.all(np.isfinite(arr)) and arr.min() > 0):
        bad = arr[~(np.isfinite(arr) & (arr > 0))].flat[0]
        raise error(f"{name} must be positive, got {bad:g}")
    return arr


def _with_default(name: str, value: Any, default: Any) -> np.ndarray:
    """``value`` as a float array, NaN (missing) replaced by ``default``; None: all missing."""
    return check_positive(name, fill(value, default), InvalidConfigError)


def resolve_tile(math_key: str, m: Any, n: Any, tile_m: Any = None, tile_n: Any = None,
                 tile_k: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tile sizes as float arrays, missing (None/NaN) entries from :func:`default_tile`."""
    d_m, d_n, d_k = default_tile(math_key, m, n)
    return (_with_default("tile_m", tile_m, d_m), _with_default("tile_n", tile_n, d_n),
            _with_default("tile_k", tile_k, d_k))


def resolve_blocks(gpu: GpuSpec, math_key: str, tile_m: Any, tile_n: Any, tile_k: Any,
                   a_bytes: Any, blocks_per_sm: Any = None) -> np.ndarray:
    """Resident blocks per SM as floats; missing (None/NaN) from :func:`default_blocks_per_sm`."""
    if blocks_per_sm is None:
        return default_blocks_per_sm(gpu, math_key, tile_m, tile_n, tile_k, a_bytes).astype(float)
    blocks = np.asarray(blocks_per_sm, dtype=np.float64)
    if np.isnan(blocks).any():
        fallback = default_blocks_per_sm(gpu, math_key, tile_m, tile_n, tile_k, a_bytes)
        blocks = np.where(np.isnan(blocks), fallback, blocks)
    if blocks.size and not (np.all(np.isfinite(blocks)) and blocks.min() >= 0):
        raise InvalidConfigError("blocks_per_sm must be >= 0")
    return blocks


def missing(value: Any) -> np.ndarray:
    """True where ``value`` is None (everywhere) or NaN."""
    if value is None:
        return np.asarray(True)
    return np.isnan(np.asarray(value, dtype=np.float64))


def resolve_split_k(gpu: GpuSpec, m: Any, n: Any, k: Any, batch: Any, tile_m: Any, tile_n: Any,
                    blocks_per_sm: Any, split_k: Any = None, auto: Any = True) -> np.ndarray:
    """Split-K factor per row: ``split_k`` where given, else (where ``auto``) the default heuristic.

    The heuristic, for library-chosen (default) configs only, splits K when the output tiles cannot
    fill one wave, as cuBLAS/CUTLASS do for small-grid, long-K GEMMs:
    ``max(1, min(floor(slots / tiles), floor(k / SPLIT_K_MIN_DEPTH)))``. Explicit configs get 1.
    """
    tiles = (np.asarray(batch, dtype=np.float64) * np.ceil(np.asarray(m) / np.asarray(tile_m))
             * np.ceil(np.asarray(n) / np.asarray(tile_n)))
    slots = gpu.sm_count * np.asarray(blocks_per_sm, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.floor(slots / tiles)       # how many times the tiles fit in one wave
    heuristic = np.maximum(1.0, np.minimum(room, np.floor(np.asarray(k) / SPLIT_K_MIN_DEPTH)))
    default = np.where(auto, heuristic, 1.0)
    if split_k is None:
        return default
    given = np.asarray(split_k, dtype=np.float64)
    out = np.where(np.isnan(given), default, given)
    if out.size and not (np.all(np.isfinite(out)) and out.min() >= 1):
        raise InvalidConfigError("split_k must be >= 1")
    return out
