"""The seeded fake backend: determinism, plausibility against the roofline, fault injection."""

from __future__ import annotations

import pytest

from gemmperf.collect.backend import CompileError, LaunchError, create_backend
from gemmperf.collect.fake import FailureRates, FakeBackend, FakeDevice, efficiency
from gemmperf.collect.space import item_key
from gemmperf.collect.timing import TimingSettings, measure_runtime
from gemmperf.problem import GemmProblem, KernelConfig
from gemmperf.roofline import roofline


def _runtime(backend: FakeBackend, problem: GemmProblem, config: KernelConfig) -> float:
    prepared = backend.prepare(problem, config)
    timing = measure_runtime(prepared.launch, backend.device.timer(), TimingSettings(),
                             launch_many=prepared.launch_many)
    return timing.median_s


def test_registry_creates_the_fake_lazily():
    backend = create_backend("fake", simulate="cublas", seed=3)
    assert isinstance(backend, FakeBackend) and backend.family == "cublas"
    assert backend.device.info.name == "fake NVIDIA GeForce RTX 4070"


def test_runtimes_are_plausible_and_ordered():
    device = FakeDevice("h100-sxm", seed=1)
    problem = GemmProblem(4096, 4096, 4096, dtype="f32")
    cublas = FakeBackend(device=device, simulate="cublas")
    tiled = FakeBackend(device=device, simulate="tiled")
    bound = float(roofline(problem, device.spec).lower_bound_s)
    t_cublas = _runtime(cublas, problem, next(iter(cublas.configs(problem))))
    t_tiles = {c.tile_m: _runtime(tiled, problem, c) for c in tiled.configs(problem)}
    assert bound < t_cublas < 2 * bound                  # a library GEMM is near the roofline
    assert t_tiles[32] > 3 * t_cublas                     # a naive tiled SGEMM is not
    assert t_tiles[1] > 10 * t_tiles[16] > t_tiles[32] * 10 / 2


def test_same_seed_same_numbers_other_seed_other_numbers():
    problem = GemmProblem(1024, 512, 256, dtype="f16")
    config = KernelConfig.make("cutlass", tile_m=128, tile_n=128, tile_k=32, stages=3,
                               threads_per_block=128)

    def run(seed: int) -> float:
        return _runtime(FakeBackend(device=FakeDevice(seed=seed), simulate="cutlass"),
                        problem, config)

    assert run(1) == run(1) != run(2)
    assert efficiency(config, 1) != efficiency(config, 2)
    assert 0.7 < efficiency(config, 1) <= 0.8


def test_failure_injection_is_deterministic_and_close_to_the_rates():
    rates = FailureRates(invalid=0.1, compile_error=0.2, launch_error=0.05, wrong_result=0.15)
    keys = [f"config-{i}" for i in range(4000)]
    outcomes = [rates.outcome(3, k) for k in keys]
    assert outcomes == [rates.outcome(3, k) for k in keys]
    for status, rate in [("invalid", 0.1), ("compile_error", 0.2), ("launch_error", 0.05),
                         ("wrong_result", 0.15), ("ok", 0.5)]:
        assert outcomes.count(status) / len(keys) == pytest.approx(rate, abs=0.03)
    with pytest.raises(ValueError, match="add up to"):
        FailureRates(compile_error=0.8, launch_error=0.3)


def _always(status: str) -> tuple[FakeBackend, GemmProblem, KernelConfig]:
    backend = FakeBackend(device=FakeDevice(seed=5), simulate="cutlass",
                          failures=FailureRates(**{status: 1.0}) if status else None)
    problem = GemmProblem(256, 256, 256)
    return backend, problem, next(iter(backend.configs(problem)))


def test_injected_failures_surface_through_the_backend_protocol():
    backend, problem, config = _always("compile_error")
    with pytest.raises(CompileError, match="injected"):
        backend.prepare(problem, config)
    backend, problem, config = _always("launch_error")
    prepared = backend.prepare(problem, config)
    with pytest.raises(LaunchError, match="injected") as caught:
        prepared.launch()
    assert caught.value.fatal is False
    backend, problem, config = _always("wrong_result")
    check = backend.prepare(problem, config).verify()
    assert not check.ok and check.max_rel_error > check.tolerance
    backend, problem, config = _always("invalid")
    assert backend.invalid_reason(problem, config) == "simulated invalid config (injected)"
    backend, problem, config = _always("")
    check = backend.prepare(problem, config).verify()
    assert check.ok and check.max_rel_error <= check.tolerance


def test_device_limits_and_missing_math_paths_are_invalid():
    backend = FakeBackend(device=FakeDevice("v100-sxm2-16gb"), simulate="cutlass")
    fp8 = GemmProblem(256, 256, 256, dtype="fp8")
    config = next(iter(backend.configs(fp8)))
    assert "no fp8 math path" in backend.invalid_reason(fp8, config)
    f16 = GemmProblem(256, 256, 256, dtype="f16")
    reasons = {backend.invalid_reason(f16, c) for c in backend.configs(f16)}
    assert any(r and "shared memory, the limit is 96 KiB on sm_70" in r for r in reasons)
    assert None in reasons
    assert "is an SGEMM" in FakeBackend(simulate="tiled").invalid_reason(
        f16, KernelConfig.make("tiled", tile_m=16, tile_n=16, tile_k=16, threads_per_block=256))


def test_power_limit_caps_power_and_stretches_runtime():
    problem = GemmProblem(8192, 8192, 8192, dtype="f16")
    config = KernelConfig.make("cublas")
    free = FakeDevice("rtx-4070", seed=2)
    capped = FakeDevice("rtx-4070", seed=2)
    capped.power_limit_w = 100.0
    a = FakeBackend(device=free, simulate="cublas").prepare(problem, config)
    b = FakeBackend(device=capped, simulate="cublas").prepare(problem, config)
    assert not a.power_capped and b.power_capped
    assert b.power_w == 100.0 < a.power_w < free.spec.tdp_w
    assert b.mean_s == pytest.approx(a.mean_s * a.power_w / 100.0, rel=1e-9)
    assert item_key(problem, config)  # the config is addressable like any other
