"""Sweep jobs: a picklable description of a sweep, run here or as Ray tasks (one per GPU),
or estimated (``--dry-run``: config count and roofline GPU time, no kernel runs).

:class:`SweepJob` holds plain data (shapes, dtypes, families, settings), so the same job runs in
this process (``gemmperf sweep``) or is shipped to Ray workers (``gemmperf sweep --ray``), each
building its own rig on the GPU Ray assigned to it. Ray workers take shard ``i/n`` of the plan
and write ``records.ray-<i>-of-<n>.jsonl`` in the output folder (which must be on a filesystem
the driver sees, e.g. NFS, when workers run on other nodes); the driver then merges the shard
files into ``records.jsonl`` without duplicates. A merge that is interrupted leaves the shard
files in place and the next merge finishes it; resume already skips what any file holds.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemmperf.collect.rig import Rig, fake_rig, real_rig
from gemmperf.collect.space import PlanItem, Shape, Shard, SweepPlan, make_problems
from gemmperf.collect.sweep import (
    DoneSet,
    SweepOptions,
    SweepSummary,
    check_source,
    load_done,
    output_file,
    record_digest,
    run_conditions,
    run_sweep,
    stored_rows,
)
from gemmperf.errors import GemmperfError


@dataclass(frozen=True)
class SweepJob:
    """Everything a worker needs to run (its shard of) a sweep; plain, picklable data."""

    families: tuple[str, ...]
    shapes: tuple[Shape, ...]
    dtypes: tuple[str, ...]
    options: SweepOptions
    layout: str = "nn"
    backend: str = "real"                   # real | fake
    shard: Shard = field(default_factory=Shard)
    cuda_index: int = 0
    lock_clocks_mhz: int | None = None
    power_limit_w: float | None = None
    fake_gpu: str = "rtx-4070"
    seed: int = 0
    fake_failures: Any = None               # fake.FailureRates
    fake_latency_s: float = 0.0

    def rig(self, *, index: int = 0) -> Rig:
        """Build the rig this job measures with (imports cupy/NVML only for the real backend)."""
        if self.backend == "fake":
            return fake_rig(
                self.families, gpu=self.fake_gpu, seed=self.seed, power=self.options.power,
                lock_clocks_mhz=self.lock_clocks_mhz, power_limit_w=self.power_limit_w,
                failures=self.fake_failures, latency_s=self.fake_latency_s, index=index,
            )
        if self.backend != "real":
            raise GemmperfError(f"backend must be real or fake, got {self.backend!r}")
        return real_rig(
            self.families, cuda_index=self.cuda_index, power=self.options.power,
            lock_clocks_mhz=self.lock_clocks_mhz, power_limit_w=self.power_limit_w,
        )

    def plan(self, rig: Rig) -> SweepPlan:
        problems = make_problems(self.shapes, self.dtypes, layout=self.layout)
        return SweepPlan(problems, rig.backends, shard=self.shard)


def run_job(job: SweepJob) -> SweepSummary:
    """Run ``job`` in this process."""
    rig = job.rig()
    return run_sweep(job.plan(rig), rig, job.options)


def estimate_job(job: SweepJob) -> PlanEstimate:
    """``--dry-run``: count the job's plan and estimate its GPU time."""
    rig = job.rig()
    if rig.spec is None:
        raise GemmperfError(
            f"{rig.device.name} is not in the GPU spec database, so its roofline time cannot be "
            "estimated; add it to data/gpus.json"
        )
    if rig.control is not None:
        rig.control.check()   # a lock or power limit the sweep would refuse fails here too
    return estimate(job.plan(rig), rig, job.options)


# ---------------------------------------------------------------------------------------------
# Dry run: count the plan, estimate its GPU time


@dataclass(frozen=True)
class PlanEstimate:
    """What ``--dry-run`` prints."""

    configs: int
    invalid: int
    done: int
    gpu_seconds: float   # roofline lower bound on kernel time + the measurement windows

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


ESTIMATE_CHUNK = 10_000  # plan items per vectorised roofline call in a dry run


def _roofline_times(items: list[PlanItem], spec: Any) -> Any:
    """Tile-aware roofline estimates of ``items`` in one vectorised call (numpy array)."""
    import pandas as pd

    from gemmperf.roofline_frame import roofline_frame

    columns = ("m", "n", "k", "batch", "dtype", "acc_dtype", "out_dtype")
    frame = pd.DataFrame(
        [
            {
                **{c: getattr(item.problem, c) for c in columns},
                **{c: getattr(item.config, c) for c in (
                    "tile_m", "tile_n", "tile_k", "threads_per_block", "regs_per_thread",
                    "smem_bytes_per_block", "stages",
                )},
            }
            for item in items
        ]
    )
    est = roofline_frame(frame, spec)
    # A footprint the roofline finds unlaunchable has an infinite estimate; the launch decides,
    # and the time budget counts such a row at the strict lower bound.
    return est["estimate_s"].where(est["estimate_s"] < math.inf, est["lower_bound_s"]).to_numpy(
        dtype=float
    )


def _config_gpu_seconds(t: float, options: SweepOptions) -> float:
    """GPU time one config costs under the measurement settings, if a launch takes ``t``."""
    timing, power = options.timing, options.power
    if not math.isfinite(t):
        return 0.0  # cannot launch: fails at once
    per_sample = 1 if timing.l2_flush else max(1, math.ceil(timing.min_sample_s / max(t, 1e-9)))
    timed = min(
        max(timing.min_repeats * per_sample * t, timing.min_window_s),
        timing.max_repeats * per_sample * t,
    )
    seconds = (timing.warmup + 2) * t + timed          # warm-up, calibration, verification
    if power is not None:
        seconds += power.idle_s + max(power.window_s, t)
    return seconds


def estimate(plan: SweepPlan, rig: Rig, options: SweepOptions) -> PlanEstimate:
    """Count the plan and estimate its GPU time from the roofline (no kernel runs)."""
    check_source(options.out_dir, rig.source)
    done = load_done(options.out_dir) if options.resume else DoneSet()
    conditions = run_conditions(rig, options)
    configs = invalid = skipped = 0
    seconds = 0.0
    pending: list[PlanItem] = []

    def flush() -> float:
        if not pending:
            return 0.0
        total = sum(_config_gpu_seconds(t, options) for t in _roofline_times(pending, rig.spec))
        pending.clear()
        return total

    for item in plan:
        if done and done.has(rig.device.name, item.key, conditions):
            skipped += 1
            continue
        configs += 1
        if item.invalid_reason is not None:
            invalid += 1
            continue
        pending.append(item)
        if len(pending) >= ESTIMATE_CHUNK:
            seconds += flush()
    seconds += flush()
    return PlanEstimate(configs=configs, invalid=invalid, done=skipped, gpu_seconds=seconds)


# ---------------------------------------------------------------------------------------------
# Ray


def _ray_worker(job: SweepJob, index: int) -> dict[str, Any]:
    """Body of one Ray task: run the job's shard on the GPU Ray assigned (CUDA device 0)."""
    local = dataclasses.replace(job, cuda_index=0)
    rig = local.rig(index=index)
    result = run_sweep(local.plan(rig), rig, local.options)
    out = result.to_dict()
    out["host"] = socket.gethostname()
    return out


def merge_shard_files(out_dir: Path, sources: Sequence[Path], dest: Path | None = None) -> int:
    """Append the records of ``sources`` to ``dest`` (default ``records.jsonl``), skipping any
    (device, problem, config, conditions) already there, then delete the sources. Returns
    records added. Only exact duplicates are dropped: a config measured under other conditions
    (another clock lock, say) is another measurement and is kept."""
    from gemmperf.records import RecordWriter

    dest = dest or Path(out_dir) / "records.jsonl"
    seen: set[bytes] = set()
    if dest.exists():
        seen.update(d for d in map(record_digest, stored_rows(dest)) if d is not None)
    added = 0
    with RecordWriter(dest) as writer:
        for source in sources:
            for row in stored_rows(source):  # a torn last line: the config a worker had in flight
                d = record_digest(row)
                if d is not None and d in seen:
                    continue
                if d is not None:
                    seen.add(d)
                writer.write(row)
                added += 1
    for source in sources:
        os.remove(source)
    return added


def run_ray(
    job: SweepJob, *, address: str | None = None, workers: int | None = None
) -> SweepSummary:
    """Run ``job`` as Ray tasks, one per GPU (real) or per ``workers`` CPUs (fake), then merge.

    ``address`` is a Ray cluster address (``None`` starts or joins a local instance).
    """
    try:
        import ray
    except ImportError as exc:
        raise GemmperfError("--ray needs ray: pip install 'gemmperf[ray]'") from exc
    if job.shard.count != 1:
        raise GemmperfError("--ray splits the sweep itself; drop --shard")
    started = time.monotonic()
    # logging_level: Ray's start-up INFO lines would interleave with the progress bar.
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False,
             log_to_driver=False, logging_level=logging.WARNING)
    resources = ray.cluster_resources()
    if job.backend == "real":
        count = int(resources.get("GPU", 0))
        if count == 0:
            raise GemmperfError(
                "the Ray cluster has no GPUs; use --backend fake to try the pipeline"
            )
        count = min(count, workers or count)
        task = ray.remote(num_gpus=1, max_retries=0)(_ray_worker)
    else:
        count = workers or max(1, int(resources.get("CPU", 1)))
        task = ray.remote(num_cpus=1, max_retries=0)(_ray_worker)

    out_dir = Path(job.options.out_dir)
    jobs = []
    for i in range(count):
        shard = Shard(i, count)
        name = output_file(out_dir, shard, tag="ray").name
        options = dataclasses.replace(job.options, file_name=name, progress=False)
        jobs.append(dataclasses.replace(job, shard=shard, options=options))
    refs = [task.remote(j, i) for i, j in enumerate(jobs)]
    summary = SweepSummary(out_file=out_dir / "records.jsonl")
    try:
        results = ray.get(refs)
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref, force=True)
        summary.stopped = "interrupted"
        summary.message = "interrupted; the workers' shard files hold every finished config"
        return summary
    for j, result in zip(jobs, results, strict=True):
        path = out_dir / j.options.file_name  # type: ignore[operator]
        summary.planned += result["planned"]
        summary.skipped += result["skipped_done"]
        summary.written += result["written"]
        summary.statuses.update(result["statuses"])
        if result["stopped"] != "complete" and summary.stopped == "complete":
            summary.stopped, summary.message = result["stopped"], result["message"]
        if result["written"] and not path.exists():
            raise GemmperfError(
                f"worker on {result['host']} wrote {result['written']} records to {path}, which "
                "this machine cannot see: put --out on a shared filesystem"
            )
    # Also picks up shard files of an earlier interrupted --ray sweep (any worker count).
    merge_shard_files(out_dir, ray_shard_files(out_dir))
    summary.elapsed_s = time.monotonic() - started
    return summary


def ray_shard_files(out_dir: Path) -> list[Path]:
    """Shard files left by Ray workers of an earlier, interrupted ``--ray`` sweep."""
    return sorted(Path(out_dir).glob("records.ray-*-of-*.jsonl"))

