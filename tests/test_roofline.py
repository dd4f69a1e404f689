"""Roofline model: hand-derived values, vector == scalar, addition, properties, DataFrame entry."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gemmperf.errors import InvalidConfigError, InvalidProblemError
from gemmperf.hardware.specs import get_gpu
from gemmperf.problem import GemmProblem, KernelConfig
from gemmperf.roofline import (
    L2_RESIDENT_FRACTION,
    RooflineEstimate,
    default_tile,
    roofline,
    roofline_arrays,
)
from gemmperf.roofline_frame import FRAME_COLUMNS, roofline_frame

H100 = get_gpu("h100-sxm")   # 132 SMs, BF16 989.4 TFLOP/s dense, 3352 GB/s, 50 MiB L2
A100 = get_gpu("a100-sxm4-80gb")


def test_h100_bf16_4096_cubed_is_compute_bound():
    est = roofline(GemmProblem(4096, 4096, 4096, dtype="bf16"), H100)
    flops = 2 * 4096**3
    assert float(est.flops) == flops
    assert float(est.compute_time_s) == pytest.approx(flops / 989.4e12, rel=1e-12)
    # A and B read once, C written once, 2 bytes each: 3 x 4096^2 x 2.
    assert float(est.compulsory_bytes) == 3 * 4096**2 * 2
    assert float(est.memory_time_s) == pytest.approx(3 * 4096**2 * 2 / 3.352e12)
    assert est.bound == "compute"
    assert float(est.lower_bound_s) == float(est.compute_time_s)
    assert float(est.attainable_flops_s) == pytest.approx(989.4e12)
    assert float(est.arithmetic_intensity) == pytest.approx(flops / (6 * 4096**2))


def test_gemv_is_memory_bound():
    # m = 1: the k x n weight matrix dominates the bytes; intensity ~ 1 FLOP/byte.
    est = roofline(GemmProblem(1, 8192, 8192, dtype="bf16"), H100)
    nbytes = (8192 + 8192 * 8192 + 8192) * 2
    assert float(est.compulsory_bytes) == nbytes
    assert est.bound == "memory"
    assert float(est.lower_bound_s) == pytest.approx(nbytes / 3.352e12)
    assert float(est.attainable_flops_s) == pytest.approx(2 * 8192**2 / nbytes * 3.352e12)


def test_output_bytes_follow_problem_dtype_rules():
    # tf32: f32 operands and output; fp8: 1-byte operands, bf16 output.
    tf32 = roofline(GemmProblem(256, 512, 1024, dtype="tf32"), H100)
    assert float(tf32.compulsory_bytes) == (256 * 1024 + 1024 * 512) * 4 + 256 * 512 * 4
    assert float(tf32.compute_time_s) == pytest.approx(2 * 256 * 512 * 1024 / 494.7e12)
    fp8 = roofline(GemmProblem(256, 512, 1024, dtype="fp8"), H100)
    assert float(fp8.compulsory_bytes) == (256 * 1024 + 1024 * 512) * 1 + 256 * 512 * 2


def test_waves_and_tail_efficiency_small_cases():
    cfg = KernelConfig.make("t", tile_m=128, tile_n=128, tile_k=32)
    # 1024 x 1024 -> 8 x 8 = 64 tiles. Explicit 1 block/SM on 132 SMs: 64/132 of one wave.
    est = roofline_arrays(1024, 1024, 1024, a_bytes=2, c_bytes=2, gpu=H100, math_key="bf16",
                          tile_m=128, tile_n=128, tile_k=32, blocks_per_sm=1)
    assert float(est.tiles) == 64
    assert float(est.waves) == pytest.approx(64 / 132)
    assert float(est.tail_efficiency) == pytest.approx(64 / 132)
    # 4096^2 with batch 2 -> 2 x 32 x 32 = 2048 tiles, 2 blocks/SM -> 264 slots: 7.76 -> 8 waves.
    est = roofline_arrays(4096, 4096, 64, 2, a_bytes=2, c_bytes=2, gpu=H100, math_key="bf16",
                          tile_m=128, tile_n=128, blocks_per_sm=2)
    assert float(est.waves) == pytest.approx(2048 / 264)
    assert float(est.tail_efficiency) == pytest.approx(2048 / (8 * 264))
    # Wave-quantised compute: 8 waves x 264 tiles x (2 x 128 x 128 x 64) FLOPs at peak.
    assert float(est.tile_compute_time_s) == pytest.approx(8 * 264 * 2 * 128 * 128 * 64 / 989.4e12)
    # Default config: 128x128x32 tensor tile; footprint 256 threads x 128 regs (2 blocks by
    # registers), 3 x 256 x 32 x 2 = 48 KiB smem -> 2 blocks on sm_90.
    default = roofline(GemmProblem(1024, 1024, 1024, dtype="bf16"), H100, cfg)
    assert float(default.waves) == pytest.approx(64 / 264)


def test_tile_traffic_without_l2_is_the_textbook_formula():
    # One SM, one block, no L2: every output tile streams its A and B slabs from DRAM.
    tiny = dataclasses.replace(H100, sm_count=1, l2_bytes=0)
    m, n, k = 1000, 700, 300
    est = roofline_arrays(m, n, k, a_bytes=2, c_bytes=4, gpu=tiny, math_key="bf16",
                          tile_m=128, tile_n=64, blocks_per_sm=1)
    a, b, c = m * k * 2, k * n * 2, m * n * 4
    assert float(est.tile_bytes) == a * math.ceil(n / 64) + b * math.ceil(m / 128) + c


def test_wave_sharing_with_grouped_rasterisation():
    # 4096^3 bf16, 128 x 128 tiles: a 32 x 32 grid; no L2 residency, so only wave sharing helps.
    no_l2 = dataclasses.replace(H100, l2_bytes=0)
    one = 4096 * 4096 * 2   # bytes of A, of B and of C
    # 132 slots < 8 x 32: a wave covers 8 tile rows x ceil(132 / 8) = 17 columns, so A is
    # streamed ceil(32 / 17) = 2 times and B ceil(32 / 8) = 4 times.
    est = roofline_arrays(4096, 4096, 4096, a_bytes=2, c_bytes=2, gpu=no_l2, math_key="bf16",
                          tile_m=128, tile_n=128, blocks_per_sm=1)
    assert float(est.tile_bytes) == one * 2 + one * 4 + one
    # 264 slots >= 8 x 32: whole groups, 9 full rows per wave: A once, B ceil(32 / 9) = 4 times.
    est = roofline_arrays(4096, 4096, 4096, a_bytes=2, c_bytes=2, gpu=no_l2, math_key="bf16",
                          tile_m=128, tile_n=128, blocks_per_sm=2)
    assert float(est.tile_bytes) == one * 1 + one * 4 + one


def test_l2_residency_drops_traffic_to_compulsory():
    # A (2048 x 1024 bf16, 4 MiB) and B (1024 x 2048, 4 MiB) fit together in half of 50 MiB.
    est = roofline_arrays(2048, 2048, 1024, a_bytes=2, c_bytes=2, gpu=H100, math_key="bf16",
                          tile_m=64, tile_n=64, blocks_per_sm=1)
    assert float(est.tile_bytes) == float(est.compulsory_bytes)
    # Only the smaller operand fits: 2048 x 16384 A (64 MiB) streams, 16384 x 256 B (8 MiB) stays.
    m, n, k = 2048, 256, 16384
    assert k * n * 2 <= L2_RESIDENT_FRACTION * H100.l2_bytes < m * k * 2
    est = roofline_arrays(m, n, k, a_bytes=2, c_bytes=2, gpu=H100, math_key="bf16",
                          tile_m=128, tile_n=128, blocks_per_sm=1)
    # grid 16 x 2, 132 slots: the whole grid is one wave, so A is read once anyway.
    assert float(est.tile_bytes) == float(est.compulsory_bytes)


def test_vector_matches_scalar():
    rng = np.random.default_rng(1)
    shapes = rng.integers(1, 9000, size=(40, 3))
    batch = rng.integers(1, 5, size=40)
    for dtype in ("bf16", "tf32", "f32", "fp8"):
        probe = GemmProblem(1, 1, 1, dtype=dtype)
        est = roofline_arrays(shapes[:, 0], shapes[:, 1], shapes[:, 2], batch,
                              a_bytes=probe.element_bytes, c_bytes=probe.output_bytes_per_element,
                              gpu=H100, math_key=probe.peak_key)
        for i in range(40):
            problem = GemmProblem(*map(int, shapes[i]), batch=int(batch[i]), dtype=dtype)
            one = roofline(problem, H100)
            for field in dataclasses.fields(RooflineEstimate):
                assert getattr(one, field.name) == pytest.approx(getattr(est, field.name)[i])


def test_addition_and_total():
    a = roofline(GemmProblem(4096, 4096, 4096, dtype="bf16"), H100)
    b = roofline(GemmProblem(1, 8192, 8192, dtype="bf16"), H100)
    s = a + b
    assert float(s.flops) == float(a.flops) + float(b.flops)
    assert float(s.lower_bound_s) == pytest.approx(float(a.lower_bound_s) + float(b.lower_bound_s))
    assert float(s.tail_efficiency) == pytest.approx(
        (float(a.tiles) + float(b.tiles)) / (float(a.tile_slots) + float(b.tile_slots)))
    assert float(sum([a, b]).estimate_s) == pytest.approx(float(s.estimate_s))
    rows = roofline_arrays([4096, 1], [4096, 8192], [4096, 8192], a_bytes=2, c_bytes=2, gpu=H100,
                           math_key="bf16")
    assert len(rows) == 2
    assert float(rows.total().estimate_s) == pytest.approx(float(s.estimate_s))


def test_unlaunchable_config_has_infinite_estimate():
    est = roofline_arrays([512, 512], 512, 512, a_bytes=2, c_bytes=2, gpu=H100, math_key="bf16",
                          blocks_per_sm=[0, 1])
    assert np.isinf(est.estimate_s[0]) and np.isfinite(est.estimate_s[1])
    assert est.tail_efficiency[0] == 0
    cfg = KernelConfig.make("t", tile_m=256, tile_n=256, tile_k=64, smem_bytes_per_block=300_000)
    est = roofline(GemmProblem(512, 512, 512, dtype="bf16"), H100, cfg)
    assert math.isinf(float(est.estimate_s))


def test_bad_input():
    with pytest.raises(InvalidProblemError, match="m must be positive"):
        roofline_arrays([16, -1], 16, 16, a_bytes=2, c_bytes=2, gpu=H100, math_key="bf16")
    with pytest.raises(InvalidProblemError, match="no fp64 math path"):
        roofline(GemmProblem(16, 16, 16, dtype="f64"), dataclasses.replace(
            A100, peak_flops={"fp16": 312e12}))
    with pytest.raises(InvalidConfigError, match="tile_n"):
        roofline_arrays(16, 16, 16, a_bytes=2, c_bytes=2, gpu=H100, math_key="bf16", tile_n=0)


def test_default_tiles():
    assert default_tile("bf16") == (128, 128, 32)
    assert default_tile("fp32") == (128, 128, 8)
    # Skinny problems get the next power of two (>= 16) instead of padding to 128.
    tm, tn, tk = default_tile("bf16", np.array([1, 24, 100, 5000]), 64)
    assert tm.tolist() == [16, 32, 128, 128] and tn == 64 and tk == 32
    est = roofline(GemmProblem(8, 8192, 8192, dtype="bf16"), H100)
    # One 16-row tile per 128 columns = 64 tiles, split-K by 264 slots // 64 = 4.
    assert float(est.tiles) == 64 * 4


def test_default_split_k_fills_the_gpu():
    # 256 x 256 x 4096 bf16 on H100: 4 tiles of 128 x 128, 2 blocks/SM -> 264 slots, so split
    # min(264 // 4, 4096 // 512) = 8 ways: 32 tiles, each 512 deep, one wave.
    est = roofline(GemmProblem(256, 256, 4096, dtype="bf16"), H100)
    assert float(est.tiles) == 32 and float(est.waves) == pytest.approx(32 / 264)
    assert float(est.tile_compute_time_s) == pytest.approx(264 * 2 * 128 * 128 * 512 / 989.4e12)
    # The 8 x 256 x 256 fp32 workspace (2 MiB) stays in L2: no extra DRAM traffic.
    assert float(est.tile_bytes) == float(est.compulsory_bytes)
    # An explicit tile config means no split unless it says so.
    cfg = KernelConfig.make("t", tile_m=128, tile_n=128)
    assert float(roofline(GemmProblem(256, 256, 4096, dtype="bf16"), H100, cfg).tiles) == 4
    cfg = KernelConfig.make("t", tile_m=128, tile_n=128, split_k=2)
    assert float(roofline(GemmProblem(256, 256, 4096, dtype="bf16"), H100, cfg).tiles) == 8


def test_split_k_workspace_counts_when_it_leaves_l2():
    tiny_l2 = dataclasses.replace(H100, l2_bytes=1024)
    est = roofline_arrays(256, 256, 4096, a_bytes=2, c_bytes=2, gpu=tiny_l2, math_key="bf16",
                          tile_m=128, tile_n=128, blocks_per_sm=1, split_k=4)
    # Wave covers the whole 2 x 2 grid (one pass each) + workspace 4 x 256 x 256 x 4 written+read.
    compulsory = (256 * 4096 * 2) * 2 + 256 * 256 * 2
    assert float(est.tile_bytes) == compulsory + 2 * 4 * 256 * 256 * 4


sizes = st.integers(min_value=1, max_value=20000)


@settings(max_examples=300, deadline=None)
@given(m=sizes, n=sizes, k=sizes, batch=st.integers(1, 64),
       tile_m=st.sampled_from([16, 32, 64, 128, 256]), tile_n=st.sampled_from([16, 64, 128, 256]),
       blocks=st.integers(1, 32), dtype=st.sampled_from(["bf16", "tf32", "f32", "fp8", "f16"]),
       gpu=st.sampled_from(["h100-sxm", "a100-sxm4-80gb", "a40"]))
def test_properties(m, n, k, batch, tile_m, tile_n, blocks, dtype, gpu):
    p = GemmProblem(m, n, k, batch=batch, dtype=dtype)
    g = get_gpu(gpu)
    assume(p.peak_key in g.peak_flops)   # fp8 only on H100
    est = roofline_arrays(m, n, k, batch, a_bytes=p.element_bytes,
                          c_bytes=p.output_bytes_per_element, gpu=g, math_key=p.peak_key,
                          tile_m=tile_m, tile_n=tile_n, blocks_per_sm=blocks)
    assert float(est.lower_bound_s) <= float(est.estimate_s) * (1 + 1e-12)
    assert float(est.tile_bytes) >= float(est.compulsory_bytes)
    assert 0 < float(est.tail_efficiency) <= 1
    assert float(est.attainable_flops_s) <= g.peak(p.peak_key) * (1 + 1e-12)
    assert float(est.flops) == 2 * batch * m * n * k


def test_frame_groups_by_gpu_and_dtype():
    df = pd.DataFrame({
        "m": [4096, 1, 777, 2048], "n": [4096, 8192, 333, 2048], "k": [4096, 8192, 999, 512],
        "batch": [1, 1, 3, None], "dtype": ["bf16", "bf16", "f32", "float16"],
        "acc_dtype": [None, None, None, "f16"], "gpu": ["h100-sxm", "a40", "h100-sxm", "a40"],
        "tile_m": [None, 64, None, 256], "tile_n": [None, 64, None, 128], "tile_k": [None] * 4,
    }, index=[10, 11, 12, 13])
    out = roofline_frame(df)
    assert list(out.columns) == list(FRAME_COLUMNS) and list(out.index) == [10, 11, 12, 13]
    for i, row in enumerate(df.itertuples()):
        cfg = KernelConfig.make("t", tile_m=None if pd.isna(row.tile_m) else int(row.tile_m),
                                tile_n=None if pd.isna(row.tile_n) else int(row.tile_n))
        batch = 1 if pd.isna(row.batch) else int(row.batch)
        acc = None if pd.isna(row.acc_dtype) else row.acc_dtype
        problem = GemmProblem(row.m, row.n, row.k, batch=batch, dtype=row.dtype, acc_dtype=acc)
        one = roofline(problem, get_gpu(row.gpu), cfg)
        assert out["estimate_s"].iloc[i] == pytest.approx(float(one.estimate_s))
        assert out["bound"].iloc[i] == one.bound
    assert out["math_key"].tolist() == ["bf16", "bf16", "fp32", "fp16_acc16"]
    assert out["blocks_per_sm"].iloc[0] == 2
    prefixed = roofline_frame(df, prefix="rl_")
    assert prefixed.columns[0] == "rl_flops"


def test_frame_uses_launch_footprint_columns():
    df = pd.DataFrame({"m": [4096] * 2, "n": [4096] * 2, "k": [4096] * 2, "dtype": ["bf16"] * 2,
                       "threads_per_block": [256, None], "regs_per_thread": [64, None],
                       "smem_bytes_per_block": [48 * 1024, None], "tile_m": [128, 128],
                       "tile_n": [128, 128], "tile_k": [32, 32]})
    out = roofline_frame(df, gpu=A100)
    # Row 0: the A100 occupancy case (3 blocks); row 1: default footprint (2 blocks by registers).
    assert out["blocks_per_sm"].tolist() == [3, 2]


def test_frame_missing_columns():
    with pytest.raises(InvalidProblemError, match="gpu"):
        roofline_frame(pd.DataFrame({"m": [1], "n": [1], "k": [1], "dtype": ["bf16"]}))


@pytest.mark.shared_data
def test_lower_bound_holds_on_real_library_timings(shared_data):
    # Every bf16/TF32 row of XLA's H100 table and every Vidur fp16 row (A100 80GB, A40) must take
    # at least the strict bound (see benchmarks/roofline_sanity.py for the SKU choice).
    xla = pd.read_csv(shared_data / "xla_matmul_perf_h100.csv")
    xla = xla[xla["dtype"].isin(["bf16xbf16->bf16", "f32xf32->f32"])]
    frame = pd.DataFrame({"m": xla["m"], "n": xla["n"], "k": xla["k"], "batch": xla["b"],
                          "dtype": np.where(xla["dtype"].str.startswith("bf16"), "bf16", "tf32")})
    est = roofline_frame(frame, gpu=H100)
    assert (xla["time_us_derived"] * 1e-6 >= est["lower_bound_s"]).all()

    vidur = pd.read_csv(shared_data / "vidur_gemm_a100_a40.csv.gz")
    for family, key in (("a100", "a100-sxm4-80gb"), ("a40", "a40")):
        rows = vidur[vidur["gpu"] == family]
        frame = pd.DataFrame({"m": rows["M"], "n": rows["N"], "k": rows["K"], "dtype": "f16"})
        est = roofline_frame(frame, gpu=get_gpu(key))
        assert (rows["time_ms_min"] * 1e-3 >= est["lower_bound_s"]).all()
