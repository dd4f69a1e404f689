"""The result of :func:`gemmperf.training.planner.plan_training`: one training run, planned."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gemmperf.training.layout import Parallelism
from gemmperf.training.memory import MemoryEstimate

GIB = 2**30


@dataclass(frozen=True)
class TrainingPlan:
    """A training run on a cluster: its layout, speed, duration, energy and cost."""

    arch: str
    gpu: str
    dtype: str
    num_gpus: int
    parallelism: Parallelism
    seq_len: int
    global_batch_tokens: int
    tokens: float
    steps: float
    step_time_s: float
    tokens_per_s: float
    tokens_per_s_per_gpu: float
    model_flops_per_token: float
    mfu: float
    hfu: float
    mfu_palm: float
    model_tflops_per_gpu: float
    days: float
    gpu_hours: float
    energy_mwh: float
    avg_gpu_power_w: float
    pue: float
    usd: float | None
    price_per_gpu_hour: float | None
    memory: MemoryEstimate
    breakdown_s: dict[str, float]          # compute / memory / communication / bubble per step
    breakdown_kind_s: dict[str, float]     # GEMM time per step by kind (per GPU, stage average)
    communication_s: dict[str, float]
    gemm_source: str
    notes: tuple[str, ...] = field(default=())
    attention_kernel: str = ""           # fa2 | fa3 | fa4 | unfused
    sustained_clock_factor: float = 1.0  # sustained / burst matmul throughput applied

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (the CLI's ``--json`` output)."""
        out = asdict(self)
        out["parallelism"] = {**asdict(self.parallelism), "layout": self.parallelism.describe()}
        mem = self.memory
        out["memory"] = {"total_gib": mem.total / GIB, "capacity_gib": mem.capacity / GIB,
                         "weights_gib": mem.weights / GIB, "gradients_gib": mem.gradients / GIB,
                         "optimizer_gib": mem.optimizer / GIB,
                         "activations_gib": mem.activations / GIB, "logits_gib": mem.logits / GIB}
        out["notes"] = list(self.notes)
        return out
