"""NVML and power paths with fakes: no driver, unsupported fields, counter wrap, throttling,
clock/power-limit restore."""

from __future__ import annotations

import itertools
import signal
import sys
import time
import types

import pytest

from gemmperf.collect.control import DeviceControl
from gemmperf.collect.fake import FakeDevice, FakePowerSensor, VirtualHostClock, VirtualSampler
from gemmperf.collect.nvml import (
    NvmlSensor,
    NvmlUnavailable,
    SensorUnsupported,
    decode_throttle_reasons,
    is_throttled,
    load_pynvml,
)
from gemmperf.collect.power import PowerMeter, PowerSettings, Sample, ThreadSampler
from gemmperf.errors import GemmperfError

# ---------------------------------------------------------------------------------------------
# A hand-written stand-in for the pynvml module (same names, same error classes)


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_NoPermission(NVMLError):
    pass


def fake_nvml(
    *,
    init_error: type[Exception] | None = None,
    energy: list[int] | Exception | None = None,
    instant_status: int = 0,
    power_mw: int = 150_000,
    throttle: int = 0,
    set_clocks_error: type[Exception] | None = None,
) -> types.SimpleNamespace:
    calls: list[tuple] = []
    energy_values = iter(energy) if isinstance(energy, list) else None

    def init():
        if init_error:
            raise init_error()

    def total_energy(handle):
        if isinstance(energy, Exception):
            raise energy
        return next(energy_values) if energy_values else 1_000_000

    def field_values(handle, ids):
        value = types.SimpleNamespace(uiVal=power_mw)
        return [types.SimpleNamespace(fieldId=ids[0], nvmlReturn=instant_status, value=value)]

    def set_locked(handle, low, high):
        if set_clocks_error:
            raise set_clocks_error()
        calls.append(("lock", low, high))

    limit = {"mw": 200_000}

    def set_limit(handle, mw):
        calls.append(("limit", mw))
        limit["mw"] = mw

    return types.SimpleNamespace(
        calls=calls,
        NVMLError=NVMLError,
        NVMLError_LibraryNotFound=NVMLError_LibraryNotFound,
        NVMLError_NotSupported=NVMLError_NotSupported,
        NVMLError_NoPermission=NVMLError_NoPermission,
        NVML_FI_DEV_POWER_INSTANT=186,
        NVML_CLOCK_SM=1,
        NVML_CLOCK_MEM=2,
        NVML_TEMPERATURE_GPU=0,
        nvmlInit=init,
        nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlDeviceGetHandleByPciBusId=lambda bus: f"gpu@{bus}",
        nvmlDeviceGetTotalEnergyConsumption=total_energy,
        nvmlDeviceGetFieldValues=field_values,
        nvmlDeviceGetPowerUsage=lambda h: power_mw,
        nvmlDeviceGetClockInfo=lambda h, which: {1: 2475, 2: 10501}[which],
        nvmlDeviceGetTemperature=lambda h, sensor: 64,
        nvmlDeviceGetEnforcedPowerLimit=lambda h: limit["mw"],
        nvmlDeviceGetPowerManagementLimit=lambda h: limit["mw"],
        nvmlDeviceGetCurrentClocksEventReasons=lambda h: throttle,
        nvmlDeviceGetPowerManagementLimitConstraints=lambda h: (100_000, 220_000),
        nvmlDeviceSetPowerManagementLimit=set_limit,
        nvmlDeviceSetGpuLockedClocks=set_locked,
        nvmlDeviceResetGpuLockedClocks=lambda h: calls.append(("reset",)),
    )


# ---------------------------------------------------------------------------------------------
# NVML binding


def test_no_driver_is_one_clear_error():
    with pytest.raises(NvmlUnavailable, match=r"no NVIDIA driver \(libnvidia-ml.so not found\)"):
        NvmlSensor(0, nvml=fake_nvml(init_error=NVMLError_LibraryNotFound))


def test_bindings_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    with pytest.raises(NvmlUnavailable, match="nvidia-ml-py is not installed"):
        load_pynvml()


def test_real_pynvml_without_driver_if_installed():
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        with pytest.raises(NvmlUnavailable, match="NVML cannot start"):
            NvmlSensor(0)
    else:  # pragma: no cover - a machine with a driver
        pytest.skip("this machine has an NVIDIA driver")


def test_sensor_reads_in_si_units():
    sensor = NvmlSensor(0, nvml=fake_nvml(power_mw=123_456))
    assert sensor.instant_power_w() == pytest.approx(123.456)
    assert sensor.average_power_w() == pytest.approx(123.456)
    assert sensor.sm_clock_mhz() == 2475 and sensor.mem_clock_mhz() == 10501
    assert sensor.temperature_c() == 64 and sensor.power_limit_w() == 200.0
    assert sensor.energy_mj() == 1_000_000


def test_pci_bus_id_selects_the_device():
    sensor = NvmlSensor(nvml=fake_nvml(), pci_bus_id="0000:3B:00.0")
    assert sensor._handle == "gpu@0000:3B:00.0"


def test_unsupported_field_and_energy_counter():
    nvml = fake_nvml(instant_status=3, energy=NVMLError_NotSupported())
    sensor = NvmlSensor(0, nvml=nvml)
    with pytest.raises(SensorUnsupported, match="instant power: field 186 returned NVML status 3"):
        sensor.instant_power_w()
    with pytest.raises(SensorUnsupported, match="energy counter: not supported"):
        sensor.energy_mj()


def test_meter_falls_back_to_averaged_power_and_says_why():
    nvml = fake_nvml(instant_status=3, energy=NVMLError_NotSupported(), power_mw=180_000)
    meter = PowerMeter(
        NvmlSensor(0, nvml=nvml),
        PowerSettings(window_s=0.05, sample_period_s=0.002, averaging_s=0.01, idle_s=0.0),
    )

    def run() -> int:
        time.sleep(0.05)
        return 1000

    reading = meter.measure(run, runtime_s=50e-6)
    assert reading.method == "average_samples"
    assert reading.power_w == pytest.approx(180.0)
    assert reading.energy_j == pytest.approx(180.0 * 50e-6)
    assert reading.idle_power_w is None
    assert "energy counter: not supported" in reading.note
    assert "instant power" in reading.note and "idle power needs" in reading.note


def test_window_shorter_than_averaging_period_gives_none_with_reason():
    nvml = fake_nvml(instant_status=3, energy=NVMLError_NotSupported())
    meter = PowerMeter(NvmlSensor(0, nvml=nvml),
                       PowerSettings(window_s=0.01, sample_period_s=0.002, idle_s=0.0))
    reading = meter.measure(lambda: (time.sleep(0.01), 10)[1], runtime_s=1e-3)
    assert reading.power_w is None and reading.energy_j is None
    assert "no power sample after the 1 s ramp-up" in reading.note


def test_energy_counter_wrap_falls_back_to_sampled_power():
    # The counter reads 5e9 mJ before the window and 1e3 mJ after: it went backwards.
    nvml = fake_nvml(energy=[5_000_000_000, 5_000_000_000, 1_000], power_mw=150_000)
    meter = PowerMeter(NvmlSensor(0, nvml=nvml),
                       PowerSettings(window_s=0.05, sample_period_s=0.002, idle_s=0.0,
                                     settle_s=0.0))
    reading = meter.measure(lambda: (time.sleep(0.05), 500)[1], runtime_s=1e-4)
    assert reading.method == "instant_samples"
    assert reading.power_w == pytest.approx(150.0)
    assert "energy counter went backwards" in reading.note


def test_energy_counter_is_used_when_it_advances():
    device = FakeDevice("rtx-4070", seed=1)
    meter = PowerMeter(FakePowerSensor(device), PowerSettings(window_s=1.0),
                       clock=VirtualHostClock(device.clock),
                       sampler_factory=lambda r, p: VirtualSampler(r, p, device.clock))

    def run() -> int:
        device.clock.advance(2.0, 120.0)
        return 2000

    reading = meter.measure(run, runtime_s=1e-3)
    assert reading.method == "energy_counter"
    assert reading.power_w == pytest.approx(120.0, rel=1e-3)
    assert reading.energy_j == pytest.approx(0.12, rel=1e-3)
    assert reading.idle_power_w == pytest.approx(device.clock.idle_power_w, rel=0.05)


def test_fake_sensor_wrap_on_virtual_time():
    device = FakeDevice("rtx-4070")
    sensor = FakePowerSensor(device, energy_jump_mj=10**9, jump_after_reads=2)
    meter = PowerMeter(sensor, PowerSettings(), clock=VirtualHostClock(device.clock),
                       sampler_factory=lambda r, p: VirtualSampler(r, p, device.clock))
    reading = meter.measure(lambda: (device.clock.advance(1.5, 100.0), 100)[1], runtime_s=0.015)
    assert reading.method == "instant_samples"
    assert reading.power_w == pytest.approx(100.0, rel=0.05)


def test_launch_bound_window_is_flagged():
    device = FakeDevice("rtx-4070")
    meter = PowerMeter(FakePowerSensor(device), PowerSettings(),
                       clock=VirtualHostClock(device.clock),
                       sampler_factory=lambda r, p: VirtualSampler(r, p, device.clock))
    reading = meter.measure(lambda: (device.clock.advance(1.0, 50.0), 1000)[1], runtime_s=1e-4)
    assert reading.busy_fraction == pytest.approx(0.1)
    assert "GPU busy only 10% of the power window" in reading.note


def test_throttle_reasons_decoded_and_flagged():
    assert decode_throttle_reasons(0) == []
    assert decode_throttle_reasons(0x1 | 0x4 | 0x40) == [
        "gpu_idle", "sw_power_cap", "hw_thermal_slowdown"]
    assert decode_throttle_reasons(0x800) == ["bit_0x800"]
    assert not is_throttled(0x1 | 0x2)        # idle and user-locked clocks are not throttling
    assert is_throttled(0x4) and is_throttled(0x40)

    nvml = fake_nvml(throttle=0x4 | 0x20)
    meter = PowerMeter(NvmlSensor(0, nvml=nvml),
                       PowerSettings(window_s=0.02, sample_period_s=0.002, idle_s=0.002))
    reading = meter.measure(lambda: (time.sleep(0.02), 100)[1], runtime_s=2e-4)
    assert reading.throttled
    assert reading.throttle_reasons == "sw_power_cap,sw_thermal_slowdown"
    assert reading.sm_clock_mhz == 2475 and reading.temperature_c == 64


def test_thread_sampler_keeps_a_fixed_period():
    ticks: list[float] = []

    def read() -> Sample:
        ticks.append(time.perf_counter())
        return Sample(ticks[-1], 1.0, None, 0)

    sampler = ThreadSampler(read, 0.005)
    sampler.start()
    time.sleep(0.1)
    samples = sampler.stop()
    assert 12 <= len(samples) <= 23
    gaps = [b - a for a, b in itertools.pairwise(ticks[:-1])]  # the last read is at stop()
    assert sum(gaps) / len(gaps) == pytest.approx(0.005, rel=0.3)


# ---------------------------------------------------------------------------------------------
# Clock lock / power limit restore


def test_control_applies_and_restores():
    nvml = fake_nvml()
    sensor = NvmlSensor(0, nvml=nvml)
    with DeviceControl(sensor, lock_clocks_mhz=1800, power_limit_w=150):
        assert nvml.calls == [("limit", 150_000), ("lock", 1800, 1800)]
        assert sensor.power_limit_w() == 150
    assert nvml.calls[-2:] == [("reset",), ("limit", 200_000)]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_control_restores_the_management_limit_not_the_enforced_one():
    # Another limiter holds the board to 180 W below its 200 W management limit: the sweep's
    # 150 W must be undone to 200 W, the setting it found.
    nvml = fake_nvml()
    nvml.nvmlDeviceGetEnforcedPowerLimit = lambda h: 180_000
    with DeviceControl(NvmlSensor(0, nvml=nvml), power_limit_w=150):
        pass
    assert nvml.calls == [("limit", 150_000), ("limit", 200_000)]


def test_temperature_prefers_the_current_call_and_falls_back_on_old_drivers():
    nvml = fake_nvml()
    nvml.nvmlDeviceGetTemperatureV = lambda h, sensor: 71
    assert NvmlSensor(0, nvml=nvml).temperature_c() == 71

    def missing(h, sensor):   # pynvml raises this where the driver lacks the function
        raise NVMLError("Function Not Found")

    nvml.nvmlDeviceGetTemperatureV = missing
    assert NvmlSensor(0, nvml=nvml).temperature_c() == 64          # the deprecated call
    del nvml.nvmlDeviceGetTemperature                                # removed (CUDA 14)
    with pytest.raises(SensorUnsupported, match="temperature"):
        NvmlSensor(0, nvml=nvml).temperature_c()
    del nvml.nvmlDeviceGetTemperatureV
    with pytest.raises(SensorUnsupported, match="cannot query it"):
        NvmlSensor(0, nvml=nvml).temperature_c()


def test_control_restores_on_ctrl_c():
    nvml = fake_nvml()
    with pytest.raises(KeyboardInterrupt), DeviceControl(NvmlSensor(0, nvml=nvml),
                                                         lock_clocks_mhz=1500):
        raise KeyboardInterrupt
    assert nvml.calls == [("lock", 1500, 1500), ("reset",)]


def test_control_turns_sigterm_into_an_unwind():
    nvml = fake_nvml()
    with pytest.raises(KeyboardInterrupt), DeviceControl(NvmlSensor(0, nvml=nvml),
                                                         lock_clocks_mhz=1500):
        signal.raise_signal(signal.SIGTERM)
    assert nvml.calls[-1] == ("reset",)


def test_control_needs_root_and_restores_what_it_changed():
    nvml = fake_nvml(set_clocks_error=NVMLError_NoPermission)
    control = DeviceControl(NvmlSensor(0, nvml=nvml), lock_clocks_mhz=1500, power_limit_w=180)
    with pytest.raises(GemmperfError, match="cannot lock SM clocks to 1500-1500 MHz: needs root"):
        control.__enter__()
    assert nvml.calls == [("limit", 180_000), ("limit", 200_000)]


def test_power_limit_out_of_range():
    control = DeviceControl(NvmlSensor(0, nvml=fake_nvml()), power_limit_w=300)
    with pytest.raises(GemmperfError, match="outside this GPU's range 100-220 W"):
        control.__enter__()


# ---------------------------------------------------------------------------------------------
# doctor


def _nvml_with_gpu(**kwargs):
    nvml = fake_nvml(**kwargs)
    nvml.nvmlDeviceGetCount = lambda: 1
    nvml.nvmlSystemGetDriverVersion = lambda: b"580.65.06"
    nvml.nvmlDeviceGetName = lambda h: b"NVIDIA GeForce RTX 4070"
    nvml.nvmlDeviceGetUUID = lambda h: "GPU-1234"
    nvml.nvmlDeviceGetCudaComputeCapability = lambda h: (8, 9)
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=12 * 2**30)
    return nvml


def test_doctor_on_a_gpu_machine():
    from gemmperf.collect.device import Check, cuda_device, doctor

    report = doctor(nvml=_nvml_with_gpu(), which=lambda name: None,
                    cupy_check=lambda: (Check("cupy", True, "13.6, 1 CUDA device(s)"), True))
    assert report.can_sweep and report.problem is None
    (gpu,) = report.gpus
    assert (gpu.name, gpu.compute_capability, gpu.gpu_key) == (
        "NVIDIA GeForce RTX 4070", "8.9", "rtx-4070")
    checks = {c.name: c for c in report.checks}
    assert checks["driver"].detail == "NVIDIA driver 580.65.06"
    assert not checks["nvcc"].ok and "not on PATH" in checks["nvcc"].detail
    info, sensor = cuda_device(0, nvml=_nvml_with_gpu())
    assert sensor.sm_clock_mhz() == 2475
    assert info.cc_text == "8.9" and info.gpu_key == "rtx-4070" and info.uuid == "GPU-1234"


def test_doctor_without_driver_or_cupy():
    from gemmperf.collect.device import Check, NoGpuError, cuda_device, doctor

    report = doctor(nvml=fake_nvml(init_error=NVMLError_LibraryNotFound),
                    cupy_check=lambda: (Check("cupy", False, "not installed"), False))
    assert not report.can_sweep and report.gpus == []
    assert report.problem == (
        "no usable NVIDIA driver (NVML cannot start: no NVIDIA driver (libnvidia-ml.so not found))"
    )
    no_cupy = doctor(nvml=_nvml_with_gpu(),
                     cupy_check=lambda: (Check("cupy", False, "not installed"), False))
    assert no_cupy.problem == "cupy cannot run kernels (not installed)"
    with pytest.raises(NoGpuError, match=r"no GPU to sweep: .* use --backend fake"):
        cuda_device(0, nvml=fake_nvml(init_error=NVMLError_LibraryNotFound))


def test_doctor_reports_a_failing_driver_query_instead_of_raising():
    from gemmperf.collect.device import Check, doctor

    nvml = _nvml_with_gpu()

    def broken():
        raise NVMLError_NotSupported("Not Supported")

    nvml.nvmlSystemGetDriverVersion = broken
    report = doctor(nvml=nvml, which=lambda name: None,
                    cupy_check=lambda: (Check("cupy", True, "13.6"), True))
    checks = {c.name: c for c in report.checks}
    assert not checks["driver"].ok and "driver version: not supported" in checks["driver"].detail
    assert not report.can_sweep
