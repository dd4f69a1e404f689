"""gemmperf.training: transformer training cost GEMM by GEMM, and compute-optimal budgets.

* :mod:`~gemmperf.training.arch`, :mod:`~gemmperf.training.config` -- architecture specs from a
  Hugging Face ``config.json`` or a preset (``data/archs``), parameter counts;
* :mod:`~gemmperf.training.gemms` -- the forward/dgrad/wgrad GEMMs of a training step, FLOPs;
* :mod:`~gemmperf.training.planner` -- step time, MFU/HFU, GPU-hours, energy, cost
  (:mod:`~gemmperf.training.plan`, :mod:`~gemmperf.training.costmodel` (GEMMs),
  :mod:`~gemmperf.training.kernels` (fused attention, memory-bound kernels, sustained clocks),
  :mod:`~gemmperf.training.step`, :mod:`~gemmperf.training.comm`,
  :mod:`~gemmperf.training.memory`);
* :mod:`~gemmperf.training.scaling`, :mod:`~gemmperf.training.budget` -- scaling laws and the
  budget -> (N, D, architecture, plan) solver;
* :mod:`~gemmperf.training.calibrate` -- derives the efficiency calibration from real GEMM data.
"""

from __future__ import annotations

from gemmperf.training.arch import ParamCount, TransformerArch
from gemmperf.training.budget import ComputeOptimalPlan, compute_optimal
from gemmperf.training.config import arch_from_config, list_presets, load_arch
from gemmperf.training.planner import TrainingPlan, plan_training
from gemmperf.training.scaling import ScalingOptimum, optimum

__all__ = [
    "ComputeOptimalPlan",
    "ParamCount",
    "ScalingOptimum",
    "TrainingPlan",
    "TransformerArch",
    "arch_from_config",
    "compute_optimal",
    "list_presets",
    "load_arch",
    "optimum",
    "plan_training",
]
