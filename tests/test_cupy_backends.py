"""The cupy backends without a GPU.

* Backend logic (configs, validity against a device's limits, registration, lazy import).
* The operand/verification plumbing and the cuBLAS layout mapping, run on numpy through a
  small stand-in that implements the few cupy calls involved.
* NVRTC: the exact RawModule source, options and name expressions compile through cupy's own
  compile path once the per-device arch query is replaced (skipped without cupy or NVRTC).
"""

from __future__ import annotations

import math
import subprocess
import sys
import types

import numpy as np
import pytest

from gemmperf.collect import backend as backend_mod
from gemmperf.collect import cublas_batched, ptxas
from gemmperf.collect import cupy_backends as cb
from gemmperf.collect import cupy_support as cs
from gemmperf.collect import kernel_resources as kr
from gemmperf.collect import kernel_space as ks
from gemmperf.collect.backend import DeviceInfo
from gemmperf.errors import InvalidConfigError
from gemmperf.problem import GemmProblem, KernelConfig

ADA = DeviceInfo(name="NVIDIA GeForce RTX 4070", compute_capability=(8, 9))
TURING = DeviceInfo(name="NVIDIA GeForce RTX 2080 Ti", compute_capability=(7, 5))


# ---- backend logic ---------------------------------------------------------------------------

def test_importing_the_backends_does_not_import_cupy():
    code = ("import sys, gemmperf, gemmperf.collect.cupy_backends; "
            "print('cupy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_families_are_registered():
    for family, cls in (("tiled", cb.TiledBackend), ("blocked", cb.BlockedBackend),
                        ("cublas", cb.CublasBackend)):
        assert family in backend_mod.backend_names()
        backend = backend_mod.create_backend(family, device=ADA)
        assert isinstance(backend, cls)
        assert isinstance(backend, backend_mod.GemmBackend)


def test_unknown_options_are_an_error():
    with pytest.raises(InvalidConfigError, match="unknown options colour"):
        cb.TiledBackend(device=ADA, colour="red")


def test_configs_are_the_kernel_spaces():
    problem = GemmProblem(512, 512, 512)
    assert cb.TiledBackend(device=ADA).configs(problem) == ks.tiled_space()
    assert cb.BlockedBackend(device=ADA).configs(problem) == ks.blocked_space()
    assert cb.CublasBackend(device=ADA).configs(problem) == [KernelConfig.make("cublas")]


def test_every_space_config_is_valid_on_ada():
    problem = GemmProblem(512, 512, 512)
    for backend in (cb.TiledBackend(device=ADA), cb.BlockedBackend(device=ADA)):
        reasons = {c: backend.invalid_reason(problem, c) for c in backend.configs(problem)}
        assert not any(reasons.values()), [r for r in reasons.values() if r]


def test_register_limit_comes_from_the_ptxas_table_and_occupancy(monkeypatch):
    backend = cb.BlockedBackend(device=ADA)
    config = ks.BlockedParams(128, 128, 32, 4, 4, 1).config()      # 1024 threads
    name = ks.kernel_name(config)
    assert backend.invalid_reason(GemmProblem(256, 256, 256), config) is None
    # Had ptxas given it 255 registers, 1024 x 255 would exceed the 64 Ki registers per block.
    kernels = {name: {"registers": 255, "smem_bytes": 32768}}
    fake = {"compilers": {"nvrtc": {"archs": {"sm_89": {"kernels": kernels}}}}}
    monkeypatch.setattr(kr, "load_table", lambda path=None: fake)
    reason = backend.invalid_reason(GemmProblem(256, 256, 256), config)
    assert reason is not None and name in reason and "registers per block" in reason


def test_wrong_family_and_dtype_reasons():
    problem = GemmProblem(64, 64, 64)
    tiled = cb.TiledBackend(device=ADA)
    assert "given to the tiled backend" in tiled.invalid_reason(
        problem, ks.BlockedParams(64, 64, 16, 4, 4, 1).config())
    with pytest.raises(InvalidConfigError, match="SGEMM"):
        tiled.prepare(GemmProblem(64, 64, 64, dtype="f16"), ks.TiledParams(16).config())


@pytest.mark.parametrize(("problem", "device", "fragment"), [
    (GemmProblem(64, 64, 64, dtype="bf16"), ADA, "no bfloat16"),
    (GemmProblem(64, 64, 64, dtype="int8"), ADA, "wraps int8"),
    (GemmProblem(64, 64, 64, dtype="f16", acc_dtype="f16"), ADA, "accumulates f16 in f32"),
    (GemmProblem(64, 64, 64, dtype="tf32"), TURING, "TF32 needs compute capability 8.0"),
    (GemmProblem(64, 64, 64, dtype="f16", out_dtype="f32"), ADA, "writes f16"),
])
def test_cublas_reasons(problem, device, fragment):
    reason = cb.CublasBackend(device=device).invalid_reason(problem, KernelConfig.make("cublas"))
    assert reason is not None and fragment in reason


@pytest.mark.parametrize("problem", [
    GemmProblem(64, 64, 64), GemmProblem(64, 64, 64, dtype="tf32", layout="tt"),
    GemmProblem(64, 64, 64, dtype="f16", batch=8), GemmProblem(8, 8, 8, dtype="f64"),
    GemmProblem(64, 64, 64, batch=4, layout="tn"),
])
def test_cublas_valid_problems(problem):
    assert cb.CublasBackend(device=ADA).invalid_reason(problem, KernelConfig.make("cublas")) \
        is None


def test_tolerance_formula():
    # f32: LAMBDA * (sqrt(k) u32 + u32); tf32 adds both operands' rounding to TF32.
    u32, u11 = 2.0**-24, 2.0**-11
    assert cs.error_tolerance(GemmProblem(8, 8, 1024)) == pytest.approx(8 * (32 * u32 + u32))
    assert cs.error_tolerance(GemmProblem(8, 8, 1024, dtype="tf32")) == pytest.approx(
        8 * (32 * u32 + 2 * u11 + u32))
    assert cs.error_tolerance(GemmProblem(8, 8, 16, dtype="f16")) == pytest.approx(
        8 * (4 * u32 + u11))
    # Dropping one k term of a 16384-long product of U(-1,1) data costs up to ~4/k of |A||B|.
    assert cs.error_tolerance(GemmProblem(8, 8, 16384)) < 4 / 16384 / 2


def test_raw_module_arguments_compile_one_instantiation():
    args = cb.raw_module_arguments("blocked", "blocked_sgemm<64, 64, 16, 4, 4, 1>")
    assert args["name_expressions"] == ["blocked_sgemm<64, 64, 16, 4, 4, 1>"]
    assert "__global__" in args["code"] and args["options"] == cb.NVRTC_OPTIONS


# ---- operands, verification and the cuBLAS wiring on numpy ----------------------------------

class _RandomState:
    def __init__(self, seed):
        self._rs = np.random.RandomState(seed)

    def uniform(self, low, high, size, dtype=float):
        return self._rs.uniform(low, high, size).astype(dtype)

    def randint(self, low, high, size):
        return self._rs.randint(low, high, size)


class _Error(Exception):
    pass


def numpy_cupy():
    """The cupy calls cupy_support and the prepared GEMMs make, on numpy."""
    stream = types.SimpleNamespace(synchronize=lambda: None)
    return types.SimpleNamespace(
        **{name: getattr(np, name) for name in (
            "float16", "float32", "float64", "nan", "inf", "arange", "unique", "concatenate",
            "array", "abs", "maximum", "matmul", "nan_to_num", "finfo", "empty")},
        random=types.SimpleNamespace(RandomState=_RandomState),
        cuda=types.SimpleNamespace(
            get_current_stream=lambda: stream,
            driver=types.SimpleNamespace(CUDADriverError=_Error),
            runtime=types.SimpleNamespace(CUDARuntimeError=_Error),
            memory=types.SimpleNamespace(OutOfMemoryError=_Error)),
        get_default_memory_pool=lambda: types.SimpleNamespace(free_all_blocks=lambda: None),
    )


@pytest.fixture
def fake_compute_type(monkeypatch):
    modes = {"f32": "DEFAULT"}

    def get(dtype):
        return modes["f32"]

    def set_(dtype, mode):
        modes["f32"] = mode

    monkeypatch.setattr(cb, "_compute_type_api", lambda cupy: (get, set_, "DEFAULT", "TF32"))
    return modes


@pytest.mark.parametrize("layout", ["nn", "nt", "tn", "tt"])
def test_cublas_wiring_computes_a_times_b_for_every_layout(layout, fake_compute_type):
    np_cupy = numpy_cupy()
    problem = GemmProblem(37, 21, 300, layout=layout)
    ops = cs.random_operands(np_cupy, problem, 0, a_transposed=layout[0] == "n",
                             b_transposed=layout[1] == "n", c_transposed=True)
    a_store, b_store, _ = ops.stored
    # Column-major "n" A (m x k) is stored as a row-major (k, m) array, "t" as (m, k).
    assert a_store.shape[1:] == ((300, 37) if layout[0] == "n" else (37, 300))
    assert b_store.shape[1:] == ((21, 300) if layout[1] == "n" else (300, 21))
    gemm = cb.CublasGemm(np_cupy, problem, ops)
    result = gemm.verify()
    assert result.ok and result.max_rel_error < 1e-6, result
    np.testing.assert_allclose(ops.c[0], ops.a[0].astype(np.float64) @ ops.b[0], rtol=1e-4,
                               atol=1e-4)
    gemm.release()
    assert fake_compute_type["f32"] == "DEFAULT"


def test_cublas_tf32_switches_the_compute_type_and_release_restores_it(fake_compute_type):
    np_cupy = numpy_cupy()
    problem = GemmProblem(8, 8, 8, dtype="tf32")
    gemm = cb.CublasGemm(np_cupy, problem, cs.random_operands(
        np_cupy, problem, 0, a_transposed=True, b_transposed=True, c_transposed=True))
    gemm.launch()
    assert fake_compute_type["f32"] == "TF32"
    gemm.release()
    assert fake_compute_type["f32"] == "DEFAULT"


class FakeCublas:
    """cublasGemmStridedBatchedEx on numpy arrays found by address: an independent reading of
    the BLAS column-major convention (op, leading dimension, batch stride)."""

    def __init__(self, arrays):
        self.arrays = {a.ctypes.data: a for a in arrays}
        self.calls = []

    def matrix(self, ptr, batch, rows, cols, ld, stride):
        flat = self.arrays[ptr].reshape(-1)
        assert ld >= rows
        # Column j of a column-major matrix starts ld elements after column j - 1.
        return flat[batch * stride:][:ld * cols].reshape(cols, ld)[:, :rows].T

    def gemmStridedBatchedEx(self, handle, op_a, op_b, m, n, k, alpha, a, a_type, lda, s_a,
                             b, b_type, ldb, s_b, beta, c, c_type, ldc, s_c, batch, compute,
                             algo):
        self.calls.append({"types": (a_type, b_type, c_type), "compute": compute,
                           "algo": algo, "ops": (op_a, op_b)})
        for i in range(batch):
            left = self.matrix(a, i, *((m, k) if op_a == 0 else (k, m)), lda, s_a)
            right = self.matrix(b, i, *((k, n) if op_b == 0 else (n, k)), ldb, s_b)
            product = (left if op_a == 0 else left.T).astype(np.float64) @ \
                (right if op_b == 0 else right.T)
            self.matrix(c, i, m, n, ldc, s_c)[...] = product


@pytest.mark.parametrize("layout", ["nn", "nt", "tn", "tt"])
@pytest.mark.parametrize(("dtype", "compute", "types"), [
    ("f16", 68, (2, 2, 2)), ("f32", 68, (0, 0, 0)), ("tf32", 77, (0, 0, 0)),
    ("f64", 70, (1, 1, 1))])
def test_a_batched_cublas_gemm_is_one_strided_batched_call(layout, dtype, compute, types,
                                                           fake_compute_type, monkeypatch):
    # cupy.matmul's batched path would run f16 and tf32 as FP32 (gemmperf.collect.cublas_batched).
    np_cupy = numpy_cupy()
    problem = GemmProblem(13, 7, 20, batch=3, dtype=dtype, layout=layout)
    ops = cs.random_operands(np_cupy, problem, 0, a_transposed=layout[0] == "n",
                             b_transposed=layout[1] == "n", c_transposed=True)
    fake = FakeCublas(ops.stored)
    monkeypatch.setattr(cublas_batched, "cublas_library", lambda: (fake, 1))
    monkeypatch.setattr(cublas_batched, "device_pointer", lambda a: a.ctypes.data)
    monkeypatch.setattr(np_cupy, "matmul", None)      # the batched path must not use it
    gemm = cb.CublasGemm(np_cupy, problem, ops)
    gemm.launch()
    assert fake.calls == [{"types": types, "compute": compute, "algo": -1,
                           "ops": (int(layout[0] == "t"), int(layout[1] == "t"))}]
    want = np.einsum("bmk,bkn->bmn", ops.a.astype(np.float64), ops.b.astype(np.float64))
    np.testing.assert_allclose(ops.c, want, rtol=2e-3, atol=2e-3)
    assert fake_compute_type["f32"] == "DEFAULT"     # the global compute type left alone


class FakeKernel:
    """Stands in for a cupy.RawKernel: ``write(A, B, C)`` on the stored (batch, ., .) arrays."""

    name = "fake"
    max_threads_per_block = 1024
    num_regs = 32
    shared_size_bytes = 0
    local_size_bytes = 0

    def __init__(self, write):
        self.write = write

    def __call__(self, grid, block, args):
        a, b, c, m, n, k, alpha, beta = args
        assert (int(m), int(k), int(n)) == a.shape[1:] + b.shape[2:]
        assert (alpha, beta) == (1.0, 0.0)
        self.write(a, b, c)


def _gemm(write, problem):
    np_cupy = numpy_cupy()
    ops = cs.random_operands(np_cupy, problem, 0)
    return cb.RawKernelGemm(np_cupy, problem, FakeKernel(write), (1, 1, 1), (1, 1, 1), ops)


def test_verification_accepts_a_correct_kernel_and_rejects_broken_ones(monkeypatch):
    problem = GemmProblem(300, 40, 64, batch=2)   # m > VERIFY_MAX_ROWS: rows are sampled
    monkeypatch.setattr(cs, "VERIFY_COLUMN_BLOCK", 16)   # 3 column blocks, the last partial

    def correct(a, b, c):
        c[...] = np.matmul(a, b)

    def skips_last_row(a, b, c):
        c[:, :-1] = np.matmul(a, b)[:, :-1]

    def drops_one_k_term(a, b, c):
        c[...] = np.matmul(a[:, :, :-1], b[:, :-1, :])

    def half_precision(a, b, c):
        c[...] = np.matmul(a.astype(np.float16), b.astype(np.float16))

    ok = _gemm(correct, problem).verify()
    assert ok.ok and ok.max_rel_error < ok.tolerance / 10
    assert _gemm(correct, problem).kernel_attributes["regs_per_thread"] == 32
    unwritten = _gemm(skips_last_row, problem).verify()
    assert not unwritten.ok and math.isinf(unwritten.max_rel_error)
    for broken in (drops_one_k_term, half_precision):
        result = _gemm(broken, problem).verify()
        assert not result.ok and result.max_rel_error > result.tolerance, broken.__name__


# ---- NVRTC through cupy's compile path -------------------------------------------------------

NVRTC_ARCH = "89"


@pytest.fixture(scope="module")
def nvrtc_compile():
    """cupy's RawModule compile step for a fixed sm_89 (cupy_support.nvrtc_compile: only the
    device arch query and Module.load are replaced); skips without cupy or NVRTC."""
    cupy = pytest.importorskip("cupy")
    from gemmperf.errors import BackendUnavailableError

    try:
        cs.nvrtc_version()
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))

    def compile_(family, names):
        args = cb.raw_module_arguments(family, names[0])
        return cs.nvrtc_compile(args["code"], args["options"], f"sm_{NVRTC_ARCH}", names)

    return compile_, cupy.cuda.compiler.CompileException


@pytest.mark.parametrize("params", [ks.TiledParams(t) for t in ks.TILED_TILES] + [
    ks.BlockedParams(128, 128, 8, 8, 8, 2), ks.BlockedParams(64, 64, 16, 4, 4, 1),
    ks.BlockedParams(32, 64, 32, 4, 8, 2), ks.BlockedParams(128, 128, 32, 4, 4, 1),
], ids=ks.kernel_name_of)
def test_nvrtc_compiles_the_backend_source(nvrtc_compile, params):
    compile_, _ = nvrtc_compile
    name = ks.kernel_name_of(params)
    cubin, mapping = compile_(params.family, [name])
    assert cubin[:4] == b"\x7fELF"
    # NVRTC's mangled name demangles back to the name expression the backend asks for.
    assert ptxas.demangle_instantiation(mapping[name]) == name


def test_nvrtc_reports_a_static_assert(nvrtc_compile):
    compile_, compile_exception = nvrtc_compile
    with pytest.raises(compile_exception, match="threads per block"):
        compile_("blocked", ["blocked_sgemm<32, 32, 8, 8, 8, 1>"])


def test_nvrtc_compile_restores_cupy_internals(nvrtc_compile):
    import os

    import cupy

    compiler = cupy.cuda.compiler
    before = (compiler._get_arch_for_options_for_nvrtc, compiler.function.Module,
              os.environ.get("CUPY_CACHE_IN_MEMORY"))
    compile_, _ = nvrtc_compile
    compile_("tiled", ["tiled_sgemm<4>"])
    assert (compiler._get_arch_for_options_for_nvrtc, compiler.function.Module,
            os.environ.get("CUPY_CACHE_IN_MEMORY")) == before
