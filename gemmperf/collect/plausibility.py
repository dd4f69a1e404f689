"""A measured time no GPU could reach: faster than the problem's FLOPs at the peak rate, with
the peak scaled to the GPU's maximum SM clock (NVML's, where a sensor reports it; the
spec's tensor or boost clock is the one its peaks are quoted at). Such a time is a broken
measurement (a kernel that returned early, a missing synchronisation, an event pair timing the
wrong stream), and the sweep records it with status ``suspect``: kept, never learned from
(:mod:`gemmperf.records`). The memory side is left out: operands resident in L2 from the
previous launch can legitimately beat the DRAM bound."""

from __future__ import annotations

from typing import Any

from gemmperf.problem import GemmProblem


def compute_floor_s(problem: GemmProblem, spec: Any, max_sm_clock_mhz: float | None
                    ) -> float | None:
    """Least time ``problem``'s FLOPs take on ``spec`` (a GpuSpec) at its peak rate scaled to
    ``max_sm_clock_mhz`` (None: the clock the peak is quoted at); None without a math path."""
    key = problem.peak_key
    if spec is None or not spec.has_math(key):
        return None
    quoted_at = spec.boost_clock_mhz
    if key != "fp32":            # tensor-core peaks (and FP64 DMMA) may imply another clock
        quoted_at = float(spec.extra.get("tensor_clock_mhz") or quoted_at)
    headroom = max(1.0, (max_sm_clock_mhz or quoted_at) / quoted_at)
    return problem.flops / (spec.peak(key) * headroom)


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


def max_sm_clock(meter: Any) -> float | None:
    """The GPU's maximum SM clock from the power meter's sensor, where it reports one."""
    read = getattr(getattr(meter, "sensor", None), "max_sm_clock_mhz", None)
    if read is None:
        return None
    try:
        value = float(read())
    except Exception:  # an unsupported NVML query: the check falls back to the quoted clock
        return None
    return value if value > 0 else None
