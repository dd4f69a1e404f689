"""GpuSpec: one NVIDIA GPU's published numbers, loaded from ``data/gpus.json``.

Hardware numbers are data with a source per entry, never literals in code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GpuSpec:
    """Published specification of one GPU SKU, in SI units.

    ``peak_flops`` maps a math key to dense (no sparsity) peak throughput in FLOP/s (OP/s for
    int8) at the boost clock: ``fp64``, ``fp32`` (SIMT FMA), ``tf32``, ``fp16`` and ``bf16``
    (tensor cores, fp32 accumulate), ``fp16_acc16`` (tensor, fp16 accumulate; only where it
    differs), ``fp8``, ``int8``. A key is absent where the GPU has no such math path.
    """

    key: str                       # canonical id, e.g. "h100-sxm"
    name: str                      # marketing name, e.g. "NVIDIA H100 SXM5 80GB"
    architecture: str              # "Maxwell" ... "Blackwell"
    compute_capability: tuple[int, int]
    sm_count: int
    base_clock_mhz: float
    boost_clock_mhz: float
    peak_flops: Mapping[str, float]
    mem_bandwidth_bytes_s: float
    mem_bytes: int
    l2_bytes: int
    smem_per_sm_bytes: int         # configurable shared memory carve-out, maximum
    smem_per_block_bytes: int      # maximum per block with opt-in
    regs_per_sm: int
    max_threads_per_sm: int
    max_blocks_per_sm: int
    max_threads_per_block: int
    tdp_w: float
    idle_power_w: float | None = None
    interconnect_bytes_s: float | None = None   # per-GPU NVLink (or PCIe) bandwidth, one direction
    aliases: tuple[str, ...] = ()
    nvml_names: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    notes: str = ""
    extra: Mapping[str, float] = field(default_factory=dict)

    @property
    def sm_arch(self) -> str:
        """nvcc arch name, e.g. ``"sm_90"``."""
        major, minor = self.compute_capability
        return f"sm_{major}{minor}"

    @property
    def max_warps_per_sm(self) -> int:
        return self.max_threads_per_sm // 32

    def peak(self, math_key: str) -> float:
        """Dense peak FLOP/s for ``math_key``; falls back along fp16_acc16 -> fp16."""
        if math_key in self.peak_flops:
            return self.peak_flops[math_key]
        if math_key == "fp16_acc16" and "fp16" in self.peak_flops:
            return self.peak_flops["fp16"]
        raise KeyError(
            f"{self.name} has no {math_key} math path (has: {', '.join(sorted(self.peak_flops))})"
        )
