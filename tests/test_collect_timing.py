"""Timing logic (collect/timing.py) with a fake event timer on virtual time."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from gemmperf.collect.timing import (
    FakeEventTimer,
    MeasurementTimeout,
    TimingSettings,
    VirtualClock,
    measure_runtime,
    summarize,
)
from gemmperf.errors import GemmperfError


class Kernel:
    """A simulated kernel whose n-th launch takes ``durations[n % len]`` seconds."""

    def __init__(self, clock: VirtualClock, durations: list[float], cold_extra: float = 0.0):
        self.clock = clock
        self.durations = durations
        self.cold_extra = cold_extra
        self.launches = 0
        self.cold_launches = 0

    def launch(self) -> None:
        seconds = self.durations[self.launches % len(self.durations)]
        if self.clock.l2_cold:
            seconds += self.cold_extra
            self.cold_launches += 1
            self.clock.l2_cold = False
        self.launches += 1
        self.clock.advance(seconds)


def test_summary_matches_numpy():
    rng = np.random.default_rng(3)
    samples = list(rng.lognormal(-10, 0.3, size=101))
    t = summarize(samples, launches_per_sample=2, l2_flush=False)
    q1, med, q3 = np.percentile(samples, [25, 50, 75])
    assert t.median_s == pytest.approx(med)
    assert t.iqr_s == pytest.approx(q3 - q1)
    assert t.std_s == pytest.approx(np.std(samples, ddof=1))
    assert t.mean_s == pytest.approx(np.mean(samples))
    assert (t.min_s, t.max_s) == (min(samples), max(samples))
    assert t.window_s == pytest.approx(2 * sum(samples))
    assert t.launches == 202


def test_window_is_filled_and_warmup_runs():
    clock = VirtualClock()
    kernel = Kernel(clock, [1e-3])
    settings = TimingSettings(warmup=5, min_repeats=3, min_window_s=0.05, min_sample_s=0.0)
    t = measure_runtime(kernel.launch, FakeEventTimer(clock), settings)
    assert t.median_s == pytest.approx(1e-3)
    assert t.iqr_s == pytest.approx(0.0, abs=1e-12)
    assert t.window_s >= 0.05
    assert t.repeats == 50  # 50 ms of 1 ms samples, no more
    # warm-up + calibration + timed launches
    assert kernel.launches == 5 + 1 + t.launches


def test_min_repeats_when_window_is_short():
    clock = VirtualClock()
    kernel = Kernel(clock, [0.2])
    settings = TimingSettings(warmup=0, min_repeats=7, min_window_s=0.01, min_sample_s=0.0)
    t = measure_runtime(kernel.launch, FakeEventTimer(clock), settings)
    assert t.repeats == 7
    assert t.window_s == pytest.approx(1.4)


def test_short_kernels_are_batched_per_event_pair():
    clock = VirtualClock()
    kernel = Kernel(clock, [2e-6])
    settings = TimingSettings(warmup=1, min_repeats=10, min_window_s=0.0, min_sample_s=1e-4)
    t = measure_runtime(kernel.launch, FakeEventTimer(clock), settings)
    assert t.launches_per_sample == 50
    assert t.median_s == pytest.approx(2e-6)


def test_event_overhead_is_amortised_by_batching():
    clock = VirtualClock()
    kernel = Kernel(clock, [2e-6])
    timer = FakeEventTimer(clock, event_overhead_s=1e-6)
    batched = measure_runtime(kernel.launch, timer, TimingSettings(min_sample_s=1e-3))
    single = measure_runtime(
        kernel.launch, timer, TimingSettings(min_sample_s=0.0, min_window_s=0.0)
    )
    assert single.median_s == pytest.approx(3e-6)        # 50 % error from the event pair
    assert batched.median_s == pytest.approx(2e-6, rel=0.01)


def test_l2_flush_before_every_sample_and_one_launch_each():
    clock = VirtualClock()
    kernel = Kernel(clock, [1e-4], cold_extra=5e-5)
    timer = FakeEventTimer(clock, flush_time_s=1e-5)
    settings = TimingSettings(warmup=2, min_repeats=20, min_window_s=0.0, l2_flush=True)
    t = measure_runtime(kernel.launch, timer, settings)
    assert t.l2_flush and t.launches_per_sample == 1
    assert timer.flushes == t.repeats + 1                 # calibration + every sample
    # Every timed launch ran on a cold L2, and the flush itself is outside the events.
    assert t.median_s == pytest.approx(1.5e-4)
    assert kernel.cold_launches == 1 + 1 + t.repeats      # first warm-up, calibration, samples


def test_noisy_samples_give_median_and_iqr():
    clock = VirtualClock()
    durations = [1e-3, 2e-3, 3e-3, 4e-3]
    kernel = Kernel(clock, durations)
    settings = TimingSettings(warmup=0, min_repeats=400, min_window_s=0.0, min_sample_s=0.0)
    t = measure_runtime(kernel.launch, FakeEventTimer(clock), settings)
    assert t.median_s == pytest.approx(2.5e-3)
    assert t.iqr_s == pytest.approx(1.5e-3, rel=0.01)
    assert t.min_s == pytest.approx(1e-3) and t.max_s == pytest.approx(4e-3)


def test_launch_many_is_used_for_batches():
    clock = VirtualClock()
    calls: list[int] = []

    def launch_many(n: int) -> None:
        calls.append(n)
        clock.advance(n * 1e-6)

    t = measure_runtime(
        lambda: launch_many(1), FakeEventTimer(clock),
        TimingSettings(warmup=4, min_repeats=5, min_window_s=0.0, min_sample_s=1e-4),
        launch_many=launch_many,
    )
    assert calls[0] == 4 and t.launches_per_sample == 100
    assert calls.count(100) == t.repeats


def test_timeout():
    clock = VirtualClock()
    kernel = Kernel(clock, [20.0])
    with pytest.raises(MeasurementTimeout, match="more than the 10 s limit"):
        measure_runtime(kernel.launch, FakeEventTimer(clock), TimingSettings(warmup=0))
    assert kernel.launches == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"warmup": -1}, {"min_repeats": 0}, {"min_repeats": 5, "max_repeats": 4},
     {"min_window_s": -1.0}, {"timeout_s": 0.0}],
)
def test_bad_settings(kwargs):
    with pytest.raises(GemmperfError):
        TimingSettings(**kwargs)


# ---------------------------------------------------------------------------------------------
# The cupy event timer against a stand-in cupy module (no GPU needed)


class _FakeCupy:
    """Just enough of cupy for CupyEventTimer: events on a fake stream, a device, buffers."""

    uint8 = "uint8"

    def __init__(self, l2_bytes: int = 36 * 2**20, fail_device: bool = False):
        fake = self
        self.now_ms = 0.0
        self.allocated: list[int] = []
        self.fills = 0

        class Event:
            def __init__(self):
                self.t = None
                self.synced = False

            def record(self, stream=None):
                self.t = fake.now_ms

            def synchronize(self):
                self.synced = True

        class Device:
            def __init__(self, index=0):
                if fail_device:
                    raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
                self.attributes = {"L2CacheSize": l2_bytes}
                self.pci_bus_id = "0000:01:00.0"

        class Stream:
            def synchronize(self):
                pass

        def elapsed(start, end):
            assert end.synced, "elapsed time read before the end event completed"
            return end.t - start.t

        self.cuda = types.SimpleNamespace(
            Event=Event, Device=Device, get_current_stream=lambda: Stream(),
            get_elapsed_time=elapsed,
        )

    def empty(self, size, dtype):
        self.allocated.append(size)
        fake = self

        class Buffer:
            def fill(self, value):
                fake.fills += 1
                fake.now_ms += 0.01

        return Buffer()


def test_cupy_event_timer_units_and_flush_buffer(monkeypatch):
    from gemmperf.collect.timing import CupyEventTimer

    cupy = _FakeCupy(l2_bytes=48 * 2**20)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    timer = CupyEventTimer()
    start = timer.record()
    cupy.now_ms += 1.5
    end = timer.record()
    assert timer.elapsed_s(start, end) == pytest.approx(1.5e-3)   # ms -> s, after a sync
    timer.flush_l2()
    timer.flush_l2()
    assert cupy.allocated == [96 * 2**20] and cupy.fills == 2     # 2 x L2, allocated once

    kernel_ms = 0.2

    def launch() -> None:
        cupy.now_ms += kernel_ms

    t = measure_runtime(launch, timer, TimingSettings(min_window_s=0.01, l2_flush=True))
    assert t.median_s == pytest.approx(2e-4) and t.l2_flush


def test_no_cuda_device_is_one_line_pointing_at_fake(monkeypatch):
    from gemmperf.collect.device import NoGpuError, cuda_pci_bus_id

    monkeypatch.setitem(sys.modules, "cupy", _FakeCupy(fail_device=True))
    with pytest.raises(NoGpuError, match=r"no CUDA device 0: cudaErrorNoDevice.*--backend fake"):
        cuda_pci_bus_id(0)
    monkeypatch.setitem(sys.modules, "cupy", _FakeCupy())
    assert cuda_pci_bus_id(0) == "0000:01:00.0"
