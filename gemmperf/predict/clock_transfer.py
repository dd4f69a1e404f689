"""What a row's SM clock does to a prediction when its kernel family was never measured at one.

Only clock-sweep tables record a clock: the GTX Titan X DVFS table, the FP32 power-vs-clock
sweeps, the locked-clock vector add, and gemmperf's own sweeps (the collector reads the clocks
from NVML). The Kernel Tuner Xgemm spaces and the Vidur and XLA tables were measured at whatever
clock the GPU ran, with none recorded. Trees given a clock their family never had cannot know
what it does; they send the row into the leaves of the families that did record clocks. Measured
on the default model before this module: ``gemmperf predict --gpu rtx-3090 --family
clblast_xgemm --m 4096 --n 4096 --k 4096 --sm-clock 1200`` came out 1.71x slower than at the
1,695 MHz boost clock. That is t ~ f^-1.55, slower than any kernel can get (a compute-bound one
goes as 1/f). It also had more energy at the lower clock, the opposite of the DVFS model that
``gemmperf clocks`` uses.

So for a row whose family has no training row with a recorded clock (``clocked_families_``):

* the trees see the row as its family was measured, with the clock columns blanked;
* runtime: the base carries the requested clock. The roofline's compute time goes as 1/f and
  its DRAM time stays fixed, the same t(f) as :mod:`gemmperf.tune.clocks`;
* power: the trees' power at the unrecorded (default) clock, times the calibrated DVFS curve's
  ratio ``P(f, u) / P(f_default, u)`` (:mod:`gemmperf.tune.power`). The activity ``u`` is
  ``activity_at_peak`` x the row's predicted fraction of its roofline bound, as ``gemmperf
  clocks`` sets it;
* energy: its base moves by the runtime shift plus the power shift.

Rows of families trained with clocks keep them, because there the trees learned what the clock
does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gemmperf.features import NUMERIC_FEATURES, FeatureSet, build_features
from gemmperf.hardware.specs import get_gpu
from gemmperf.tune.power import dvfs_params

#: The record columns that state a clock (records.py); either one makes a row "clocked".
CLOCK_COLUMNS = ("sm_clock_mhz", "mem_clock_mhz")
_CLOCK_RATIO = NUMERIC_FEATURES.index("clock_ratio")


def clocked_families(features: FeatureSet) -> list[str]:
    """The kernel families with at least one training row that records a clock."""
    return sorted({str(f) for f in features.categorical["family"][features.clock_recorded]})


@dataclass(frozen=True)
class ClockTransfer:
    """A batch with rows whose clock only the bases carry (module doc)."""

    rows: np.ndarray             # mask: a recorded clock the family was never measured with
    tree_features: FeatureSet    # features of the batch with those rows' clocks blanked
    features: FeatureSet         # features of the batch as given

    def log_bases(self, runtime_z: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Per target, the log base it is predicted relative to. ``runtime_z`` is the runtime
        ensemble's log(time / base) per row at the default clock. It gives the DVFS activity;
        without it, rows are taken to run at their roofline bound."""
        measured, asked = self.tree_features.log_base, self.features.log_base
        shift = self._power_shift(runtime_z)
        return {"runtime": asked["runtime"], "power": measured["power"] + shift,
                "energy": measured["energy"] + (asked["runtime"] - measured["runtime"]) + shift}

    def _power_shift(self, runtime_z: np.ndarray | None) -> np.ndarray:
        """log P(f, u) - log P(f_default, u) per row (0 on rows whose clock the trees see)."""
        shift = np.zeros(len(self.rows))
        rows = np.flatnonzero(self.rows)
        # Roofline fraction = base / time = exp(-z); the DVFS activity scales with it.
        fraction = np.ones(len(rows)) if runtime_z is None else np.clip(
            np.exp(-np.asarray(runtime_z, dtype=float)[rows]), 0.0, 1.0)
        asked_ratio = self.features.values[rows, _CLOCK_RATIO]
        default_ratio = self.tree_features.values[rows, _CLOCK_RATIO]
        gpus = self.features.gpu[rows]
        for gpu in np.unique(gpus.astype(str)):
            these = gpus == gpu
            spec = get_gpu(gpu)
            params, _ = dvfs_params(spec)
            activity = params.activity_at_peak * fraction[these]
            boost = spec.boost_clock_mhz
            shift[rows[these]] = (
                np.log(params.power(spec, asked_ratio[these] * boost, activity))
                - np.log(params.power(spec, default_ratio[these] * boost, activity)))
        return shift


def as_measured(X: pd.DataFrame, features: FeatureSet, clocked: list[str] | None
                ) -> ClockTransfer | None:
    """The batch's clock transfer, or None when every recorded clock belongs to a family
    trained with clocks (or ``clocked`` is None: a model that predates this rule)."""
    if clocked is None:
        return None
    rows = features.clock_recorded & ~features.isin("family", clocked)
    if not rows.any():
        return None
    blanked = X.assign(**{c: X[c].mask(rows) for c in CLOCK_COLUMNS if c in X.columns})
    return ClockTransfer(rows=rows, tree_features=build_features(blanked), features=features)
