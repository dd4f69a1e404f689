"""Stand-in models and synthetic recordings for the recommender tests (no real GPU numbers).

The synthetic "GPU" times below exercise ranking and search logic only; they are never reported
as measurements.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor

from gemmperf.records import RecordWriter

XGEMM_TUNABLES = ("MWG", "NWG", "MDIMC", "NDIMC", "MDIMA", "NDIMB", "VWM", "VWN", "SA", "SB")


def synthetic_log_time(frame: pd.DataFrame, gpu: str) -> np.ndarray:
    """A smooth, GPU-dependent log runtime over Xgemm tunables (big tiles and vectors help;
    on "rtx-3090" staging A in shared memory helps, elsewhere it hurts), at a level a GPU
    could reach (4096^3 in 3.7 ms at best: an import marks faster times suspect)."""
    p = {n: frame[n].to_numpy(dtype=float) for n in XGEMM_TUNABLES}
    sa_effect = -0.08 if gpu == "rtx-3090" else 0.06
    return (-0.25 * np.log2(p["MWG"] * p["NWG"]) + 0.05 * np.abs(np.log2(p["VWM"]) - 2)
            + 0.04 * np.abs(np.log2(p["MDIMC"]) - 4) + sa_effect * p["SA"] - 0.03 * p["SB"]
            + 0.01 * np.log2(p["MDIMA"]) - 2.0)


class AnalyticModel:
    """Deterministic stand-in: runtime = exp(synthetic_log_time), power 200 W except where
    ``VWN`` is 8 (100 W), so energy and time rank differently."""

    name = "analytic stand-in"

    def __init__(self, power: bool = True) -> None:
        self.power = power

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        gpu = str(frame["gpu"].iloc[0])
        runtime = np.exp(synthetic_log_time(frame, gpu))
        out = pd.DataFrame({"runtime_s": runtime, "runtime_s_lo": runtime * 0.9,
                            "runtime_s_hi": runtime * 1.1}, index=frame.index)
        if self.power:
            out["power_w"] = np.where(frame["VWN"].to_numpy() == 8, 100.0, 200.0)
        return out


class ForestStandIn:
    """A scikit-learn forest fitted on synthetic times of several GPUs (tunables + GPU code)."""

    def __init__(self, frame: pd.DataFrame, gpus: list[str], seed: int = 0) -> None:
        self.gpus = list(gpus)
        rows, target = [], []
        for i, gpu in enumerate(self.gpus):
            rows.append(np.column_stack([frame[list(XGEMM_TUNABLES)].to_numpy(dtype=float),
                                         np.full(len(frame), i)]))
            target.append(synthetic_log_time(frame, gpu))
        self.forest = RandomForestRegressor(n_estimators=12, max_depth=10, random_state=seed)
        self.forest.fit(np.vstack(rows), np.concatenate(target))
        self.training_data_ = [{"source": "kernel_tuner", "gpu": g, "rows": len(frame),
                                "runtime": len(frame)} for g in self.gpus]

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        gpu = str(frame["gpu"].iloc[0])
        code = self.gpus.index(gpu) if gpu in self.gpus else len(self.gpus) / 2
        x = np.column_stack([frame[list(XGEMM_TUNABLES)].to_numpy(dtype=float),
                             np.full(len(frame), code)])
        return pd.DataFrame({"runtime_s": np.exp(self.forest.predict(x))}, index=frame.index)


def write_synthetic_recording(path, space, gpu: str, *, count: int = 300, seed: int = 0) -> None:
    """A records file of ``count`` valid configs of ``space`` with synthetic times on ``gpu``
    (marked source="synthetic-test")."""
    rng = np.random.default_rng(seed)
    cands = space.candidates
    pick = cands.iloc[np.sort(rng.choice(len(cands), size=min(count, len(cands)),
                                         replace=False))]
    times = np.exp(synthetic_log_time(pick, gpu))
    with RecordWriter(path) as writer:
        for (_, row), t in zip(pick.iterrows(), times, strict=True):
            writer.write({
                "source": "synthetic-test", "status": "ok", "m": 4096, "n": 4096, "k": 4096,
                "dtype": "f32", "layout": "nt", "family": "clblast_xgemm", "kernel_name": "Xgemm",
                "gpu": gpu, "tile_m": int(row["MWG"]), "tile_n": int(row["NWG"]),
                "tile_k": int(row["KWG"]), "threads_per_block": int(row["MDIMC"] * row["NDIMC"]),
                "params": {n: int(row[n]) for n in space.param_names}, "runtime_s": float(t),
                "runtime_std_s": float(t) * 0.01, "repeats": 32,
            })
