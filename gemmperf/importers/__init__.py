"""Importers: turn other tools' measurement files into gemmperf records (one schema).

- :func:`import_kernel_tuner`: Kernel Tuner caches (JSON, .json.gz) and CSV exports of them.
- :func:`import_cutlass_profiler`: ``cutlass_profiler --output`` GEMM CSVs.
- :func:`import_table`: library-GEMM tables (XLA, Vidur) and power/energy tables, by header.
- :func:`load_dataset`: any mix of the above and record files, detected by content.

Each returns a DataFrame normalised to :data:`gemmperf.records.COLUMNS`; malformed input raises
:class:`~gemmperf.errors.DataFormatError` naming the file and the problem.
"""

from __future__ import annotations

from gemmperf.importers.cutlass_profiler import import_cutlass_profiler
from gemmperf.importers.dataset import SOURCES, detect_source, load_dataset
from gemmperf.importers.kernel_tuner import import_kernel_tuner
from gemmperf.importers.tables import TABLE_KINDS, detect_table_kind, import_table

__all__ = [
    "SOURCES",
    "TABLE_KINDS",
    "detect_source",
    "detect_table_kind",
    "import_cutlass_profiler",
    "import_kernel_tuner",
    "import_table",
    "load_dataset",
]
