"""A rig is everything the sweep loop measures with: device, event timer, power meter, backends.

:func:`real_rig` builds one on a CUDA device (cupy events, NVML, the registered backends);
:func:`fake_rig` builds the seeded fake on virtual time. The sweep loop only sees a :class:`Rig`,
so the same orchestration code is tested end to end without a GPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gemmperf.collect.backend import DeviceInfo, GemmBackend, create_backend
from gemmperf.collect.control import DeviceControl
from gemmperf.collect.power import PowerMeter, PowerSettings
from gemmperf.collect.timing import EventTimer
from gemmperf.hardware.specs import MAX_CLOCK_OVER_BOOST

DEFAULT_POWER = PowerSettings()


@dataclass
class Rig:
    """What one sweep worker measures with. ``source`` is written into every record."""

    device: DeviceInfo
    timer: EventTimer
    backends: dict[str, GemmBackend]
    meter: PowerMeter | None
    source: str
    spec: Any = None                      # GpuSpec of the device, when the database knows it
    control: DeviceControl | None = None  # entered for the duration of the sweep
    fields: dict[str, Any] = field(default_factory=dict)  # constant extra record fields


def _spec(key: str | None) -> Any:
    if key is None:
        return None
    try:
        from gemmperf.hardware.specs import get_gpu

        return get_gpu(key)
    except Exception:  # an unknown GPU is allowed: records just lack spec-derived fields
        return None


def _setting_fields(lock_clocks_mhz: int | None, power_limit_w: float | None) -> dict[str, Any]:
    """The device settings every record states (null: left as the driver set it). They are
    measurement conditions, so resume keys include them (``sweep.CONDITION_FIELDS``)."""
    return {"locked_sm_clock_mhz": lock_clocks_mhz, "power_limit_setting_w": power_limit_w}


def real_rig(
    families: Iterable[str],
    *,
    cuda_index: int = 0,
    power: PowerSettings | None = DEFAULT_POWER,
    lock_clocks_mhz: int | None = None,
    power_limit_w: float | None = None,
    backend_options: dict[str, Any] | None = None,
) -> Rig:
    """A rig on CUDA device ``cuda_index``; raises ``NoGpuError`` when there is none."""
    from gemmperf.collect.device import NO_GPU_HINT, NoGpuError, cuda_device, cuda_pci_bus_id
    from gemmperf.collect.nvml import NvmlUnavailable, load_pynvml
    from gemmperf.collect.timing import CupyEventTimer

    try:
        load_pynvml()  # the driver first: its absence is the most common (and clearest) cause
    except NvmlUnavailable as exc:
        raise NoGpuError(f"no GPU to sweep: {exc}; {NO_GPU_HINT}") from exc
    bus_id = cuda_pci_bus_id(cuda_index)
    info, sensor = cuda_device(cuda_index, pci_bus_id=bus_id)
    import cupy

    cupy.cuda.Device(cuda_index).use()
    backends = {
        family: create_backend(family, device=info, **(backend_options or {}))
        for family in families
    }
    spec = _spec(info.gpu_key)
    control = None
    if lock_clocks_mhz is not None or power_limit_w is not None:
        # Where NVML cannot tell the maximum, the limit a predicted clock has too (GPUs clock
        # above their spec boost, so the boost itself would refuse real locks).
        control = DeviceControl(
            sensor, lock_clocks_mhz=lock_clocks_mhz, power_limit_w=power_limit_w,
            max_clock_mhz=MAX_CLOCK_OVER_BOOST * spec.boost_clock_mhz if spec is not None
            else None,
        )
    return Rig(
        device=info,
        timer=CupyEventTimer(),
        backends=backends,
        meter=PowerMeter(sensor, power) if power is not None else None,
        source="sweep",
        spec=spec,
        control=control,
        fields=_setting_fields(lock_clocks_mhz, power_limit_w),
    )


def fake_rig(
    families: Iterable[str],
    *,
    gpu: str = "rtx-4070",
    seed: int = 0,
    power: PowerSettings | None = DEFAULT_POWER,
    lock_clocks_mhz: int | None = None,
    power_limit_w: float | None = None,
    failures: Any = None,
    latency_s: float = 0.0,
    sensor_options: dict[str, Any] | None = None,
    index: int = 0,
) -> Rig:
    """The seeded fake simulating ``gpu``; its records say ``source="fake"``."""
    from gemmperf.collect.fake import (
        FakeBackend,
        FakeDevice,
        FakePowerSensor,
        VirtualHostClock,
        VirtualSampler,
    )

    device = FakeDevice(gpu, seed=seed, index=index)
    backends: dict[str, GemmBackend] = {
        family: FakeBackend(device=device, simulate=family, failures=failures, latency_s=latency_s)
        for family in families
    }
    sensor = FakePowerSensor(device, **(sensor_options or {}))
    meter = None
    if power is not None:
        meter = PowerMeter(
            sensor,
            power,
            clock=VirtualHostClock(device.clock),
            sampler_factory=lambda read, period: VirtualSampler(read, period, device.clock),
        )
    control = None
    if lock_clocks_mhz is not None or power_limit_w is not None:
        control = DeviceControl(
            sensor, lock_clocks_mhz=lock_clocks_mhz, power_limit_w=power_limit_w
        )
    return Rig(
        device=device.info,
        timer=device.timer(),
        backends=backends,
        meter=meter,
        source="fake",
        spec=device.spec,
        control=control,
        fields={"seed": seed, **_setting_fields(lock_clocks_mhz, power_limit_w)},
    )
