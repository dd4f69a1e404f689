"""Registers and shared memory of every hand-written kernel instantiation, as ptxas reports them.

Two compilers, two sections of one table (``data/kernel_resources.json``):

* ``nvcc``: per (kernel family, architecture) one nvcc call compiles a translation unit that
  explicitly instantiates every configuration of the family's space (``kernel_space``) with
  ``-Xptxas -v``. The flags include ``-ftz=true`` because cupy compiles every RawModule with it.
* ``nvrtc``: the same instantiations compiled by NVRTC through cupy's RawModule compile path
  (source, options and name expressions of the cupy backends; no GPU needed), i.e. the code the
  backends actually run. NVRTC comes with cupy's CUDA 12 wheels and nvcc here is CUDA 13; their
  register counts differ for about 70 % of the instantiations (mostly by a few, up to 50), which
  moves occupancy (129 vs 128 registers halves the resident 256-thread blocks on an SM with
  64 Ki registers), so lookups prefer this section.

The ptxas lines are parsed by ``gemmperf.collect.ptxas`` into :class:`KernelResources`; the
table keeps the compiler versions, commands and a hash of each kernel source as provenance. It
feeds occupancy features and the backends' validity checks.

Regenerate (about 100 s of compiler time per architecture for the blocked family on an idle
2-core machine, per compiler; runs ``--jobs`` compilations at once)::

    python -m gemmperf.collect.kernel_resources                 # sm_80 sm_86 sm_89 sm_90, both
    python -m gemmperf.collect.kernel_resources --compiler nvrtc --arch sm_89 --out t.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gemmperf._paths import data_dir
from gemmperf.collect import kernel_space as ks
from gemmperf.collect.backend import CompileError
from gemmperf.collect.ptxas import (
    KernelResources,
    nvcc_resources,
    nvcc_version,
    nvrtc_resources,
)
from gemmperf.errors import BackendUnavailableError, DataFormatError
from gemmperf.problem import KernelConfig

DEFAULT_ARCHS = ("sm_80", "sm_86", "sm_89", "sm_90")
TABLE_NAME = "kernel_resources.json"
SCHEMA_VERSION = 1


def _nvrtc_task(family: str, arch: str) -> tuple[dict[str, KernelResources], list[str], float]:
    return nvrtc_resources(family, arch)


# --------------------------------------------------------------------------------------------
# The committed table

def source_sha256(family: str) -> str:
    """SHA-256 of ``kernels/<family>.cu``: a table entry is stale when this changes."""
    return hashlib.sha256(ks.source_path(family).read_bytes()).hexdigest()


def _compile_all(compiler: str, archs: Sequence[str], nvcc: str | None, jobs: int,
                 log) -> dict[tuple[str, str], tuple[dict[str, KernelResources], list[str], float]]:
    tasks = [(family, arch) for arch in archs for family in ks.FAMILIES]
    results = {}
    # nvcc runs as subprocesses (threads suffice); NVRTC runs in-process, so use processes.
    if compiler == "nvcc":
        executor: concurrent.futures.Executor = concurrent.futures.ThreadPoolExecutor(jobs)
    else:
        executor = concurrent.futures.ProcessPoolExecutor(jobs)
    with executor as pool:
        if compiler == "nvcc":
            futures = {pool.submit(nvcc_resources, f, a, nvcc=nvcc): (f, a) for f, a in tasks}
        else:
            futures = {pool.submit(_nvrtc_task, f, a): (f, a) for f, a in tasks}
        for future in concurrent.futures.as_completed(futures):
            family, arch = futures[future]
            results[(family, arch)] = future.result()
            found, _, seconds = results[(family, arch)]
            log(f"{compiler:5s} {family:8s} {arch}: {len(found)} instantiations in "
                f"{seconds:.1f} s")
    return results


def build_section(compiler: str, archs: Sequence[str] = DEFAULT_ARCHS, *,
                  nvcc: str | None = None, jobs: int | None = None, log=print) -> dict[str, Any]:
    """One compiler's part of the table: its version and, per arch, commands and kernels."""
    workers = jobs or os.cpu_count() or 1
    results = _compile_all(compiler, archs, nvcc, workers, log)
    if compiler == "nvcc":
        section: dict[str, Any] = {"version": nvcc_version(nvcc)}
    else:
        from gemmperf.collect.cupy_support import import_cupy, nvrtc_version

        section = {"version": ".".join(map(str, nvrtc_version())),
                   "via": f"cupy {import_cupy().__version__} RawModule compile path "
                          "(cupy adds -ftz=true and --device-as-default-execution-space)"}
    section["archs"] = {}
    for arch in archs:
        entry: dict[str, Any] = {"commands": {}, "kernels": {}}
        for family in ks.FAMILIES:
            found, cmd, _ = results[(family, arch)]
            if compiler == "nvcc":
                shown = [Path(c).name if c.endswith((".cu", ".cubin")) else c for c in cmd]
                shown[0] = "nvcc"
            else:
                shown = ["nvrtc", f"-arch={arch}", *cmd, f"kernels/{family}.cu"]
            entry["commands"][family] = " ".join(shown)
            entry["kernels"].update({name: r.as_json() for name, r in found.items()})
        section["archs"][arch] = entry
    return section


def new_table(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The JSON document around compiler sections (see ``data/kernel_resources.json``)."""
    return {
        "description": (
            "Registers per thread and static shared memory per block of every instantiation of "
            "the hand-written kernels (kernels/*.cu), as ptxas -v reports them, per compiler: "
            "nvcc (CUDA toolkit) and NVRTC as the cupy backends compile them at run time (the "
            "code that actually runs; its register counts can differ from nvcc's by a few, "
            "which moves occupancy). Keys are the cupy name expressions. Regenerate with: "
            "python -m gemmperf.collect.kernel_resources"
        ),
        "schema_version": SCHEMA_VERSION,
        "fields": {
            "registers": "32-bit registers per thread",
            "smem_bytes": "static shared memory per block (bytes)",
            "stack_bytes": "stack frame per thread (bytes)",
            "spill_store_bytes / spill_load_bytes": "register spill traffic per thread (bytes)",
            "barriers": "named barriers the kernel uses",
        },
        "source_sha256": {f: source_sha256(f) for f in ks.FAMILIES},
        "compilers": dict(sorted(sections.items())),
    }


def table_path() -> Path:
    return data_dir() / TABLE_NAME


@functools.lru_cache(maxsize=4)
def load_table(path: str | None = None) -> dict[str, Any]:
    """The committed table (``data/kernel_resources.json``) or another file of that format."""
    target = Path(path) if path else table_path()
    try:
        doc = json.loads(target.read_text())
    except FileNotFoundError as exc:
        raise DataFormatError(f"{target} is missing: run python -m "
                              "gemmperf.collect.kernel_resources") from exc
    if doc.get("schema_version") != SCHEMA_VERSION or "compilers" not in doc:
        raise DataFormatError(f"{target} is not a kernel resource table of schema "
                              f"{SCHEMA_VERSION}")
    return doc


def _arch_number(arch: str) -> int:
    return int(re.sub(r"\D", "", arch))


#: Lookup order when no compiler is named: NVRTC first (it built the kernels that run).
LOOKUP_ORDER = ("nvrtc", "nvcc")


def lookup(config: KernelConfig | str, arch: str, *, compiler: str | None = None,
           same_major: bool = False,
           table: dict[str, Any] | None = None) -> KernelResources | None:
    """Resources of ``config`` (or a name expression) on ``arch`` from the committed table.

    ``compiler`` picks a section ("nvrtc" or "nvcc"); by default NVRTC's, else nvcc's. With
    ``same_major`` an architecture missing from the table falls back to the newest table
    architecture of the same major version not newer than ``arch`` (e.g. sm_87 -> sm_86); the
    returned ``arch`` says which one answered. None when nothing matches.
    """
    name = config if isinstance(config, str) else ks.kernel_name(config)
    doc = table if table is not None else load_table()
    for section_name in (compiler,) if compiler else LOOKUP_ORDER:
        archs = doc["compilers"].get(section_name, {}).get("archs", {})
        chosen = arch if arch in archs else None
        if chosen is None and same_major:
            want = _arch_number(arch)
            same = [a for a in archs if _arch_number(a) // 10 == want // 10
                    and _arch_number(a) <= want]
            chosen = max(same, key=_arch_number) if same else None
        if chosen is not None and name in archs[chosen]["kernels"]:
            return KernelResources(name=name, arch=chosen, **archs[chosen]["kernels"][name])
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gemmperf.collect.kernel_resources",
        description="Compile every kernel instantiation with ptxas -v (nvcc and/or NVRTC "
                    "through cupy) and write the registers / shared-memory table.")
    parser.add_argument("--arch", action="append", dest="archs",
                        help="sm_XY to compile for (repeatable; default "
                             f"{' '.join(DEFAULT_ARCHS)})")
    parser.add_argument("--compiler", action="append", dest="compilers",
                        choices=("nvcc", "nvrtc"),
                        help="section(s) to rebuild (default both); the other section is "
                             "kept from --out when its kernel sources are unchanged")
    parser.add_argument("--out", type=Path, default=table_path(), help="output JSON path")
    parser.add_argument("--nvcc", default=None, help="nvcc executable (default $NVCC or PATH)")
    parser.add_argument("--jobs", type=int, default=None, help="parallel compilations")
    args = parser.parse_args(argv)
    archs = tuple(args.archs or DEFAULT_ARCHS)
    for arch in archs:
        if not re.fullmatch(r"sm_\d{2,3}a?", arch):
            print(f"error: --arch must look like sm_89, got {arch!r}", file=sys.stderr)
            return 2
    compilers = tuple(dict.fromkeys(args.compilers or ("nvcc", "nvrtc")))
    sections: dict[str, dict[str, Any]] = {}
    if args.out.exists():
        try:
            old = json.loads(args.out.read_text())
        except json.JSONDecodeError:
            old = {}
        current = {f: source_sha256(f) for f in ks.FAMILIES}
        if old.get("schema_version") == SCHEMA_VERSION and old.get("source_sha256") == current:
            sections = {k: v for k, v in old.get("compilers", {}).items() if k not in compilers}
    try:
        start = time.perf_counter()
        for compiler in compilers:
            sections[compiler] = build_section(compiler, archs, nvcc=args.nvcc, jobs=args.jobs)
    except (BackendUnavailableError, CompileError, DataFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    doc = new_table(sections)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    count = sum(len(a["kernels"]) for sec in sections.values() for a in sec["archs"].values())
    print(f"wrote {args.out}: {count} entries ({', '.join(sorted(sections))}), "
          f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
