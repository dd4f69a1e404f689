"""Measured times no GPU could reach are recorded as suspect (gemmperf.collect.plausibility)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gemmperf.collect import measurement
from gemmperf.collect.plausibility import compute_floor_s, implausible_reason, max_sm_clock
from gemmperf.collect.runner import SweepJob, run_job
from gemmperf.collect.space import resolve_shapes
from gemmperf.collect.sweep import SweepOptions
from gemmperf.collect.timing import TimingSettings
from gemmperf.hardware.specs import get_gpu
from gemmperf.problem import GemmProblem

BF16 = GemmProblem(4096, 4096, 4096, dtype="bf16")
F32 = GemmProblem(4096, 4096, 4096, dtype="f32")


def test_the_floor_is_the_peak_rate_at_the_gpus_maximum_clock():
    h100, rtx3090 = get_gpu("h100-sxm"), get_gpu("rtx-3090")
    # H100 tensor peaks are quoted at 1,830 MHz; NVML's maximum SM clock is 1,980.
    assert compute_floor_s(BF16, h100, 1980.0) == pytest.approx(
        BF16.flops / (h100.peak("bf16") * 1980 / 1830))
    # SIMT FP32 at the boost clock; GeForce boosts beyond it (2,100 MHz here).
    assert compute_floor_s(F32, rtx3090, 2100.0) == pytest.approx(
        F32.flops / (rtx3090.peak("fp32") * 2100 / 1695))
    # No clock reading (or one below the quoted): the quoted peak, never a stricter floor.
    for clock in (None, 1000.0):
        assert compute_floor_s(F32, rtx3090, clock) == pytest.approx(
            F32.flops / rtx3090.peak("fp32"))
    assert compute_floor_s(BF16, get_gpu("rtx-2080-ti"), None) is None   # no bf16 path
    assert compute_floor_s(BF16, None, None) is None                      # unknown GPU


def test_only_a_time_below_the_floor_is_implausible():
    h100 = get_gpu("h100-sxm")
    floor = compute_floor_s(BF16, h100, 1980.0)
    reason = implausible_reason(0.5 * floor, BF16, h100, 1980.0)
    assert "beats the compute bound" in reason and "1980 MHz" in reason
    assert implausible_reason(floor * 1.001, BF16, h100, 1980.0) is None
    assert implausible_reason(1e-9, BF16, None, None) is None


def test_max_sm_clock_reads_the_meters_sensor_where_it_can():
    class Sensor:
        def __init__(self, value):
            self.value = value

        def max_sm_clock_mhz(self):
            if isinstance(self.value, Exception):
                raise self.value
            return self.value

    class Meter:
        def __init__(self, value):
            self.sensor = Sensor(value)

    assert max_sm_clock(Meter(1980)) == 1980.0
    assert max_sm_clock(Meter(RuntimeError("NVML: not supported"))) is None
    assert max_sm_clock(Meter(0)) is None and max_sm_clock(None) is None


def test_a_sweep_records_an_impossible_time_as_suspect(tmp_path, monkeypatch):
    real = measurement.measure_runtime

    def too_fast(*args, **kwargs):   # a kernel that "ran" in a nanosecond
        return dataclasses.replace(real(*args, **kwargs), median_s=1e-9)

    monkeypatch.setattr(measurement, "measure_runtime", too_fast)
    options = SweepOptions(out_dir=tmp_path, timing=TimingSettings(min_window_s=0.005))
    summary = run_job(SweepJob(families=("cublas",), shapes=tuple(resolve_shapes("256")),
                               dtypes=("f16",), options=options, backend="fake", seed=1))
    text = (tmp_path / "records.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()]
    assert summary.statuses == {"suspect": len(rows)} and rows
    for row in rows:
        assert row["runtime_s"] == 1e-9 and "beats the compute bound" in row["reason"]
        assert row.get("power_w") is None           # no power window for a broken timing
