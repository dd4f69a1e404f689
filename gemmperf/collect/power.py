"""Power and energy of a GEMM: a measurement window around back-to-back launches.

Method (per config, after its runtime is known):

1. idle power: instantaneous power sampled for ``idle_s`` before the window (the GPU has been
   synchronised, so this is the floor the kernel's power sits on);
2. the kernel runs back to back for at least ``window_s`` of GPU time. NVML's default power
   reading is a 1 s average on Ampere and newer, and the energy counter updates every 20-100 ms,
   so the window must be at least the sensor's averaging period for the kernel to dominate it;
3. the total-energy counter is read around the window (Volta+), and a background thread samples
   power at a fixed period during it (``NVML_FI_DEV_POWER_INSTANT`` where supported, else
   ``nvmlDeviceGetPowerUsage``), together with the SM clock and throttle reasons;
4. ``power_w`` = counter delta / wall time of the window; when the counter is unsupported, went
   backwards (wrap, driver reload) or did not advance, the mean of the samples taken after the
   ramp-up (``settle_s``, or the averaging period for averaged readings) is used instead, and
   the record says which (``power_method``) and why (``power_note``);
5. ``energy_j`` per GEMM call = ``power_w`` x the event-timed median runtime, i.e. mean board
   power x kernel runtime (Kernel Tuner computes energy the same way). When the kernel kept the
   GPU busy for less than 80 % of the window (launch-bound), the note says so.

Clock locking and power limits live in collect/control.py.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gemmperf.collect.nvml import (
    PowerSensor,
    SensorUnsupported,
    decode_throttle_reasons,
    is_throttled,
)
from gemmperf.errors import GemmperfError

MIN_BUSY_FRACTION = 0.8  # below this share of kernel time in the window, power is flagged


@dataclass(frozen=True)
class PowerSettings:
    """How power is measured. ``window_s`` should be >= the sensor's ``averaging_s``."""

    window_s: float = 1.0
    sample_period_s: float = 0.02
    idle_s: float = 0.1
    settle_s: float = 0.05          # ramp-up skipped when averaging instantaneous samples
    averaging_s: float = 1.0        # nvmlDeviceGetPowerUsage averaging period (Ampere+)

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.sample_period_s <= 0:
            raise GemmperfError("power window and sample period must be positive")
        if self.idle_s < 0 or self.settle_s < 0 or self.averaging_s < 0:
            raise GemmperfError("idle time, settle time and averaging period must be >= 0")


@dataclass(frozen=True)
class Sample:
    """One reading of the sampler thread."""

    t: float
    power_w: float | None
    sm_clock_mhz: float | None
    throttle_mask: int


@dataclass(frozen=True)
class PowerReading:
    """What the power meter learned about one config's window (None = not available, see note)."""

    power_w: float | None
    energy_j: float | None             # per GEMM call
    idle_power_w: float | None
    method: str | None                 # energy_counter | instant_samples | average_samples
    note: str | None
    sm_clock_mhz: float | None
    mem_clock_mhz: float | None
    temperature_c: float | None
    power_limit_w: float | None
    throttle_reasons: str | None       # decoded names, comma-separated
    throttled: bool
    samples: int
    window_wall_s: float
    busy_fraction: float


class WallClock:
    """Host time: ``now`` and ``sleep`` (the fake backend substitutes virtual time)."""

    now = staticmethod(time.perf_counter)
    sleep = staticmethod(time.sleep)


class Sampler(Protocol):
    """Collects :class:`Sample` s between ``start`` and ``stop``."""

    def start(self) -> None: ...

    def stop(self) -> list[Sample]: ...


class ThreadSampler:
    """Calls ``read`` every ``period_s`` on a background thread (fixed schedule, no drift)."""

    def __init__(self, read: Callable[[], Sample], period_s: float, clock: Any = WallClock) -> None:
        self._read = read
        self._period = period_s
        self._clock = clock
        self._stop = threading.Event()
        self._samples: list[Sample] = []
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        start = self._clock.now()
        tick = 0
        while not self._stop.is_set():
            self._samples.append(self._read())
            tick += 1
            delay = start + tick * self._period - self._clock.now()
            if delay > 0 and self._stop.wait(delay):
                break

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="gemmperf-power", daemon=True)
        self._thread.start()

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._samples.append(self._read())  # the state at the end of the window
        return self._samples


SamplerFactory = Callable[[Callable[[], Sample], float], Sampler]


class PowerMeter:
    """Measures a window of back-to-back launches on one GPU through a :class:`PowerSensor`.

    Capabilities (energy counter, instantaneous power) are probed once, at construction; the
    notes explaining missing ones travel with every reading.
    """

    def __init__(
        self,
        sensor: PowerSensor,
        settings: PowerSettings | None = None,
        *,
        clock: Any = WallClock,
        sampler_factory: SamplerFactory | None = None,
    ) -> None:
        self.sensor = sensor
        self.settings = settings or PowerSettings()
        self.clock = clock
        self._sampler_factory = sampler_factory or (
            lambda read, period: ThreadSampler(read, period, clock)
        )
        self.notes: list[str] = []
        self.has_energy = self._probe(sensor.energy_mj)
        self.has_instant = self._probe(sensor.instant_power_w)
        self.has_average = self.has_instant or self._probe(sensor.average_power_w)

    def _probe(self, read: Callable[[], object]) -> bool:
        try:
            read()
        except SensorUnsupported as exc:
            self.notes.append(str(exc))
            return False
        return True

    def _power_now(self) -> float | None:
        try:
            if self.has_instant:
                return self.sensor.instant_power_w()
            if self.has_average:
                return self.sensor.average_power_w()
        except SensorUnsupported:
            return None
        return None

    def _sample(self) -> Sample:
        sm = None
        mask = 0
        with contextlib.suppress(SensorUnsupported):
            sm = self.sensor.sm_clock_mhz()
        with contextlib.suppress(SensorUnsupported):
            mask = self.sensor.throttle_reasons()
        return Sample(self.clock.now(), self._power_now(), sm, mask)

    def _energy(self) -> int | None:
        if not self.has_energy:
            return None
        try:
            return self.sensor.energy_mj()
        except SensorUnsupported:
            return None

    def idle_power_w(self) -> float | None:
        """Mean instantaneous power over ``idle_s`` while nothing runs (None without the field)."""
        if not self.has_instant or self.settings.idle_s == 0:
            return None
        sampler = self._sampler_factory(self._sample, self.settings.sample_period_s)
        sampler.start()
        self.clock.sleep(self.settings.idle_s)
        powers = [s.power_w for s in sampler.stop() if s.power_w is not None]
        return statistics.fmean(powers) if powers else None

    def measure(self, run: Callable[[], int], runtime_s: float) -> PowerReading:
        """Measure ``run``, which launches back to back, synchronises and returns the number of
        launches; ``runtime_s`` is the kernel's event-timed runtime per launch."""
        notes = list(self.notes)
        idle = self.idle_power_w()
        if not self.has_instant:
            notes.append("idle power needs instantaneous power readings")
        sampler = self._sampler_factory(self._sample, self.settings.sample_period_s)
        e0 = self._energy()
        t0 = self.clock.now()
        sampler.start()
        try:
            launches = run()
        finally:
            samples = sampler.stop()
        t1 = self.clock.now()
        e1 = self._energy()
        wall = t1 - t0

        power, method = None, None
        if e0 is not None and e1 is not None:
            if e1 > e0 and wall > 0:
                power, method = (e1 - e0) / 1e3 / wall, "energy_counter"
            elif e1 < e0:
                notes.append(
                    f"energy counter went backwards ({e0} -> {e1} mJ: wrap or driver reload); "
                    "used sampled power"
                )
            else:
                notes.append(
                    f"energy counter did not advance in a {wall:.3g} s window; used sampled power"
                )
        if power is None:
            power, method, note = self._from_samples(samples, t0)
            if note:
                notes.append(note)
        energy = power * runtime_s if power is not None else None
        busy = launches * runtime_s / wall if wall > 0 else 0.0
        if busy < MIN_BUSY_FRACTION:
            # Launch-bound kernels (a few us each) leave the GPU idle between launches; the
            # window's power is then diluted by idle time, and the record says so.
            notes.append(f"GPU busy only {busy:.0%} of the power window (launch-bound kernel)")

        mask = 0
        for s in samples:
            mask |= s.throttle_mask
        clocks = [s.sm_clock_mhz for s in samples if s.sm_clock_mhz is not None]
        mem = temperature = limit = None
        try:
            mem = self.sensor.mem_clock_mhz()
        except SensorUnsupported as exc:
            notes.append(str(exc))
        try:
            temperature = self.sensor.temperature_c()
        except SensorUnsupported as exc:
            notes.append(str(exc))
        try:
            limit = self.sensor.power_limit_w()
        except SensorUnsupported as exc:
            notes.append(str(exc))
        reasons = decode_throttle_reasons(mask)
        return PowerReading(
            power_w=power,
            energy_j=energy,
            idle_power_w=idle,
            method=method,
            note="; ".join(dict.fromkeys(notes)) or None,
            sm_clock_mhz=statistics.median(clocks) if clocks else None,
            mem_clock_mhz=mem,
            temperature_c=temperature,
            power_limit_w=limit,
            throttle_reasons=",".join(reasons) if reasons else None,
            throttled=is_throttled(mask),
            samples=len(samples),
            window_wall_s=wall,
            busy_fraction=busy,
        )

    def _from_samples(
        self, samples: list[Sample], t0: float
    ) -> tuple[float | None, str | None, str | None]:
        if self.has_instant:
            method, skip = "instant_samples", self.settings.settle_s
        elif self.has_average:
            # Each averaged reading covers the previous averaging period; only readings taken
            # that long after the window opened describe the kernel alone.
            method, skip = "average_samples", self.settings.averaging_s
        else:
            return None, None, "no power reading is supported on this GPU"
        usable = [s.power_w for s in samples if s.power_w is not None and s.t >= t0 + skip]
        if not usable:
            return None, None, (
                f"no power sample after the {skip:g} s ramp-up; lengthen the power window"
            )
        return statistics.fmean(usable), method, None


def window_launches(runtime_s: float, window_s: float, *, cap: int = 10_000_000) -> int:
    """Back-to-back launches needed for ``window_s`` of GPU time at ``runtime_s`` per launch."""
    return max(1, min(cap, math.ceil(window_s / max(runtime_s, 1e-9))))
