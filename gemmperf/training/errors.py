"""Errors of the training planner: one-line, actionable (the CLI prints them and exits 2)."""

from __future__ import annotations

from gemmperf.errors import GemmperfError


class ArchConfigError(GemmperfError, ValueError):
    """An architecture config with unknown, missing or inconsistent fields."""


class PlanError(GemmperfError, ValueError):
    """A training plan that cannot be built as asked (bad parallelism, batch, budget, ...)."""


class DoesNotFitError(PlanError):
    """The model state and activations do not fit in GPU memory under any allowed layout."""
