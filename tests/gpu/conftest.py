"""The real-hardware suite: every test here is marked ``gpu`` and skipped when no GPU is visible.

Run with ``make test-gpu`` (installs the ``gpu`` extra). "Visible" means what ``gemmperf doctor``
requires for a sweep: an NVIDIA driver, NVML, at least one GPU, and cupy able to run kernels.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@cache
def no_gpu_reason() -> str | None:
    """None when a sweep can run on this machine, else why not (from ``gemmperf doctor``)."""
    from gemmperf.collect.device import doctor

    report = doctor()
    return None if report.can_sweep else report.problem


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [item for item in items if HERE in Path(str(item.path)).resolve().parents]
    if not mine:
        return
    reason = no_gpu_reason()
    for item in mine:
        item.add_marker(pytest.mark.gpu)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"no GPU: {reason}"))
