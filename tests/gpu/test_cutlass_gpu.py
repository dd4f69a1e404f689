"""The cutlass backend on a real GPU: compile, launch and verify a few configurations.

Needs an NVIDIA driver, cupy, nvidia-cutlass 4.2 with cuda-python 12.x, and nvcc on PATH (each
new kernel takes nvcc 20 s - 2 min the first time; later runs hit CUTLASS's compiled cache).
Run with ``make test-gpu``.
"""

from __future__ import annotations

import importlib.util

import pytest

from gemmperf.problem import GemmProblem

pytestmark = pytest.mark.gpu


def _device_or_skip():
    for module in ("cupy", "cutlass_cppgen"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install 'gemmperf[gpu]')")
    import cupy

    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        pytest.skip(f"no usable CUDA driver: {exc}")
    from gemmperf.collect.cutlass_backend import CutlassBackend

    return CutlassBackend(seed=3)


@pytest.fixture(scope="module")
def backend():
    return _device_or_skip()


def _pick(backend, problem, **want):
    """The first config matching ``want`` (param name -> value), preferring small tiles."""
    configs = [c for c in backend.configs(problem) if backend.invalid_reason(problem, c) is None]
    configs = [c for c in configs if all(c.get(k) == v for k, v in want.items())]
    if not configs:
        pytest.skip(f"no valid CUTLASS config with {want} for {problem} on this device")
    return min(configs, key=lambda c: (c.tile_m * c.tile_n, c.key()))


@pytest.mark.parametrize(("dtype", "layout", "want"), [
    ("f16", "nn", {"swizzle": "Identity1"}),
    ("bf16", "tn", {"swizzle": "Identity4"}),
    ("tf32", "nt", {}),
    ("f32", "tt", {"op_class": "Simt"}),
])
def test_compile_run_verify(backend, dtype, layout, want):
    problem = GemmProblem(m=384, n=256, k=320, dtype=dtype, layout=layout)
    config = _pick(backend, problem, **want)
    prepared = backend.prepare(problem, config)
    try:
        for _ in range(3):
            prepared.launch()
        result = prepared.verify()
        assert result.ok, (config, result)
        lc = prepared.launch_config
        if config.get("api") == "2x":
            assert lc["block"][0] == config.threads_per_block
        assert lc["grid"][0] * lc["grid"][1] * lc["grid"][2] >= 1
    finally:
        prepared.release()


def test_batched_and_cached_compile(backend):
    problem = GemmProblem(m=256, n=128, k=256, batch=3, dtype="f16")
    config = _pick(backend, problem)
    first = backend.prepare(problem, config)
    second = backend.prepare(problem, config)  # in-process cache: no second nvcc run
    try:
        assert first._operation is second._operation
        assert first.verify().ok and second.verify().ok
    finally:
        first.release()
        second.release()


def test_stream_k_stays_correct_over_repeated_launches():
    # Timing relaunches one set of arguments, whose stream-K workspace (partials and barrier
    # flags) is zeroed once when they are made: the result after many launches must still be
    # right, or stream-K records time a kernel that no longer computes the product.
    streamk = _device_or_skip().__class__(swizzles=("StreamK",), seed=3)
    problem = GemmProblem(m=512, n=384, k=4096, dtype="f16")
    prepared = streamk.prepare(problem, _pick(streamk, problem, swizzle="StreamK"))
    try:
        for _ in range(20):
            prepared.launch()
        assert prepared.verify().ok
    finally:
        prepared.release()


def test_verification_catches_a_wrong_result(backend):
    from gemmperf.collect._cutlass_operands import verify_output

    problem = GemmProblem(m=256, n=256, k=256, dtype="f16")
    prepared = backend.prepare(problem, _pick(backend, problem))
    try:
        prepared.launch()
        prepared._operands.d.fill(0)
        assert not verify_output(prepared._operands, problem, prepared.dspec).ok
    finally:
        prepared.release()


def test_sm90_kernels_and_fp8(backend):
    if backend.arch != 90:
        pytest.skip("CUTLASS 3.x wgmma kernels need compute capability 9.0")
    problem = GemmProblem(m=512, n=512, k=512, dtype="fp8", layout="tn")
    config = _pick(backend, problem, kernel_schedule="TmaWarpSpecializedCooperative")
    prepared = backend.prepare(problem, config)
    try:
        assert prepared.verify().ok
        assert prepared.launch_config["block"][0] == config.threads_per_block
    finally:
        prepared.release()
