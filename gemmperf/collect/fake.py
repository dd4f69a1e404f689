"""The seeded fake: a backend, device, timer and power sensor that run anywhere, deterministically.

Runtimes come from the tile-aware roofline estimate of the simulated GPU for the config
(:func:`gemmperf.roofline.roofline`: tile padding, wave quantisation, tile DRAM traffic; for
cuBLAS, which picks its kernel per shape, the strict lower bound) divided by a deterministic
efficiency (family base efficiency, a per-config jitter from the seed), plus
seeded per-launch noise. Power is idle plus a utilisation-dependent share of the board power,
capped at the power limit (runtime stretches and ``sw_power_cap`` is reported when it binds).
Everything runs on a :class:`~gemmperf.collect.timing.VirtualClock`, so nothing sleeps.

Records from the fake say ``source="fake"`` and the device is named ``fake <GPU name>``: they
exercise the pipeline and are never measurements. Failures (compile error, launch error, wrong
result, invalid) can be injected deterministically for tests.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gemmperf.collect.backend import (
    CompileError,
    DeviceInfo,
    LaunchError,
    Verification,
)
from gemmperf.collect.nvml import SensorUnsupported
from gemmperf.collect.power import Sample
from gemmperf.collect.space import item_key, limit_reason, roofline_time_s, stable_hash
from gemmperf.collect.timing import FakeEventTimer, VirtualClock
from gemmperf.problem import GemmProblem, KernelConfig

# Model constants of the fake (not hardware numbers: they shape synthetic data only).
FAMILY_EFFICIENCY = {"tiled": 0.12, "blocked": 0.6, "cutlass": 0.8, "cublas": 0.85}
DEFAULT_EFFICIENCY = 0.7
LAUNCH_OVERHEAD_S = 3e-6          # kernel launch + tail, typical of a CUDA launch
NOISE_SIGMA = 0.02                # per-launch log-normal noise
IDLE_FRACTION_OF_TDP = 0.1        # idle power when the spec has none
HAND_WRITTEN = ("tiled", "blocked")  # kernels/*.cu; their space is collect/kernel_space.py
TILELESS = ("cublas",)            # library calls without a tile config
MAX_VIRTUAL_SAMPLES = 8           # power readings per virtual window


@dataclass(frozen=True)
class FailureRates:
    """Fractions of configs that fail each way, chosen by a stable hash of (seed, config)."""

    invalid: float = 0.0
    compile_error: float = 0.0
    launch_error: float = 0.0
    wrong_result: float = 0.0
    fatal_launch: bool = False     # launch errors poison the (simulated) context

    def __post_init__(self) -> None:
        total = self.invalid + self.compile_error + self.launch_error + self.wrong_result
        if min(self.invalid, self.compile_error, self.launch_error, self.wrong_result) < 0:
            raise ValueError("failure rates must be >= 0")
        if total > 1:
            raise ValueError(f"failure rates add up to {total:g} > 1")

    def outcome(self, seed: int, key: str) -> str:
        """``ok`` or the injected failure status for the config with ``key``."""
        u = stable_hash(f"{seed}|failure|{key}") / 2**64
        for status in ("invalid", "compile_error", "launch_error", "wrong_result"):
            rate = getattr(self, status)
            if u < rate:
                return status
            u -= rate
        return "ok"


NO_FAILURES = FailureRates()


class FakeDevice:
    """A simulated GPU: a :class:`~gemmperf.hardware.specs.GpuSpec`, virtual time and a seed."""

    def __init__(self, gpu: Any = "rtx-4070", *, seed: int = 0, index: int = 0) -> None:
        if isinstance(gpu, str):
            from gemmperf.hardware.specs import get_gpu

            gpu = get_gpu(gpu)
        self.spec = gpu
        self.seed = int(seed)
        idle = gpu.idle_power_w if gpu.idle_power_w else IDLE_FRACTION_OF_TDP * gpu.tdp_w
        self.clock = VirtualClock(idle_power_w=idle)
        self.locked_sm_clock_mhz: float | None = None
        self.power_limit_w = float(gpu.tdp_w)
        self.last_prepared: FakePrepared | None = None
        self.info = DeviceInfo(
            name=f"fake {gpu.name}",
            compute_capability=tuple(gpu.compute_capability),
            index=index,
            driver_version="fake",
            uuid=f"fake-{gpu.key}-{index}",
            gpu_key=gpu.key,
        )

    def timer(self) -> FakeEventTimer:
        """Events on this device's virtual timeline."""
        return FakeEventTimer(self.clock)


# ---------------------------------------------------------------------------------------------
# Config spaces that mirror the real families' shapes


def fake_configs(family: str, problem: GemmProblem) -> Iterator[KernelConfig]:
    """A deterministic config space for ``family``: the real space of the hand-written kernels
    (collect/kernel_space.py), one config for cuBLAS, a CUTLASS-like tile grid otherwise."""
    eb = problem.element_bytes
    if family in HAND_WRITTEN:
        from gemmperf.collect.kernel_space import family_space

        yield from family_space(family)
    elif family == "cublas":
        yield KernelConfig.make(family)
    else:
        for tm in (64, 128, 256):
            for tn in (64, 128, 256):
                for tk in (32, 64):
                    for stages in (2, 3, 4, 5):
                        warps = max(4, (tm // 64) * (tn // 64))
                        yield KernelConfig.make(
                            family, tile_m=tm, tile_n=tn, tile_k=tk, stages=stages,
                            threads_per_block=32 * warps,
                            smem_bytes_per_block=(tm + tn) * tk * eb * stages,
                        )


# ---------------------------------------------------------------------------------------------
# Runtime and power model


def efficiency(config: KernelConfig, seed: int) -> float:
    """Fraction of the tile-aware roofline estimate a config reaches (deterministic, in (0, 1]).

    The roofline already charges tile padding, wave quantisation and tile DRAM traffic; this adds
    what it does not model: how well the family's code uses the math units, and a per-config
    jitter drawn from the seed (real kernels of similar shape differ by instruction scheduling).
    """
    eff = FAMILY_EFFICIENCY.get(config.family, DEFAULT_EFFICIENCY)
    tile = config.get("tile_m", 0)
    if config.family == "tiled" and tile:
        # One output per thread: small TILE x TILE blocks are starved by shared-memory
        # bandwidth, synchronisation and per-block overheads.
        eff *= min(1.0, tile / 32) ** 0.7
    jitter = 0.9 + 0.1 * (stable_hash(f"{seed}|eff|{config.key()}") / 2**64)
    return max(1e-4, min(1.0, eff * jitter))


class FakePrepared:
    """A fake kernel bound to a problem: launches advance the device's virtual clock."""

    def __init__(
        self, backend: FakeBackend, problem: GemmProblem, config: KernelConfig, outcome: str
    ) -> None:
        device = backend.device
        spec = device.spec
        self._clock = device.clock
        key = item_key(problem, config)
        self._rng = random.Random(stable_hash(f"{device.seed}|noise|{key}"))
        footprint = config
        if config.regs_per_thread is None and config.threads_per_block:
            # Without a ptxas register count, assume the compiler fits one block per SM at least
            # (what __launch_bounds__ does), instead of the roofline's 128-register default.
            fit = spec.regs_per_sm // config.threads_per_block // 8 * 8
            footprint = dataclasses.replace(config, regs_per_thread=max(16, min(128, fit)))
        if config.family in TILELESS:
            # A library picks its kernel per shape (smaller tiles, split-K on small problems):
            # model it against the strict roofline, not one fixed tile's wave quantisation.
            from gemmperf.roofline import roofline

            bound = float(roofline(problem, spec).lower_bound_s)
        else:
            bound = roofline_time_s(problem, spec, footprint)
        if not math.isfinite(bound):
            # The roofline's occupancy says no block fits on an SM: CUDA would refuse the launch.
            raise LaunchError("too many resources requested for launch (no block fits on an SM)")
        self.mean_s = bound / efficiency(config, device.seed) + LAUNCH_OVERHEAD_S
        peak = spec.peak(problem.peak_key)
        utilisation = min(1.0, problem.flops / self.mean_s / peak)
        memory_bytes = (
            (problem.m * problem.k + problem.k * problem.n) * problem.element_bytes
            + problem.m * problem.n * problem.output_bytes_per_element
        ) * problem.batch
        idle = self._clock.idle_power_w
        # Board power rises with the share of peak the kernel keeps busy; memory traffic alone
        # draws a floor above idle.
        memory_share = min(1.0, memory_bytes / self.mean_s / spec.mem_bandwidth_bytes_s)
        demand = idle + (spec.tdp_w - idle) * (0.25 + 0.6 * max(utilisation, memory_share))
        self.power_w = min(demand, device.power_limit_w)
        self.power_capped = demand > device.power_limit_w
        if self.power_capped:
            # Above the limit the clocks drop until power fits: runtime scales up accordingly.
            self.mean_s *= demand / device.power_limit_w
        self._cold_extra_s = min(memory_bytes, spec.l2_bytes) / spec.mem_bandwidth_bytes_s
        self._wrong = outcome == "wrong_result"
        self._launch_fails = outcome == "launch_error"
        self._fatal = backend.failures.fatal_launch
        backend.device.last_prepared = self

    def _check(self) -> None:
        if self._launch_fails:
            raise LaunchError("simulated launch failure (injected)", fatal=self._fatal)

    def launch(self) -> None:
        self._check()
        seconds = self.mean_s * math.exp(self._rng.gauss(0.0, NOISE_SIGMA))
        if self._clock.l2_cold:
            seconds += self._cold_extra_s
            self._clock.l2_cold = False
        self._clock.advance(seconds, self.power_w)

    def launch_many(self, count: int) -> None:
        """``count`` launches in O(1): the mean of n log-normal draws has sigma / sqrt(n)."""
        self._check()
        if count <= 0:
            return
        noise = self._rng.gauss(0.0, NOISE_SIGMA / math.sqrt(count))
        seconds = count * self.mean_s * math.exp(noise)
        if self._clock.l2_cold:
            seconds += self._cold_extra_s
            self._clock.l2_cold = False
        self._clock.advance(seconds, self.power_w)

    def verify(self) -> Verification:
        self.launch()
        tolerance = 1e-4
        error = 0.5 if self._wrong else tolerance * self._rng.random() * 0.1
        return Verification(ok=error <= tolerance, max_rel_error=error, tolerance=tolerance)

    def release(self) -> None:
        """Nothing to free."""


class FakeBackend:
    """:class:`~gemmperf.collect.backend.GemmBackend` simulating family ``simulate``.

    ``latency_s`` really sleeps in ``prepare`` (so tests can interrupt a sweep mid-way).
    """

    def __init__(
        self,
        *,
        device: FakeDevice | None = None,
        simulate: str = "fake",
        failures: FailureRates | None = None,
        latency_s: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if not latency_s >= 0:  # a negative sleep would fail every config as a launch error
            raise ValueError(f"latency must be >= 0 s, got {latency_s}")
        self.device = device or FakeDevice(seed=seed or 0)
        self.family = simulate
        self.failures = failures or FailureRates()
        self.latency_s = latency_s

    def configs(self, problem: GemmProblem) -> Iterator[KernelConfig]:
        return fake_configs(self.family, problem)

    def invalid_reason(self, problem: GemmProblem, config: KernelConfig) -> str | None:
        if self.family in HAND_WRITTEN:
            from gemmperf.collect.kernel_space import invalid_reason

            reason = invalid_reason(problem, config)
            if reason is not None:
                return reason
        try:
            self.device.spec.peak(problem.peak_key)
        except KeyError as exc:
            return str(exc.args[0])
        reason = limit_reason(config, self.device.spec)
        if reason is None and self._outcome(problem, config) == "invalid":
            reason = "simulated invalid config (injected)"
        return reason

    def _outcome(self, problem: GemmProblem, config: KernelConfig) -> str:
        if self.failures == NO_FAILURES:
            return "ok"
        return self.failures.outcome(self.device.seed, item_key(problem, config))

    def prepare(self, problem: GemmProblem, config: KernelConfig) -> FakePrepared:
        if self.latency_s:
            time.sleep(self.latency_s)
        outcome = self._outcome(problem, config)
        if outcome == "compile_error":
            raise CompileError("simulated compile failure (injected)")
        return FakePrepared(self, problem, config, outcome)


# ---------------------------------------------------------------------------------------------
# Fake power sensor and sampler on virtual time


class FakePowerSensor:
    """:class:`~gemmperf.collect.nvml.PowerSensor` of a :class:`FakeDevice`.

    Failure modes for tests: ``energy=False`` / ``instant=False`` (field unsupported),
    ``energy_jump_mj`` (the counter jumps back by this much once ``energy_mj`` has been read
    ``jump_after_reads`` times: a wrap or driver reload), ``throttle_mask`` (reasons reported).
    """

    def __init__(
        self,
        device: FakeDevice,
        *,
        energy: bool = True,
        instant: bool = True,
        energy_jump_mj: int = 0,
        jump_after_reads: int = 1,
        throttle_mask: int = 0,
    ) -> None:
        self.device = device
        self.energy = energy
        self.instant = instant
        self.energy_jump_mj = energy_jump_mj
        self.jump_after_reads = jump_after_reads
        self.throttle_mask = throttle_mask
        self._energy_reads = 0
        self._rng = random.Random(stable_hash(f"{device.seed}|power"))

    def energy_mj(self) -> int:
        if not self.energy:
            raise SensorUnsupported("energy counter: not supported on this GPU or driver")
        self._energy_reads += 1
        value = int(self.device.clock.energy_j * 1e3)
        if self.energy_jump_mj and self._energy_reads > self.jump_after_reads:
            value -= self.energy_jump_mj
        return value

    def instant_power_w(self) -> float:
        if not self.instant:
            raise SensorUnsupported("instant power: not supported on this GPU or driver")
        return self.device.clock.power_w * (1 + 0.01 * self._rng.gauss(0.0, 1.0))

    def average_power_w(self) -> float:
        return self.device.clock.power_w

    def sm_clock_mhz(self) -> float:
        return self.device.locked_sm_clock_mhz or self.device.spec.boost_clock_mhz

    def max_sm_clock_mhz(self) -> float:
        return self.device.spec.boost_clock_mhz  # the fake never clocks above its boost

    def mem_clock_mhz(self) -> float:
        raise SensorUnsupported("memory clock: the fake device has no memory clock model")

    def temperature_c(self) -> float:
        share = self.device.clock.power_w / self.device.spec.tdp_w
        return 35.0 + 45.0 * share

    def power_limit_w(self) -> float:
        return self.device.power_limit_w

    def power_management_limit_w(self) -> float:
        return self.device.power_limit_w      # the fake has no other limiter

    def throttle_reasons(self) -> int:
        last = self.device.last_prepared
        capped = last is not None and last.power_capped and self.device.clock.power_w > (
            self.device.clock.idle_power_w
        )
        return self.throttle_mask | (0x4 if capped else 0)

    def set_locked_clocks(self, min_mhz: int, max_mhz: int) -> None:
        self.device.locked_sm_clock_mhz = float(max_mhz)

    def reset_locked_clocks(self) -> None:
        self.device.locked_sm_clock_mhz = None

    def power_limit_range_w(self) -> tuple[float, float]:
        return 0.5 * self.device.spec.tdp_w, float(self.device.spec.tdp_w)

    def set_power_limit_w(self, watts: float) -> None:
        self.device.power_limit_w = float(watts)


class VirtualHostClock:
    """``now``/``sleep`` on a device's virtual timeline (sleeping advances it at idle power)."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock

    def now(self) -> float:
        return self._clock.now

    def sleep(self, seconds: float) -> None:
        self._clock.advance(seconds)


class VirtualSampler:
    """Samples at a fixed period on virtual time: readings are taken when the window closes,
    one per period it spanned (the device ran the same work throughout)."""

    def __init__(self, read: Any, period_s: float, clock: VirtualClock) -> None:
        self._read = read
        self._period = period_s
        self._clock = clock
        self._start = 0.0

    def start(self) -> None:
        self._start = self._clock.now

    def stop(self) -> list[Sample]:
        span = self._clock.now - self._start
        count = max(1, int(span / self._period))
        # The virtual device ran one workload throughout, so a few readings spread over the
        # window describe it as well as all of them (and keep a fake config well under 1 ms).
        taken = min(count, MAX_VIRTUAL_SAMPLES)
        samples = []
        for i in range(taken):
            s = self._read()
            t = self._start + span * (i + 1) / taken
            samples.append(Sample(t, s.power_w, s.sm_clock_mhz, s.throttle_mask))
        return samples
