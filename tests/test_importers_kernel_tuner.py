"""Kernel Tuner importer on caches built here: failures, unclosed files, malformed values."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from kernel_tuner_helpers import cache_doc, cache_entry, write_json, xgemm_gflops

from gemmperf.errors import DataFormatError
from gemmperf.importers import import_kernel_tuner


def test_kernel_tuner_failures_become_rows(tmp_path):
    entries = [
        cache_entry(16, 2.5, times=[2.0, 3.0, 2.5, 2.6], gflops=xgemm_gflops(2.5)),
        cache_entry(32, "CompilationFailedConfig"),
        cache_entry(64, "InvalidConfig"),
        cache_entry(128, "RuntimeFailedConfig"),
        cache_entry(256, 1e20),  # failure marker of older Kernel Tuner releases
    ]
    frame = import_kernel_tuner(write_json(tmp_path / "c.json", cache_doc(entries)))
    assert frame["status"].tolist() == ["ok", "compile_error", "invalid", "launch_error",
                                        "launch_error"]
    assert frame["reason"].iloc[1] == "Kernel Tuner: CompilationFailedConfig"
    assert "1e+20" in frame["reason"].iloc[4]
    assert frame["runtime_s"].iloc[1:].isna().all()
    ok = frame.iloc[0]
    assert (ok["m"], ok["n"], ok["k"]) == (256, 512, 128)  # K solved from GFLOP/s
    assert ok["runtime_s"] == pytest.approx(2.55e-3)  # median of 4 runs
    assert ok["runtime_mean_s"] == pytest.approx(2.525e-3)
    # numpy's linear percentiles of [2.0, 2.5, 2.6, 3.0]: q25 = 2.375, q75 = 2.7
    assert ok["runtime_iqr_s"] == pytest.approx((2.7 - 2.375) * 1e-3)
    assert ok["repeats"] == 4 and ok["threads_per_block"] == 128
    assert set(frame["gpu"]) == {"rtx-3090"}


def test_kernel_tuner_unclosed_cache_is_read_with_a_warning(tmp_path):
    entries = [cache_entry(m, 1.0 + m / 100, times=[1.0 + m / 100] * 3,
                           gflops=xgemm_gflops(1.0 + m / 100))
               for m in (16, 32, 64)]
    text = json.dumps(cache_doc(entries), indent=1)
    body = text[: text.rindex("}", 0, text.rindex("}"))].rstrip()  # drop the two closing braces
    running = tmp_path / "running.json"
    running.write_text(body + ",\n")  # Kernel Tuner leaves a trailing comma after each entry
    with pytest.warns(UserWarning, match="not closed.*3 complete entries"):
        assert len(import_kernel_tuner(running)) == 3
    torn = tmp_path / "torn.json"
    torn.write_text(body + ',\n"128,64,32,8,16,32": {"MWG": 128, "NWG": 6')
    with pytest.warns(UserWarning, match="2 complete entries|3 complete entries"):
        frame = import_kernel_tuner(torn)
    assert len(frame) == 3  # the torn fourth entry is dropped


def test_kernel_tuner_problem_size_override_and_missing_k(tmp_path):
    entries = [cache_entry(16, 2.0, times=[2.0, 2.0])]  # no GFLOP/s: K cannot be solved
    path = write_json(tmp_path / "c.json", cache_doc(entries))
    with pytest.raises(DataFormatError, match=r"cannot infer K.*problem_size"):
        import_kernel_tuner(path)
    frame = import_kernel_tuner(path, problem_size=(256, 512, 64))
    assert (frame["m"].iloc[0], frame["k"].iloc[0]) == (256, 64)


@pytest.mark.parametrize(("time", "times", "message"), [
    (-1.0, None, r"time \(ms\) must be a positive number, got -1 for config 16,64,32,8,16,32"),
    (float("nan"), None, "time \\(ms\\) must be a positive number, got missing/NaN"),
    (2.0, [2.0, float("nan")], "run time that is NaN, infinite or <= 0"),
    (2.0, [2.0, -3.0], "run time that is NaN, infinite or <= 0"),
    (2.0, [2.0, "fast"], "non-numeric run time"),
    ("Crashed", None, "has time 'Crashed'; expected milliseconds or one of InvalidConfig"),
])
def test_kernel_tuner_bad_times_are_errors(tmp_path, time, times, message):
    doc = cache_doc([cache_entry(16, time, times=times, gflops=1.0)])
    with pytest.raises(DataFormatError, match=message):
        import_kernel_tuner(write_json(tmp_path / "c.json", doc))


def test_kernel_tuner_csv_export_failure_rows(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(
        "gpu,MWG,NWG,KWG,MDIMC,NDIMC,PRECISION,time_ms,time_std,gflops,n_times,time_field_raw\n"
        f"NVIDIA RTX A6000,16,64,32,8,8,32,2.0,0.1,{2 * 64**2 * 65 / 2e-3 / 1e9},32,2.0\n"
        "NVIDIA RTX A6000,16,64,32,8,16,32,,,,,CompilationFailedConfig\n"
    )
    frame = import_kernel_tuner(path)
    assert frame["status"].tolist() == ["ok", "compile_error"]
    assert (frame["m"].iloc[0], frame["k"].iloc[0]) == (64, 64)  # cube side from gflops
    assert frame["repeats"].iloc[0] == 32 and pd.isna(frame["repeats"].iloc[1])


# ---------------------------------------------------------------------------------------------
# Malformed input: clear error naming the file, exit code 2, no output file
