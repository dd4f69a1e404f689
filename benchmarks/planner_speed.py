"""Speed and memory of the training planner: a 400B-class plan across 10 GPU types.

Run: ``python benchmarks/planner_speed.py``. Target (issue): <= 2 s for the ten plans, under
500 MB resident. Times the first (cold: GEMM-time caches empty) and a second (warm) sweep; each
plan includes the full layout search. Plans that cannot fit in memory count as evaluated (the
search ran to the end to prove it). The one-off process start-up -- importing the predictor
stack (scikit-learn) and loading a model bundle if one ships -- is timed separately: it is paid
once per process, not per plan.
"""

from __future__ import annotations

import resource
import sys
import time

from gemmperf.training.errors import DoesNotFitError
from gemmperf.training.planner import plan_training

ARCH = "llama-3.1-405b"
GPUS = ("a100-sxm4-40gb", "a100-sxm4-80gb", "a100-pcie-80gb", "h100-pcie", "h100-sxm",
        "h100-nvl", "h200-sxm", "b200", "gb200", "l40s")
NUM_GPUS = 2048
TOKENS = 15e12
TARGET_S = 2.0
TARGET_RSS_MB = 500.0


def sweep() -> tuple[float, list[str]]:
    start = time.perf_counter()
    lines = []
    for gpu in GPUS:
        t0 = time.perf_counter()
        try:
            plan = plan_training(ARCH, gpu=gpu, num_gpus=NUM_GPUS, tokens=TOKENS)
            what = (f"{plan.parallelism.describe():38s} MFU {plan.mfu:5.1%}  "
                    f"{plan.days:7.1f} days  {plan.energy_mwh:9,.0f} MWh")
        except DoesNotFitError:
            what = "does not fit in memory"
        lines.append(f"  {gpu:16s} {what}  ({time.perf_counter() - t0:.3f} s)")
    return time.perf_counter() - start, lines


def main() -> int:
    from gemmperf.training import costmodel

    t0 = time.perf_counter()
    costmodel._predictor()  # import the predictor stack / load the bundle once per process
    startup = time.perf_counter() - t0
    cold, lines = sweep()
    warm, _ = sweep()
    print(f"{ARCH} on {NUM_GPUS} GPUs, {TOKENS:.3g} tokens, {len(GPUS)} GPU types:")
    print("\n".join(lines))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(f"process start-up (predictor import) {startup:.2f} s; "
          f"cold sweep {cold:.2f} s, warm sweep {warm:.2f} s (target <= {TARGET_S:.0f} s); "
          f"peak RSS {rss_mb:.0f} MB (target < {TARGET_RSS_MB:.0f} MB)")
    ok = cold <= TARGET_S and rss_mb < TARGET_RSS_MB
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
