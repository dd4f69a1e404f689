"""gemmperf: measure, model and predict GEMM runtime, power and energy on NVIDIA GPUs.

Importing gemmperf never touches a GPU, NVML or CUDA; the GPU paths load lazily inside the
collector backends. The learned predictor (``Predictor``, ``load_model``) loads scikit-learn,
which takes about a second, so it is imported on first use (PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

from gemmperf.errors import (
    DataFormatError,
    GemmperfError,
    InvalidConfigError,
    InvalidProblemError,
    UnknownGpuError,
)
from gemmperf.hardware.occupancy import Occupancy, occupancy, occupancy_arrays
from gemmperf.hardware.specs import GpuSpec, all_gpus, find_gpu, get_gpu
from gemmperf.importers import (
    import_cutlass_profiler,
    import_kernel_tuner,
    import_table,
    load_dataset,
)
from gemmperf.problem import GemmProblem, KernelConfig

# recommend() shadows its module on the package: `gemmperf.recommend(...)` ranks
# configs; the module stays importable as `from gemmperf.recommend import rank_space`.
from gemmperf.recommend import recommend
from gemmperf.records import Record, RecordWriter, read_records, write_frame
from gemmperf.roofline import RooflineEstimate, roofline, roofline_arrays
from gemmperf.roofline_frame import roofline_frame
from gemmperf.training import (
    ComputeOptimalPlan,
    TrainingPlan,
    TransformerArch,
    compute_optimal,
    load_arch,
    plan_training,
)
from gemmperf.tune.prune import ConfigPruner

__version__ = "0.1.0"

#: Public names imported on first access: name -> module.
_LAZY = {"Predictor": "gemmperf.predict.forest", "load_model": "gemmperf.predict.persist"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gemmperf' has no attribute {name!r}")

__all__ = [
    "ComputeOptimalPlan",
    "ConfigPruner",
    "DataFormatError",
    "GemmProblem",
    "GemmperfError",
    "GpuSpec",
    "InvalidConfigError",
    "InvalidProblemError",
    "KernelConfig",
    "Occupancy",
    "Predictor",
    "Record",
    "RecordWriter",
    "RooflineEstimate",
    "TrainingPlan",
    "TransformerArch",
    "UnknownGpuError",
    "__version__",
    "all_gpus",
    "compute_optimal",
    "find_gpu",
    "get_gpu",
    "import_cutlass_profiler",
    "import_kernel_tuner",
    "import_table",
    "load_arch",
    "load_dataset",
    "load_model",
    "occupancy",
    "occupancy_arrays",
    "plan_training",
    "read_records",
    "recommend",
    "roofline",
    "roofline_arrays",
    "roofline_frame",
    "write_frame",
]
