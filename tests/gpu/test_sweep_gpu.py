"""A short real sweep on the first GPU: correct results, sane numbers, resumable.

What it checks (the README's "GPU suite" list):
- every tiled and cuBLAS config runs and matches the reference (no compile, launch or wrong-result
  failures), on awkward shapes too (1x1x1, 33x17x65) where edge handling matters;
- no runtime beats the GPU's compute roofline (flops / peak, with slack for boost clocks above the
  rated one) and none is absurdly long;
- cuBLAS reaches a sane share of the fp32 peak on 2048^3, and TILE=32 is slower than cuBLAS;
- power, when NVML provides it, lies between idle and the power limit, and energy = power x time;
- device identity is the GPU's NVML name; a rerun resumes and writes nothing.
"""

from __future__ import annotations

import json

import pytest

from gemmperf.collect.power import PowerSettings
from gemmperf.collect.runner import SweepJob, run_job
from gemmperf.collect.sweep import SweepOptions
from gemmperf.collect.timing import TimingSettings
from gemmperf.hardware.specs import get_gpu

SHAPES = ((1, 1, 1, 1), (33, 17, 65, 1), (128, 128, 128, 1), (2048, 2048, 2048, 1))
# Boost clocks above the rated boost are common on GeForce parts (GPU Boost); 25 % slack.
PEAK_SLACK = 1.25


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-sweep")
    options = SweepOptions(
        out_dir=out, timing=TimingSettings(min_window_s=0.02),
        power=PowerSettings(window_s=1.0),
    )
    job = SweepJob(families=("tiled", "cublas"), shapes=SHAPES, dtypes=("f32",),
                   options=options, backend="real")
    summary = run_job(job)
    with open(out / "records.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return job, summary, rows


def test_every_config_runs_and_is_correct(sweep):
    _, summary, rows = sweep
    assert summary.stopped == "complete" and len(rows) == summary.planned
    bad = [(r["family"], r["m"], r["n"], r["k"], r["status"], r["reason"])
           for r in rows if r["status"] not in ("ok", "invalid")]
    assert bad == []
    assert all(r["source"] == "sweep" and r["max_rel_error"] <= 1e-3
               for r in rows if r["status"] == "ok")


def test_runtimes_respect_the_roofline(sweep):
    _, _, rows = sweep
    ok = [r for r in rows if r["status"] == "ok"]
    spec = get_gpu(ok[0]["gpu"]) if ok[0]["gpu"] else None
    for r in ok:
        assert 0 < r["runtime_min_s"] <= r["runtime_s"] < 1.0
        assert r["runtime_iqr_s"] >= 0 and r["repeats"] >= 10
        if spec is not None:
            floor = 2 * r["m"] * r["n"] * r["k"] / (spec.peak("fp32") * PEAK_SLACK)
            assert r["runtime_s"] >= floor, r


def test_cublas_is_fast_and_tiling_matters(sweep):
    _, _, rows = sweep
    big = {(r["family"], r["tile_m"]): r for r in rows
           if r["status"] == "ok" and r["m"] == 2048}
    cublas = big[("cublas", None)]
    spec = get_gpu(cublas["gpu"]) if cublas["gpu"] else None
    if spec is not None:
        achieved = 2 * 2048**3 / cublas["runtime_s"]
        assert achieved > 0.3 * spec.peak("fp32")
    assert big[("tiled", 32)]["runtime_s"] > cublas["runtime_s"]
    assert big[("tiled", 1)]["runtime_s"] > big[("tiled", 16)]["runtime_s"]


def test_power_and_energy_are_sane(sweep):
    _, _, rows = sweep
    measured = [r for r in rows if r["status"] == "ok" and r["power_w"] is not None]
    if not measured:
        pytest.skip("NVML gives no power on this GPU: " + str(rows[0].get("power_note")))
    for r in measured:
        assert 0 < r["power_w"] <= 1.15 * r["power_limit_w"]
        assert r["energy_j"] == pytest.approx(r["power_w"] * r["runtime_s"])
        if r["idle_power_w"] is not None and r["m"] == 2048:
            assert r["power_w"] > r["idle_power_w"]
        assert r["sm_clock_mhz"] > 0 and r["temperature_c"] > 0


def test_rerun_resumes(sweep):
    job, summary, _ = sweep
    again = run_job(job)
    assert again.written == 0 and again.skipped == summary.planned
