"""gemmperf.importers."""
