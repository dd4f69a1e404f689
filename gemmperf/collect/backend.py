"""The GemmBackend protocol and the backend registry.

A backend knows one kernel family (tiled, blocked, cutlass, cublas, fake): which configurations
exist for a problem, which are invalid on a device and why, and how to prepare one for launch.
Timing (collect/timing.py) and power (collect/power.py) are separate and injected, so the same
sweep loop drives a real GPU and the seeded fake.

The registry is lazy: built-in families map to ``"module:factory"`` text and the module is
imported only when a backend is created, so ``import gemmperf`` (or listing the families)
never imports cupy, CUTLASS or a CUDA driver.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gemmperf.errors import BackendUnavailableError, GemmperfError
from gemmperf.problem import GemmProblem, KernelConfig


@dataclass(frozen=True)
class DeviceInfo:
    """Identity of the device a backend runs on (from CUDA/NVML, or the fake)."""

    name: str                               # NVML / CUDA device name
    compute_capability: tuple[int, int]
    index: int = 0
    driver_version: str | None = None
    uuid: str | None = None
    gpu_key: str | None = None              # GpuSpec key when the spec database knows the device

    @property
    def cc_text(self) -> str:
        """Compute capability as records write it, e.g. ``"8.9"``."""
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


@dataclass(frozen=True)
class Verification:
    """Result check against a reference product: ``ok`` when max relative error <= tolerance."""

    ok: bool
    max_rel_error: float
    tolerance: float


class CompileError(GemmperfError):
    """The kernel for a configuration did not compile (recorded as status ``compile_error``)."""


class LaunchError(GemmperfError):
    """The kernel failed to launch or run (recorded as status ``launch_error``).

    ``fatal=True`` means the CUDA context is unusable afterwards (a sticky error such as an
    illegal address): the sweep records the failure, stops, and a resumed sweep (a fresh
    process, so a fresh context) skips the failed config and goes on.
    """

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


@runtime_checkable
class PreparedGemm(Protocol):
    """A compiled kernel bound to allocated operands, ready to launch back to back."""

    def launch(self) -> None:
        """Enqueue one GEMM on the backend's stream (asynchronous)."""

    def verify(self) -> Verification:
        """Run once more and compare the output with a reference result."""

    def release(self) -> None:
        """Free device memory held by the operands."""


@runtime_checkable
class GemmBackend(Protocol):
    """One kernel family on one device."""

    family: str

    def configs(self, problem: GemmProblem) -> Iterable[KernelConfig]:
        """The family's config space for ``problem`` (valid or not; see ``invalid_reason``)."""

    def invalid_reason(self, problem: GemmProblem, config: KernelConfig) -> str | None:
        """None when ``config`` can run ``problem`` on this device, else an actionable reason."""

    def prepare(self, problem: GemmProblem, config: KernelConfig) -> PreparedGemm:
        """Compile (cached), allocate and initialise operands; raises CompileError/LaunchError."""


BackendFactory = Callable[..., GemmBackend]

# Built-in families: "module:attribute" resolved on first use (lazy; see the module docstring).
_BUILTIN: dict[str, str] = {
    "tiled": "gemmperf.collect.cupy_backends:TiledBackend",
    "blocked": "gemmperf.collect.cupy_backends:BlockedBackend",
    "cublas": "gemmperf.collect.cupy_backends:CublasBackend",
    "cutlass": "gemmperf.collect.cutlass_backend:CutlassBackend",
    "fake": "gemmperf.collect.fake:FakeBackend",
}
_REGISTRY: dict[str, BackendFactory | str] = dict(_BUILTIN)

# Families that measure a real GPU (everything but the fake).
REAL_FAMILIES = ("tiled", "blocked", "cutlass", "cublas")


def register_backend(family: str, factory: BackendFactory | str) -> None:
    """Make ``factory(device=..., **options)`` available as backend ``family``.

    ``factory`` may be a callable or ``"module:attribute"`` text, imported on first use.
    """
    _REGISTRY[family] = factory


def backend_names() -> list[str]:
    """Registered family names, sorted."""
    return sorted(_REGISTRY)


def backend_factory(family: str) -> BackendFactory:
    """The factory for ``family``, importing its module if it is registered lazily.

    An unknown family, or a module whose dependencies are missing (cupy, CUTLASS), is a
    one-line :class:`GemmperfError`.
    """
    if family not in _REGISTRY:
        raise GemmperfError(
            f"unknown kernel family {family!r}; known: {', '.join(backend_names()) or 'none'}"
        )
    entry = _REGISTRY[family]
    if not isinstance(entry, str):
        return entry
    module_name, _, attribute = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"kernel family {family!r} needs {exc.name or module_name}, which is not installed "
            "(pip install 'gemmperf[gpu]'; or use --backend fake)"
        ) from exc
    try:
        factory: BackendFactory = getattr(module, attribute)
    except AttributeError as exc:
        raise GemmperfError(f"{module_name} has no backend factory {attribute!r}") from exc
    _REGISTRY[family] = factory
    return factory


def create_backend(family: str, **options: Any) -> GemmBackend:
    """Instantiate a registered backend: ``factory(**options)`` (usually ``device=...``)."""
    return backend_factory(family)(**options)
