"""Cluster description and alpha-beta models of the collectives a training step runs.

Link bandwidths: inside an NVLink domain (an HGX node; 72 GPUs of a GB200 NVL72 rack; a bridged
pair of H100 NVL), the GPU spec's ``interconnect_bytes_s``; elsewhere in the node, PCIe
(``pcie_bytes_s``); between nodes, a per-GPU network bandwidth by GPU architecture from
``data/training_systems.json`` (DGX-style one NIC per GPU). All are scaled by the measured NCCL
bus-bandwidth efficiency recorded there.

Ring collectives over p ranks moving a full tensor of S bytes (Thakur, Rabenseifner, Gropp 2005;
NCCL's ring algorithms)::

    all-gather, reduce-scatter:  t = (p - 1) alpha + (p - 1)/p * S / B
    all-reduce:                  t = 2 (p - 1) alpha + 2 (p - 1)/p * S / B
    all-to-all (uniform):        t = (p - 1) alpha + (p - 1)/p * S / B
    point-to-point:              t = alpha + S / B

``B`` is the per-GPU bandwidth of the slowest link the group crosses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from gemmperf._paths import data_dir
from gemmperf.hardware.specs import GpuSpec
from gemmperf.training.errors import PlanError


@lru_cache(maxsize=1)
def system_defaults() -> dict[str, Any]:
    """The parsed ``data/training_systems.json``."""
    return json.loads((data_dir() / "training_systems.json").read_text())


@dataclass(frozen=True)
class SystemSpec:
    """The cluster around the GPUs: node size, links, latencies, memory headroom, PUE."""

    gpus_per_node: int
    nvlink_domain: int               # GPUs reachable over NVLink (1: PCIe only)
    intra_node_bytes_s: float        # per GPU, one direction, inside the NVLink domain
    pcie_bytes_s: float              # per GPU, one direction, elsewhere in the node
    inter_node_bytes_s: float        # per GPU, one direction (its NIC share)
    intra_efficiency: float
    inter_efficiency: float
    intra_latency_s: float
    inter_latency_s: float
    memory_usable_fraction: float
    memory_reserved_bytes: float
    pue: float
    overlap_slowdown: float = 0.0    # compute slowdown while a collective runs alongside it

    @classmethod
    def for_gpu(cls, gpu: GpuSpec, **overrides: Any) -> SystemSpec:
        """Defaults for a cluster of ``gpu`` nodes; keyword arguments override any field."""
        d = system_defaults()
        inter = d["inter_node_bytes_s_per_gpu"]
        intra = gpu.interconnect_bytes_s or gpu.pcie_bytes_s
        if not intra:
            raise PlanError(f"{gpu.name} has no interconnect bandwidth in the GPU database")
        node = int(d["gpus_per_node"]["value"])
        if gpu.key in d["nvlink_domain"]["by_gpu"]:
            domain = int(d["nvlink_domain"]["by_gpu"][gpu.key])
        elif "nvlink" in gpu.interconnect.lower():
            domain = node
        else:
            domain = 1
        spec = cls(
            gpus_per_node=node,
            nvlink_domain=domain,
            intra_node_bytes_s=float(intra),
            pcie_bytes_s=float(gpu.pcie_bytes_s or intra),
            inter_node_bytes_s=float(inter["by_architecture"].get(gpu.architecture,
                                                                  inter["default"])),
            intra_efficiency=float(d["collective_efficiency"]["intra_node"]),
            inter_efficiency=float(d["collective_efficiency"]["inter_node"]),
            intra_latency_s=float(d["latency_s"]["intra_node"]),
            inter_latency_s=float(d["latency_s"]["inter_node"]),
            memory_usable_fraction=float(d["memory"]["usable_fraction"]),
            memory_reserved_bytes=float(d["memory"]["reserved_bytes"]),
            pue=float(d["pue"]["value"]),
            overlap_slowdown=float(d["collective_overlap"]["compute_slowdown"]),
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        if clean:
            spec = replace(spec, **clean)
        spec.validate()
        return spec

    def validate(self) -> None:
        if self.gpus_per_node < 1 or self.nvlink_domain < 1:
            raise PlanError("gpus_per_node and nvlink_domain must be at least 1")
        for name in ("intra_node_bytes_s", "inter_node_bytes_s", "intra_efficiency",
                     "inter_efficiency", "memory_usable_fraction"):
            if not getattr(self, name) > 0:
                raise PlanError(f"{name} must be positive")
        if self.pue < 1.0:
            raise PlanError(f"PUE is at least 1.0 (facility energy / IT energy), got {self.pue}")
        if not 0.0 <= self.overlap_slowdown < 1.0:
            raise PlanError(f"overlap_slowdown must be in [0, 1), got {self.overlap_slowdown}")

    def link(self, group_size: int, stride: int) -> tuple[float, float]:
        """(effective bandwidth, latency) of a group of ``group_size`` ranks spaced ``stride``
        apart in rank order (TP innermost, then PP, then DP; ranks fill nodes in order)."""
        span = group_size * stride
        if span <= self.nvlink_domain:
            return self.intra_node_bytes_s * self.intra_efficiency, self.intra_latency_s
        if span <= self.gpus_per_node:
            return self.pcie_bytes_s * self.intra_efficiency, self.intra_latency_s
        return self.inter_node_bytes_s * self.inter_efficiency, self.inter_latency_s


def ring_gather_time(size_bytes: float, ranks: int, bandwidth: float, latency: float) -> float:
    """All-gather or reduce-scatter of a ``size_bytes`` tensor over ``ranks`` (ring)."""
    if ranks <= 1 or size_bytes <= 0:
        return 0.0
    return (ranks - 1) * latency + (ranks - 1) / ranks * size_bytes / bandwidth


def all_reduce_time(size_bytes: float, ranks: int, bandwidth: float, latency: float) -> float:
    """Ring all-reduce: a reduce-scatter followed by an all-gather."""
    return 2.0 * ring_gather_time(size_bytes, ranks, bandwidth, latency)


def all_to_all_time(size_bytes: float, ranks: int, bandwidth: float, latency: float) -> float:
    """Uniform all-to-all where each rank holds ``size_bytes`` and keeps 1/ranks of it."""
    return ring_gather_time(size_bytes, ranks, bandwidth, latency)


def p2p_time(size_bytes: float, bandwidth: float, latency: float) -> float:
    """One point-to-point send (pipeline activations)."""
    return latency + size_bytes / bandwidth if size_bytes > 0 else 0.0
