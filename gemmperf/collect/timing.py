"""Runtime measurement with device events: warm-up, optional L2 flush, repeats, median and IQR.

The method (close to Triton's ``do_bench`` and Kernel Tuner's benchmark loop):

1. warm-up launches (module load, clock ramp-up, allocator and cache state);
2. one timed calibration launch gives a first estimate ``t1`` (and catches a kernel so slow
   that it exceeds ``timeout_s``);
3. timed samples are enqueued back to back, each between two events, and the host synchronises
   once per batch, so the GPU never idles between samples waiting for Python. Without an L2
   flush a sample holds several launches, enough to last ``min_sample_s`` (0.5 ms: an event pair
   costs a few microseconds, so a 5 us kernel timed alone would mostly measure that, and a
   0.1 s window then holds at most ~200 samples to sort); With an L2
   flush each sample is one launch preceded by writing a buffer twice the L2 size (so the
   operands start cold, as they do inside a real model between layers);
4. batches continue until at least ``min_repeats`` samples and ``min_window_s`` of timed GPU
   time exist (or ``max_repeats``);
5. the record gets the median per-launch time, the interquartile range, min, max, mean and
   standard deviation, plus the settings (repeats, window, flush) that produced them.

Event timers are injected: :class:`CupyEventTimer` (CUDA events via cupy, loaded lazily) on a GPU,
:class:`FakeEventTimer` on a :class:`VirtualClock` in tests and in the fake backend.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gemmperf.errors import GemmperfError


class MeasurementTimeout(GemmperfError):
    """One launch took longer than the configured limit (recorded as status ``timeout``)."""


@dataclass(frozen=True)
class TimingSettings:
    """How runtime is measured; recorded with every record it produced.

    ``min_window_s`` is the minimum total timed GPU time per config, ``min_sample_s`` the
    minimum length of one event-timed sample when launches may be batched (no L2 flush).
    """

    warmup: int = 3
    min_repeats: int = 10
    max_repeats: int = 10_000
    min_window_s: float = 0.1
    min_sample_s: float = 5e-4
    l2_flush: bool = False
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise GemmperfError(f"warm-up launches must be >= 0, got {self.warmup}")
        if not 1 <= self.min_repeats <= self.max_repeats:
            raise GemmperfError(
                f"need 1 <= min_repeats <= max_repeats, got {self.min_repeats}, {self.max_repeats}"
            )
        if self.min_window_s < 0 or self.min_sample_s < 0:
            raise GemmperfError("measurement window and sample length must be >= 0")
        if self.timeout_s <= 0:
            raise GemmperfError(f"timeout must be positive, got {self.timeout_s} s")


@dataclass(frozen=True)
class Timing:
    """Per-launch runtime statistics (seconds) over ``repeats`` timed samples."""

    median_s: float
    iqr_s: float
    min_s: float
    max_s: float
    mean_s: float
    std_s: float
    repeats: int
    launches_per_sample: int
    window_s: float            # total timed GPU time
    l2_flush: bool

    @property
    def launches(self) -> int:
        """Timed launches in the window."""
        return self.repeats * self.launches_per_sample


class EventTimer(Protocol):
    """Device events on the stream the kernels run on."""

    def record(self) -> Any:
        """Record an event on the stream now (asynchronous); return its handle."""

    def elapsed_s(self, start: Any, end: Any) -> float:
        """Seconds between two recorded events; waits until ``end`` has completed."""

    def flush_l2(self) -> None:
        """Enqueue work that evicts the L2 cache (writes a buffer of twice its size)."""

    def synchronize(self) -> None:
        """Wait until all enqueued work has finished."""


def _quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolation quantile of sorted data (numpy.percentile's default method)."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(samples: list[float], *, launches_per_sample: int, l2_flush: bool) -> Timing:
    """Statistics of per-launch sample times (each sample already divided by its launches)."""
    if not samples:
        raise ValueError("no timing samples")
    ordered = sorted(samples)
    count = len(ordered)
    mean = math.fsum(ordered) / count
    # Sample standard deviation (ddof=1), as the records schema defines runtime_std_s.
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in ordered) / (count - 1)) if count > 1 else 0.0
    return Timing(
        median_s=_quantile(ordered, 0.5),
        iqr_s=_quantile(ordered, 0.75) - _quantile(ordered, 0.25),
        min_s=ordered[0],
        max_s=ordered[-1],
        mean_s=mean,
        std_s=std,
        repeats=len(ordered),
        launches_per_sample=launches_per_sample,
        window_s=math.fsum(samples) * launches_per_sample,
        l2_flush=l2_flush,
    )


def measure_runtime(
    launch: Callable[[], None],
    timer: EventTimer,
    settings: TimingSettings,
    *,
    launch_many: Callable[[int], None] | None = None,
) -> Timing:
    """Time ``launch`` (one asynchronous GEMM launch) following the module's method.

    ``launch_many(n)``, when given, enqueues ``n`` launches back to back in one call (the fake
    backend does it in O(1); a real backend could use a CUDA graph).
    """
    if launch_many is None:

        def launch_many(count: int) -> None:
            for _ in range(count):
                launch()

    if settings.warmup:
        launch_many(settings.warmup)
    if settings.l2_flush:
        timer.flush_l2()
    start = timer.record()
    launch()
    end = timer.record()
    first = timer.elapsed_s(start, end)
    if first > settings.timeout_s:
        raise MeasurementTimeout(
            f"one launch took {first:.3g} s, more than the {settings.timeout_s:g} s limit"
        )
    estimate = max(first, 1e-9)
    per_sample = 1
    if not settings.l2_flush:
        # (1 - 1e-9): 1e-4 / 1e-6 must give 100 launches, not 101 from rounding.
        per_sample = max(1, min(10_000, math.ceil(settings.min_sample_s / estimate * (1 - 1e-9))))

    samples: list[float] = []
    window = 0.0
    while len(samples) < settings.max_repeats and (
        len(samples) < settings.min_repeats or window < settings.min_window_s
    ):
        # Size the next batch from what is still missing, so the host syncs about once.
        missing_time = max(0.0, settings.min_window_s - window)
        wanted = max(
            settings.min_repeats - len(samples),
            math.ceil(missing_time / (estimate * per_sample)),
            1,
        )
        batch = min(wanted, settings.max_repeats - len(samples), 1000)
        events = []
        for _ in range(batch):
            if settings.l2_flush:
                timer.flush_l2()
            begin = timer.record()
            if per_sample == 1:
                launch()
            else:
                launch_many(per_sample)
            events.append((begin, timer.record()))
        for begin, finish in events:
            elapsed = timer.elapsed_s(begin, finish)
            samples.append(elapsed / per_sample)
            window += elapsed
        estimate = max(statistics.median(samples), 1e-9)
        if estimate > settings.timeout_s:
            raise MeasurementTimeout(
                f"launches took {estimate:.3g} s each, more than the {settings.timeout_s:g} s limit"
            )
    return summarize(samples, launches_per_sample=per_sample, l2_flush=settings.l2_flush)


# ---------------------------------------------------------------------------------------------
# CUDA events through cupy


class CupyEventTimer:
    """CUDA events on the current cupy stream (``cupy.cuda.Event``, ``get_elapsed_time``).

    The L2 flush buffer holds twice the device's L2 size (``cudaDevAttrL2CacheSize``) and is
    allocated on first use; writing it (a fill kernel) evicts the operands from L2.
    """

    def __init__(self, *, l2_bytes: int | None = None) -> None:
        import cupy  # lazy: importing gemmperf never imports cupy

        self._cupy = cupy
        self._l2_bytes = l2_bytes
        self._flush_buffer: Any = None

    def record(self) -> Any:
        event = self._cupy.cuda.Event()
        event.record(self._cupy.cuda.get_current_stream())
        return event

    def elapsed_s(self, start: Any, end: Any) -> float:
        end.synchronize()
        # get_elapsed_time returns milliseconds (resolution about 0.5 us per the CUDA docs).
        return float(self._cupy.cuda.get_elapsed_time(start, end)) / 1e3

    def flush_l2(self) -> None:
        if self._flush_buffer is None:
            l2 = self._l2_bytes
            if l2 is None:
                l2 = int(self._cupy.cuda.Device().attributes["L2CacheSize"])
            self._flush_buffer = self._cupy.empty(max(2 * l2, 1 << 20), dtype=self._cupy.uint8)
        self._flush_buffer.fill(1)

    def synchronize(self) -> None:
        self._cupy.cuda.get_current_stream().synchronize()


# ---------------------------------------------------------------------------------------------
# Virtual time for tests and the fake backend


class VirtualClock:
    """A device timeline that advances only when simulated work is enqueued.

    Simulated kernels are "launched" by :meth:`advance`; events read :attr:`now`. Nothing sleeps,
    so a fake sweep of 100,000 configs runs in seconds. The clock also integrates the simulated
    board power over time (:attr:`energy_j`), which the fake power sensor reads.
    """

    TICKS_PER_S = 10**12  # integer picoseconds: event differences do not depend on the origin

    def __init__(self, *, idle_power_w: float = 0.0) -> None:
        self.ticks = 0
        self.l2_cold = True          # set by an L2 flush, cleared by the next kernel
        self.idle_power_w = idle_power_w
        self.power_w = idle_power_w  # board power over the last interval advanced
        self.energy_j = 0.0

    def advance(self, seconds: float, power_w: float | None = None) -> None:
        """Let ``seconds`` pass drawing ``power_w`` (idle power when None)."""
        if seconds < 0:
            raise ValueError("time does not run backwards")
        power = self.idle_power_w if power_w is None else power_w
        self.ticks += round(seconds * self.TICKS_PER_S)
        self.energy_j += power * seconds
        self.power_w = power

    @property
    def now(self) -> float:
        """Seconds since the clock started."""
        return self.ticks / self.TICKS_PER_S


class FakeEventTimer:
    """An :class:`EventTimer` over a :class:`VirtualClock`.

    ``flush_time_s`` is the simulated cost of one flush; ``event_overhead_s`` is added to every
    elapsed time the way a real event pair adds a few microseconds.
    """

    def __init__(
        self,
        clock: VirtualClock | None = None,
        *,
        flush_time_s: float = 20e-6,
        event_overhead_s: float = 0.0,
    ) -> None:
        self.clock = clock or VirtualClock()
        self.flush_time_s = flush_time_s
        self.event_overhead_s = event_overhead_s
        self.flushes = 0

    def record(self) -> int:
        return self.clock.ticks

    def elapsed_s(self, start: int, end: int) -> float:
        return (end - start) / VirtualClock.TICKS_PER_S + self.event_overhead_s

    def flush_l2(self) -> None:
        self.flushes += 1
        self.clock.advance(self.flush_time_s)
        self.clock.l2_cold = True

    def synchronize(self) -> None:
        """Virtual work completes as it is enqueued."""
