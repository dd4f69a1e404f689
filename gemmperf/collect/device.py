"""What this machine can measure: driver, NVML, cupy, CUTLASS, nvcc and the GPUs found.

:func:`doctor` never raises on a missing piece: each check reports ``ok`` and a detail line, and
the report says whether a sweep can run and, if not, why in one line. :func:`cuda_device` is what
the real sweep uses to name its device (and the one clear error when there is none).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gemmperf.collect.backend import DeviceInfo
from gemmperf.collect.nvml import (
    NvmlSensor,
    NvmlUnavailable,
    SensorUnsupported,
    driver_version,
    load_pynvml,
)
from gemmperf.errors import BackendUnavailableError


class NoGpuError(BackendUnavailableError):
    """No usable NVIDIA GPU: the real sweep cannot run here."""


GPU_EXTRA = "pip install 'gemmperf[gpu]'"
NO_GPU_HINT = "use --backend fake to simulate one (e.g. --backend fake --gpu h100-sxm)"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class GpuFound:
    """A GPU NVML reports, and the spec-database entry it maps to (if any)."""

    index: int
    name: str
    compute_capability: str
    memory_gib: float
    uuid: str
    gpu_key: str | None


@dataclass(frozen=True)
class DoctorReport:
    """Checks, GPUs, and whether ``gemmperf sweep`` (real backends) can run."""

    checks: list[Check]
    gpus: list[GpuFound] = field(default_factory=list)
    can_sweep: bool = False
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "can_sweep": self.can_sweep,
            "problem": self.problem,
            "checks": [c.__dict__ for c in self.checks],
            "gpus": [g.__dict__ for g in self.gpus],
        }


def _dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def spec_key_for(name: str) -> str | None:
    """The GpuSpec key for an NVML device name, or None when the database does not know it."""
    try:
        from gemmperf.hardware.specs import find_gpu

        spec = find_gpu(name)
    except Exception:  # the database is optional for naming a device
        return None
    return getattr(spec, "key", None)


def list_gpus(nvml: Any = None) -> list[GpuFound]:
    """GPUs through NVML (raises :class:`NvmlUnavailable` when NVML cannot start)."""
    module = load_pynvml(nvml)
    found = []
    for index in range(int(module.nvmlDeviceGetCount())):
        ident = NvmlSensor(index, nvml=module).identity()
        major, minor = ident["compute_capability"]
        found.append(
            GpuFound(
                index=index,
                name=ident["name"],
                compute_capability=f"{major}.{minor}",
                memory_gib=round(ident["memory_bytes"] / 2**30, 1),
                uuid=ident["uuid"],
                gpu_key=spec_key_for(ident["name"]),
            )
        )
    return found


def _check_nvcc(which: Callable[[str], str | None], run: Callable[..., Any]) -> Check:
    path = which("nvcc")
    if not path:
        return Check("nvcc", False, "not on PATH (needed only to compile kernels ahead of time)")
    try:
        out = run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("nvcc", False, f"{path} does not run: {exc}")
    match = re.search(r"release ([\d.]+)", out or "")
    return Check("nvcc", True, f"CUDA {match[1] if match else '?'} at {path}")


def _check_cupy() -> tuple[Check, bool]:
    if importlib.util.find_spec("cupy") is None:
        return Check("cupy", False, f"not installed ({GPU_EXTRA})"), False
    version = _dist_version("cupy-cuda12x", "cupy-cuda13x", "cupy-cuda11x", "cupy") or "?"
    try:
        import cupy

        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # cupy raises CUDARuntimeError / ImportError variants
        return Check("cupy", False, f"{version} installed, CUDA unusable: {exc}"), False
    return Check("cupy", True, f"{version}, {count} CUDA device(s)"), count > 0


def doctor(
    *,
    nvml: Any = None,
    which: Callable[[str], str | None] = shutil.which,
    run: Callable[..., Any] = subprocess.run,
    cupy_check: Callable[[], tuple[Check, bool]] = _check_cupy,
) -> DoctorReport:
    """Check everything a sweep needs; never raises for a missing piece."""
    checks: list[Check] = []
    gpus: list[GpuFound] = []
    bindings = _dist_version("nvidia-ml-py")
    if nvml is None and importlib.util.find_spec("pynvml") is None:
        checks.append(Check("nvml", False, f"nvidia-ml-py not installed ({GPU_EXTRA})"))
        checks.append(Check("driver", False, "unknown (needs nvidia-ml-py to query)"))
        driver_ok = False
    else:
        try:
            module = load_pynvml(nvml)
            driver = driver_version(module)
            checks.append(Check("nvml", True, f"nvidia-ml-py {bindings or '?'}"))
            checks.append(Check("driver", True, f"NVIDIA driver {driver}"))
            gpus = list_gpus(module)
            driver_ok = True
        except (NvmlUnavailable, SensorUnsupported) as exc:
            checks.append(Check("nvml", bindings is not None or nvml is not None,
                                f"nvidia-ml-py {bindings or '?'}"))
            checks.append(Check("driver", False, str(exc)))
            driver_ok = False
    gpu_detail = "; ".join(
        f"{g.index}: {g.name} (sm {g.compute_capability}, {g.memory_gib:g} GiB, "
        f"spec {g.gpu_key or 'unknown: add it to data/gpus'})"
        for g in gpus
    )
    checks.append(Check("gpus", bool(gpus), gpu_detail or "none found"))
    cupy, cupy_ok = cupy_check()
    checks.append(cupy)
    if importlib.util.find_spec("cutlass_cppgen") is None:
        checks.append(Check("cutlass", False, "nvidia-cutlass not installed (cutlass family off)"))
    else:
        version = _dist_version("nvidia-cutlass") or "?"
        checks.append(Check("cutlass", True, f"nvidia-cutlass {version}"))
    checks.append(_check_nvcc(which, run))
    ray = _dist_version("ray")
    checks.append(
        Check("ray", ray is not None, f"ray {ray}" if ray else "not installed (--ray off)")
    )

    problem = None
    if not driver_ok:
        detail = next(c.detail for c in checks if c.name == "driver")
        problem = f"no usable NVIDIA driver ({detail})"
    elif not gpus:
        problem = "NVML sees no GPU"
    elif not cupy_ok:
        problem = f"cupy cannot run kernels ({cupy.detail})"
    return DoctorReport(checks=checks, gpus=gpus, can_sweep=problem is None, problem=problem)


def cuda_pci_bus_id(index: int = 0) -> str:
    """PCI bus id of CUDA device ``index`` (after ``CUDA_VISIBLE_DEVICES``), via cupy."""
    try:
        import cupy

        return str(cupy.cuda.Device(index).pci_bus_id)
    except ImportError as exc:
        raise NoGpuError(f"cupy is not installed ({GPU_EXTRA}); {NO_GPU_HINT}") from exc
    except Exception as exc:  # CUDARuntimeError without a driver or device
        raise NoGpuError(f"no CUDA device {index}: {exc}; {NO_GPU_HINT}") from exc


def cuda_device(
    index: int = 0, *, pci_bus_id: str | None = None, nvml: Any = None
) -> tuple[DeviceInfo, NvmlSensor]:
    """The real device for records and its NVML sensor; :class:`NoGpuError` if there is none."""
    try:
        sensor = NvmlSensor(index, pci_bus_id=pci_bus_id, nvml=nvml)
        ident = sensor.identity()
    except (NvmlUnavailable, SensorUnsupported) as exc:
        raise NoGpuError(f"no GPU to sweep: {exc}; {NO_GPU_HINT}") from exc
    return DeviceInfo(
        name=ident["name"],
        compute_capability=ident["compute_capability"],
        index=index,
        driver_version=ident["driver_version"],
        uuid=ident["uuid"],
        gpu_key=spec_key_for(ident["name"]),
    ), sensor
