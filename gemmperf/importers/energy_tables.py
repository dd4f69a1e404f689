"""Power/energy tables -> records (kinds registered in :mod:`gemmperf.importers.tables`).

These are not GEMMs; they are the power and energy measurements the predictor needs (power vs
clock, energy per call), so m/n/k stay empty and the benchmark's own parameters go in params.

- ``kt_fp32_power``: a compute-bound FP32 FMA kernel at locked graphics clocks (Kernel Tuner
  tutorial and test caches): requested and observed clock, time, NVML power; family
  ``fp32_fma_bench``; the FLOP count per call is kept as params["flops"].
- ``gpuptxmodel_dvfs``: gpuPTXModel's 25 Polybench/Rodinia/SHOC/Parboil benchmarks on a
  GTX Titan X at memory x core clock pairs: time, average power, energy; family
  ``gpuptxmodel`` (the suite mixes several benchmark collections, so not "polybench"), the
  benchmark name in params["benchmark"]. The source lists stencil2d twice per clock pair with
  different times; params["instance"] (0, 1) keeps both rows distinct.
- ``kt_vector_add_energy``: a memory-bound vector add, block-size sweep at a locked clock,
  energy per call from an external PowerSensor; family ``vector_add``.

Each table's ``source`` column (the upstream file it came from) is kept as params["dataset"].
Kernel Tuner's ``time`` is the mean of its timed runs, so runtime_s is that mean.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gemmperf.importers._common import (
    check_nonnegative,
    check_positive,
    integer_column,
    numeric_column,
    params_records,
)

FP32_POWER_COLUMNS = ("gpu", "nvml_gr_clock_requested_mhz", "core_freq_observed_mhz", "time_ms",
                      "nvml_power_w", "flops_derived")
DVFS_COLUMNS = ("benchmark", "gpu", "mem_clock_mhz", "core_clock_mhz", "time_ms", "avg_power_w",
                "energy_mj")
VECTOR_ADD_COLUMNS = ("gpu", "kernel", "problem_size", "block_size_x", "time_ms", "ps_energy_j")


def _positive_ms(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    values = numeric_column(frame, column, path)
    check_positive(values, path, column)
    return values.to_numpy(float) * 1e-3


def _timing(out: pd.DataFrame, frame: pd.DataFrame, path: Path) -> None:
    """runtime_s (= the mean) and runtime_std_s from Kernel Tuner's time_ms / time_std_ms."""
    out["runtime_s"] = _positive_ms(frame, "time_ms", path)
    out["runtime_mean_s"] = out["runtime_s"]
    if "time_std_ms" in frame:
        std = numeric_column(frame, "time_std_ms", path)
        check_nonnegative(std, path, "time_std_ms")
        out["runtime_std_s"] = std.to_numpy(float) * 1e-3


def _dataset(frame: pd.DataFrame) -> pd.Series | None:
    return frame["source"].astype(str) if "source" in frame else None


def read_fp32_power(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Records from the FP32 FMA power-vs-clock table."""
    out = pd.DataFrame(index=frame.index)
    out["source"] = "kt_fp32_power"
    out["status"] = "ok"
    out["dtype"] = "f32"
    out["family"] = "fp32_fma_bench"
    if "kernel" in frame:
        out["kernel_name"] = frame["kernel"].astype(str).str.split().str[0]
    _timing(out, frame, path)
    power = numeric_column(frame, "nvml_power_w", path)
    check_positive(power, path, "nvml_power_w")
    out["power_w"] = power.to_numpy(float)
    clock = numeric_column(frame, "core_freq_observed_mhz", path)
    check_positive(clock, path, "core_freq_observed_mhz")
    out["sm_clock_mhz"] = clock.to_numpy(float)
    if "energy_j_derived" in frame:
        energy = numeric_column(frame, "energy_j_derived", path)
        check_positive(energy, path, "energy_j_derived")
        out["energy_j"] = energy.to_numpy(float)
    else:  # energy per call = mean power x mean time (Kernel Tuner's definition)
        out["energy_j"] = out["power_w"] * out["runtime_s"]
    params = pd.DataFrame(index=frame.index)
    params["flops"] = integer_column(frame, "flops_derived", path)
    check_positive(params["flops"].astype(float), path, "flops_derived")
    params["clock_requested_mhz"] = numeric_column(frame, "nvml_gr_clock_requested_mhz", path)
    if "sm_count" in frame:
        params["sm_count"] = integer_column(frame, "sm_count", path)
    if "kernel" in frame:
        params["kernel_description"] = frame["kernel"].astype(str)
    if (dataset := _dataset(frame)) is not None:
        params["dataset"] = dataset
    out["params"] = params_records(params, list(params.columns))
    out["device_name"] = frame["gpu"].astype(str).str.strip()
    out["timestamp"] = _timestamps(frame)
    return out


def read_gpuptxmodel_dvfs(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Records from gpuPTXModel's DVFS benchmark table."""
    out = pd.DataFrame(index=frame.index)
    out["source"] = "gpuptxmodel_dvfs"
    out["status"] = "ok"
    out["family"] = "gpuptxmodel"
    out["kernel_name"] = frame["benchmark"].astype(str).str.strip()
    out["runtime_s"] = _positive_ms(frame, "time_ms", path)
    power = numeric_column(frame, "avg_power_w", path)
    check_positive(power, path, "avg_power_w")
    out["power_w"] = power.to_numpy(float)
    out["energy_j"] = _positive_ms(frame, "energy_mj", path)  # mJ -> J
    for src, dst in (("core_clock_mhz", "sm_clock_mhz"), ("mem_clock_mhz", "mem_clock_mhz")):
        clock = numeric_column(frame, src, path)
        check_positive(clock, path, src)
        out[dst] = clock.to_numpy(float)
    params = pd.DataFrame(index=frame.index)
    params["benchmark"] = out["kernel_name"]
    params["instance"] = frame.groupby(
        [frame["benchmark"], frame["mem_clock_mhz"], frame["core_clock_mhz"]], sort=False
    ).cumcount()
    out["params"] = params_records(params, list(params.columns))
    out["device_name"] = frame["gpu"].astype(str).str.strip()
    return out


def read_vector_add_energy(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Records from the Kernel Tuner vector-add energy table."""
    out = pd.DataFrame(index=frame.index)
    out["source"] = "kt_vector_add_energy"
    out["status"] = "ok"
    out["family"] = "vector_add"
    out["kernel_name"] = frame["kernel"].astype(str).str.strip()
    out["threads_per_block"] = integer_column(frame, "block_size_x", path)
    _timing(out, frame, path)
    energy = numeric_column(frame, "ps_energy_j", path)
    check_positive(energy, path, "ps_energy_j")
    out["energy_j"] = energy.to_numpy(float)
    if "avg_power_w_derived" in frame:
        power = numeric_column(frame, "avg_power_w_derived", path)
        check_positive(power, path, "avg_power_w_derived")
        out["power_w"] = power.to_numpy(float)
    else:
        out["power_w"] = out["energy_j"] / out["runtime_s"]
    if "core_freq_observed_mhz" in frame:
        out["sm_clock_mhz"] = numeric_column(frame, "core_freq_observed_mhz", path).to_numpy()
    if "temperature_c" in frame:
        out["temperature_c"] = numeric_column(frame, "temperature_c", path).to_numpy()
    params = pd.DataFrame(index=frame.index)
    params["elements"] = integer_column(frame, "problem_size", path)
    params["block_size_x"] = out["threads_per_block"]
    if "nvml_gr_clock_requested_mhz" in frame:
        params["clock_requested_mhz"] = numeric_column(frame, "nvml_gr_clock_requested_mhz", path)
    if (dataset := _dataset(frame)) is not None:
        params["dataset"] = dataset
    out["params"] = params_records(params, list(params.columns))
    out["device_name"] = frame["gpu"].astype(str).str.strip()
    out["timestamp"] = _timestamps(frame)
    return out


def _timestamps(frame: pd.DataFrame) -> list[str | None]:
    if "timestamp" not in frame:
        return [None] * len(frame)
    return [t.strip() if isinstance(t, str) and t.strip() else None for t in frame["timestamp"]]
