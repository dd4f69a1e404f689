"""Where the autotuner's measurements come from: a real GPU through the collector, or a replay.

Both take the candidates to measure (rows of the space frame) and return, per row, ``status``,
``reason``, ``runtime_s``, ``power_w``, ``energy_j`` and ``source``.

- :class:`CollectorMeasurer` runs each config through the collector's own measurement path
  (:func:`gemmperf.collect.measurement.measure_item`: compile, time with warm-up and repeats,
  verify, NVML power) on a :class:`~gemmperf.collect.rig.Rig` and appends every record to a
  JSONL file.
- :class:`ReplayMeasurer` looks the config up in a recorded space (records or a Kernel Tuner
  cache): the file plays the GPU. With ``noise=True`` each replayed time is drawn from the
  spread of the recorded runs (a fresh measurement of the mean of ``repeats`` runs), so seeds
  give different, realistic measurement noise; without it replay is exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from gemmperf.errors import GemmperfError
from gemmperf.problem import GemmProblem
from gemmperf.spaces.files import Recording
from gemmperf.spaces.space import Space

MEASUREMENT_COLUMNS = ("status", "reason", "runtime_s", "power_w", "energy_j", "source")


class Measurer(Protocol):
    """Measures configurations of a space on one GPU."""

    source: str

    def measure(self, space: Space, ids: list[Any]) -> pd.DataFrame:
        """One row per id (indexed by id) with :data:`MEASUREMENT_COLUMNS`."""


class ReplayMeasurer:
    """A recorded space as the GPU (module docstring)."""

    source = "replay"

    def __init__(self, recording: Recording, *, noise: bool = False,
                 rng: np.random.Generator | None = None) -> None:
        if len(recording.gpus) > 1:
            raise GemmperfError(
                f"the replay file holds records of {len(recording.gpus)} GPUs "
                f"({', '.join(recording.gpus)}): pass --gpu to replay one of them")
        self.recording = recording
        self.noise = noise
        self.rng = rng or np.random.default_rng(0)
        self.gpu = recording.gpus[0] if recording.gpus else None

    def measure(self, space: Space, ids: list[Any]) -> pd.DataFrame:
        frame = self.recording.frame
        missing = [i for i in ids if i not in frame.index]
        if missing:
            raise GemmperfError(f"{len(missing)} config(s) are not in the replay file; replay "
                                "needs the space the file lists (--space FILE)")
        rows = frame.loc[ids]
        out = pd.DataFrame(index=pd.Index(ids))
        runtime = rows["runtime_s"].to_numpy(dtype=float).copy()
        if self.noise:
            std = rows["runtime_std_s"].to_numpy(dtype=float)
            repeats = np.maximum(rows["repeats"].to_numpy(dtype=float), 1.0)
            sd = np.where(np.isfinite(std), std / np.sqrt(repeats), 0.0)
            runtime = np.where(np.isfinite(runtime), runtime + self.rng.normal(0, 1, len(ids)) * sd,
                               runtime)
        ok = np.isfinite(runtime) & (runtime > 0)
        out["status"] = np.where(ok, "ok", rows["status"].where(rows["status"] != "ok",
                                                               "invalid").to_numpy())
        out["reason"] = np.where(ok, None, "no successful measurement in the replay file")
        out["runtime_s"] = np.where(ok, runtime, np.nan)
        scale = np.where(ok, runtime / rows["runtime_s"].to_numpy(dtype=float), np.nan)
        out["power_w"] = rows["power_w"].to_numpy(dtype=float)
        out["energy_j"] = rows["energy_j"].to_numpy(dtype=float) * scale
        out["source"] = self.source
        return out


class CollectorMeasurer:
    """Measure on a GPU (or the seeded fake) with the collector; every record is appended to
    ``out_dir/records.jsonl`` (or ``file_name``)."""

    def __init__(self, rig: Any, problem: GemmProblem, out_dir: str | Path, *,
                 options: Any = None, file_name: str = "autotune.jsonl") -> None:
        from gemmperf.collect.sweep import SweepOptions
        from gemmperf.records import RecordWriter

        self.rig = rig
        self.problem = problem
        self.options = options or SweepOptions(out_dir=Path(out_dir))
        self.path = Path(out_dir) / file_name
        self.writer = RecordWriter(self.path)
        self.source = rig.source

    def measure(self, space: Space, ids: list[Any]) -> pd.DataFrame:
        from gemmperf.collect.measurement import measure_item
        from gemmperf.collect.space import PlanItem, item_key

        rows = []
        for config_id in ids:
            config = space.config(config_id)
            backend = self.rig.backends.get(config.family)
            if backend is None:
                raise GemmperfError(
                    f"the rig has no {config.family} backend (it has "
                    f"{', '.join(self.rig.backends) or 'none'}); --replay a recording instead")
            reason = backend.invalid_reason(self.problem, config)
            item = PlanItem(self.problem, config, reason, item_key(self.problem, config))
            record, fatal = measure_item(self.rig, item, self.options)
            self.writer.write(record)
            rows.append({"status": record["status"], "reason": record.get("reason"),
                         "runtime_s": record.get("runtime_s"), "power_w": record.get("power_w"),
                         "energy_j": record.get("energy_j"), "source": record.get("source")})
            if fatal:
                raise GemmperfError(f"the CUDA context was lost measuring {config.key()}: "
                                    f"{record.get('reason')}; rerun to continue in a new process")
        out = pd.DataFrame(rows, index=pd.Index(ids))
        for name in ("runtime_s", "power_w", "energy_j"):
            out[name] = pd.to_numeric(out[name], errors="coerce")
        return out

    def close(self) -> None:
        self.writer.close()
