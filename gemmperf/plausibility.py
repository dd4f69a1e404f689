"""A measured time no GPU could reach: faster than the problem's FLOPs at the peak rate, with
the peak scaled to the GPU's maximum SM clock (the spec's tensor or boost clock is the one its
peaks are quoted at). Such a time is a broken measurement (a kernel that returned early, a
missing synchronisation, an event pair timing the wrong stream), recorded with status
``suspect``: kept, never learned from (:mod:`gemmperf.records`). The sweep knows the maximum
clock (NVML's, :mod:`gemmperf.collect.measurement`); an imported file does not, so its rows are
held to the peak at :data:`~gemmperf.hardware.specs.MAX_CLOCK_OVER_BOOST` x the quoted clock, a
bound no part in the data comes near (:func:`flag_implausible`). The memory side is left out:
operands resident in L2 from the previous launch can legitimately beat the DRAM bound."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from gemmperf.errors import GemmperfError
from gemmperf.hardware.specs import MAX_CLOCK_OVER_BOOST, get_gpu
from gemmperf.problem import GemmProblem, peak_key


def compute_floor_s(problem: GemmProblem, spec: Any, max_sm_clock_mhz: float | None
                    ) -> float | None:
    """Least time ``problem``'s FLOPs take on ``spec`` (a GpuSpec) at its peak rate scaled to
    ``max_sm_clock_mhz`` (None: the clock the peak is quoted at); None without a math path."""
    key = problem.peak_key
    if spec is None or not spec.has_math(key):
        return None
    quoted_at = _quoted_clock(spec, key)
    headroom = max(1.0, (max_sm_clock_mhz or quoted_at) / quoted_at)
    return problem.flops / (spec.peak(key) * headroom)


def _quoted_clock(spec: Any, key: str) -> float:
    """The SM clock ``spec``'s ``key`` peak is quoted at: tensor-core peaks (and FP64 DMMA)
    may imply another clock than the boost clock."""
    if key == "fp32":
        return float(spec.boost_clock_mhz)
    return float(spec.extra.get("tensor_clock_mhz") or spec.boost_clock_mhz)


def implausible_reason(runtime_s: float, problem: GemmProblem, spec: Any,
                       max_sm_clock_mhz: float | None) -> str | None:
    """Why ``runtime_s`` cannot be a measurement of ``problem`` (module doc), or None."""
    floor = compute_floor_s(problem, spec, max_sm_clock_mhz)
    if floor is None or not runtime_s < floor:
        return None
    clock = f"{max_sm_clock_mhz:g} MHz" if max_sm_clock_mhz else "the quoted peak's clock"
    return (f"runtime {runtime_s * 1e6:.4g} us beats the compute bound {floor * 1e6:.4g} us "
            f"({problem.peak_key} peak at {clock}): not a real measurement (kernel returned "
            f"early? missing synchronisation?)")


def flag_implausible(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (records) with every ``ok`` GEMM row whose runtime beats its compute bound at
    :data:`MAX_CLOCK_OVER_BOOST` x the quoted clock marked ``suspect`` with a reason (module
    doc); in place, returned. Rows of an unknown GPU or without a math path there are left
    alone."""
    needed = ["m", "n", "k", "dtype", "gpu", "runtime_s"]
    if frame.empty or any(c not in frame for c in needed):
        return frame
    runtime = pd.to_numeric(frame["runtime_s"], errors="coerce")
    rows = (frame["status"] == "ok") & frame[needed].notna().all(axis=1) & (runtime > 0)
    if not rows.any():
        return frame
    part = frame.loc[rows]
    acc = part["acc_dtype"] if "acc_dtype" in part else pd.Series(None, index=part.index)
    batch = pd.to_numeric(part.get("batch", 1), errors="coerce")
    flops = 2.0 * np.where(np.isfinite(batch), batch, 1.0) * part["m"].astype(float) \
        * part["n"].astype(float) * part["k"].astype(float)
    floor = pd.Series(np.nan, index=part.index)
    keys = pd.DataFrame({"gpu": part["gpu"].astype(str), "dtype": part["dtype"].astype(str),
                         "acc": acc.astype(object).where(acc.notna(), "")})
    for (gpu, dtype, acc_dtype), group in keys.groupby(["gpu", "dtype", "acc"]).groups.items():
        try:
            spec, key = get_gpu(gpu), peak_key(dtype, acc_dtype or None)
        except GemmperfError:   # a GPU or dtype the spec database cannot place: no floor
            continue
        if spec.has_math(key):
            rate = spec.peak(key) * MAX_CLOCK_OVER_BOOST
            floor[group] = flops[group] / rate
    fast = runtime[part.index] < floor
    if fast.any():
        idx = fast[fast].index
        frame.loc[idx, "status"] = "suspect"
        frame.loc[idx, "reason"] = [
            f"runtime {t * 1e6:.4g} us beats the compute bound {f * 1e6:.4g} us even at "
            f"{MAX_CLOCK_OVER_BOOST:g}x the quoted clock: not a real measurement"
            for t, f in zip(runtime[idx], floor[idx], strict=True)]
    return frame
