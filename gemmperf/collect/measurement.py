"""One plan item measured into a record row: compile, time (warm-up, repeats), verify against
the reference, check the time is physically possible, read power and clocks over a window of
back-to-back launches, and say whether the CUDA context survived. Failures are rows too (the
statuses in :mod:`gemmperf.collect.sweep`); the sweep and the autotuner
(:mod:`gemmperf.tune.measure`) both measure through :func:`measure_item`."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from gemmperf.collect.backend import CompileError, LaunchError
from gemmperf.collect.power import PowerReading, PowerSettings, window_launches
from gemmperf.collect.rig import Rig
from gemmperf.collect.space import PlanItem
from gemmperf.collect.timing import MeasurementTimeout, Timing, TimingSettings, measure_runtime
from gemmperf.plausibility import implausible_reason
from gemmperf.records import COLUMNS, Record, utc_now

if TYPE_CHECKING:
    from gemmperf.collect.sweep import SweepOptions


def max_sm_clock(meter: Any) -> float | None:
    """The GPU's maximum SM clock from the power meter's sensor, where it reports one."""
    read = getattr(getattr(meter, "sensor", None), "max_sm_clock_mhz", None)
    if read is None:
        return None
    try:
        value = float(read())
    except Exception:  # an unsupported NVML query: the check falls back to the quoted clock
        return None
    return value if value > 0 else None


def _base_row(rig: Rig, item: PlanItem, status: str, reason: str | None) -> dict[str, Any]:
    problem, config, device = item.problem, item.config, rig.device
    return {
        "source": rig.source,
        "status": status,
        "reason": reason,
        "m": problem.m, "n": problem.n, "k": problem.k, "batch": problem.batch,
        "dtype": problem.dtype, "acc_dtype": problem.acc_dtype,
        "out_dtype": problem.out_dtype, "layout": problem.layout,
        "family": config.family,
        **{name: getattr(config, name) for name in config.COMMON},
        "params": config.param_dict,
        "gpu": device.gpu_key,
        "device_name": device.name,
        "compute_capability": device.cc_text,
        "driver_version": device.driver_version,
        "device_uuid": device.uuid,
        **rig.fields,
    }


def _timing_fields(timing: Timing, settings: TimingSettings) -> dict[str, Any]:
    return {
        "runtime_s": timing.median_s,
        "runtime_iqr_s": timing.iqr_s,
        "runtime_min_s": timing.min_s,
        "runtime_max_s": timing.max_s,
        "runtime_mean_s": timing.mean_s,
        "runtime_std_s": timing.std_s,
        "repeats": timing.repeats,
        "window_s": timing.window_s,
        "l2_flush": timing.l2_flush,
        "launches_per_sample": timing.launches_per_sample,
        "warmup": settings.warmup,
        "min_window_s": settings.min_window_s,
    }


def _power_fields(reading: PowerReading, settings: PowerSettings) -> dict[str, Any]:
    return {
        "power_w": reading.power_w,
        "energy_j": reading.energy_j,
        "idle_power_w": reading.idle_power_w,
        "power_method": reading.method,
        "power_note": reading.note,
        "power_window_s": reading.window_wall_s,
        "power_samples": reading.samples,
        "sm_clock_mhz": reading.sm_clock_mhz,
        "mem_clock_mhz": reading.mem_clock_mhz,
        "temperature_c": reading.temperature_c,
        "power_limit_w": reading.power_limit_w,
        "throttle_reasons": reading.throttle_reasons,
        "throttled": reading.throttled,
    }


def finish_row(row: dict[str, Any]) -> dict[str, Any]:
    """Validate the schema fields through :class:`Record`; extra measurement fields follow."""
    known = {k: v for k, v in row.items() if k in COLUMNS}
    record = Record(**known)
    # Record.to_dict() deep-copies through dataclasses.asdict (~0.5 ms); the fields are flat.
    out = {name: getattr(record, name) for name in COLUMNS}
    out["params"] = dict(record.params)
    out["timestamp"] = out["timestamp"] or utc_now()
    out.update({k: v for k, v in row.items() if k not in COLUMNS})
    return out


def _context_lost(rig: Rig) -> bool:
    """After a failure: does the device still work? A sticky CUDA error (illegal address,
    launch failure) makes every later call fail, so synchronising raises again."""
    try:
        rig.timer.synchronize()
    except KeyboardInterrupt:
        raise
    except Exception:
        return True
    return False


def measure_item(rig: Rig, item: PlanItem, options: SweepOptions) -> tuple[dict[str, Any], bool]:
    """Measure one plan item into a record row; the flag says the CUDA context is lost."""
    if item.invalid_reason is not None:
        return finish_row(_base_row(rig, item, "invalid", item.invalid_reason)), False
    backend = rig.backends[item.config.family]
    try:
        prepared = backend.prepare(item.problem, item.config)
    except CompileError as exc:
        return finish_row(_base_row(rig, item, "compile_error", str(exc))), False
    except LaunchError as exc:
        row = _base_row(rig, item, "launch_error", str(exc))
        return finish_row(row), exc.fatal or _context_lost(rig)
    except Exception as exc:  # an unexpected backend failure must not end a long sweep
        row = _base_row(rig, item, "launch_error", f"{type(exc).__name__}: {exc}")
        return finish_row(row), _context_lost(rig)
    row = _base_row(rig, item, "ok", None)
    row["kernel_name"] = getattr(prepared, "kernel_name", None)
    # What the driver reports for the loaded kernel (cupy backends): occupancy features. Kept
    # out of the config columns, which key resume and shards.
    for name, value in (getattr(prepared, "kernel_attributes", None) or {}).items():
        row[f"kernel_{name}"] = value
    fatal = False
    try:
        launch_many = getattr(prepared, "launch_many", None)
        timing = measure_runtime(
            prepared.launch, rig.timer, options.timing, launch_many=launch_many
        )
        row.update(_timing_fields(timing, options.timing))
        check = prepared.verify()
        row["max_rel_error"] = check.max_rel_error
        if not check.ok:
            row["status"] = "wrong_result"
            row["reason"] = (
                f"max relative error {check.max_rel_error:.3g} exceeds {check.tolerance:.3g}"
            )
        elif (implausible := implausible_reason(timing.median_s, item.problem, rig.spec,
                                                max_sm_clock(rig.meter))) is not None:
            row.update(status="suspect", reason=implausible)
        elif rig.meter is not None and options.power is not None:
            launches = window_launches(timing.median_s, options.power.window_s)

            def run() -> int:
                if launch_many is not None:
                    launch_many(launches)
                else:
                    for _ in range(launches):
                        prepared.launch()
                rig.timer.synchronize()
                return launches

            row.update(_power_fields(rig.meter.measure(run, timing.median_s), options.power))
    except MeasurementTimeout as exc:
        row.update(status="timeout", reason=str(exc))
    except LaunchError as exc:
        row.update(status="launch_error", reason=str(exc))
        fatal = exc.fatal or _context_lost(rig)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        row.update(status="launch_error", reason=f"{type(exc).__name__}: {exc}")
        fatal = _context_lost(rig)
    finally:
        with contextlib.suppress(Exception):
            prepared.release()
    if row["status"] in ("timeout", "launch_error"):
        for name in [k for k in row if k.startswith("runtime_")]:
            row[name] = None
    return finish_row(row), fatal
