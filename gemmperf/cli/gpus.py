"""``gemmperf gpus``: list the GPU spec database; ``gemmperf gpus show NAME``: one GPU in full."""

from __future__ import annotations

import argparse
from typing import Any

from gemmperf.cli._output import print_json, print_table
from gemmperf.hardware.specs import GpuSpec, all_gpus, get_gpu

_TERA, _GIGA, _MIB, _KIB, _GIB = 1e12, 1e9, 2**20, 2**10, 2**30
_LIST_COLUMNS = ("key", "name", "arch", "cc", "SMs", "FP32", "TF32", "BF16", "FP8",
                 "GB/s", "L2 MiB", "TDP W")


def register(subparsers: Any) -> None:
    """Add ``gpus`` (list) and ``gpus show NAME``."""
    parser = subparsers.add_parser(
        "gpus",
        help="list the GPU spec database (dense peak TFLOP/s, bandwidth, caches, power)",
        description="List the GPUs gemmperf knows. Peaks are dense (no sparsity) TFLOP/s at the "
        "boost clock; BF16/FP8 are tensor-core rates with FP32 accumulation.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (SI units) instead")
    parser.set_defaults(func=_list)
    commands = parser.add_subparsers(dest="gpus_command", metavar="{show}")
    show = commands.add_parser(
        "show",
        help="every field and source of one GPU",
        description="Show one GPU. NAME is a key, alias, marketing or NVML device name "
        "(case and punctuation do not matter), e.g. h100, 'NVIDIA A100-SXM4-80GB', 4090.",
    )
    show.add_argument("name", metavar="NAME", help="GPU key, alias or device name")
    show.add_argument("--json", dest="show_json", action="store_true",
                      help="print JSON (SI units) instead")
    show.set_defaults(func=_show)


def _tflops(spec: GpuSpec, math: str) -> float | None:
    value = spec.peak_flops.get(math)
    return None if value is None else value / _TERA


def _cc(spec: GpuSpec) -> str:
    return f"{spec.compute_capability[0]}.{spec.compute_capability[1]}"


def _list(args: argparse.Namespace) -> int:
    gpus = all_gpus()
    if args.json:
        print_json([spec.as_dict() for spec in gpus])
        return 0
    rows = [
        (spec.key, spec.name, spec.architecture, _cc(spec), spec.sm_count, _tflops(spec, "fp32"),
         _tflops(spec, "tf32"), _tflops(spec, "bf16"), _tflops(spec, "fp8"),
         spec.mem_bandwidth_bytes_s / _GIGA, spec.l2_bytes / _MIB, spec.tdp_w)
        for spec in gpus
    ]
    print_table(_LIST_COLUMNS, rows,
                title=f"{len(gpus)} GPUs (dense peak TFLOP/s; `gemmperf gpus show NAME` for more)")
    return 0


def _show(args: argparse.Namespace) -> int:
    spec = get_gpu(args.name)  # UnknownGpuError -> one line with suggestions, exit 2
    if args.json or args.show_json:
        print_json(spec.as_dict())
        return 0
    print_table(("field", "value"), _show_rows(spec), title=f"{spec.name} ({spec.key})")
    return 0


def _fmt(value: float, unit: str) -> str:
    return f"{value:,.4g} {unit}"


def _show_rows(spec: GpuSpec) -> list[tuple[str, str]]:
    base = "-" if spec.base_clock_mhz is None else f"{spec.base_clock_mhz:g}"
    rows = [
        ("architecture", f"{spec.architecture} ({spec.chip or '?'}), compute capability "
                         f"{_cc(spec)} ({spec.sm_arch})"),
        ("SMs", str(spec.sm_count)),
        ("clocks", f"base {base} / boost {spec.boost_clock_mhz:g} MHz"),
    ]
    for math, value in spec.peak_flops.items():
        unit = "TOP/s" if math == "int8" else "TFLOP/s"
        rows.append((f"peak {math}", _fmt(value / _TERA, unit)))
    rows += [
        ("memory", f"{spec.mem_bytes / _GIB:g} GiB {spec.memory_type}, "
                   f"{_fmt(spec.mem_bandwidth_bytes_s / _GIGA, 'GB/s')}"),
        ("L2 cache", _fmt(spec.l2_bytes / _MIB, "MiB")),
        ("shared memory", f"{spec.smem_per_sm_bytes // _KIB} KiB per SM, "
                          f"{spec.smem_per_block_bytes // _KIB} KiB per block (opt-in)"),
        ("registers per SM", str(spec.regs_per_sm)),
        ("threads", f"{spec.max_threads_per_sm} per SM, {spec.max_threads_per_block} per block"),
        ("blocks per SM", str(spec.max_blocks_per_sm)),
        ("TDP", _fmt(spec.tdp_w, "W")),
    ]
    if spec.idle_power_w is not None:
        rows.append(("idle power", _fmt(spec.idle_power_w, "W")))
    if spec.interconnect_bytes_s is not None:
        rows.append(("interconnect", f"{spec.interconnect or '?'}: "
                     f"{_fmt(spec.interconnect_bytes_s / _GIGA, 'GB/s')} per direction"))
    if spec.pcie_bytes_s is not None:
        rows.append(("host PCIe", f"{_fmt(spec.pcie_bytes_s / _GIGA, 'GB/s')} per direction"))
    rows += [_extra_row(name, value) for name, value in spec.extra.items()]
    rows += [("aliases", ", ".join(spec.aliases)), ("NVML names", ", ".join(spec.nvml_names))]
    if spec.notes:
        rows.append(("notes", spec.notes))
    rows += [("source", source) for source in spec.sources]
    return rows


def _extra_row(name: str, value: float) -> tuple[str, str]:
    """An ``extra`` item in human units (the dataclass keeps SI: *_flops, *_bytes_s)."""
    if name.endswith("_flops"):
        return name[: -len("_flops")], _fmt(value / _TERA, "TFLOP/s")
    if name.endswith("_bytes_s"):
        return name[: -len("_bytes_s")], _fmt(value / _GIGA, "GB/s")
    for suffix, unit in (("_mhz", "MHz"), ("_w", "W")):
        if name.endswith(suffix):
            return name[: -len(suffix)], _fmt(value, unit)
    return name, f"{value:,.6g}"
