"""The locked SM clock that minimises a GEMM's energy (or energy-delay), and its time cost.

Time against clock follows the roofline (:mod:`gemmperf.roofline`): the compute part scales as
1/f, DRAM time does not (memory clock fixed), so with the tile-aware compute and memory times
``c`` and ``m`` at the boost clock ``f0``::

    t(f) = t0 max(c f0 / f, m) / max(c, m)

where ``t0`` is the predicted runtime at ``f0``. Power is the calibrated DVFS model of
:mod:`gemmperf.tune.power` with the kernel's activity held constant; energy = P(f) t(f).
:func:`check_on_records` replays measured power-vs-clock sweeps to check the answer: the energy
at the recommended clock against the lowest measured energy, and the measured time cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gemmperf.errors import InvalidConfigError
from gemmperf.hardware.specs import GpuSpec, get_gpu
from gemmperf.tune.power import DvfsParams, dvfs_params, fit_dvfs, generic_params, sweep_tables

#: Spacing of the clocks considered (NVIDIA's supported graphics clocks are 15 MHz apart on
#: Volta and later; ``nvidia-smi -q -d SUPPORTED_CLOCKS``) and the lowest one as a fraction of
#: the boost clock (A100: 210 of 1410 MHz).
CLOCK_STEP_MHZ = 15.0
LOWEST_CLOCK_FRACTION = 0.15
CLOCK_OBJECTIVES = ("energy", "edp")


@dataclass(frozen=True)
class ClockAnswer:
    """The recommended clock and the whole predicted curve (one row per clock)."""

    gpu: str
    clock_mhz: float
    boost_clock_mhz: float
    runtime_s: float
    power_w: float
    energy_j: float
    time_cost: float        # runtime / runtime at the boost clock
    energy_saving: float    # 1 - energy / energy at the boost clock
    objective: str
    calibrated: bool        # the GPU has its own DVFS calibration (else the generic one)
    curve: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in (
            "gpu", "clock_mhz", "boost_clock_mhz", "runtime_s", "power_w", "energy_j",
            "time_cost", "energy_saving", "objective", "calibrated")}
        out["curve"] = self.curve.to_dict(orient="records")
        return out

    def summary_rows(self, rows: int = 8) -> pd.DataFrame:
        """About ``rows`` evenly spaced rows of :attr:`curve` for a table, always including the
        chosen clock and the boost clock (the two the headline compares), lowest clock first."""
        curve = self.curve.reset_index(drop=True)
        keep = set(range(0, len(curve), max(1, len(curve) // rows)))
        keep |= {int(np.argmin(np.abs(curve["clock_mhz"].to_numpy() - c)))
                 for c in (self.clock_mhz, self.boost_clock_mhz)}
        return curve.iloc[sorted(keep)]


def clock_grid(gpu: GpuSpec, step_mhz: float = CLOCK_STEP_MHZ) -> np.ndarray:
    """Clocks from :data:`LOWEST_CLOCK_FRACTION` of the boost clock up to it, ``step_mhz`` apart."""
    top = float(gpu.boost_clock_mhz)
    low = LOWEST_CLOCK_FRACTION * top
    grid = np.arange(top, low - 1e-9, -step_mhz)[::-1]
    return grid


def energy_curve(gpu: GpuSpec, clocks: np.ndarray, *, runtime_s: float, compute_s: float,
                 memory_s: float, activity: float, params: DvfsParams) -> pd.DataFrame:
    """Predicted runtime, power, energy and EDP at each clock (module docstring)."""
    f = np.asarray(clocks, dtype=float)
    times = np.array([runtime_s, compute_s, memory_s], dtype=float)
    if not np.isfinite(times).all():
        raise InvalidConfigError("energy_curve needs finite times (a config that cannot launch "
                                 f"has none): runtime {runtime_s:g} s, compute {compute_s:g} s, "
                                 f"memory {memory_s:g} s")
    if runtime_s <= 0 or compute_s < 0 or memory_s < 0 or compute_s + memory_s <= 0:
        raise InvalidConfigError("energy_curve needs a positive runtime and compute/memory times")
    f0 = float(gpu.boost_clock_mhz)
    scale = np.maximum(compute_s * f0 / f, memory_s) / max(compute_s, memory_s)
    runtime = runtime_s * scale
    power = params.power(gpu, f, activity)
    frame = pd.DataFrame({"clock_mhz": f, "runtime_s": runtime, "power_w": power,
                          "energy_j": power * runtime})
    frame["edp_js"] = frame["energy_j"] * frame["runtime_s"]
    return frame


def recommend_clock(gpu: str | GpuSpec, *, runtime_s: float, compute_s: float,
                    memory_s: float, roofline_fraction: float, objective: str = "energy",
                    clocks: np.ndarray | None = None, params: DvfsParams | None = None,
                    power_at_boost_w: float | None = None) -> ClockAnswer:
    """The clock minimising ``objective`` (energy or edp) for a kernel predicted to take
    ``runtime_s`` at the boost clock, with roofline compute/memory times ``compute_s``,
    ``memory_s`` and ``roofline_fraction`` of the roofline bound (its activity).

    ``power_at_boost_w`` (e.g. a model's power prediction) rescales the DVFS power curve to
    pass through it at the boost clock; the curve's shape, and so the chosen clock, is the
    DVFS model's."""
    if objective not in CLOCK_OBJECTIVES:
        raise InvalidConfigError(f"clock objective must be one of {', '.join(CLOCK_OBJECTIVES)}, "
                                 f"got {objective!r}")
    spec = get_gpu(gpu)
    own, calibrated = dvfs_params(spec)
    params = params or own
    activity = params.activity_at_peak * float(np.clip(roofline_fraction, 0.0, 1.0))
    grid = clock_grid(spec) if clocks is None else np.asarray(clocks, dtype=float)
    curve = energy_curve(spec, grid, runtime_s=runtime_s, compute_s=compute_s,
                         memory_s=memory_s, activity=activity, params=params)
    base = energy_curve(spec, np.array([spec.boost_clock_mhz]), runtime_s=runtime_s,
                        compute_s=compute_s, memory_s=memory_s, activity=activity,
                        params=params).iloc[0]
    if power_at_boost_w is not None and np.isfinite(power_at_boost_w) and power_at_boost_w > 0:
        scale = power_at_boost_w / base["power_w"]
        for column in ("power_w", "energy_j", "edp_js"):
            curve[column] *= scale
        base = base * pd.Series({"power_w": scale, "energy_j": scale, "edp_js": scale}
                                ).reindex(base.index, fill_value=1.0)
    curve["time_cost"] = curve["runtime_s"] / base["runtime_s"]
    curve["energy_saving"] = 1.0 - curve["energy_j"] / base["energy_j"]
    column = "energy_j" if objective == "energy" else "edp_js"
    best = curve.loc[curve[column].idxmin()]
    return ClockAnswer(
        gpu=spec.key, clock_mhz=float(best["clock_mhz"]),
        boost_clock_mhz=float(spec.boost_clock_mhz), runtime_s=float(best["runtime_s"]),
        power_w=float(best["power_w"]), energy_j=float(best["energy_j"]),
        time_cost=float(best["time_cost"]), energy_saving=float(best["energy_saving"]),
        objective=objective, calibrated=calibrated and params is own, curve=curve)


def check_on_records(records: pd.DataFrame, *, leave_gpu_out: bool = True) -> pd.DataFrame:
    """Check recommended clocks against measured power-vs-clock sweeps.

    For each GPU and each compute-bound workload (FMA, gemm-like; the model's time scaling
    assumes compute-bound kernels, ``c = 1, m = 0``) the clock is chosen on the measured clocks
    with the GPU's own calibration or, with ``leave_gpu_out``, the mean calibration of the
    *other* GPUs (as for a GPU without one). Columns: the chosen and the measured-best clock,
    measured energy at the chosen clock over the lowest measured energy (``energy_ratio``),
    measured energy at the top clock over the lowest, measured and predicted time cost.
    """
    from gemmperf.tune.power import COMPUTE_BOUND_WORKLOADS

    tables = sweep_tables(records)
    fits = {gpu: fit_dvfs(get_gpu(gpu), t)[0] for gpu, t in tables.items()}
    rows = []
    for gpu, workloads in tables.items():
        spec = get_gpu(gpu)
        others = {k: v for k, v in fits.items() if k != gpu}
        if leave_gpu_out and not others:
            continue
        params = generic_params(others) if leave_gpu_out else fits[gpu]
        for name, table in workloads:
            if name not in COMPUTE_BOUND_WORKLOADS:
                continue
            clocks = table["clock"].to_numpy(dtype=float)
            top = int(np.argmax(clocks))
            answer = recommend_clock(spec, runtime_s=float(table["runtime_s"].iloc[top]),
                                     compute_s=1.0, memory_s=0.0, roofline_fraction=1.0,
                                     clocks=clocks, params=params)
            energy = (table["runtime_s"] * table["power_w"]).to_numpy(dtype=float)
            pick = int(np.flatnonzero(clocks == answer.clock_mhz)[0])
            runtime = table["runtime_s"].to_numpy(dtype=float)
            rows.append({
                "gpu": gpu, "workload": name,
                "calibration": "other GPUs" if leave_gpu_out else "own",
                "chosen_clock_mhz": answer.clock_mhz,
                "best_clock_mhz": float(clocks[int(np.argmin(energy))]),
                "energy_ratio": float(energy[pick] / energy.min()),
                "top_clock_energy_ratio": float(energy[top] / energy.min()),
                "time_cost": float(runtime[pick] / runtime[top]),
                "predicted_time_cost": float(clocks[top] / answer.clock_mhz),
            })
    return pd.DataFrame(rows)
