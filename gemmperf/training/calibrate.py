"""Derive the training planner's efficiency calibration from real library-GEMM measurements.

Run ``python -m gemmperf.training.calibrate`` (needs ``../shared/data`` and scipy) to rewrite
``data/training_calibration.json``. The planner only reads that JSON.

GEMM time model (the strict roofline, :func:`gemmperf.roofline.roofline_arrays`, bent by four
fitted numbers)::

    t = t0 + ((t_c / e_c)^q + (t_m / e_m)^q)^(1/q)
    t_c = 2 b m n k / peak          t_m = compulsory DRAM bytes / bandwidth

``e_c`` and ``e_m`` are the fractions of peak FLOP/s and of DRAM bandwidth a library GEMM reaches,
``t0`` the fixed per-call latency (launch, prologue/epilogue, tail) and ``q`` how sharply the
compute and memory limits meet (q -> inf is the hard max of the roofline). The fit minimises
the soft-L1 loss of log(t_model / t_measured) over every measured shape of a GPU.

Sources (``../shared/data``, see its README):

* ``xla_matmul_perf_h100.csv`` -- XLA's bf16 matmul table for sm_90 (H100 SXM peak 989 TFLOP/s
  stated), 375 shapes x 2 table versions;
* ``vidur_gemm_a100_a40.csv.gz`` -- fp16 cuBLAS linear layers of 7 real models, A100 and A40;
* ``kt_vector_add_energy_rtx4000ada.csv`` -- a memory-bound kernel with its power (bandwidth
  efficiency and memory-bound power fraction for non-GEMM kernels).

One parameter set per measured chip (GH100, GA100, GA102) and one pooled set (each GPU weighted
equally) for every other GPU; leave-one-GPU-out errors of the pooled form are recorded so the
table says how well it transfers. No parameter depends on the transformer being planned.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from gemmperf._paths import data_dir, shared_data_dir
from gemmperf.hardware.specs import GpuSpec, get_gpu
from gemmperf.roofline import roofline_arrays

CALIBRATION_FILE = "training_calibration.json"
PARAM_NAMES = ("e_c", "e_m", "t0_s", "q")
_LOWER = (0.05, 0.05, 0.0, 0.5)
_UPPER = (1.0, 1.5, 1e-4, 20.0)


def model_time(params: dict[str, float] | tuple[float, ...], compute_s: Any, memory_s: Any
               ) -> np.ndarray:
    """Calibrated GEMM time from roofline compute and memory times (see module doc)."""
    if isinstance(params, dict):
        e_c, e_m, t0, q = (params[k] for k in PARAM_NAMES)
    else:
        e_c, e_m, t0, q = params
    tc = np.asarray(compute_s, float) / e_c
    tm = np.asarray(memory_s, float) / e_m
    return t0 + (tc ** q + tm ** q) ** (1.0 / q)


# -- loading the measurements ------------------------------------------------------------------

def _xla_h100(folder: Path) -> Any:
    import pandas as pd

    df = pd.read_csv(folder / "xla_matmul_perf_h100.csv")
    df = df[df["dtype"].str.startswith("bf16xbf16")]
    return pd.DataFrame({"gpu": "h100-sxm", "math_key": "bf16", "m": df["m"], "n": df["n"],
                         "k": df["k"], "batch": df["b"], "time_s": df["time_us_derived"] * 1e-6})


def _vidur(folder: Path) -> Any:
    import pandas as pd

    df = pd.read_csv(folder / "vidur_gemm_a100_a40.csv.gz")
    # The SKUs are not stated; the A100's 271 TFLOP/s best case needs the SXM/PCIe 312 peak (both
    # A100 variants share it) and the A40 is a single SKU.
    gpu = df["gpu"].map({"a100": "a100-sxm4-80gb", "a40": "a40"})
    return pd.DataFrame({"gpu": gpu, "math_key": "fp16", "m": df["M"], "n": df["N"], "k": df["K"],
                         "batch": 1, "time_s": df["time_ms_median"] * 1e-3})


def measurements(folder: Path | None = None) -> Any:
    """All library-GEMM timings used for calibration, one frame (gpu, math_key, m, n, k, ...)."""
    import pandas as pd

    folder = folder or shared_data_dir()
    return pd.concat([_xla_h100(folder), _vidur(folder)], ignore_index=True)


def roofline_times(gpu: GpuSpec, math_key: str, m: Any, n: Any, k: Any, batch: Any,
                   element_bytes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(compute time at peak, compulsory-bytes time at full bandwidth) per row."""
    r = roofline_arrays(m, n, k, batch, a_bytes=element_bytes, c_bytes=element_bytes, gpu=gpu,
                        math_key=math_key)
    return np.asarray(r.compute_time_s), np.asarray(r.memory_time_s)


# -- fitting -----------------------------------------------------------------------------------

def _fit(groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Fit one parameter set to (compute_s, memory_s, measured_s) groups, each weighted equally."""
    from scipy.optimize import least_squares

    def residuals(p: np.ndarray) -> np.ndarray:
        parts = []
        for tc, tm, t in groups:
            parts.append(np.log(model_time(tuple(p), tc, tm) / t) / np.sqrt(len(t)))
        return np.concatenate(parts)

    x0 = np.array([0.75, 0.8, 5e-6, 2.0])
    res = least_squares(residuals, x0, bounds=(_LOWER, _UPPER), loss="soft_l1", f_scale=0.05,
                        x_scale=np.array([0.1, 0.1, 1e-6, 0.5]))
    return dict(zip(PARAM_NAMES, (float(v) for v in res.x), strict=True))


def _errors(params: dict[str, float], tc: np.ndarray, tm: np.ndarray, t: np.ndarray
            ) -> dict[str, float]:
    rel = model_time(params, tc, tm) / t - 1.0
    big = tc > 1e-3  # the compute-heavy GEMMs that dominate a training step (> 1 ms at peak)
    out = {"rows": len(t), "median_abs_pct_error": float(100 * np.median(np.abs(rel))),
           "mean_abs_pct_error": float(100 * np.mean(np.abs(rel))),
           "p90_abs_pct_error": float(100 * np.percentile(np.abs(rel), 90)),
           "median_signed_pct_error": float(100 * np.median(rel))}
    if big.any():
        out["rows_over_1ms_at_peak"] = int(big.sum())
        out["median_abs_pct_error_over_1ms"] = float(100 * np.median(np.abs(rel[big])))
    return out


def _memory_bound_kernel(folder: Path) -> dict[str, Any]:
    """Bandwidth efficiency and power fraction of a memory-bound kernel (vector add)."""
    import pandas as pd

    df = pd.read_csv(folder / "kt_vector_add_energy_rtx4000ada.csv")
    best = df.loc[df["time_ms"].idxmin()]
    gpu = get_gpu(str(best["gpu"]))
    # c[i] = a[i] + b[i] on float32: two reads and one write of 4 bytes per element.
    moved = 3 * 4 * float(best["problem_size"])
    achieved = moved / (float(best["time_ms"]) * 1e-3)
    power = df["avg_power_w_derived"].median()
    return {
        "bandwidth_efficiency": achieved / gpu.mem_bandwidth_bytes_s,
        "power_fraction_of_tdp": float(power / gpu.tdp_w),
        "gpu": gpu.key, "achieved_bytes_s": achieved, "median_power_w": float(power),
        "source": "kt_vector_add_energy_rtx4000ada.csv (KernelTuner test data, PowerSensor "
                  "energy): fastest block size of an 80M-element float32 vector add; power is "
                  "the median over block sizes at a locked 1080 MHz core clock",
    }


def derive(folder: Path | None = None) -> dict[str, Any]:
    """Fit every calibration entry from the measurements in ``folder`` (default shared data)."""
    folder = folder or shared_data_dir()
    data = measurements(folder)
    per_gpu: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    keys: dict[str, str] = {}
    for (gpu_key, math_key), grp in data.groupby(["gpu", "math_key"]):
        gpu = get_gpu(gpu_key)
        tc, tm = roofline_times(gpu, math_key, grp["m"].to_numpy(), grp["n"].to_numpy(),
                                grp["k"].to_numpy(), grp["batch"].to_numpy())
        per_gpu[gpu_key] = (tc, tm, grp["time_s"].to_numpy())
        keys[gpu_key] = math_key
    entries = []
    for gpu_key, group in per_gpu.items():
        params = _fit([group])
        gpu = get_gpu(gpu_key)
        entries.append({"gpu": gpu_key, "chip": gpu.chip, "math_key": keys[gpu_key],
                        "params": params, "fit": _errors(params, *group)})
    pooled = _fit(list(per_gpu.values()))
    holdout = {}
    for held in per_gpu:
        params = _fit([g for k, g in per_gpu.items() if k != held])
        holdout[held] = _errors(params, *per_gpu[held])
    return {
        "description": "Efficiency calibration of the training planner, derived by "
                       "gemmperf/training/calibrate.py from real library-GEMM timings; "
                       "t = t0 + ((t_c/e_c)^q + (t_m/e_m)^q)^(1/q) on the strict roofline.",
        "derived_on": date.today().isoformat(),
        "sources": {
            "h100-sxm": "../shared/data/xla_matmul_perf_h100.csv, bf16 rows (ROCm/xla "
                        "matmul_interpolator_data.h, sm_90; SKU not stated, 989 TFLOP/s peak "
                        "implies SXM)",
            "a100-sxm4-80gb": "../shared/data/vidur_gemm_a100_a40.csv.gz, gpu=a100 (fp16 cuBLAS "
                              "via PyTorch, microsoft/vidur profiling data; SKU not stated)",
            "a40": "../shared/data/vidur_gemm_a100_a40.csv.gz, gpu=a40",
        },
        "gemm": entries,
        "gemm_pooled": {"params": pooled, "leave_one_gpu_out": holdout,
                        "applies_to": "every GPU whose chip has no entry above"},
        "memory_bound": _memory_bound_kernel(folder),
        "notes": [
            "16-bit tensor-core GEMMs were measured; fp8 plans reuse the same efficiency "
            "fractions against the fp8 peak (the XLA fp8 rows exceed the dense peak and were not "
            "trusted), tf32/fp32 likewise against their peaks.",
            "An entry applies to every GPU with the same chip (e.g. the GA100 fit to all A100s).",
        ],
    }


def write(path: Path | None = None, folder: Path | None = None,
          echo: Callable[[str], None] = print) -> Path:
    """Derive and write the calibration JSON; returns its path."""
    path = path or data_dir() / CALIBRATION_FILE
    doc = derive(folder)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    for e in doc["gemm"]:
        p, f = e["params"], e["fit"]
        echo(f"{e['gpu']:16s} e_c={p['e_c']:.3f} e_m={p['e_m']:.3f} t0={p['t0_s'] * 1e6:.1f}us "
             f"q={p['q']:.2f}  median |err| {f['median_abs_pct_error']:.1f}% over {f['rows']} "
             "shapes")
    pooled = doc["gemm_pooled"]["params"]
    echo(f"{'pooled':16s} e_c={pooled['e_c']:.3f} e_m={pooled['e_m']:.3f} "
         f"t0={pooled['t0_s'] * 1e6:.1f}us q={pooled['q']:.2f}")
    for gpu, err in doc["gemm_pooled"]["leave_one_gpu_out"].items():
        echo(f"  leave-one-out on {gpu}: median |err| {err['median_abs_pct_error']:.1f}%")
    mb = doc["memory_bound"]
    echo(f"memory-bound kernel: {100 * mb['bandwidth_efficiency']:.1f}% of DRAM bandwidth, "
         f"{100 * mb['power_fraction_of_tdp']:.1f}% of TDP ({mb['gpu']})")
    echo(f"wrote {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="shared data folder")
    parser.add_argument("--out", type=Path, default=None, help="output JSON path")
    args = parser.parse_args(argv)
    write(args.out, args.data)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
