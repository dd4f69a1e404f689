"""GpuSpec: one NVIDIA GPU's published numbers, loaded from ``data/gpus.json``.

Hardware numbers are data with a source per entry, never literals in code. The file stores human
units in unit-suffixed keys; :mod:`gemmperf.hardware._spec_file` validates every entry and converts
it to SI. Lookup (:func:`get_gpu`) accepts a key, alias, marketing or NVML device name, ignoring
case, punctuation and a leading "NVIDIA"/"GeForce"/"Tesla".
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from gemmperf._paths import data_dir
from gemmperf.errors import DataFormatError, InvalidConfigError, UnknownGpuError
from gemmperf.hardware._spec_file import PEAK_KEYS, parse_entry

__all__ = [
    "PEAK_KEYS", "GpuDatabase", "GpuSpec", "all_gpus", "closest_gpus", "find_gpu", "get_gpu",
    "load_gpu_database", "normalize_name",
]
_NAME_PREFIXES = ("nvidia", "geforce", "tesla")  # brand words NVML names may or may not carry


@dataclass(frozen=True)
class GpuSpec:
    """Published specification of one GPU SKU, in SI units.

    ``peak_flops`` maps a math key to dense (no sparsity) peak throughput in FLOP/s (OP/s for
    int8) at the boost clock (tensor-core peaks at ``extra["tensor_clock_mhz"]`` where NVIDIA
    quotes them at a lower clock, as for the H100): ``fp64`` (FP64 tensor-core rate where it
    exists), ``fp32`` (SIMT FMA), ``tf32``, ``fp16`` and ``bf16`` (tensor cores, fp32
    accumulate), ``fp16_acc16`` (tensor, fp16 accumulate; only where it differs), ``fp8`` (fp32
    accumulate), ``int8``. A key is absent where the GPU has no such math path.
    """

    key: str                       # canonical id, e.g. "h100-sxm"
    name: str                      # marketing name, e.g. "NVIDIA H100 SXM5 80GB"
    architecture: str              # "Maxwell" ... "Blackwell"
    compute_capability: tuple[int, int]
    sm_count: int
    base_clock_mhz: float | None   # None where NVIDIA publishes no base clock
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
    chip: str = ""                 # e.g. "GH100"
    memory_type: str = ""          # e.g. "HBM3"
    interconnect: str = ""         # what interconnect_bytes_s measures, e.g. "NVLink 4 (18 links)"
    pcie_bytes_s: float | None = None           # host link, one direction

    def __hash__(self) -> int:  # keys are unique; the Mapping fields would make the default fail
        return hash(self.key)

    @property
    def sm_arch(self) -> str:
        """nvcc arch name, e.g. ``"sm_90"``."""
        major, minor = self.compute_capability
        return f"sm_{major}{minor}"

    @property
    def max_warps_per_sm(self) -> int:
        return self.max_threads_per_sm // 32

    def has_math(self, math_key: str) -> bool:
        """Whether :meth:`peak` has a rate for ``math_key`` (fp16_acc16 falls back to fp16)."""
        return math_key in self.peak_flops or (math_key == "fp16_acc16"
                                               and "fp16" in self.peak_flops)

    def peak(self, math_key: str) -> float:
        """Dense peak FLOP/s for ``math_key``; falls back along fp16_acc16 -> fp16."""
        if math_key in self.peak_flops:
            return self.peak_flops[math_key]
        if self.has_math(math_key):
            return self.peak_flops["fp16"]
        raise KeyError(
            f"{self.name} has no {math_key} math path (has: {', '.join(sorted(self.peak_flops))})"
        )

    def as_dict(self) -> dict[str, Any]:
        """All fields (SI units) plus ``sm_arch``, as plain JSON-ready values."""
        out = dataclasses.asdict(self)
        out["compute_capability"] = f"{self.compute_capability[0]}.{self.compute_capability[1]}"
        out["sm_arch"] = self.sm_arch
        return out


def normalize_name(name: str) -> str:
    """Lookup form of a GPU name: lower-case alphanumerics without leading vendor/brand words."""
    text = re.sub(r"[^0-9a-z]", "", str(name).lower())
    changed = True
    while changed:
        changed = False
        for prefix in _NAME_PREFIXES:
            if text.startswith(prefix) and len(text) > len(prefix):
                text, changed = text[len(prefix):], True
    return text


class GpuDatabase(NamedTuple):
    """The loaded database: specs in file order and the normalized-name -> key index."""

    gpus: tuple[GpuSpec, ...]
    by_key: Mapping[str, GpuSpec]
    index: Mapping[str, str]


def load_gpu_database(path: Path | str | None = None) -> GpuDatabase:
    """Read and validate a GPU spec file (default ``data/gpus.json``); uncached."""
    path = Path(path) if path is not None else data_dir() / "gpus.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"cannot read the GPU spec database {path}: {exc}") from exc
    if not isinstance(doc, Mapping) or not isinstance(doc.get("gpus"), list):
        raise DataFormatError(f"{path.name}: expected an object with a 'gpus' list")
    references = doc.get("references", {})
    if not isinstance(references, Mapping):
        raise DataFormatError(f"{path.name}: 'references' must map reference ids to citations")
    gpus = tuple(GpuSpec(**parse_entry(raw, path.name, references)) for raw in doc["gpus"])
    by_key: dict[str, GpuSpec] = {}
    index: dict[str, str] = {}
    for spec in gpus:
        if spec.key in by_key:
            raise DataFormatError(f"{path.name}: entry {spec.key!r} appears twice")
        by_key[spec.key] = spec
        for name in (spec.key, spec.name, *spec.aliases, *spec.nvml_names):
            norm = normalize_name(name)
            owner = index.setdefault(norm, spec.key)
            if owner != spec.key:
                raise DataFormatError(
                    f"{path.name}: entry {spec.key!r}: name {name!r} is ambiguous, it also names "
                    f"{owner!r} (both normalize to {norm!r})"
                )
    return GpuDatabase(gpus, by_key, index)


@functools.lru_cache(maxsize=1)
def _database() -> GpuDatabase:
    return load_gpu_database()


def all_gpus() -> list[GpuSpec]:
    """Every GPU in the bundled database, in file order (oldest architecture first)."""
    return list(_database().gpus)


def find_gpu(name: str | GpuSpec) -> GpuSpec | None:
    """The GpuSpec ``name`` refers to (key, alias, marketing or NVML name), or None."""
    if isinstance(name, GpuSpec):
        return name
    db = _database()
    key = db.index.get(normalize_name(name))
    return None if key is None else db.by_key[key]


def closest_gpus(name: str, n: int = 3, cutoff: float = 0.5) -> list[str]:
    """Keys of up to ``n`` GPUs whose names are closest to ``name`` (best first).

    Score: the best difflib ratio over a GPU's normalized names, plus 1 when the query is part of
    one of them ("rtx 4000" -> rtx-4000-ada, "titan x" -> gtx-titan-x); below ``cutoff``: no match.
    """
    norm, best = normalize_name(name), {}
    for alias, key in _database().index.items():
        score = difflib.SequenceMatcher(None, norm, alias).ratio() + (bool(norm) and norm in alias)
        best[key] = max(best.get(key, 0.0), score)
    return [k for k in sorted(best, key=lambda k: -best[k])[:n] if best[k] >= cutoff]


def get_gpu(name: str | GpuSpec) -> GpuSpec:
    """Like :func:`find_gpu`, but raise :class:`UnknownGpuError` naming the closest matches."""
    spec = find_gpu(name)
    if spec is None:
        close = closest_gpus(str(name))
        hint = f"closest: {', '.join(close)}; " if close else ""
        raise UnknownGpuError(
            f"unknown GPU {str(name)!r}; {hint}`gemmperf gpus` lists all {len(_database().gpus)}"
        )
    return spec


#: A locked SM clock above this multiple of the spec boost clock is taken for a typo. The
#: highest clocks in ../shared/data are 1.12x the boost (RTX A4000 observed 1,752 MHz, boost
#: 1,560) and 1.08x (GTX Titan X, 1,164 / 1,075); 1.5x leaves room for parts not in the data.
MAX_CLOCK_OVER_BOOST = 1.5
#: A sanity bound far above any memory clock NVML reports (GDDR6X on the RTX 4090: 10,501 MHz).
MAX_MEM_CLOCK_MHZ = 30_000


def check_sm_clock(mhz: float, gpu: GpuSpec, option: str = "sm_clock_mhz") -> float:
    """``mhz`` if it is a plausible SM clock for ``gpu`` (positive, at most
    :data:`MAX_CLOCK_OVER_BOOST` x its boost clock), else :class:`InvalidConfigError`."""
    limit = MAX_CLOCK_OVER_BOOST * gpu.boost_clock_mhz
    if not 0 < mhz <= limit:
        raise InvalidConfigError(
            f"{option} {mhz:g} MHz: not an SM clock of the {gpu.name} (boost "
            f"{gpu.boost_clock_mhz:g} MHz; accepted: above 0, up to {limit:g})")
    return float(mhz)
