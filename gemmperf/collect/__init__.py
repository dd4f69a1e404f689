"""gemmperf.collect."""
