"""Exception types. Each carries a one-line, actionable message; the CLI prints it and exits 2."""

from __future__ import annotations


class GemmperfError(Exception):
    """Base class for errors gemmperf reports to the user as one line."""


class UnknownGpuError(GemmperfError, KeyError):
    """A GPU name or alias that the spec database does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown GPU"


class InvalidProblemError(GemmperfError, ValueError):
    """A GEMM problem that cannot exist (non-positive sizes, unknown dtype, ...)."""


class InvalidConfigError(GemmperfError, ValueError):
    """A kernel configuration or launch footprint that cannot exist (negative threads, ...)."""


class DataFormatError(GemmperfError, ValueError):
    """An input file that cannot be read as the format it claims to be."""


class BackendUnavailableError(GemmperfError, RuntimeError):
    """A measurement backend whose driver or library is missing on this machine."""


class RecordsPathError(GemmperfError, OSError):
    """A records folder or file that cannot be created or appended to (a file is in the way,
    no permission, not a records file, ...)."""
