"""How a training job is laid out on GPUs: tensor, pipeline, data and expert parallelism.

Rank order follows Megatron-LM: tensor-parallel ranks are innermost (adjacent GPUs of a node),
then pipeline stages, then data-parallel replicas. Expert parallelism (MoE) splits each layer's
experts over ``ep`` data-parallel ranks. Sequence parallelism is on whenever ``tp > 1``.

Data-parallel sharding (``zero_stage``, Rajbhandari et al. 2020): 0 replicates everything and
all-reduces fp32 gradients; 1 shards the optimizer state (Megatron's distributed optimizer, the
default); 2 also shards gradients, reduce-scattering them after every micro-batch; 3 also shards
the weights (PyTorch FSDP FULL_SHARD), all-gathering each layer's weights before its forward and
again before its backward.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from gemmperf.training.arch import TransformerArch
from gemmperf.training.errors import PlanError


@dataclass(frozen=True)
class Parallelism:
    """A parallel layout: ``tp * pp * dp`` GPUs, micro-batches of ``micro_batch`` sequences.

    ``virtual_stages`` > 1 is Megatron's interleaved 1F1B schedule (bubble / virtual_stages).
    ``recompute`` is full activation recomputation of every layer. ``flash_attention`` False
    models the unfused attention of pre-2022 frameworks: the L x L scores go through DRAM, the
    softmax is a separate kernel and its output is kept for the backward pass.
    """

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    micro_batch: int = 1
    recompute: bool = False
    virtual_stages: int = 1
    distributed_optimizer: bool = True
    flash_attention: bool = True
    zero_stage: int = 1

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def sharding(self) -> int:
        """Effective ZeRO stage: 0 when the distributed optimizer is switched off."""
        return self.zero_stage if self.distributed_optimizer else 0

    def check(self, arch: TransformerArch) -> None:
        """Raise :class:`PlanError` if the layout cannot run ``arch``."""
        for name in ("tp", "pp", "dp", "ep", "micro_batch", "virtual_stages"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PlanError(f"{name} must be a positive integer, got {value!r}")
        if self.virtual_stages > 1 and self.pp == 1:
            raise PlanError(f"{self.virtual_stages} virtual stages interleave pipeline stages: "
                            "they need pp > 1")
        if self.pp * self.virtual_stages > arch.num_layers:
            raise PlanError(f"{arch.name} has {arch.num_layers} layers: too few for "
                            f"{self.pp} pipeline stages x {self.virtual_stages} virtual stages")
        if self.zero_stage not in (0, 1, 2, 3) or isinstance(self.zero_stage, bool):
            raise PlanError(f"zero_stage must be 0, 1, 2 or 3, got {self.zero_stage!r}")
        if self.ep > 1 and self.dp % self.ep:
            raise PlanError(f"expert parallel size {self.ep} must divide the data-parallel size "
                            f"{self.dp}")

    def describe(self) -> str:
        parts = [f"TP{self.tp}", f"PP{self.pp}", f"DP{self.dp}"]
        if self.ep > 1:
            parts.append(f"EP{self.ep}")
        if self.virtual_stages > 1:
            parts.append(f"v{self.virtual_stages}")
        parts.append(f"mb{self.micro_batch}")
        if self.sharding != 1:
            parts.append(f"ZeRO-{self.sharding}")
        if self.recompute:
            parts.append("full-recompute")
        if not self.flash_attention:
            parts.append("unfused-attention")
        return " ".join(parts)


def stage_layers(num_layers: int, pp: int) -> list[range]:
    """Contiguous layer ranges of each pipeline stage; earlier stages take the remainder."""
    base, extra = divmod(num_layers, pp)
    out, start = [], 0
    for s in range(pp):
        size = base + (1 if s < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


@lru_cache(maxsize=4096)
def stage_layer_counts(arch: TransformerArch, pp: int) -> tuple[tuple[int, int], ...]:
    """(dense layers, MoE layers) per pipeline stage."""
    counts = []
    for layers in stage_layers(arch.num_layers, pp):
        moe = sum(arch.is_moe_layer(i) for i in layers)
        counts.append((len(layers) - moe, moe))
    return tuple(counts)
