"""Spaces of the collector's kernel families (tiled, blocked, cutlass) for a problem on a GPU.

The configurations and their validity come from the collector's own backends, so the recommender
prunes exactly what a sweep would refuse to launch: :mod:`gemmperf.collect.kernel_space` plus the
device checks of the cupy backends for the hand-written kernels, and the CUTLASS Python interface's
tile descriptions for the device's compute capability (``nvidia-cutlass``; no GPU needed).
Backends are built on a :class:`~gemmperf.collect.backend.DeviceInfo` made from the GpuSpec, so
nothing here touches a GPU.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from gemmperf._paths import data_dir
from gemmperf.errors import BackendUnavailableError, DataFormatError
from gemmperf.hardware.specs import GpuSpec
from gemmperf.problem import GemmProblem
from gemmperf.spaces.space import Space, SpaceError, frame_from_configs

#: Families whose space comes from a collector backend.
BACKEND_FAMILIES = ("tiled", "blocked", "cutlass")


@functools.lru_cache(maxsize=1)
def _defaults() -> dict[str, list[dict[str, Any]]]:
    path = data_dir() / "spaces" / "defaults.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"{path}: cannot read ({exc})") from exc
    return {str(k): list(v) for k, v in doc.get("families", {}).items()}


def family_defaults(family: str) -> list[dict[str, Any]]:
    """Candidate defaults of ``family`` from ``data/spaces/defaults.json`` (may be empty)."""
    return _defaults().get(family, [])


def resolve_default(space: Space, candidates: list[Mapping[str, Any]]) -> Space:
    """``space`` with the first candidate default that is present and valid in it (if any)."""
    for entry in candidates:
        values = dict(entry.get("values", {}))
        if any(k not in space.frame.columns for k in values):
            continue
        if space.find(values, valid_only=True) is not None:
            return Space(space.family, space.name, space.frame, space.param_names, values,
                         entry.get("source"), space.problem, space.description, space.explainer)
    return space


def device_info(gpu: GpuSpec) -> Any:
    """A collector DeviceInfo standing for ``gpu`` (no driver involved)."""
    from gemmperf.collect.backend import DeviceInfo

    return DeviceInfo(name=gpu.name, compute_capability=tuple(gpu.compute_capability),
                      gpu_key=gpu.key)


def _backend(family: str, gpu: GpuSpec) -> Any:
    info = device_info(gpu)
    if family in ("tiled", "blocked"):
        from gemmperf.collect.cupy_backends import BlockedBackend, TiledBackend

        return (TiledBackend if family == "tiled" else BlockedBackend)(device=info)
    try:
        from gemmperf.collect.cutlass_backend import CutlassBackend

        return CutlassBackend(device=info)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BackendUnavailableError(
            f"the cutlass space needs nvidia-cutlass ({exc.name} is missing): "
            "pip install 'gemmperf[gpu]'") from exc


def _compiled_footprint(frame: pd.DataFrame, kernels: list[str], gpu: GpuSpec) -> None:
    """Fill ``regs_per_thread`` and ``smem_bytes_per_block`` of the hand-written kernels from
    the ptxas table (``data/kernel_resources.json``), as the sweep records them: the roofline
    then counts the compiled kernel's resident blocks, not the default footprint's (128
    registers, which no 1024-thread block can launch with)."""
    from gemmperf.collect import kernel_resources

    found = [kernel_resources.lookup(name, gpu.sm_arch, same_major=True) for name in kernels]
    for column, attribute in (("regs_per_thread", "registers"),
                              ("smem_bytes_per_block", "smem_bytes")):
        values = [getattr(res, attribute) if res is not None else pd.NA for res in found]
        frame[column] = frame[column].fillna(pd.Series(values, index=frame.index,
                                                       dtype="Int64"))


def backend_space(family: str, problem: GemmProblem, gpu: GpuSpec) -> Space:
    """The ``family`` space for ``problem`` on ``gpu``, each config checked by the backend."""
    if family not in BACKEND_FAMILIES:
        raise SpaceError(f"no backend space for family {family!r}; "
                         f"known: {', '.join(BACKEND_FAMILIES)}")
    backend = _backend(family, gpu)
    configs = list(backend.configs(problem))
    if not configs:
        raise SpaceError(
            f"the {family} backend has no configurations for a {problem.dtype} {problem.layout} "
            f"GEMM on {gpu.key} ({gpu.sm_arch})")
    reasons = [backend.invalid_reason(problem, c) for c in configs]
    frame, names = frame_from_configs(configs, reasons)
    explainer = None
    if family in ("tiled", "blocked"):
        from gemmperf.collect import kernel_space

        kernels = [kernel_space.kernel_name(c) for c in configs]
        # The template instantiation, as the sweep records it in kernel_name.
        frame.insert(1, "kernel_name", [k if r is None else None
                                        for k, r in zip(kernels, reasons, strict=True)])
        # Reasons open with the kernel's name: without it, configs pruned for one cause group
        # together (summary, --explain); the named text stays each config's explanation.
        named = pd.Series(list(reasons), index=frame.index, dtype=object)
        frame["reason"] = [r.replace(k, "the kernel", 1) if r else r
                           for k, r in zip(kernels, reasons, strict=True)]
        explainer = lambda rows: named.loc[rows.index].tolist()  # noqa: E731
        _compiled_footprint(frame, kernels, gpu)
    space = Space(family=family, name=f"{family} ({gpu.key}, {gpu.sm_arch})", frame=frame,
                  param_names=names, description=f"{family} kernel family of the collector",
                  explainer=explainer)
    return resolve_default(space, family_defaults(family))
