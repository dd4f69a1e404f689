"""Optional clock lock and power limit for a sweep, always restored.

Locked clocks remove boost variation between configs (and between runs), at the cost of
measuring a clock the GPU would not pick by itself; a lower power limit studies energy
efficiency. Both need root on most systems. The applied values are recorded with each record.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any

from gemmperf.collect.nvml import PowerSensor, SensorUnsupported
from gemmperf.errors import GemmperfError


def check_clock_lock(
    mhz: float, max_mhz: float | None, *, label: str = "clock lock", gpu: str = "this GPU",
    limit: str = "maximum SM clock",
) -> None:
    """Raise unless the SM clock can be locked to ``mhz``: positive and, when the GPU's
    ``limit`` (``max_mhz``) is known, not above it. ``label`` names the value in the message."""
    if not mhz > 0:
        raise GemmperfError(f"{label} must be a positive SM clock in MHz, got {mhz:g}")
    if max_mhz is not None and mhz > max_mhz:
        raise GemmperfError(f"{label} {mhz:g} MHz is above {gpu}'s {limit} of {max_mhz:g} MHz")


class DeviceControl:
    """Optional clock lock and power limit, applied on enter and restored on exit.

    Restoration also runs on Ctrl-C (KeyboardInterrupt unwinds through ``__exit__``) and on
    SIGTERM (turned into KeyboardInterrupt while the context is active); further signals are
    ignored while restoring so that a second Ctrl-C cannot leave the GPU locked. ``kill -9``
    cannot be caught: reset with ``nvidia-smi -rgc`` and ``nvidia-smi -pl <default>``.

    A clock lock above the GPU's maximum SM clock is refused before anything is applied. The
    maximum comes from the sensor's optional ``max_sm_clock_mhz()`` (NVML's own figure), else
    from ``max_clock_mhz`` (a limit from the spec); with neither, only positivity is checked.
    """

    def __init__(
        self,
        sensor: PowerSensor,
        *,
        lock_clocks_mhz: int | None = None,
        power_limit_w: float | None = None,
        max_clock_mhz: float | None = None,
    ) -> None:
        self.sensor = sensor
        self.lock_clocks_mhz = lock_clocks_mhz
        self.power_limit_w = power_limit_w
        self.max_clock_mhz = max_clock_mhz
        self._clocks_locked = False
        self._previous_limit_w: float | None = None
        self._previous_sigterm: Any = None

    def check(self) -> None:
        """Raise :class:`GemmperfError` if the clock lock or power limit is outside what the
        GPU accepts; reads the sensor only (a dry run checks what the sweep would apply)."""
        if self.lock_clocks_mhz is not None:
            max_mhz, limit = self._max_clock()
            check_clock_lock(self.lock_clocks_mhz, max_mhz, limit=limit)
        if self.power_limit_w is not None:
            low, high = self.sensor.power_limit_range_w()
            if not low <= self.power_limit_w <= high:
                raise GemmperfError(
                    f"power limit {self.power_limit_w:g} W is outside this GPU's range "
                    f"{low:g}-{high:g} W"
                )

    def __enter__(self) -> DeviceControl:
        self.check()
        self._install_sigterm()
        try:
            if self.power_limit_w is not None:
                self._previous_limit_w = self.sensor.power_management_limit_w()
                self.sensor.set_power_limit_w(self.power_limit_w)
            if self.lock_clocks_mhz is not None:
                self.sensor.set_locked_clocks(self.lock_clocks_mhz, self.lock_clocks_mhz)
                self._clocks_locked = True
        except BaseException:
            self.restore()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def _max_clock(self) -> tuple[float | None, str]:
        """The highest SM clock the GPU runs at, and what that figure is."""
        read = getattr(self.sensor, "max_sm_clock_mhz", None)  # optional sensor method
        if read is not None:
            with contextlib.suppress(SensorUnsupported):
                return float(read()), "maximum SM clock"
        return self.max_clock_mhz, "spec-derived SM clock limit"

    def restore(self) -> None:
        """Undo what was applied (idempotent, signal-shielded)."""
        shield = _SignalShield()
        with shield:
            if self._clocks_locked:
                self.sensor.reset_locked_clocks()
                self._clocks_locked = False
            if self._previous_limit_w is not None:
                self.sensor.set_power_limit_w(self._previous_limit_w)
                self._previous_limit_w = None
        self._uninstall_sigterm()

    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_sigterm(signum: int, frame: object) -> None:
            # Unwind like Ctrl-C, so __exit__ restores and the sweep ends as "interrupted".
            raise KeyboardInterrupt(f"signal {signum}")

        self._previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    def _uninstall_sigterm(self) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None


class _SignalShield:
    """Ignore SIGINT/SIGTERM inside the block (main thread only), then re-deliver nothing."""

    def __enter__(self) -> None:
        self._saved: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, signal.SIG_IGN)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
