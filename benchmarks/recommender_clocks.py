"""Energy-optimal locked SM clock: calibrate the DVFS power model and check it on measured sweeps.

Reads the power-vs-clock tables in ../shared/data (kt_fp32_power_vs_clock.csv: a compute-bound
FP32 FMA kernel on an A100 PCIe and an RTX A4000; gpuptxmodel_gtxtitanx_dvfs.csv: 24 benchmarks
on a GTX Titan X at its default memory clock), fits the model of gemmperf/tune/power.py per GPU
and prints, for every compute-bound workload, the clock `gemmperf clocks` would pick and what the
measurements say about it, with the GPU's own calibration and with the mean calibration of the
other GPUs (what a GPU without its own calibration gets).

Run: .venv/bin/python benchmarks/recommender_clocks.py [--write]
     --write regenerates data/dvfs_power.json from the fits.
"""

from __future__ import annotations

import argparse
import json
import sys

from gemmperf._paths import data_dir, shared_data_dir
from gemmperf.hardware.specs import get_gpu
from gemmperf.importers import load_dataset
from gemmperf.tune.clocks import check_on_records
from gemmperf.tune.power import calibration_document, fit_dvfs, sweep_tables

FILES = ("kt_fp32_power_vs_clock.csv", "gpuptxmodel_gtxtitanx_dvfs.csv")
#: Record source (importer kind) -> file it came from.
SOURCE_FILES = {"kt_fp32_power": FILES[0], "gpuptxmodel_dvfs": FILES[1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite data/dvfs_power.json")
    args = parser.parse_args(argv)
    paths = [shared_data_dir() / name for name in FILES]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"missing shared data: {', '.join(missing)}", file=sys.stderr)
        return 2
    records = load_dataset(paths)
    fits = {}
    print("DVFS power model fits (sigma = static/TDP, kappa = knee/boost clock, v_knee):")
    for gpu, tables in sweep_tables(records).items():
        spec = get_gpu(gpu)
        kinds = sorted(records.loc[records["gpu"] == gpu, "source"].unique())
        files = ", ".join(f"../shared/data/{SOURCE_FILES.get(k, k)}" for k in kinds)
        params, _ = fit_dvfs(spec, tables, source=f"fit to {files} ({len(tables)} workloads)")
        fits[gpu] = params
        print(f"  {gpu:16s} sigma {params.sigma:.3f}  kappa {params.kappa:.3f} "
              f"(knee {params.kappa * spec.boost_clock_mhz:.0f} MHz)  v_knee {params.v_knee:.3f}"
              f"  activity@peak {params.activity_at_peak:.2f}  rms log error "
              f"{params.rms_log_error:.3f}  ({len(tables)} workloads)")
    if args.write:
        doc = calibration_document(fits, [f"../shared/data/{name}" for name in FILES])
        path = data_dir() / "dvfs_power.json"
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    for leave_out in (False, True):
        table = check_on_records(records, leave_gpu_out=leave_out)
        label = ("mean calibration of the OTHER GPUs (out of sample)" if leave_out
                 else "the GPU's own calibration (in sample: fitted to these sweeps)")
        print(f"\nRecommended clock on measured sweeps, {label}:")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"  median energy at the chosen clock / lowest measured: "
              f"{table['energy_ratio'].median():.3f} (top clock: "
              f"{table['top_clock_energy_ratio'].median():.3f}); median time cost "
              f"{table['time_cost'].median():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
