"""Speed and memory of `recommend` over a 20,000-config space (target: <= 0.5 s, < 500 MB RSS).

The space: CLBlast Xgemm's parameters with strided access (STRM) also tunable, as in the larger
Xgemm space of Kernel Tuner's A6000 run, which doubles the 17,956 valid configs; the first 20,000
valid ones are ranked. The model: the shipped default bundle, or (when there is none) a bundle
trained here on the RTX 3090 Kernel Tuner cache and saved to a temporary .npz. Ranking runs in a
fresh process that loads the bundle, so the resident-memory figure is that of a recommend process
(imports, model, space, predictions), not of training. Reports the median wall time of several
rankings (space enumeration + prediction + roofline + sort) and the process's peak RSS.

Run: .venv/bin/python benchmarks/recommender_speed.py [--configs 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, statistics, sys, time
from pathlib import Path
from gemmperf.predict.persist import load_model
from gemmperf.problem import GemmProblem
from gemmperf.recommend import rank_space
from gemmperf.spaces.param_space import enumerate_space, load_space_spec
from gemmperf.hardware.specs import get_gpu

model_path, space_path = sys.argv[1], sys.argv[2]
count, repeats = int(sys.argv[3]), int(sys.argv[4])
model = load_model(model_path)
gpu = get_gpu("rtx-3090")
problem = GemmProblem(4096, 4096, 4096, dtype="f32", layout="nt")

def once():
    space = enumerate_space(load_space_spec(space_path), gpu)
    space = space.subset(space.candidates.index[:count])
    return rank_space(space, problem, gpu, model)

once()  # warm-up: data files, caches
times = []
for _ in range(repeats):
    start = time.perf_counter()
    table = once()
    times.append(time.perf_counter() - start)
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"configs": len(table), "median_s": statistics.median(times),
                  "min_s": min(times), "peak_rss_mb": rss_mb}))
"""


def make_space_file(folder: Path) -> Path:
    """The Xgemm space file with STRM in {0, 1}."""
    from gemmperf.spaces.param_space import space_file

    doc = json.loads(space_file("clblast_xgemm").read_text())
    doc["parameters"]["STRM"]["values"] = [0, 1]
    path = folder / "xgemm_strm.json"
    path.write_text(json.dumps(doc))
    return path


def model_bundle(folder: Path) -> Path:
    from gemmperf._paths import shared_data_dir
    from gemmperf.predict.persist import default_model_path, save_model

    default = default_model_path()
    if default.is_file():
        return default
    from gemmperf.importers import import_kernel_tuner
    from gemmperf.predict.forest import Predictor

    cache = shared_data_dir() / "kernel_tuner_xgemm_RTX_3090.json.gz"
    if not cache.exists():
        raise SystemExit(f"no default model and no {cache} to train one on")
    print("no default bundle: training one on the RTX 3090 Kernel Tuner cache", file=sys.stderr)
    model = Predictor(n_jobs=2).fit(import_kernel_tuner([cache]))
    return save_model(model, folder / "bench-model.npz")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = model_bundle(folder)
        space = make_space_file(folder)
        out = subprocess.run([sys.executable, "-c", CHILD, str(model), str(space),
                              str(args.configs), str(args.repeats)],
                             capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return 1
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"ranked {result['configs']:,} configs: median {result['median_s']:.3f} s "
          f"(best {result['min_s']:.3f} s) over {args.repeats} runs; peak RSS "
          f"{result['peak_rss_mb']:.0f} MB (targets: <= 0.5 s, < 500 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
