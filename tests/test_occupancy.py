"""Occupancy calculator: hand-derived cases, vector == scalar, and a cross-check against NVIDIA's
own cuda_occupancy.h compiled on the host (skipped where g++ or the header is missing)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gemmperf.errors import InvalidConfigError, UnknownGpuError
from gemmperf.hardware.occupancy import (
    LIMITERS,
    cc_limits,
    compute_capabilities,
    max_launchable_regs,
    occupancy,
    occupancy_arrays,
)
from gemmperf.hardware.specs import get_gpu

KiB = 1024


def test_a100_256_threads_64_regs_48k_smem():
    # sm_80: warps 64 // 8 = 8 blocks; registers 64 x 32 = 2048 per warp, 16384 per sub-partition
    # -> 8 warps x 4 = 32 warps -> 4 blocks; shared memory (48 + 1 reserved) KiB = 50176 B, 164 KiB
    # per SM -> 167936 // 50176 = 3 blocks. Occupancy 3 x 8 / 64 = 0.375.
    occ = occupancy("8.0", 256, 64, 48 * KiB)
    assert (occ.blocks_per_sm, occ.warps_per_sm) == (3, 24)
    assert occ.occupancy == pytest.approx(0.375)
    assert occ.limiter == "shared_memory"
    assert (occ.blocks_by_warps, occ.blocks_by_registers, occ.blocks_by_shared_memory) == (8, 4, 3)
    assert occ.allocated_smem_per_block == 49 * KiB
    assert occ.allocated_regs_per_block == 64 * 256
    assert "limited by shared memory" in occ.reason and "164 KiB per SM on sm_80" in occ.reason


def test_gpu_spec_is_accepted_as_target():
    assert occupancy(get_gpu("a100-sxm4-80gb"), 256, 64, 48 * KiB).blocks_per_sm == 3


def test_register_limit_rounds_to_allocation_unit():
    # sm_86: 255 regs x 32 = 8160 -> 8192 per warp; 16384 per sub-partition -> 2 warps each,
    # 8 warps per SM -> 2 blocks of 4 warps; occupancy 8 / 48.
    occ = occupancy("sm_86", 128, 255)
    assert occ.blocks_per_sm == 2 and occ.limiter == "registers"
    assert occ.occupancy == pytest.approx(8 / 48)
    assert occ.allocated_regs_per_block == 4 * 8192


def test_block_limit_on_turing():
    # sm_75: 32-thread blocks, 32 warps per SM would allow 32 blocks, but only 16 may be resident.
    occ = occupancy((7, 5), 32, 16)
    assert occ.blocks_per_sm == 16 and occ.limiter == "blocks"
    assert occ.occupancy == pytest.approx(0.5)
    assert "more threads per block" in occ.reason


def test_full_occupancy_reports_warps_and_ties():
    occ = occupancy("9.0", 256, 32)
    assert occ.occupancy == 1.0 and occ.limiter == "warps"
    assert set(occ.limiters) == {"warps", "registers"}


def test_shared_memory_over_block_limit_is_actionable():
    occ = occupancy("8.9", 256, 64, 132 * KiB)
    assert occ.blocks_per_sm == 0 and not occ.launchable
    assert occ.reason == ("uses 132 KiB shared memory, the limit is 99 KiB per block on sm_89: "
                          "reduce stages or tile size")


@pytest.mark.parametrize(
    ("args", "limiter"),
    [
        (("8.0", 2048, 32, 0), "threads_per_block"),
        (("8.0", 256, 300, 0), "registers_per_thread"),
        (("8.0", 1024, 80, 0), "registers_per_block"),   # 1024 x 80 = 81920 > 65536
        (("6.0", 320, 200, 0), "registers_per_block"),   # fits GP100, not GP10x: refused on 6.0
        (("9.0", 128, 64, 228 * KiB), "shared_memory_per_block"),
    ],
)
def test_unlaunchable_blocks(args, limiter):
    occ = occupancy(*args)
    assert occ.blocks_per_sm == 0 and occ.limiter == limiter and occ.occupancy == 0


def test_largest_block_fits_exactly_on_hopper():
    # 227 KiB + 1 KiB reserved = the whole 228 KiB carve-out: one block.
    occ = occupancy("9.0", 128, 64, 227 * KiB)
    assert occ.blocks_per_sm == 1 and occ.allocated_smem_per_block == 228 * KiB


def test_vector_matches_scalar():
    rng = np.random.default_rng(0)
    threads = rng.integers(1, 1100, 300)
    regs = rng.integers(0, 260, 300)
    smem = rng.integers(0, 240 * KiB, 300)
    for cc in ("6.1", "7.5", "8.0", "8.9", "9.0", "12.0"):
        res = occupancy_arrays(cc, threads, regs, smem)
        for i in range(0, 300, 7):
            one = occupancy(cc, int(threads[i]), int(regs[i]), int(smem[i]))
            assert one.blocks_per_sm == res.blocks_per_sm[i]
            assert one.occupancy == pytest.approx(res.occupancy[i])
            assert one.limiter == res.limiter_names[i] == LIMITERS[res.limiter[i]]


def test_compute_capability_spellings():
    assert cc_limits("sm_90a").compute_capability == "9.0"
    assert cc_limits(89).compute_capability == "8.9"
    assert cc_limits("compute_120f").compute_capability == "12.0"
    assert cc_limits("10.1").compute_capability == "11.0"   # renamed in CUDA 13
    with pytest.raises(UnknownGpuError, match="unknown compute capability"):
        cc_limits("4.0")


def test_table_is_consistent_and_sourced():
    ccs = compute_capabilities()
    assert [c.compute_capability for c in ccs][:2] == ["5.0", "5.2"]
    assert ccs[-1].compute_capability == "12.1"
    for c in ccs:
        assert c.sources and all(s.strip() for s in c.sources)
        assert c.max_warps_per_sm * c.warp_size == c.max_threads_per_sm
        assert max(c.smem_carveouts_bytes) == c.smem_per_sm_bytes
        assert c.smem_per_block_bytes + c.reserved_smem_per_block_bytes <= c.smem_per_sm_bytes


@pytest.mark.parametrize("bad", [{"threads_per_block": 0}, {"smem_per_block": -1},
                                 {"regs_per_thread": 1.5}])
def test_bad_input_raises(bad):
    args = {"threads_per_block": 128, "regs_per_thread": 32, "smem_per_block": 0, **bad}
    with pytest.raises(InvalidConfigError):
        occupancy_arrays("8.0", **args)


# --- cross-check against cuda_occupancy.h -------------------------------------------------------

_HARNESS = r"""
#include <cstdio>
#include "cuda_occupancy.h"
int main() {
  int ma, mi, tsm, rpb, th, rg; size_t smsm, optin, res, sm;
  while (scanf("%d %d %d %d %zu %zu %zu %d %d %zu", &ma, &mi, &tsm, &rpb, &smsm, &optin, &res,
               &th, &rg, &sm) == 10) {
    cudaOccDeviceProp p; p.computeMajor = ma; p.computeMinor = mi; p.maxThreadsPerBlock = 1024;
    p.maxThreadsPerMultiprocessor = tsm; p.regsPerBlock = rpb; p.regsPerMultiprocessor = 65536;
    p.warpSize = 32; p.sharedMemPerBlock = 48 * 1024; p.sharedMemPerMultiprocessor = smsm;
    p.numSms = 1; p.sharedMemPerBlockOptin = optin; p.reservedSharedMemPerBlock = res;
    cudaOccFuncAttributes a; a.maxThreadsPerBlock = 1024; a.numRegs = rg; a.sharedSizeBytes = 0;
    a.shmemLimitConfig = FUNC_SHMEM_LIMIT_OPTIN; a.maxDynamicSharedSizeBytes = optin;
    cudaOccDeviceState s; cudaOccResult r;
    int e = cudaOccMaxActiveBlocksPerMultiprocessor(&r, &p, &a, &s, th, sm);
    printf("%d %d\n", e, e ? -1 : r.activeBlocksPerMultiprocessor);
  }
}
"""


def _occupancy_header() -> Path | None:
    for root in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root and (Path(root) / "include" / "cuda_occupancy.h").is_file():
            return Path(root) / "include"
    return None


def test_matches_nvidia_cuda_occupancy_header(tmp_path):
    include = _occupancy_header()
    if include is None or shutil.which("g++") is None:
        pytest.skip("needs g++ and cuda_occupancy.h (CUDA toolkit)")
    src = tmp_path / "harness.cpp"
    src.write_text(_HARNESS)
    exe = tmp_path / "harness"
    subprocess.run(["g++", "-O1", f"-I{include}", str(src), "-o", str(exe)], check=True)

    threads = np.array([1, 32, 33, 64, 96, 128, 160, 192, 256, 320, 384, 512, 640, 768, 1024, 1056])
    regs = np.array([0, 16, 32, 40, 64, 72, 96, 128, 168, 200, 232, 255])
    smem = np.array([0, 1000, 8 * KiB, 16 * KiB, 40 * KiB, 48 * KiB, 60 * KiB, 99 * KiB,
                     100 * KiB, 130 * KiB, 163 * KiB, 200 * KiB, 227 * KiB, 228 * KiB])
    grid = [g.ravel() for g in np.meshgrid(threads, regs, smem, indexing="ij")]
    lines, expected = [], []
    for c in compute_capabilities():
        major, minor = (int(x) for x in c.compute_capability.split("."))
        res = occupancy_arrays(c, *grid)
        expected.append(res.blocks_per_sm)
        head = (f"{major} {minor} {c.max_threads_per_sm} {c.max_regs_per_block} "
                f"{c.smem_per_sm_bytes} {c.smem_per_block_bytes} "
                f"{c.reserved_smem_per_block_bytes}")
        lines += [f"{head} {t} {r} {s}" for t, r, s in zip(*grid, strict=True)]
    out = subprocess.run([str(exe)], input="\n".join(lines), capture_output=True, text=True,
                         check=True).stdout.split("\n")
    got = np.array([int(line.split()[1]) for line in out if line])
    status = np.array([int(line.split()[0]) for line in out if line])
    assert (status == 0).all()
    np.testing.assert_array_equal(got, np.concatenate(expected))


@pytest.mark.parametrize("cc", ["5.2", "6.0", "7.0", "7.5", "8.0", "8.6", "8.9", "9.0", "12.0"])
def test_max_launchable_regs_is_the_tight_register_limit(cc):
    lim = cc_limits(cc)
    threads = np.array([1, 32, 96, 256, 512, 640, 768, 1024])
    regs = max_launchable_regs(cc, threads)
    step = lim.reg_alloc_unit // lim.warp_size
    launches = occupancy_arrays(cc, threads, regs, 0).blocks_per_sm
    assert (launches >= 1).all()
    over = occupancy_arrays(cc, threads, np.minimum(regs + step, 1000), 0).blocks_per_sm
    assert (over == 0).all()
    assert max_launchable_regs(cc, lim.max_threads_per_block + 1) == 0
