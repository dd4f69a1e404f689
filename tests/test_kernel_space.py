"""The tiled/blocked parameter spaces, validity reasons, names and launch geometry."""

from __future__ import annotations

import pytest

from gemmperf.collect import kernel_space as ks
from gemmperf.errors import InvalidConfigError
from gemmperf.hardware.occupancy import compute_capabilities
from gemmperf.problem import GemmProblem, KernelConfig


def test_tiled_space_is_the_six_square_tiles():
    configs = ks.tiled_space()
    assert [c.tile_m for c in configs] == [1, 2, 4, 8, 16, 32]
    assert configs[4] == KernelConfig.make("tiled", tile_m=16, tile_n=16, tile_k=16,
                                           threads_per_block=256)
    assert [ks.kernel_name(c) for c in configs][:2] == ["tiled_sgemm<1>", "tiled_sgemm<2>"]


def test_blocked_space_obeys_every_rule():
    configs = ks.blocked_space()
    assert len(configs) == 160          # of 216 candidates
    assert len(set(configs)) == len(configs)
    limit = min(c.smem_per_block_default_bytes for c in compute_capabilities())
    for config in configs:
        p = ks.kernel_params(config)
        assert p.config() == config
        assert p.bm % p.tm == 0 and p.bn % p.tn == 0
        assert 32 <= p.threads <= 1024 and p.threads == config.threads_per_block
        assert (p.bm * p.bk // 4) % p.threads == 0 and (p.bk * p.bn // 4) % p.threads == 0
        assert p.smem_bytes == p.stages * (p.bm + p.bn) * p.bk * 4 <= limit
    stages = {c.stages for c in configs}
    assert stages == {1, 2}


def test_every_invalid_blocked_candidate_says_why_and_what_to_do():
    invalid = [p for p in ks.blocked_candidates() if p.invalid_reason() is not None]
    assert len(invalid) == 216 - 160
    for p in invalid:
        reason = p.invalid_reason()
        assert reason.startswith(ks.kernel_name_of(p) + ":")
        assert any(w in reason for w in ("use ", "raise ", "smaller", "larger")), reason
    too_few = ks.BlockedParams(32, 32, 8, 8, 8, 1)
    assert "16 threads per block" in too_few.invalid_reason()
    too_much_smem = ks.BlockedParams(128, 128, 32, 8, 8, 2)
    assert "64 KiB static shared memory" in too_much_smem.invalid_reason()


def test_kernel_name_is_the_template_expression():
    p = ks.BlockedParams(128, 64, 16, 8, 4, 2)
    assert ks.kernel_name_of(p) == "blocked_sgemm<128, 64, 16, 8, 4, 2>"
    assert ks.kernel_name(p.config()) == ks.kernel_name_of(p)


def test_inconsistent_or_incomplete_configs_are_rejected():
    with pytest.raises(InvalidConfigError, match="tile_n is 8 but TILE=16"):
        ks.kernel_params(KernelConfig.make("tiled", tile_m=16, tile_n=8))
    with pytest.raises(InvalidConfigError, match="lacks thread_m"):
        ks.kernel_params(KernelConfig.make("blocked", tile_m=64, tile_n=64, tile_k=8,
                                           thread_n=4))
    with pytest.raises(InvalidConfigError, match="threads_per_block is 64"):
        ks.kernel_params(KernelConfig.make("blocked", tile_m=64, tile_n=64, tile_k=8,
                                           thread_m=4, thread_n=4, threads_per_block=64))
    with pytest.raises(InvalidConfigError, match="not a hand-written kernel"):
        ks.kernel_params(KernelConfig.make("cutlass", tile_m=128))


def test_problem_level_reasons():
    tiled16 = ks.TiledParams(16).config()
    assert ks.invalid_reason(GemmProblem(64, 64, 64), tiled16) is None
    assert "use the cublas or cutlass" in ks.invalid_reason(
        GemmProblem(64, 64, 64, dtype="f16"), tiled16)
    assert "layout nn" in ks.invalid_reason(GemmProblem(64, 64, 64, layout="tn"), tiled16)
    assert "writes f32" in ks.invalid_reason(GemmProblem(64, 64, 64, out_dtype="f16"), tiled16)
    # TILE=1 puts one block row per matrix row: grid y is limited to 65535.
    reason = ks.invalid_reason(GemmProblem(70000, 8, 8), ks.TiledParams(1).config())
    assert "grid y = ceil(m / 1) = 70000 exceeds 65535" in reason
    assert "split the batch" in ks.invalid_reason(GemmProblem(8, 8, 8, batch=70000), tiled16)
    assert "TILE must be one of" in ks.invalid_reason(
        GemmProblem(8, 8, 8), KernelConfig.make("tiled", tile_m=3, tile_n=3, tile_k=3))
    bad = ks.BlockedParams(32, 32, 8, 8, 8, 1).config()
    assert "fewer than one warp" in ks.invalid_reason(GemmProblem(8, 8, 8), bad)


def test_launch_geometry_covers_the_matrix():
    problem = GemmProblem(100, 37, 50, batch=3)
    grid, block = ks.launch_geometry(ks.TiledParams(16), problem)
    assert grid == (3, 7, 3) and block == (16, 16, 1)
    grid, block = ks.launch_geometry(ks.BlockedParams(128, 64, 16, 8, 4, 2), problem)
    assert grid == (1, 1, 3) and block == (256, 1, 1)


def test_source_paths_exist():
    for family in ks.FAMILIES:
        assert ks.source_path(family).is_file()
    with pytest.raises(InvalidConfigError):
        ks.source_path("cublas")
