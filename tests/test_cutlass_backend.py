"""The cutlass backend without a GPU: tile mapping and validity (always), and enumeration against
the real nvidia-cutlass Python interface with the device query patched out (when installed)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest

from gemmperf.collect import _cutlass_compat as compat
from gemmperf.collect._cutlass_operands import e4m3_table, tolerance
from gemmperf.collect.backend import DeviceInfo
from gemmperf.collect.cutlass_tiles import (
    DtypeSpec,
    TileSpec,
    c_alignment,
    config_invalid_reason,
    configs_for_tiles,
    dtype_spec,
    leading_dims,
    make_config,
    operand_layouts,
    select_ab_alignment,
    smem_bytes,
    threads_per_block,
    tile_spec,
)
from gemmperf.errors import BackendUnavailableError
from gemmperf.problem import GemmProblem, KernelConfig

HAVE_CUTLASS = importlib.util.find_spec("cutlass_cppgen") is not None
needs_cutlass = pytest.mark.skipif(not HAVE_CUTLASS, reason="nvidia-cutlass is not installed")


# -- stand-ins for cutlass_cppgen's TileDescription (enums are objects with a .name) -----------

def _enum(name: str) -> types.SimpleNamespace:
    return types.SimpleNamespace(name=name)


def fake_td(tile, warps=(2, 2, 1), stages=3, cluster=(1, 1, 1), inst=(16, 8, 16),
            op_class="TensorOp", math_op="multiply_add", element="f16",
            kernel_schedule="ScheduleAuto", epilogue_schedule="ScheduleAuto"):
    mi = types.SimpleNamespace(
        instruction_shape=list(inst), element_a=_enum(element), opcode_class=_enum(op_class),
        math_operation=_enum(math_op))
    return types.SimpleNamespace(
        threadblock_shape=list(tile), warp_count=list(warps), stages=stages,
        cluster_shape=list(cluster), kernel_schedule=_enum(kernel_schedule),
        epilogue_schedule=_enum(epilogue_schedule), tile_scheduler=_enum("Default"),
        math_instruction=mi)


F16 = DtypeSpec("f16", "f16", "f32", "f16", "TensorOp", "f16")
F32_SIMT = DtypeSpec("f32", "f32", "f32", "f32", "Simt", "f32")
TF32 = DtypeSpec("f32", "f32", "f32", "f32", "TensorOp", "tf32")


def test_tile_spec_reads_a_2x_tile_description():
    spec = tile_spec(fake_td((128, 256, 32), warps=(2, 4, 1), stages=3), kernel_cc=80)
    assert spec.api == "2x"
    assert spec.tile == (128, 256, 32) and spec.warps == (2, 4, 1) and spec.stages == 3
    assert spec.instruction == (16, 8, 16) and spec.op_class == "TensorOp"
    assert spec.kernel_schedule is None  # 2.x kernels have no schedule template parameter


def test_tile_spec_reads_a_3x_tile_description():
    td = fake_td((128, 256, 64), warps=(4, 1, 1), stages=0, cluster=(2, 1, 1), inst=(0, 0, 0),
                 kernel_schedule="TmaWarpSpecializedCooperative",
                 epilogue_schedule="TmaWarpSpecializedCooperative")
    spec = tile_spec(td, kernel_cc=90)
    assert spec.api == "3x" and spec.stages is None and spec.instruction is None
    assert spec.warps is None and spec.cluster == (2, 1, 1)
    assert spec.kernel_schedule == "TmaWarpSpecializedCooperative"
    assert threads_per_block(spec, alignment_bytes=16) == 384


def test_configs_cross_2x_tiles_with_swizzles_and_drop_duplicates_and_other_math():
    tds = [
        fake_td((128, 128, 32), warps=(2, 2, 1), stages=3),
        fake_td((128, 128, 32), warps=(2, 2, 1), stages=3),          # same tile, other C type
        fake_td((64, 64, 32), warps=(2, 2, 1), stages=10),
        fake_td((128, 128, 8), warps=(4, 2, 1), stages=2, op_class="Simt", inst=(1, 1, 1)),
    ]
    specs = [tile_spec(td, 80) for td in tds]
    pairs = configs_for_tiles(specs, F16, (8, 8, 8))
    configs = [c for c, _ in pairs]
    assert len(configs) == 2 * 4  # two distinct TensorOp tiles x Identity1/2/4/8
    assert {c.get("swizzle") for c in configs} == {"Identity1", "Identity2", "Identity4",
                                                   "Identity8"}
    big = next(c for c in configs if c.tile_m == 128)
    assert big.threads_per_block == 4 * 32
    assert (big.get("warp_m"), big.get("warp_n"), big.get("warp_k")) == (2, 2, 1)
    # CUTLASS's estimate: stages x (A tile + B tile + 32 B barrier) = 3 x (8192 + 8192 + 32)
    assert big.smem_bytes_per_block == 3 * (2 * 128 * 32 + 2 * 32 * 128 + 32)
    assert big.get("alignment_a") == 8 and big.get("math_inst") == "16x8x16"


def test_tf32_keeps_tensor_core_tf32_and_drops_3xtf32_and_simt():
    specs = [tile_spec(fake_td((128, 128, 16), element="tf32", inst=(16, 8, 8)), 80),
             tile_spec(fake_td((128, 128, 16), element="f32", inst=(16, 8, 8),
                               math_op="multiply_add_fast_f32"), 80),
             tile_spec(fake_td((128, 128, 8), element="f32", op_class="Simt", inst=(1, 1, 1)),
                       80)]
    tf32 = configs_for_tiles(specs, TF32, (4, 4, 4), swizzles=("Identity1",))
    simt = configs_for_tiles(specs, F32_SIMT, (1, 1, 1), swizzles=("Identity1", "StreamK"))
    assert [s.math_element for _, s in tf32] == ["tf32"]
    assert [(s.op_class, c.get("swizzle")) for c, s in simt] == [("Simt", "Identity1")]


def test_3x_tiles_are_not_multiplied_by_swizzle():
    td = fake_td((128, 128, 64), stages=0, cluster=(1, 2, 1), inst=(0, 0, 0),
                 kernel_schedule="TmaWarpSpecializedPingpong",
                 epilogue_schedule="TmaWarpSpecialized")
    pairs = configs_for_tiles([tile_spec(td, 90)], F16, (8, 8, 8))
    [(config, _)] = pairs
    assert config.get("swizzle") is None and config.get("cluster_n") == 2
    assert config.smem_bytes_per_block is None and config.threads_per_block == 384
    assert config.get("math_inst") == "auto" and config.get("api") == "3x"


@pytest.mark.parametrize(("schedule", "align_bytes", "threads"), [
    ("TmaWarpSpecialized", 16, 256), ("TmaWarpSpecializedPingpong", 16, 384),
    ("TmaWarpSpecializedCooperativeFP8FastAccum", 16, 384), ("CpAsyncWarpSpecialized", 4, 256),
    ("ScheduleAuto", 16, 384), ("ScheduleAuto", 8, 256),
])
def test_sm90_threads_follow_the_kernel_schedule(schedule, align_bytes, threads):
    spec = TileSpec(90, "3x", (128, 128, 64), None, None, (1, 1, 1), None, "TensorOp",
                    "multiply_add", "f16", kernel_schedule=schedule)
    assert threads_per_block(spec, align_bytes) == threads


def test_alignment_selection():
    keys = ["8 8 8", "4 4 4", "2 2 2"]
    assert select_ab_alignment(keys, 1024, 4096) == (8, 8)
    assert select_ab_alignment(keys, 1028, 4096) == (4, 4)
    assert select_ab_alignment(keys, 1001, 4096) is None
    assert select_ab_alignment([*keys, "1 1 1"], 1001, 4096) == (1, 1)
    assert select_ab_alignment(["8 8 4", "4 4 8"], 64, 64) == (8, 8)
    assert c_alignment(1024, "f16") == 8 and c_alignment(1024, "f32") == 4
    assert c_alignment(1002, "f16") == 2 and c_alignment(7, "bf16") == 1


def test_layouts_and_leading_dims_follow_blas_column_major_naming():
    p = GemmProblem(m=64, n=32, k=16, layout="tn")
    assert operand_layouts(p) == ("RowMajor", "ColumnMajor", "ColumnMajor")
    assert leading_dims(p) == (16, 16, 64)
    assert leading_dims(GemmProblem(m=64, n=32, k=16, layout="nt")) == (64, 32, 64)


def test_dtype_mapping():
    assert dtype_spec(GemmProblem(8, 8, 8, dtype="fp8"))[0].output == "bf16"
    assert dtype_spec(GemmProblem(8, 8, 8, dtype="tf32"))[0].math_element == "tf32"
    assert dtype_spec(GemmProblem(8, 8, 8, dtype="f16", acc_dtype="f16"))[0].accumulator == "f16"
    for bad in (GemmProblem(8, 8, 8, dtype="f64"), GemmProblem(8, 8, 8, dtype="bf16",
                acc_dtype="f16"), GemmProblem(8, 8, 8, dtype="f16", out_dtype="int8")):
        spec, reason = dtype_spec(bad)
        assert spec is None and reason


def _config(**over) -> KernelConfig:
    spec = TileSpec(80, "2x", (128, 128, 32), (2, 2, 1), 3, (1, 1, 1), (16, 8, 16), "TensorOp",
                    "multiply_add", "f16")
    config = make_config(spec, "Identity1", (8, 8, 8), 16)
    values = {**{k: getattr(config, k) for k in KernelConfig.COMMON}, **config.param_dict, **over}
    return KernelConfig.make("cutlass", **values)


@pytest.mark.parametrize(("problem", "over", "cc", "fragment"), [
    (GemmProblem(1024, 1024, 1024, dtype="f16"), {}, (8, 9), None),
    (GemmProblem(1024, 1024, 1024, dtype="f64"), {}, (8, 9), "not f64"),
    (GemmProblem(1024, 1024, 1024, dtype="fp8"), {}, (8, 0), "fp8 tensor cores need sm_89"),
    (GemmProblem(1024, 1024, 1024, dtype="f16"), {"kernel_cc": 90, "api": "3x"}, (8, 9),
     "built for sm_90"),
    (GemmProblem(1024, 1024, 1024, dtype="f16"), {"kernel_cc": 90, "api": "3x"}, (10, 0),
     "only on compute capability 9.0"),
    (GemmProblem(1024, 1024, 1024, dtype="f16"), {"cluster_m": 2}, (8, 6), "clusters need sm_90"),
    (GemmProblem(1001, 1024, 1024, dtype="f16"), {}, (8, 9), "leading dimension 1001"),
    (GemmProblem(1024, 1024, 1024, dtype="f16"), {"stages": 6, "smem_bytes_per_block": 196736},
     (8, 9), "KiB shared memory"),
    (GemmProblem(1024, 1024, 1024, dtype="f16"),
     {"tile_m": 64, "kernel_schedule": "TmaWarpSpecializedCooperative"}, (9, 0), "M >= 128"),
    (GemmProblem(1024, 1024, 1024, dtype="f16"), {"swizzle": "Zigzag"}, (8, 9), "swizzle"),
    (GemmProblem(1024, 1024, 1024, dtype="f16"), {"swizzle": "StreamK"}, (8, 9), None),
    (GemmProblem(512, 512, 512, batch=4, dtype="f16"), {"swizzle": "StreamK"}, (8, 9),
     "stream-K runs unbatched problems only"),
])
def test_invalid_reasons(problem, over, cc, fragment):
    reason = config_invalid_reason(problem, _config(**over), cc)
    if fragment is None:
        assert reason is None
    else:
        assert reason is not None and fragment in reason and "\n" not in reason


def test_smem_limit_comes_from_the_compute_capability_table():
    config = _config(smem_bytes_per_block=150 * 1024)
    problem = GemmProblem(1024, 1024, 1024, dtype="f16")
    assert config_invalid_reason(problem, config, (8, 0)) is None      # 163 KiB on sm_80
    assert "sm_89" in config_invalid_reason(problem, config, (8, 9))  # 99 KiB on sm_89
    assert smem_bytes(TileSpec(80, "2x", (256, 128, 64), (4, 2, 1), 4, (1, 1, 1), None,
                               "TensorOp", "multiply_add", "f16")) == 196736


def test_e4m3_table_and_tolerances():
    table = e4m3_table()
    assert table[0x38] == 1.0 and table[0x7E] == 448.0 and table[0x01] == 2.0**-9
    assert np.isnan(table[0x7F]) and np.isnan(table[0xFF]) and table[0xB8] == -1.0
    assert np.isfinite(table).sum() == 254
    f16 = tolerance(GemmProblem(64, 64, 1024, dtype="f16"), "f16", "f32")
    assert f16 == pytest.approx(2.0**-10 + 1024 * 2.0**-22)
    assert tolerance(GemmProblem(64, 64, 1 << 20, dtype="fp8"), "bf16", "f32") == 1.0


# -- quirk handling (fake modules; no CUTLASS needed) -----------------------------------------

def test_in_cache_dir_restores_cwd_and_tempdir(tmp_path):
    before, before_tmp = os.getcwd(), tempfile.tempdir
    with compat.in_cache_dir(tmp_path / "c"):
        assert Path.cwd() == (tmp_path / "c").resolve()
        tempfile.tempdir = "./"  # what CUTLASS's compiler does
    assert os.getcwd() == before and tempfile.tempdir == before_tmp


def test_relaxed_version_check_lets_cuda_python_12_through_nvcc_13_only():
    def failing_check():
        raise Exception("Python CUDA version of 12.9.10 must be >= NVCC version of 13.0")

    fake = types.SimpleNamespace(_nvcc_version=None, nvcc_version=lambda: "13.0")
    compat._relaxed_check(fake, failing_check, "12.9.10")()
    assert fake._nvcc_version == "13.0"
    older = types.SimpleNamespace(_nvcc_version=None, nvcc_version=lambda: "12.6")
    with pytest.raises(Exception, match="must be"):
        compat._relaxed_check(older, failing_check, "12.4.0")()


def test_cuda_python_13_is_reported_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda", types.ModuleType("cuda"))  # no __version__
    with pytest.raises(BackendUnavailableError, match=r"cuda-python>=12.3,<13"):
        compat._cuda_python_version()


def test_importing_gemmperf_and_the_backend_does_not_import_cutlass():
    # (cuda-bindings' .pth file may put a bare "cuda" namespace in sys.modules at start-up.)
    code = ("import sys, gemmperf, gemmperf.collect.cutlass_backend, gemmperf.collect.backend; "
            "print(*(m in sys.modules for m in ('cutlass_cppgen', 'cutlass_library', "
            "'cuda.cuda', 'cupy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"] * 4


# -- against the real cutlass_cppgen (device query replaced; see _cutlass_compat) -------------

@pytest.fixture(scope="module")
def cutlass(tmp_path_factory):
    if not HAVE_CUTLASS:
        pytest.skip("nvidia-cutlass is not installed")
    try:
        return compat.load(tmp_path_factory.mktemp("cutlass-cache"))
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))


def _plan(cutlass, cc, element, acc, layout="RowMajor"):
    kernel_cc = compat.generator_kernel_cc(cutlass, cc)
    compat.use_registry(cutlass, cc, kernel_cc)
    dt, lt = cutlass.DataType, cutlass.LayoutType
    return cutlass.op.Gemm(element=getattr(dt, element), element_accumulator=getattr(dt, acc),
                           layout=getattr(lt, layout), cc=cc)


@needs_cutlass
@pytest.mark.parametrize(("cc", "count"), [(80, 132), (89, 90), (90, 236)])
def test_interface_tile_counts_f16_in_f32_acc(cutlass, cc, count):
    plan = _plan(cutlass, cc, "f16", "f32")
    assert plan.opclass == cutlass.OpcodeClass.TensorOp
    assert len(plan.tile_descriptions()) == count


@needs_cutlass
def test_interface_tile_counts_f32_at_sm89(cutlass):
    plan = _plan(cutlass, 89, "f32", "f32")
    plan.opclass = cutlass.OpcodeClass.TensorOp
    assert len(plan.tile_descriptions()) == 159
    plan.opclass = cutlass.OpcodeClass.Simt
    assert len(plan.tile_descriptions()) == 11


@pytest.fixture(scope="module")
def backends(cutlass, tmp_path_factory):
    from gemmperf.collect.cutlass_backend import CutlassBackend

    cache = tmp_path_factory.mktemp("cutlass-backend")
    return {cc: CutlassBackend(DeviceInfo("offline", cc), cache_dir=cache)
            for cc in ((8, 0), (8, 9), (9, 0))}


@needs_cutlass
@pytest.mark.parametrize(("cc", "dtype", "layout", "tiles", "per_tile"), [
    ((8, 9), "f16", "nn", 15, 4), ((8, 9), "bf16", "tn", 15, 4), ((8, 9), "tf32", "nt", 14, 4),
    ((8, 9), "f32", "tt", 11, 4), ((8, 0), "f16", "nn", 22, 4), ((9, 0), "fp8", "tn", 72, 1),
    ((9, 0), "f16", "nn", 72, 1), ((9, 0), "tf32", "tn", 62, 1),
])
def test_backend_space_on_real_cutlass(backends, cc, dtype, layout, tiles, per_tile):
    backend = backends[cc]
    problem = GemmProblem(1024, 2048, 512, dtype=dtype, layout=layout)
    configs = backend.configs(problem)
    assert len(configs) == tiles * per_tile == len(set(configs))
    assert all(c.family == "cutlass" for c in configs)
    assert [backend.invalid_reason(problem, c) for c in configs] == [None] * len(configs)
    assert all(c.threads_per_block and c.threads_per_block % 32 == 0 for c in configs)
    if cc == (9, 0):
        assert {c.get("api") for c in configs} == {"3x"}
        assert all(c.get("kernel_schedule") for c in configs)
    else:
        assert all(c.stages and c.smem_bytes_per_block for c in configs)


@needs_cutlass
def test_fp8_only_on_sm90_tn(backends):
    assert backends[(8, 9)].configs(GemmProblem(256, 256, 256, dtype="fp8", layout="tn")) == []
    assert backends[(9, 0)].configs(GemmProblem(256, 256, 256, dtype="fp8", layout="nn")) == []


@needs_cutlass
def test_misaligned_problem_gets_narrower_kernels(backends):
    backend = backends[(8, 9)]
    aligned = GemmProblem(1024, 1024, 1024, dtype="f16")
    odd = GemmProblem(1002, 1024, 1024, dtype="f16")  # column-major A: lda = m = 2 x 501
    wide = backend.configs(aligned)
    narrow = backend.configs(odd)
    assert {c.get("alignment_a") for c in wide} == {8}
    assert {c.get("alignment_a") for c in narrow} == {2}
    assert "leading dimension 1002" in backend.invalid_reason(odd, wide[0])
    assert backend.invalid_reason(odd, narrow[0]) is None


@needs_cutlass
def test_loading_cutlass_writes_nothing_to_the_working_directory(tmp_path):
    cache = tmp_path / "cache"
    code = ("from pathlib import Path; from gemmperf.collect import _cutlass_compat as c; "
            f"c.load(Path({str(cache)!r})); print(c.versions()['cuda_python'])")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True)
    assert run.stdout.strip().startswith("12.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    assert (cache / "compiled_cache.db").is_file()


@needs_cutlass
def test_generator_kernel_cc(cutlass):
    assert [compat.generator_kernel_cc(cutlass, cc) for cc in (80, 86, 89, 90, 120)] == [
        80, 80, 80, 90, 100]


@needs_cutlass
def test_kernel_generations_per_device(cutlass, tmp_path):
    from gemmperf.collect.cutlass_backend import CutlassBackend

    def gens(cc, extra=()):
        return CutlassBackend(DeviceInfo("offline", cc), extra_kernel_ccs=extra,
                              cache_dir=tmp_path).kernel_ccs()

    assert gens((9, 0)) == [90] and gens((9, 0), extra=(80,)) == [90, 80]
    assert gens((8, 9), extra=(90,)) == [80]   # newer generations are ignored
    assert gens((12, 0)) == [80]               # sm_100 (tcgen05) kernels do not run on sm_120


@needs_cutlass
def test_prepare_without_a_driver_is_a_one_line_error(backends):
    problem = GemmProblem(256, 256, 256, dtype="f16")
    backend = backends[(8, 9)]
    config = backend.configs(problem)[0]
    try:
        prepared = backend.prepare(problem, config)
    except BackendUnavailableError as exc:
        assert "no usable CUDA device" in str(exc) and "\n" not in str(exc)
    else:  # a machine with a GPU (and nvcc) gets a real kernel
        prepared.release()
        pytest.skip("a CUDA device is present")


@pytest.mark.parametrize(("output", "dtype"), [("f32", np.float32), ("f16", np.float16),
                                               ("bf16", np.uint16)])
def test_verification_poisons_d_so_an_unwritten_output_fails(output, dtype):
    from gemmperf.collect._cutlass_operands import Operands

    ops = Operands(a=None, b=None, d=np.ones((1, 2, 3), dtype=dtype), element="f16",
                   output=output, layout="nn", stream_ptr=0, cupy=np)
    ops.poison()
    view, element = ops.logical("d")
    assert np.isnan(ops.decode(view, element)).all()


def test_cutlass_is_pointed_at_the_backends_device(monkeypatch, tmp_path):
    from gemmperf.collect.cutlass_backend import CutlassBackend

    monkeypatch.delenv("CUTLASS_CUDA_DEVICE_ID", raising=False)
    backend = CutlassBackend(DeviceInfo("offline", (8, 9), index=1), cache_dir=tmp_path)
    backend._pin_device()
    assert os.environ["CUTLASS_CUDA_DEVICE_ID"] == "1"       # cutlass_cppgen's default is 0
    backend._pin_device()                                    # idempotent
    other = CutlassBackend(DeviceInfo("offline", (8, 9), index=0), cache_dir=tmp_path)
    with pytest.raises(BackendUnavailableError, match="CUTLASS_CUDA_DEVICE_ID=1 but"):
        other._pin_device()
