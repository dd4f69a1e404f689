"""gemmperf.predict."""
