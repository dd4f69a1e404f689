"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemmperf._paths import shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real measurement data folder (../shared/data); skips the test where it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip("../shared/data is not present (a user's clone); real-data tests skipped")
    return path
