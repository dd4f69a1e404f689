"""Real launches of the cupy backends (tiled, blocked, cublas) on an NVIDIA GPU.

Skipped as a whole on machines without cupy or a CUDA device. Run with ``make test-gpu`` or
``pytest -m gpu tests/gpu``. The first run compiles the instantiations with NVRTC (cupy caches
them on disk under ~/.cupy/kernel_cache afterwards).
"""

from __future__ import annotations

import random

import pytest

from gemmperf.collect import cupy_backends as cb
from gemmperf.collect import kernel_resources as kr
from gemmperf.collect import kernel_space as ks
from gemmperf.collect.cupy_support import detect_device, nvrtc_version
from gemmperf.errors import GemmperfError
from gemmperf.problem import GemmProblem, KernelConfig

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")
try:
    _DEVICES = cupy.cuda.runtime.getDeviceCount()
except cupy.cuda.runtime.CUDARuntimeError:
    _DEVICES = 0
if _DEVICES == 0:
    pytest.skip("no CUDA device (or no driver)", allow_module_level=True)

SHAPES = [(1, 1, 1), (33, 17, 65), (128, 128, 128), (257, 129, 95), (64, 512, 36)]
BLOCKED = [
    ks.BlockedParams(128, 128, 8, 8, 8, 2),
    ks.BlockedParams(64, 64, 16, 4, 4, 1),
    ks.BlockedParams(32, 64, 32, 4, 8, 2),
    ks.BlockedParams(128, 64, 16, 8, 4, 2),
    ks.BlockedParams(128, 128, 32, 4, 4, 1),
]


@pytest.fixture(scope="module")
def device():
    return detect_device(0)


@pytest.fixture(scope="module")
def tiled(device):
    return cb.TiledBackend(device=device)


@pytest.fixture(scope="module")
def blocked(device):
    return cb.BlockedBackend(device=device)


@pytest.fixture(scope="module")
def cublas(device):
    return cb.CublasBackend(device=device)


def _check(backend, problem, config):
    reason = backend.invalid_reason(problem, config)
    assert reason is None, reason
    gemm = backend.prepare(problem, config)
    try:
        result = gemm.verify()
    finally:
        gemm.release()
    assert result.ok, (problem, config.key(), result)
    return result


def test_detect_device(device):
    assert device.name and device.compute_capability[0] >= 5
    assert device.index == 0


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("tile", ks.TILED_TILES)
def test_tiled_is_correct(tiled, tile, shape):
    _check(tiled, GemmProblem(*shape), ks.TiledParams(tile).config())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("params", BLOCKED, ids=ks.kernel_name_of)
def test_blocked_is_correct(blocked, params, shape):
    _check(blocked, GemmProblem(*shape), params.config())


def test_batched_and_misaligned_leading_dimensions(tiled, blocked):
    # k = 37, n = 53: no float4 path; batch 3 exercises blockIdx.z offsets.
    problem = GemmProblem(70, 53, 37, batch=3)
    _check(tiled, problem, ks.TiledParams(8).config())
    _check(blocked, problem, BLOCKED[0].config())


@pytest.mark.slow
def test_every_blocked_configuration_is_correct(blocked):
    problem = GemmProblem(200, 136, 72)
    for config in blocked.configs(problem):
        if blocked.invalid_reason(problem, config) is None:
            _check(blocked, problem, config)


def test_compiled_resources_agree_with_the_ptxas_table(device, tiled, blocked):
    """Static shared memory must match exactly. Registers must match the table's NVRTC section
    when this NVRTC is the one that made it (same compiler, same options); with another NVRTC
    version they may differ and the difference is only reported."""
    arch = "sm_{}{}".format(*device.compute_capability)
    section = kr.load_table()["compilers"]["nvrtc"]
    same_nvrtc = ".".join(map(str, nvrtc_version())) == section["version"]
    differences = []
    for backend, params in [(tiled, ks.TiledParams(16)), (tiled, ks.TiledParams(32)),
                            *((blocked, p) for p in BLOCKED)]:
        name = ks.kernel_name_of(params)
        kernel = backend.kernel(params.config())
        assert int(kernel.shared_size_bytes) == params.smem_bytes, name
        res = kr.lookup(name, arch, compiler="nvrtc")
        if res is None:
            continue
        if same_nvrtc:
            assert int(kernel.num_regs) == res.registers, name
        elif int(kernel.num_regs) != res.registers:
            differences.append((name, res.registers, int(kernel.num_regs)))
    if differences:
        print(f"registers (table NVRTC {section['version']} vs this NVRTC):", differences)


@pytest.mark.parametrize("layout", ["nn", "nt", "tn", "tt"])
@pytest.mark.parametrize("dtype", ["f32", "tf32", "f16", "f64"])
def test_cublas_is_correct(cublas, dtype, layout):
    problem = GemmProblem(96, 80, 72, dtype=dtype, layout=layout)
    config = KernelConfig.make("cublas")
    if cublas.invalid_reason(problem, config):
        pytest.skip(cublas.invalid_reason(problem, config))
    _check(cublas, problem, config)


@pytest.mark.parametrize("layout", ["nn", "nt", "tn", "tt"])
@pytest.mark.parametrize("dtype", ["f32", "tf32", "f16", "f64"])
def test_cublas_batched(cublas, dtype, layout):
    problem = GemmProblem(64, 48, 40, batch=5, dtype=dtype, layout=layout)
    config = KernelConfig.make("cublas")
    if cublas.invalid_reason(problem, config):
        pytest.skip(cublas.invalid_reason(problem, config))
    _check(cublas, problem, config)


@pytest.mark.parametrize("batch", [1, 3])
def test_tf32_is_less_accurate_than_f32(cublas, device, batch):
    # batch 3: cupy.matmul's batched path would have run "tf32" as FP32
    # (gemmperf.collect.cublas_batched), which this catches.
    if device.compute_capability < (8, 0):
        pytest.skip("TF32 needs sm_80+")
    config = KernelConfig.make("cublas")
    f32 = _check(cublas, GemmProblem(256, 256, 1024, batch=batch), config)
    tf32 = _check(cublas, GemmProblem(256, 256, 1024, batch=batch, dtype="tf32"), config)
    # TF32 rounds the operands to 10 mantissa bits: its error must be visibly larger.
    assert tf32.max_rel_error > 10 * f32.max_rel_error


def test_verification_catches_a_short_grid(tiled):
    problem = GemmProblem(100, 100, 64)
    gemm = tiled.prepare(problem, ks.TiledParams(16).config())
    try:
        gx, gy, gz = gemm.grid
        gemm.grid = (gx, gy - 1, gz)      # the last 4 rows of C stay unwritten (NaN)
        assert not gemm.verify().ok
    finally:
        gemm.release()


def test_invalid_config_is_refused_before_launch(tiled):
    with pytest.raises(GemmperfError, match="SGEMM"):
        tiled.prepare(GemmProblem(64, 64, 64, dtype="f16"), ks.TiledParams(16).config())


def _median_time(gemm, repeats: int = 10) -> float:
    for _ in range(2):
        gemm.launch()
    times = []
    for _ in range(repeats):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        gemm.launch()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end) / 1e3)
    return sorted(times)[len(times) // 2]


def test_timing_sanity(device, tiled, blocked, cublas):
    """Event times are positive, ordered as the designs predict, and below the fp32 peak."""
    problem = GemmProblem(1024, 1024, 1024)
    runs = {
        "tiled<1>": (tiled, ks.TiledParams(1).config()),
        "tiled<16>": (tiled, ks.TiledParams(16).config()),
        "blocked": (blocked, BLOCKED[0].config()),
        "cublas": (cublas, KernelConfig.make("cublas")),
    }
    seconds = {}
    for label, (backend, config) in runs.items():
        gemm = backend.prepare(problem, config)
        try:
            assert gemm.verify().ok
            seconds[label] = _median_time(gemm)
        finally:
            gemm.release()
    assert all(t > 0 for t in seconds.values()), seconds
    # One FMA per shared-memory load pair (tiled) versus TM*TN per TM+TN loads (blocked).
    assert seconds["tiled<16>"] < seconds["tiled<1>"], seconds
    assert seconds["blocked"] < seconds["tiled<16>"], seconds
    print({k: f"{problem.flops / t / 1e12:.2f} TFLOP/s" for k, t in seconds.items()})
    if device.gpu_key:
        from gemmperf.hardware.specs import get_gpu

        peak = get_gpu(device.gpu_key).peak("fp32")
        # Boost clocks can exceed the spec sheet's boost a little; 25 % is far beyond that.
        for label in ("tiled<16>", "blocked", "cublas"):
            assert problem.flops / seconds[label] < 1.25 * peak, (label, seconds)


def test_a_random_sample_of_blocked_configs(blocked):
    rng = random.Random(0)
    problem = GemmProblem(300, 260, 132)
    for config in rng.sample(blocked.configs(problem), 12):
        _check(blocked, problem, config)
