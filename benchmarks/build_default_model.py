"""Build the shipped default model, ``models/gemmperf-default.npz``, from all of ../shared/data.

Usage:  python benchmarks/build_default_model.py [--data DIR] [--metrics ACCURACY.json] [-o PATH]

The bundle records the training files with row counts per source and GPU, the training time,
and, given ``--metrics`` (the ``--json`` output of predictor_accuracy.py, measured with the
same estimator configuration), the held-out metrics of every protocol. The model itself is the
Predictor with its default parameters, the configuration the accuracy benchmark measures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from gemmperf._paths import shared_data_dir
from gemmperf.predict.data import describe_sources, load_data
from gemmperf.predict.forest import Predictor
from gemmperf.predict.persist import default_model_path, save_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(shared_data_dir()))
    parser.add_argument("--metrics", help="predictor_accuracy.py --json output to embed")
    parser.add_argument("-o", "--output", default=str(default_model_path()))
    args = parser.parse_args(argv)
    frame = load_data(args.data)
    start = time.perf_counter()
    model = Predictor(n_jobs=-1).fit(frame)
    seconds = time.perf_counter() - start
    metadata = {"training_files": describe_sources(frame), "training_seconds": round(seconds, 1),
                "built_by": "benchmarks/build_default_model.py"}
    if args.metrics:
        with open(args.metrics) as f:
            rows = json.load(f)
        metadata["heldout_metrics"] = [
            {k: r.get(k) for k in ("protocol", "test", "target", "metric", "goal", "ours",
                                   "coverage_80", "width_80", "n_test")} for r in rows]
    path = save_model(model, args.output, metadata=metadata)
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB, {len(frame)} rows, fit {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
