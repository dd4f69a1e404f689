"""Search spaces of kernel configurations: what the recommender ranks and the autotuner searches.

- ``clblast_xgemm`` (and any family with ``data/spaces/<family>.json``): parameters, constraints
  and default as data (:mod:`gemmperf.spaces.param_space`); 17,956 valid Xgemm configurations.
- ``tiled``, ``blocked``, ``cutlass``: the collector backends' spaces for the problem and the GPU's
  compute capability (:mod:`gemmperf.spaces.families`).
- a file: the configurations a records file or Kernel Tuner cache lists
  (:mod:`gemmperf.spaces.files`); their measured times are kept apart for replay.

Every space keeps pruned configurations with their reason (``Space.pruned``, ``Space.explain``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gemmperf.hardware.specs import GpuSpec, get_gpu
from gemmperf.problem import GemmProblem
from gemmperf.spaces.families import BACKEND_FAMILIES, backend_space
from gemmperf.spaces.files import Recording, file_space
from gemmperf.spaces.param_space import (
    ParamSpaceSpec,
    bundled_param_families,
    check_values,
    enumerate_space,
    load_space_spec,
)
from gemmperf.spaces.space import Space, SpaceError

__all__ = [
    "BACKEND_FAMILIES", "Recording", "Space", "SpaceError", "check_space_dtype", "check_values",
    "file_space",
    "get_space", "known_families", "load_space_spec",
]


def known_families() -> list[str]:
    """Families :func:`get_space` can build."""
    return sorted({*bundled_param_families(), *BACKEND_FAMILIES})


def get_space(family: str, problem: GemmProblem, gpu: str | GpuSpec) -> Space:
    """The ``family`` space for ``problem`` on ``gpu`` (configs valid or pruned with reasons).

    A family with a space file checks the problem against the file's dtype (e.g. Xgemm is f32).
    """
    spec_gpu = get_gpu(gpu)
    if family in bundled_param_families():
        spec = load_space_spec(family)
        check_space_dtype(spec, problem)
        return enumerate_space(spec, spec_gpu)
    if family in BACKEND_FAMILIES:
        return backend_space(family, problem, spec_gpu)
    if Path(family).suffix == ".json" and Path(family).is_file():
        return enumerate_space(load_space_spec(family), spec_gpu)
    raise SpaceError(f"unknown kernel family {family!r}; known: {', '.join(known_families())} "
                     "(or --space FILE for the configs a file lists)")


def check_space_dtype(spec: ParamSpaceSpec, problem: GemmProblem) -> None:
    """:class:`SpaceError` where the space file fixes a dtype (e.g. Xgemm is f32) and
    ``problem`` has another: none of the space's kernels computes it."""
    if spec.dtype and problem.dtype != spec.dtype:
        raise SpaceError(f"the {spec.family} space is for {spec.dtype} GEMMs; the problem is "
                         f"{problem.dtype} (pick another --family)")


def space_problem_defaults(family: str) -> dict[str, Any]:
    """dtype/layout a family's space file fixes (empty for backend families)."""
    if family in bundled_param_families():
        spec = load_space_spec(family)
        return {k: v for k, v in (("dtype", spec.dtype), ("layout", spec.layout)) if v}
    return {}
