"""NVML behind a small interface: power and energy sensors, device state, clock and power controls.

:class:`PowerSensor` is what the power meter (collect/power.py) and the sweep use;
:class:`NvmlSensor` implements it with nvidia-ml-py (``import pynvml``, loaded lazily, injectable
for tests) and the fake backend implements it on virtual time. Every read either returns an SI
value or raises :class:`SensorUnsupported` with the reason, so a GPU that lacks a field yields
``None`` plus a note, never a crash or a made-up number.

NVML facts used here (NVML API reference, nvml.h):
- ``nvmlDeviceGetTotalEnergyConsumption``: mJ since the driver loaded, Volta and newer, updated
  every 20-100 ms;
- ``nvmlDeviceGetPowerUsage``: mW, a 1 s average on Ampere and newer (except GA100);
- ``nvmlDeviceGetFieldValues([NVML_FI_DEV_POWER_INSTANT])``: instantaneous mW where supported
  (each field carries its own return code);
- clock-event ("throttle") reasons are a bit mask, decoded by :func:`decode_throttle_reasons`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from gemmperf.errors import BackendUnavailableError, GemmperfError

# nvmlClocksEventReason* bits (nvml.h); pynvml exposes the same values under the same names.
THROTTLE_BITS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",   # also "user defined clocks": locked by the user
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# Reasons that mean the clocks were held below what the kernel would otherwise get. Idle and
# user-set clocks are not throttling: the first is absence of work, the second is asked for.
THROTTLING_MASK = 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100

NVML_FI_DEV_POWER_INSTANT = 186     # nvml.h field id, for bindings that predate the constant
NVML_SUCCESS = 0


def decode_throttle_reasons(mask: int) -> list[str]:
    """Names of the reasons set in an NVML clock-event bit mask (unknown bits as ``bit_0x..``)."""
    names = [name for bit, name in THROTTLE_BITS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_BITS)
    bit = 1
    while unknown:
        if unknown & bit:
            names.append(f"bit_{bit:#x}")
            unknown &= ~bit
        bit <<= 1
    return names


def is_throttled(mask: int) -> bool:
    """True when the mask holds a reason that slowed the clocks (power, thermal, slowdown)."""
    return bool(mask & THROTTLING_MASK)


class SensorUnsupported(Exception):
    """A reading this GPU, driver or user cannot provide; ``str()`` is the reason."""


class NvmlUnavailable(BackendUnavailableError):
    """NVML cannot be used on this machine (no bindings, no driver, no such device)."""


class PowerSensor(Protocol):
    """One GPU's power, energy and state readings (SI units) and its clock/power controls."""

    def energy_mj(self) -> int:
        """Total-energy counter in millijoules (monotonic unless the driver restarts)."""

    def instant_power_w(self) -> float:
        """Instantaneous board power."""

    def average_power_w(self) -> float:
        """Board power as the driver's default query reports it (1 s average on Ampere+)."""

    def sm_clock_mhz(self) -> float:
        """Current SM clock."""

    def mem_clock_mhz(self) -> float:
        """Current memory clock."""

    def temperature_c(self) -> float:
        """GPU core temperature."""

    def power_limit_w(self) -> float:
        """Enforced power limit (what the driver holds the board to, all limiters included)."""

    def power_management_limit_w(self) -> float:
        """The power-management limit :meth:`set_power_limit_w` sets (what to restore)."""

    def throttle_reasons(self) -> int:
        """Current clock-event reason bit mask."""

    def set_locked_clocks(self, min_mhz: int, max_mhz: int) -> None:
        """Lock the SM clock into [min, max] MHz."""

    def reset_locked_clocks(self) -> None:
        """Undo :meth:`set_locked_clocks`."""

    def power_limit_range_w(self) -> tuple[float, float]:
        """(min, max) settable power limit."""

    def set_power_limit_w(self, watts: float) -> None:
        """Set the power-management limit."""


T = TypeVar("T")


def load_pynvml(nvml: Any = None) -> Any:
    """Import and initialise pynvml (or the injected module); one-line error if unusable."""
    if nvml is None:
        try:
            import pynvml as nvml  # lazy: importing gemmperf never loads NVML
        except ImportError as exc:
            raise NvmlUnavailable(
                "nvidia-ml-py is not installed (pip install 'gemmperf[gpu]')"
            ) from exc
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML cannot start: {_nvml_reason(nvml, exc)}") from exc
    return nvml


def _nvml_reason(nvml: Any, exc: BaseException) -> str:
    """A short, actionable reason for an NVML error."""
    if isinstance(exc, getattr(nvml, "NVMLError_LibraryNotFound", ())):
        return "no NVIDIA driver (libnvidia-ml.so not found)"
    if isinstance(exc, getattr(nvml, "NVMLError_DriverNotLoaded", ())):
        return "the NVIDIA driver is not loaded"
    if isinstance(exc, getattr(nvml, "NVMLError_NotSupported", ())):
        return "not supported on this GPU or driver"
    if isinstance(exc, getattr(nvml, "NVMLError_NoPermission", ())):
        return "needs root (run with sudo or ask an administrator)"
    if isinstance(exc, getattr(nvml, "NVMLError_FunctionNotFound", ())):
        return "the driver's NVML is too old for this call"
    return str(exc) or type(exc).__name__


class NvmlSensor:
    """:class:`PowerSensor` for one device through pynvml (``nvml`` may be injected).

    NVML numbers devices by PCI order and ignores ``CUDA_VISIBLE_DEVICES``; pass the CUDA
    device's ``pci_bus_id`` (as Ray workers do) to be sure both name the same GPU.
    """

    def __init__(self, index: int = 0, *, pci_bus_id: str | None = None, nvml: Any = None) -> None:
        self._nvml = load_pynvml(nvml)
        self.index = index
        try:
            if pci_bus_id is not None:
                self._handle = self._nvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
            else:
                self._handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
        except self._nvml.NVMLError as exc:
            which = pci_bus_id if pci_bus_id is not None else index
            raise NvmlUnavailable(
                f"NVML has no GPU {which}: {_nvml_reason(self._nvml, exc)}"
            ) from exc

    def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(self._handle, *args)
        except self._nvml.NVMLError as exc:
            raise SensorUnsupported(f"{what}: {_nvml_reason(self._nvml, exc)}") from exc

    def _control(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(self._handle, *args)
        except self._nvml.NVMLError as exc:
            raise GemmperfError(f"cannot {what}: {_nvml_reason(self._nvml, exc)}") from exc

    # readings ---------------------------------------------------------------------------------
    def energy_mj(self) -> int:
        return int(
            self._call("energy counter", self._nvml.nvmlDeviceGetTotalEnergyConsumption)
        )

    def instant_power_w(self) -> float:
        field_id = getattr(self._nvml, "NVML_FI_DEV_POWER_INSTANT", NVML_FI_DEV_POWER_INSTANT)
        values = self._call("instant power", self._nvml.nvmlDeviceGetFieldValues, [field_id])
        value = values[0]
        if value.nvmlReturn != NVML_SUCCESS:
            # Field queries report per-field status instead of raising.
            raise SensorUnsupported(
                f"instant power: field {field_id} returned NVML status {value.nvmlReturn} "
                "(not supported on this GPU or driver)"
            )
        return float(value.value.uiVal) / 1e3

    def average_power_w(self) -> float:
        return float(self._call("power", self._nvml.nvmlDeviceGetPowerUsage)) / 1e3

    def sm_clock_mhz(self) -> float:
        nvml = self._nvml
        return float(self._call("SM clock", nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_SM))

    def max_sm_clock_mhz(self) -> float:
        """Highest SM clock the GPU supports (bounds a clock lock)."""
        nvml = self._nvml
        query = getattr(nvml, "nvmlDeviceGetMaxClockInfo", None)
        if query is None:
            raise SensorUnsupported("maximum SM clock: these NVML bindings cannot query it")
        return float(self._call("maximum SM clock", query, nvml.NVML_CLOCK_SM))

    def mem_clock_mhz(self) -> float:
        nvml = self._nvml
        return float(self._call("memory clock", nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_MEM))

    def temperature_c(self) -> float:
        # nvmlDeviceGetTemperature is deprecated (nvidia-ml-py 13: "will be removed in CUDA
        # 14.0") for nvmlDeviceGetTemperatureV, which older drivers lack (FunctionNotFound).
        nvml = self._nvml
        queries = [q for q in (getattr(nvml, "nvmlDeviceGetTemperatureV", None),
                               getattr(nvml, "nvmlDeviceGetTemperature", None)) if q]
        if not queries:
            raise SensorUnsupported("temperature: these NVML bindings cannot query it")
        for query in queries[:-1]:
            try:
                return float(query(self._handle, nvml.NVML_TEMPERATURE_GPU))
            except nvml.NVMLError:   # the driver lacks the V call: the older one below
                continue
        return float(self._call("temperature", queries[-1], nvml.NVML_TEMPERATURE_GPU))

    def power_limit_w(self) -> float:
        return float(self._call("power limit", self._nvml.nvmlDeviceGetEnforcedPowerLimit)) / 1e3

    def power_management_limit_w(self) -> float:
        # Not the enforced limit: that can sit below it where another limiter is set, and
        # writing it back would leave the GPU with a different setting than it had (NVML
        # reference, nvmlDeviceGetEnforcedPowerLimit).
        return float(self._call("power management limit",
                                self._nvml.nvmlDeviceGetPowerManagementLimit)) / 1e3

    def throttle_reasons(self) -> int:
        # Renamed "clocks event reasons" in NVML 12.2; older bindings only have the old name.
        fn = getattr(self._nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if fn is None:
            fn = self._nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(self._call("throttle reasons", fn))

    # controls ---------------------------------------------------------------------------------
    def set_locked_clocks(self, min_mhz: int, max_mhz: int) -> None:
        self._control(
            f"lock SM clocks to {min_mhz}-{max_mhz} MHz",
            self._nvml.nvmlDeviceSetGpuLockedClocks,
            int(min_mhz),
            int(max_mhz),
        )

    def reset_locked_clocks(self) -> None:
        self._control("reset locked clocks", self._nvml.nvmlDeviceResetGpuLockedClocks)

    def power_limit_range_w(self) -> tuple[float, float]:
        low, high = self._call(
            "power limit range", self._nvml.nvmlDeviceGetPowerManagementLimitConstraints
        )
        return float(low) / 1e3, float(high) / 1e3

    def set_power_limit_w(self, watts: float) -> None:
        self._control(
            f"set the power limit to {watts:g} W",
            self._nvml.nvmlDeviceSetPowerManagementLimit,
            round(watts * 1e3),
        )

    # identity (used by collect/device.py) -----------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Name, UUID, compute capability, memory and driver version of the device."""
        nvml = self._nvml

        def text(value: Any) -> str:
            return value.decode() if isinstance(value, bytes) else str(value)

        major, minor = self._call("compute capability", nvml.nvmlDeviceGetCudaComputeCapability)
        return {
            "name": text(self._call("name", nvml.nvmlDeviceGetName)),
            "uuid": text(self._call("uuid", nvml.nvmlDeviceGetUUID)),
            "compute_capability": (int(major), int(minor)),
            "memory_bytes": int(self._call("memory", nvml.nvmlDeviceGetMemoryInfo).total),
            "driver_version": driver_version(nvml),
        }


def driver_version(nvml: Any) -> str:
    """The NVIDIA driver version NVML reports (:class:`SensorUnsupported` where it cannot)."""
    try:
        version = nvml.nvmlSystemGetDriverVersion()
    except nvml.NVMLError as exc:
        raise SensorUnsupported(f"driver version: {_nvml_reason(nvml, exc)}") from exc
    return version.decode() if isinstance(version, bytes) else str(version)


def nvml_device_count(nvml: Any = None) -> int:
    """Number of GPUs NVML sees (raises :class:`NvmlUnavailable` when NVML cannot start)."""
    nvml = load_pynvml(nvml)
    return int(nvml.nvmlDeviceGetCount())
