"""The on-disk format of ``data/gpus.json``: field names, units and validation.

The file keeps human units in unit-suffixed keys (``peak_tflops``, ``mem_bandwidth_gb_s``,
``l2_kib``, ...); :func:`parse_entry` checks one entry and converts it to the SI keyword arguments
of :class:`gemmperf.hardware.specs.GpuSpec`. Every error names the file, the entry and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gemmperf.errors import DataFormatError

PEAK_KEYS = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp16_acc16", "fp8", "int8")
# Unit suffix of an ``extra`` key in the file -> (suffix in GpuSpec.extra, factor to SI).
_EXTRA_UNITS = {"_tflops": ("_flops", 1e12), "_gb_s": ("_bytes_s", 1e9), "_mhz": ("_mhz", 1),
                "_w": ("_w", 1)}
_CC = re.compile(r"^(\d+)\.(\d+)$")

# File field -> (GpuSpec field, factor to SI, integer?, optional?). Units: see the file's "units".
_NUMERIC = {
    "sm_count": ("sm_count", 1, True, False),
    "base_clock_mhz": ("base_clock_mhz", 1, False, True),
    "boost_clock_mhz": ("boost_clock_mhz", 1, False, False),
    "mem_bandwidth_gb_s": ("mem_bandwidth_bytes_s", 1e9, False, False),
    "mem_gib": ("mem_bytes", 2**30, False, False),
    "l2_kib": ("l2_bytes", 1024, True, False),
    "smem_per_sm_kib": ("smem_per_sm_bytes", 1024, True, False),
    "smem_per_block_kib": ("smem_per_block_bytes", 1024, True, False),
    "regs_per_sm": ("regs_per_sm", 1, True, False),
    "max_threads_per_sm": ("max_threads_per_sm", 1, True, False),
    "max_blocks_per_sm": ("max_blocks_per_sm", 1, True, False),
    "max_threads_per_block": ("max_threads_per_block", 1, True, False),
    "tdp_w": ("tdp_w", 1, False, False),
    "idle_power_w": ("idle_power_w", 1, False, True),
    "interconnect_gb_s": ("interconnect_bytes_s", 1e9, False, True),
    "pcie_gb_s": ("pcie_bytes_s", 1e9, False, True),
}
_TEXT = {"key": False, "name": False, "architecture": False, "chip": True, "memory_type": True,
         "interconnect": True, "notes": True}  # field -> optional?
_FIELDS = {*_NUMERIC, *_TEXT, "compute_capability", "peak_tflops", "extra", "aliases",
           "nvml_names", "sources"}


class _Entry:
    """Typed, validated access to one raw entry; every error names the file, entry and field."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, Mapping):
            raise DataFormatError(f"{where}: each entry of 'gpus' must be an object")
        self.raw, self.where = raw, f"{where}: entry {raw.get('key', '?')!r}"

    def fail(self, name: str, problem: str) -> DataFormatError:
        return DataFormatError(f"{self.where}: field {name!r} {problem}")

    def number(self, name: str, integer: bool = False, optional: bool = False) -> Any:
        value = self.raw.get(name)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or (
            value <= 0
        ):
            raise self.fail(name, f"must be a positive {'integer' if integer else 'number'}, "
                                  f"got {value!r}")
        return value

    def text(self, name: str, optional: bool = False) -> str:
        value = self.raw.get(name)
        if optional and value in (None, ""):
            return ""
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, f"must be a non-empty string, got {value!r}")
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.raw.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(name, "must be a list of non-empty strings")
        return tuple(value)

    def numbers(self, name: str) -> Mapping[str, Any]:
        value = self.raw.get(name, {})
        if not isinstance(value, Mapping) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
            for v in value.values()
        ):
            raise self.fail(name, "must be an object of positive numbers")
        return value


def parse_entry(raw: Any, where: str, references: Mapping[str, str]) -> dict[str, Any]:
    """Validate one raw ``gpus`` entry; return GpuSpec keyword arguments in SI units."""
    e = _Entry(raw, where)
    unknown = sorted(set(e.raw) - _FIELDS)
    if unknown:
        raise e.fail(unknown[0], f"is not a known field (known: {', '.join(sorted(_FIELDS))})")
    kw: dict[str, Any] = {name: e.text(name, optional) for name, optional in _TEXT.items()}
    for name, (attr, factor, integer, optional) in _NUMERIC.items():
        value = e.number(name, integer, optional)
        kw[attr] = None if value is None else (value * factor if integer else float(value * factor))
    kw["mem_bytes"] = round(kw["mem_bytes"])
    if kw["key"] != kw["key"].lower() or " " in kw["key"]:
        raise e.fail("key", "must be lower-case without spaces, e.g. 'h100-sxm'")
    cc = _CC.match(str(e.raw.get("compute_capability", "")))
    if not cc:
        raise e.fail("compute_capability", "must be 'major.minor', e.g. '9.0'")
    peaks = e.numbers("peak_tflops")
    bad = sorted(set(peaks) - set(PEAK_KEYS)) or (["fp32"] if "fp32" not in peaks else [])
    if bad:
        raise e.fail("peak_tflops", f"has {bad[0]!r} (unknown or missing; keys: {PEAK_KEYS})")
    extra: dict[str, float] = {}
    for name, value in e.numbers("extra").items():
        suffix = next((s for s in _EXTRA_UNITS if name.endswith(s)), None)
        if suffix is None:
            raise e.fail("extra", f"key {name!r} needs a unit suffix ({', '.join(_EXTRA_UNITS)})")
        si_suffix, factor = _EXTRA_UNITS[suffix]
        extra[name[: -len(suffix)] + si_suffix] = float(value * factor)
    sources = e.strings("sources")
    missing = [s for s in sources if s not in references] or ([] if sources else ["(none)"])
    if missing:
        raise e.fail("sources", f"cites {missing[0]!r}: each entry needs references from "
                                f"the file's 'references'")
    if kw["base_clock_mhz"] is not None and kw["base_clock_mhz"] > kw["boost_clock_mhz"]:
        raise e.fail("base_clock_mhz", "exceeds boost_clock_mhz")
    if kw["smem_per_block_bytes"] > kw["smem_per_sm_bytes"]:
        raise e.fail("smem_per_block_kib", "exceeds smem_per_sm_kib")
    return dict(
        kw, compute_capability=(int(cc.group(1)), int(cc.group(2))),
        peak_flops={k: float(v) * 1e12 for k, v in peaks.items()}, extra=extra,
        aliases=e.strings("aliases"), nvml_names=e.strings("nvml_names"),
        sources=tuple(f"{s}: {references[s]}" for s in sources),
    )
