"""gemmperf.training."""
