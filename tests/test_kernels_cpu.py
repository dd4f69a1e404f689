"""Kernel logic on the CPU: kernels/*.cu compiled as C++20 with g++ against
tests/cuda_host_emulation.hpp (one std::thread per CUDA thread, std::barrier for __syncthreads),
run on awkward sizes and compared with numpy.

The kernel names and launch geometry come from gemmperf.collect.kernel_space, the same code the
cupy backends use, so a wrong grid or block shape fails here too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gemmperf._paths import kernels_dir
from gemmperf.collect import kernel_space as ks
from gemmperf.problem import GemmProblem

TESTS_DIR = Path(__file__).resolve().parent
RUN_TIMEOUT_S = 120     # a barrier reached by part of a block deadlocks the emulation

#: A representative set of blocked configs: both stage counts, all four thread tiles, every
#: BK, square and non-square block tiles, 32 to 1024 threads.
BLOCKED = [
    ks.BlockedParams(128, 128, 8, 8, 8, 2),
    ks.BlockedParams(64, 64, 16, 4, 4, 1),
    ks.BlockedParams(32, 64, 32, 4, 8, 2),
    ks.BlockedParams(64, 128, 32, 8, 8, 1),
    ks.BlockedParams(128, 64, 16, 8, 4, 2),
    ks.BlockedParams(32, 32, 8, 4, 4, 2),
    ks.BlockedParams(128, 128, 32, 4, 4, 1),
    ks.BlockedParams(64, 32, 16, 8, 4, 1),
]
TILED = [ks.TiledParams(t) for t in ks.TILED_TILES]

#: (m, n, k): a single element, odd sizes (partial tiles everywhere; K = 2*32 + 1), exact
#: multiples of every tile, and sizes that are multiples of no tile.
TILED_SHAPES = [(1, 1, 1), (33, 17, 65), (128, 128, 128), (100, 37, 50)]
#: blocked adds multiples of 4 that are not multiples of the tiles (the float4 path with edge
#: tiles) and K smaller than one k-step.
BLOCKED_SHAPES = [*TILED_SHAPES, (36, 68, 44), (70, 130, 3)]


def _compile_driver(build: Path, params: list[ks.KernelParams]) -> Path:
    lines = [f'KERNEL("{ks.kernel_name_of(p)}", {ks.kernel_name_of(p)})' for p in params]
    (build / "kernel_instances.inc").write_text("\n".join(lines) + "\n")
    exe = build / "cuda_emulation_driver"
    cmd = [
        "g++", "-std=c++20", "-O1", "-pthread", "-Wall", "-Wextra", "-Wno-unknown-pragmas",
        f"-I{build}", f"-I{TESTS_DIR}",
        f'-DKERNELS_TILED="{kernels_dir() / "tiled.cu"}"',
        f'-DKERNELS_BLOCKED="{kernels_dir() / "blocked.cu"}"',
        str(TESTS_DIR / "cuda_emulation_driver.cpp"), "-o", str(exe),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Warnings in kernel code (sign compares, unused values, ...) usually point at real bugs.
    assert "warning" not in proc.stderr, proc.stderr[-3000:]
    return exe


@pytest.fixture(scope="session")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    build = tmp_path_factory.mktemp("cuda_emulation")
    probe = build / "probe.cpp"
    probe.write_text("#include <barrier>\nint main() { std::barrier<> b(1); "
                     "b.arrive_and_wait(); }\n")
    proc = subprocess.run(["g++", "-std=c++20", "-pthread", str(probe), "-o",
                           str(build / "probe")], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("g++ lacks C++20 <barrier>: " + proc.stderr.strip()[-200:])
    return _compile_driver(build, TILED + BLOCKED)


def run_kernel(driver: Path, params: ks.KernelParams, m: int, n: int, k: int, *,
               alpha: float = 1.0, beta: float = 0.0, batch: int = 1, seed: int = 0,
               c_fill: float | None = None, grid=None, block=None):
    """Run one instantiation; returns (out, A, B, C) as float32 arrays of shape (batch, ., .)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (batch, m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (batch, k, n)).astype(np.float32)
    c = rng.uniform(-1, 1, (batch, m, n)).astype(np.float32)
    if c_fill is not None:
        c[:] = c_fill
    problem = GemmProblem(m, n, k, batch=batch)
    default_grid, default_block = ks.launch_geometry(params, problem)
    grid = grid or default_grid
    block = block or default_block
    work = driver.parent / f"run_{seed}"
    work.mkdir(exist_ok=True)
    for name, arr in (("A", a), ("B", b), ("C", c)):
        arr.tofile(work / f"{name}.bin")
    cmd = [str(driver), ks.kernel_name_of(params), *map(str, grid), *map(str, block),
           str(m), str(n), str(k), repr(alpha), repr(beta),
           str(work / "A.bin"), str(work / "B.bin"), str(work / "C.bin"), str(work / "O.bin")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    out = np.fromfile(work / "O.bin", dtype=np.float32).reshape(batch, m, n)
    return out, a, b, c


def assert_gemm_close(out, a, b, c, alpha, beta):
    """|out - ref| <= 2 (k + 2) u (|alpha| |A||B| + |beta| |C|) elementwise, u = 2^-24.

    The forward error bound of a length-k dot product in any summation order is
    gamma_k |A||B| (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., eq. 3.5);
    the +2 covers the alpha/beta epilogue, the factor 2 slack. A wrong index is off by O(1).
    """
    a64, b64, c64 = (x.astype(np.float64) for x in (a, b, c))
    ref = alpha * (a64 @ b64) + (beta * c64 if beta != 0 else 0.0)
    scale = abs(alpha) * (np.abs(a64) @ np.abs(b64)) + abs(beta) * np.abs(c64)
    k = a.shape[-1]
    bound = 2 * (k + 2) * 2.0**-24 * scale + 1e-30
    err = np.abs(out.astype(np.float64) - ref)
    bad = ~(err <= bound)          # also catches NaN
    assert not bad.any(), (
        f"{int(bad.sum())} of {bad.size} elements wrong; first at "
        f"{tuple(int(i) for i in np.argwhere(bad)[0])}: got {out[bad][0]}, want {ref[bad][0]}")


def _shape_id(shape):
    return "x".join(map(str, shape))


@pytest.mark.parametrize("shape", TILED_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("params", TILED, ids=ks.kernel_name_of)
def test_tiled_matches_numpy(driver, params, shape):
    out, a, b, c = run_kernel(driver, params, *shape, alpha=1.5, beta=-0.5)
    assert_gemm_close(out, a, b, c, 1.5, -0.5)


@pytest.mark.parametrize("shape", BLOCKED_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("params", BLOCKED, ids=ks.kernel_name_of)
def test_blocked_matches_numpy(driver, params, shape):
    out, a, b, c = run_kernel(driver, params, *shape, alpha=1.5, beta=-0.5)
    assert_gemm_close(out, a, b, c, 1.5, -0.5)


@pytest.mark.parametrize("params", [TILED[4], BLOCKED[0], BLOCKED[2]], ids=ks.kernel_name_of)
def test_beta_zero_never_reads_c_and_batches_are_independent(driver, params):
    # BLAS: with beta = 0, C is write-only, so NaN in C must not leak into the result.
    out, a, b, c = run_kernel(driver, params, 37, 45, 20, alpha=1.0, beta=0.0, batch=3,
                              c_fill=np.nan)
    assert np.isfinite(out).all()
    assert_gemm_close(out, a, b, np.zeros_like(c), 1.0, 0.0)


def test_every_blocked_instantiation_in_the_test_set_is_in_the_space():
    space = set(ks.blocked_space())
    for params in BLOCKED:
        assert params.invalid_reason() is None
        assert params.config() in space


def test_harness_detects_a_wrong_launch(driver):
    # A grid one block short along y leaves the last rows of C untouched: the check must fail.
    params = ks.TiledParams(16)
    problem = GemmProblem(33, 17, 65)
    (gx, gy, gz), block = ks.launch_geometry(params, problem)
    out, a, b, c = run_kernel(driver, params, 33, 17, 65, alpha=1.0, beta=0.0,
                              grid=(gx, gy - 1, gz), block=block)
    with pytest.raises(AssertionError, match="elements wrong"):
        assert_gemm_close(out, a, b, c, 1.0, 0.0)
