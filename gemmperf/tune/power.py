"""Board power against SM clock (DVFS) and kernel activity, calibrated on measured sweeps.

Dynamic CMOS power is ``C V^2 f`` per switching node; GPUs hold the core voltage at a floor up
to a "knee" clock and raise it roughly linearly above (the voltage/frequency curve). With the
static (leakage, memory, fan) part a fraction ``sigma`` of the TDP, board power at SM clock ``f``
for a kernel of activity ``u`` is (Schoonhoven et al., "Going green: optimizing GPUs for energy
efficiency through model-steered auto-tuning", PMBS 2022, whose model this follows)::

    P(f, u) = TDP (sigma + (1 - sigma) u (f / f0) v(f)^2)
    v(f)    = v_k                                   f <= f_k = kappa f0
            = v_k + (1 - v_k) (f - f_k) / (f0 - f_k)  f > f_k (extrapolated above f0)

with ``f0`` the GPU's boost clock and ``v = V / V(f0)``. Below the knee the energy per operation
is constant while the static energy per operation grows as 1/f, so a compute-bound kernel's
energy is lowest near the knee: the clock :mod:`gemmperf.tune.clocks` recommends.

``sigma``, ``kappa`` and ``v_k`` are fitted per GPU on the power-vs-clock tables in
``../shared/data`` (:func:`fit_dvfs`; ``benchmarks/recommender_clocks.py`` writes
``data/dvfs_power.json``); a GPU without its own fit gets the mean of the fitted GPUs
(``generic``). ``activity_at_peak`` is the fitted ``u`` of a kernel running at its roofline
bound (the compute-bound FMA and GEMM kernels of those tables): :func:`utilization_power` scales
it by a configuration's fraction of the roofline to estimate power where a model predicts none.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gemmperf._paths import data_dir
from gemmperf.errors import DataFormatError
from gemmperf.hardware.specs import GpuSpec

#: Workloads whose fitted activity counts as "at the roofline bound" (compute-bound kernels).
COMPUTE_BOUND_WORKLOADS = ("fp32_kernel", "gemm", "2mm", "3mm", "syrk")


@dataclass(frozen=True)
class DvfsParams:
    """Calibration of the power model (see the module docstring)."""

    sigma: float              # static power / TDP
    kappa: float              # knee clock / boost clock
    v_knee: float             # core voltage at the knee / at the boost clock
    activity_at_peak: float   # activity u of a kernel at its roofline bound
    source: str = ""
    rms_log_error: float | None = None

    def voltage(self, clock_mhz: np.ndarray, boost_mhz: float) -> np.ndarray:
        """v(f): voltage relative to the boost clock's."""
        f = np.asarray(clock_mhz, dtype=float)
        knee = self.kappa * boost_mhz
        rise = (1.0 - self.v_knee) * (f - knee) / max(boost_mhz - knee, 1e-9)
        return np.where(f <= knee, self.v_knee, self.v_knee + rise)

    def power(self, gpu: GpuSpec, clock_mhz: Any, activity: Any) -> np.ndarray:
        """P(f, u) in watts on ``gpu``."""
        f = np.asarray(clock_mhz, dtype=float)
        v = self.voltage(f, gpu.boost_clock_mhz)
        dynamic = np.asarray(activity, dtype=float) * (f / gpu.boost_clock_mhz) * v * v
        return gpu.tdp_w * (self.sigma + (1.0 - self.sigma) * dynamic)


def _path() -> Path:
    return data_dir() / "dvfs_power.json"


@functools.lru_cache(maxsize=1)
def _calibration() -> dict[str, DvfsParams]:
    path = _path()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {key: DvfsParams(**entry) for key, entry in doc["gpus"].items()}
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise DataFormatError(f"{path}: cannot read the DVFS calibration ({exc})") from exc


def dvfs_params(gpu: GpuSpec) -> tuple[DvfsParams, bool]:
    """The GPU's own calibration, else the generic one; the flag says whether it is its own."""
    table = _calibration()
    if gpu.key in table:
        return table[gpu.key], True
    return table["generic"], False


def utilization_power(gpu: GpuSpec, roofline_fraction: np.ndarray) -> np.ndarray:
    """Board power at the boost clock for configurations reaching ``roofline_fraction`` of the
    roofline bound: activity = activity_at_peak x fraction (clipped to [0, 1])."""
    params, _ = dvfs_params(gpu)
    fraction = np.clip(np.nan_to_num(np.asarray(roofline_fraction, dtype=float), nan=0.0), 0, 1)
    return params.power(gpu, gpu.boost_clock_mhz, params.activity_at_peak * fraction)


# ---------------------------------------------------------------------------------------------
# Calibration


def sweep_tables(records: pd.DataFrame) -> dict[str, list[tuple[str, pd.DataFrame]]]:
    """Per GPU, per workload: (clock, runtime, power) rows of a power-vs-clock records frame,
    at the GPU's highest memory clock (the default), repeated clocks averaged."""
    from gemmperf.records import params_frame

    need = records.dropna(subset=["gpu", "sm_clock_mhz", "power_w", "runtime_s"])
    if need.empty:
        raise DataFormatError("no records with gpu, sm_clock_mhz, power_w and runtime_s")
    params = params_frame(need)
    workload = need["kernel_name"].astype(str)
    if "benchmark" in params:
        workload = params["benchmark"].where(params["benchmark"].notna(), workload).astype(str)
    frame = pd.DataFrame({
        "gpu": need["gpu"].to_numpy(), "workload": workload.to_numpy(),
        "clock": pd.to_numeric(need["sm_clock_mhz"]).to_numpy(),
        "mem": pd.to_numeric(need["mem_clock_mhz"], errors="coerce").fillna(0).to_numpy(),
        "runtime_s": pd.to_numeric(need["runtime_s"]).to_numpy(),
        "power_w": pd.to_numeric(need["power_w"]).to_numpy(),
    })
    frame = frame[frame["mem"] == frame.groupby("gpu")["mem"].transform("max")]
    out: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for (gpu, workload), part in frame.groupby(["gpu", "workload"], sort=True):
        table = part.groupby("clock", as_index=False)[["runtime_s", "power_w"]].mean()
        if len(table) >= 4:
            out.setdefault(str(gpu), []).append((str(workload), table))
    return out


def fit_dvfs(gpu: GpuSpec, workloads: Iterable[tuple[str, pd.DataFrame]],
             source: str = "") -> tuple[DvfsParams, dict[str, float]]:
    """Least-squares fit (log power) of sigma, kappa, v_knee shared by the workloads and one
    activity per workload; returns the params and the fitted activities."""
    from scipy.optimize import least_squares

    tables = list(workloads)
    if not tables:
        raise DataFormatError(f"no power-vs-clock sweeps for {gpu.key}")

    def residuals(x: np.ndarray) -> np.ndarray:
        params = DvfsParams(x[0], x[1], x[2], 1.0)
        return np.concatenate([
            np.log(params.power(gpu, t["clock"].to_numpy(), u)) - np.log(t["power_w"].to_numpy())
            for u, (_, t) in zip(x[3:], tables, strict=True)])

    n = len(tables)
    start = np.r_[0.15, 0.75, 0.8, np.full(n, 0.5)]
    low = np.r_[0.01, 0.3, 0.3, np.full(n, 0.01)]
    high = np.r_[0.9, 1.0, 1.0, np.full(n, 3.0)]
    fit = least_squares(residuals, start, bounds=(low, high))
    activities = {name: float(u) for (name, _), u in zip(tables, fit.x[3:], strict=True)}
    peak = [u for name, u in activities.items() if name in COMPUTE_BOUND_WORKLOADS]
    params = DvfsParams(
        sigma=float(fit.x[0]), kappa=float(fit.x[1]), v_knee=float(fit.x[2]),
        activity_at_peak=float(np.mean(peak)) if peak else float(np.max(fit.x[3:])),
        source=source, rms_log_error=float(np.sqrt(np.mean(fit.fun ** 2))))
    return params, activities


def generic_params(fits: dict[str, DvfsParams], source: str = "") -> DvfsParams:
    """The mean calibration of several GPUs (for GPUs without their own)."""
    if not fits:
        raise DataFormatError("no GPU calibrations to average")
    keys = ("sigma", "kappa", "v_knee", "activity_at_peak")
    mean = {k: float(np.mean([getattr(p, k) for p in fits.values()])) for k in keys}
    return DvfsParams(**mean, source=source or f"mean of {', '.join(sorted(fits))}")


def calibration_document(fits: dict[str, DvfsParams], files: list[str]) -> dict[str, Any]:
    """The ``data/dvfs_power.json`` document for ``fits`` (plus the generic mean)."""
    gpus = {k: asdict(v) for k, v in sorted(fits.items())}
    gpus["generic"] = asdict(generic_params(fits))
    return {
        "description": "Calibration of the DVFS power model P(f, u) = TDP (sigma + (1 - sigma) "
                       "u (f/f0) v(f)^2) (gemmperf/tune/power.py), fitted by "
                       "benchmarks/recommender_clocks.py --write on the files below.",
        "derived_from": files,
        "gpus": gpus,
    }
