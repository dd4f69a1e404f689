"""gemmperf: measure, model and predict GEMM runtime, power and energy on NVIDIA GPUs.

Importing gemmperf never touches a GPU, NVML or CUDA; the GPU paths load lazily inside the
collector backends.
"""

from __future__ import annotations

from gemmperf.errors import GemmperfError, InvalidProblemError, UnknownGpuError
from gemmperf.problem import GemmProblem, KernelConfig
from gemmperf.records import Record, read_records

__version__ = "0.1.0"

__all__ = [
    "GemmProblem",
    "GemmperfError",
    "InvalidProblemError",
    "KernelConfig",
    "Record",
    "UnknownGpuError",
    "__version__",
    "read_records",
]
