"""``gemmperf sweep --ray`` on a local Ray instance (CPU only) with the fake backend."""

from __future__ import annotations

import json

import pytest

from gemmperf.collect.runner import SweepJob, run_job, run_ray
from gemmperf.collect.space import record_item_key, resolve_shapes
from gemmperf.collect.sweep import SweepOptions
from gemmperf.collect.timing import TimingSettings

ray = pytest.importorskip("ray")


def job(out):
    options = SweepOptions(out_dir=out, timing=TimingSettings(min_window_s=0.005))
    return SweepJob(families=("tiled", "cublas"), shapes=tuple(resolve_shapes("64,96")),
                    dtypes=("f32", "f16"), options=options, backend="fake", seed=7)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_ray_workers_write_shards_that_merge_into_the_unsharded_sweep(local_ray, tmp_path):
    summary = run_ray(job(tmp_path / "ray"), workers=2)
    assert summary.stopped == "complete" and summary.written == summary.planned
    files = sorted(p.name for p in (tmp_path / "ray").iterdir())
    assert files == ["records.jsonl"]                      # shard files merged and removed
    merged = _rows(tmp_path / "ray" / "records.jsonl")
    run_job(job(tmp_path / "local"))
    local = _rows(tmp_path / "local" / "records.jsonl")
    as_map = lambda rows: {record_item_key(r): r["runtime_s"] for r in rows}  # noqa: E731
    assert len(merged) == len(local) and as_map(merged) == as_map(local)
    # A second Ray sweep over the same folder resumes: nothing left to do.
    again = run_ray(job(tmp_path / "ray"), workers=2)
    assert again.written == 0 and again.skipped == summary.planned
    assert len(_rows(tmp_path / "ray" / "records.jsonl")) == len(merged)
