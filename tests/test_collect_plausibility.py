"""Measured times no GPU could reach are recorded as suspect (gemmperf.plausibility)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from gemmperf.collect import measurement
from gemmperf.collect.measurement import max_sm_clock
from gemmperf.collect.runner import SweepJob, run_job
from gemmperf.collect.space import resolve_shapes
from gemmperf.collect.sweep import SweepOptions
from gemmperf.collect.timing import TimingSettings
from gemmperf.hardware.specs import get_gpu
from gemmperf.importers import import_cutlass_profiler, load_dataset
from gemmperf.plausibility import compute_floor_s, flag_implausible, implausible_reason
from gemmperf.problem import GemmProblem

BF16 = GemmProblem(4096, 4096, 4096, dtype="bf16")
F32 = GemmProblem(4096, 4096, 4096, dtype="f32")
CUTLASS_V2 = Path(__file__).parent / "fixtures" / "cutlass_profiler_v2.gemm.csv"


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


def test_an_imported_time_beyond_any_clock_is_marked_suspect(tmp_path):
    # The CUTLASS 2.x format fixture's SIMT SGEMM, 4096^3 on an A100: 7.93 ms, and the same
    # row at 0.5 ms (275 TFLOP/s of FP32: 14x the A100's 19.5 TFLOP/s peak).
    lines = CUTLASS_V2.read_text().splitlines()
    fast = lines[2].replace(",7.93,", ",0.5,", 1)
    path = tmp_path / "profiler.gemm.csv"
    path.write_text("\n".join([lines[1], lines[2], fast]) + "\n")
    frame = import_cutlass_profiler(path, device_name="NVIDIA A100-SXM4-80GB")
    assert frame["status"].tolist() == ["ok", "suspect"]
    assert "beats the compute bound" in frame["reason"].iloc[1]
    assert "1.5x the quoted clock" in frame["reason"].iloc[1]
    assert frame["runtime_s"].iloc[1] == pytest.approx(0.5e-3)     # kept, as measured


def test_the_import_bound_leaves_a_fast_real_time_alone():
    # 95 % of the A100's fp16 tensor peak at the quoted clock: fast, possible.
    a100 = get_gpu("a100-sxm4-80gb")
    problem = GemmProblem(8192, 8192, 8192, dtype="f16")
    frame = pd.DataFrame({"m": [8192, 8192], "n": [8192] * 2, "k": [8192] * 2, "batch": [1, 1],
                          "dtype": ["f16"] * 2, "acc_dtype": [None, None],
                          "gpu": ["a100-sxm4-80gb", "no-such-gpu"], "status": ["ok", "ok"],
                          "reason": [None, None],
                          "runtime_s": [problem.flops / (0.95 * a100.peak("fp16"))] * 2})
    assert flag_implausible(frame)["status"].tolist() == ["ok", "ok"]
    frame["runtime_s"] = problem.flops / (1.6 * a100.peak("fp16"))   # needs 1.6x the clock
    assert flag_implausible(frame)["status"].tolist() == ["suspect", "ok"]  # unknown: no bound


def test_no_row_of_the_shared_data_is_impossibly_fast(shared_data):
    frame = load_dataset(shared_data)
    assert not frame["reason"].fillna("").str.contains("beats the compute bound").any()
