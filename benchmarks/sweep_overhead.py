"""Sweep harness cost: time per config and resident memory over a 100,000-config fake sweep.

Three per-config timings, all writing real JSONL records to a temporary folder:

- ``harness only``: a null backend (no-op launch and verify) on a null event timer, one timed
  sample, no power window: what the sweep loop itself costs per config (plan, resume check,
  record, flushed append). Target < 1 ms.
- ``fake, minimal``: the seeded fake backend (its roofline-based runtime model runs per config)
  with the same minimal measurement.
- ``fake, default``: the fake with the CLI's default settings (100 ms timing window, 1 s power
  window, all on virtual time), i.e. what ``gemmperf sweep --backend fake`` costs per config.

Then a sweep of >= 100,000 fake configs (minimal measurement) while a thread samples the process's
resident set size: records are streamed to disk, so RSS must stay flat (target < 300 MB); then the
same sweep again over the full file (resume: every config skipped).
Nothing here measures a GPU.

Run: .venv/bin/python benchmarks/sweep_overhead.py [--configs N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

from gemmperf.cli._output import print_table
from gemmperf.collect.backend import DeviceInfo, Verification
from gemmperf.collect.power import PowerSettings
from gemmperf.collect.rig import Rig, fake_rig
from gemmperf.collect.space import SweepPlan, make_problems, parse_dim_spec
from gemmperf.collect.sweep import SweepOptions, run_sweep
from gemmperf.collect.timing import FakeEventTimer, TimingSettings
from gemmperf.problem import KernelConfig

MINIMAL = TimingSettings(warmup=0, min_repeats=1, min_window_s=0.0, min_sample_s=0.0)
FAMILIES = ("tiled", "blocked", "cublas", "cutlass")


class NullPrepared:
    def launch(self) -> None:
        pass

    def verify(self) -> Verification:
        return Verification(True, 0.0, 1e-4)

    def release(self) -> None:
        pass


class NullBackend:
    """Ten configs per problem that cost nothing to run."""

    family = "null"

    def configs(self, problem):
        return (KernelConfig.make("null", tile_m=t) for t in range(10))

    def invalid_reason(self, problem, config):
        return None

    def prepare(self, problem, config):
        return NullPrepared()


def shapes_for(count: int, configs_per_shape: int) -> list[tuple[int, int, int, int]]:
    """At least ``count / configs_per_shape`` distinct shapes (m varies fastest)."""
    wanted = -(-count // configs_per_shape)
    ms = parse_dim_spec("128:1000000:+128")
    ns, ks = (1024, 2048, 4096), (512, 1024, 2048, 4096)
    per_m = len(ns) * len(ks)
    return [(m, n, k, 1) for m in ms[: -(-wanted // per_m)] for n in ns for k in ks]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def timed_sweep(plan, rig: Rig, options: SweepOptions) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, records written)."""
    start, cpu = time.perf_counter(), time.process_time()
    summary = run_sweep(plan, rig, options)
    return time.perf_counter() - start, time.process_time() - cpu, summary.written


def per_config(count: int) -> list[tuple[str, int, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        null = Rig(device=DeviceInfo("null", (0, 0)), timer=FakeEventTimer(),
                   backends={"null": NullBackend()}, meter=None, source="fake")
        plan = SweepPlan(make_problems(shapes_for(count, 10), ["f32"]), null.backends)
        wall, cpu, n = timed_sweep(plan, null, SweepOptions(Path(tmp, "a"), MINIMAL, None))
        rows.append(("harness only (null backend)", n, wall / n, cpu / n))

        rig = fake_rig(FAMILIES, seed=0, power=None)
        plan = SweepPlan(make_problems(shapes_for(count, 239), ["f32"]), rig.backends)
        wall, cpu, n = timed_sweep(plan, rig, SweepOptions(Path(tmp, "b"), MINIMAL, None))
        rows.append(("fake, minimal measurement", n, wall / n, cpu / n))

        rig = fake_rig(FAMILIES, seed=0)
        plan = SweepPlan(make_problems(shapes_for(count // 4, 239), ["f32"]), rig.backends)
        options = SweepOptions(Path(tmp, "c"), TimingSettings(), PowerSettings())
        wall, cpu, n = timed_sweep(plan, rig, options)
        rows.append(("fake, default settings (virtual 0.1 s + 1 s windows)", n, wall / n, cpu / n))
    return rows


def memory(count: int) -> tuple[int, float, list[tuple[float, float]], float, float, float, float]:
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    start = time.perf_counter()

    def sample() -> None:
        while not stop.wait(0.25):
            samples.append((time.perf_counter() - start, rss_mb()))

    before = rss_mb()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory() as tmp:
        rig = fake_rig(FAMILIES, seed=0, power=None)
        plan = SweepPlan(make_problems(shapes_for(count, 239), ["f32"]), rig.backends)
        seconds, _, written = timed_sweep(plan, rig, SweepOptions(Path(tmp), MINIMAL, None))
        size_mb = Path(tmp, "records.jsonl").stat().st_size / 2**20
        # Resume over the full file: every config is skipped; the resume set is the only state.
        resume_s, _, rewritten = timed_sweep(plan, rig, SweepOptions(Path(tmp), MINIMAL, None))
        assert rewritten == 0
    stop.set()
    thread.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    peak = max(peak, max(r for _, r in samples))
    return written, seconds, samples, before, peak, size_mb, resume_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=100_000, help="memory-run size")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    args = parser.parse_args()
    count = 2_000 if args.quick else 10_000
    big = 5_000 if args.quick else args.configs

    rows = per_config(count)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall time inflates "
          "under load; CPU time is this process's own)")
    print_table(("run", "configs", "wall ms / config", "CPU ms / config"),
                [(name, n, wall * 1e3, cpu * 1e3) for name, n, wall, cpu in rows],
                title="Sweep cost per config (target < 1 ms for the harness)")

    written, seconds, samples, before, peak, size_mb, resume_s = memory(big)
    marks = [samples[min(len(samples) - 1, int(f * (len(samples) - 1)))] for f in (0.1, 0.5, 1.0)]
    table = [("configs written", written), ("wall time (s)", seconds),
             ("records file (MiB)", size_mb), ("RSS before (MiB)", before)]
    table += [(f"RSS at {t:.0f} s (MiB)", r) for t, r in marks]
    table += [("resume over the full file: wall time (s)", resume_s),
              ("peak RSS, sweep and resume (MiB)", peak)]
    print_table(("quantity", "value"), table,
                title=f"{written:,}-config fake sweep (target: RSS flat, < 300 MB)")


if __name__ == "__main__":
    main()
