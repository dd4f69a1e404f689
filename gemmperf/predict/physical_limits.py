"""What no prediction may cross, applied to a predictor's output columns in place: a kernel
call's fixed cost below runtime, the board's power limit above power (and power x time above
energy), energy as power x runtime where the energy ensemble knows nothing of the row's kernel
family and, where it does, its point within the product of the power and runtime bounds
(:meth:`gemmperf.predict.forest.Predictor.predict`).
"""

from __future__ import annotations

import functools

import numpy as np

from gemmperf.errors import DataFormatError
from gemmperf.features import FeatureSet


def apply_physical_limits(out: dict[str, np.ndarray], features: FeatureSet,
                          energy_families: list[str] | None) -> None:
    """The limits of the module doc on ``out`` (``runtime_s``, ``power_w``, ``energy_j`` and
    their ``_lo``/``_hi`` bounds, whichever are present), in place. ``energy_families``: the
    families the energy ensemble was trained on."""
    if "runtime_s" in out:
        # A kernel call costs at least its fixed launch-and-setup time; far below the
        # measured shapes the trees only extrapolate the ratio to a roofline bound that
        # vanishes (a 1x1x1 GEMM came out at 0.13 ns).
        floor = call_floor_s()
        for suffix in ("", "_lo", "_hi"):
            np.maximum(out["runtime_s" + suffix], floor, out=out["runtime_s" + suffix])
    if "power_w" in out and features.power_limit_w is not None:
        cap_at_power_limit(out, features.power_limit_w)
    if {"runtime_s", "power_w"} <= set(out):
        energy_from_power_and_time(out, features, energy_families)
        if {"power_w_lo", "runtime_s_lo", "energy_j"} <= set(out):
            energy_within_power_bounds(out)


@functools.lru_cache(maxsize=1)
def call_floor_s() -> float:
    """The smallest runtime a prediction takes: the least fixed per-call cost ``t0`` that
    ``data/training_calibration.json`` fitted to measured library-GEMM tables (3.4 us, the A40's
    in Vidur's data; the fastest call measured in ../shared/data takes 5 us). A constant, not the
    training rows' minimum: a faster GPU runs its configs faster than any measured elsewhere."""
    from gemmperf.training.costmodel import calibration

    try:
        return min(float(entry["params"]["t0_s"]) for entry in calibration()["gemm"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataFormatError(f"the training calibration has no fixed per-call cost t0_s "
                              f"({exc})") from exc


def cap_at_power_limit(out: dict[str, np.ndarray], limit_w: np.ndarray) -> None:
    """Power (and, given runtime, energy = power x time) no higher than the board's default
    power limit, in place. A GPU lowers its clock to hold average power under the enforced
    limit, which defaults to the TDP: the RTX A4000's two top requested clocks in
    kt_fp32_power_vs_clock.csv ran capped at 139 W of its 140 W, and no measured power row in
    ../shared/data exceeds its GPU's TDP. Without the cap, an unseen GPU's interval (the level
    scatter of the two GPUs with power rows for one family, as a t interval) reached 1,047 W
    for a 4096^3 Xgemm on the 350 W RTX 3090. A raised limit (``nvidia-smi -pl``) is not
    modelled."""
    limit = np.where(np.isfinite(limit_w) & (limit_w > 0), limit_w, np.inf)
    for suffix in ("", "_lo", "_hi"):
        np.minimum(out["power_w" + suffix], limit, out=out["power_w" + suffix])
        if "energy_j" in out and "runtime_s" in out:
            np.minimum(out["energy_j" + suffix], limit * out["runtime_s" + suffix],
                       out=out["energy_j" + suffix])


def energy_from_power_and_time(out: dict[str, np.ndarray], features: FeatureSet,
                               covered: list[str] | None) -> None:
    """``out``'s energy columns as power x runtime (bounds multiplied: conservative for
    independent errors) on every row when the energy ensemble did not run, else on the rows
    of families no energy row covered (``covered``; a model from before that list: none)."""
    if "energy_j" not in out:
        product = np.ones(len(features.gpu), dtype=bool)
    else:
        product = np.zeros(len(features.gpu), dtype=bool) if covered is None \
            else ~features.isin("family", covered)
    if not product.any():
        return
    for suffix in ("", "_lo", "_hi"):
        energy = out["runtime_s" + suffix] * out["power_w" + suffix]
        out["energy_j" + suffix] = energy if product.all() else np.where(
            product, energy, out["energy_j" + suffix])


def energy_within_power_bounds(out: dict[str, np.ndarray]) -> None:
    """The energy point (from its own ensemble) within the product of the power and runtime
    bounds, in place: energy is power x time, so it cannot lie outside ``[power_w_lo x
    runtime_s_lo, power_w_hi x runtime_s_hi]``. The energy interval is widened to hold the
    point, never narrowed (its calibration is its own). Outside its families the energy
    ensemble extrapolates its ratio to a base that vanishes with the shape: a GEMM-shaped row
    of the FMA benchmark's family had come out at 1e-7 of the board power."""
    point = np.clip(out["energy_j"], out["power_w_lo"] * out["runtime_s_lo"],
                    out["power_w_hi"] * out["runtime_s_hi"])
    out["energy_j"] = point
    if "energy_j_lo" in out:
        np.minimum(out["energy_j_lo"], point, out=out["energy_j_lo"])
        np.maximum(out["energy_j_hi"], point, out=out["energy_j_hi"])
