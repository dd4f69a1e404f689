"""Roofline sanity check against real library GEMM timings (prints markdown tables).

Data (../shared/data, see its README):
* xla_matmul_perf_h100.csv: XLA's measured matmul table for sm_90 (bf16; f32 = TF32 on tensor cores;
  three fp8 combinations, reported separately because 87 rows exceed the dense FP8 peak);
* vidur_gemm_a100_a40.csv.gz: fp16 cuBLAS linear layers on A100 and A40 (Vidur profiling).

For every candidate SKU it checks which specs the measurements rule out (measured FLOP/s above the
dense peak, or compulsory bytes moved faster than the DRAM bandwidth), then, for the chosen SKU,
reports the fraction of rows whose measured time is at or above the roofline's strict lower bound
and the p5/p50/p95 of measured/bound and measured/estimate.

Run: .venv/bin/python benchmarks/roofline_sanity.py
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from gemmperf._paths import shared_data_dir
from gemmperf.hardware.specs import get_gpu
from gemmperf.roofline_frame import roofline_frame

# XLA's dtype strings -> (gemmperf dtype, output dtype). "f32" in XLA's table runs as TF32.
XLA_DTYPES = {
    "bf16xbf16->bf16": ("bf16", "bf16"),
    "f32xf32->f32": ("tf32", "f32"),
    "f8e4m3fnxf8e4m3fn->bf16": ("fp8", "bf16"),
    "f8e4m3fnxf8e5m2->bf16": ("fp8", "bf16"),
    "f8e5m2xf8e4m3fn->bf16": ("fp8", "bf16"),
}
H100_CANDIDATES = ("h100-sxm", "h100-nvl", "h100-pcie")
A100_CANDIDATES = ("a100-sxm4-80gb", "a100-pcie-80gb", "a100-sxm4-40gb", "a100-pcie-40gb")


def load_xla(folder) -> pd.DataFrame:
    raw = pd.read_csv(folder / "xla_matmul_perf_h100.csv")
    mapped = raw["dtype"].map(XLA_DTYPES)
    return pd.DataFrame({
        "m": raw["m"], "n": raw["n"], "k": raw["k"], "batch": raw["b"],
        "dtype": mapped.str[0], "out_dtype": mapped.str[1], "xla_dtype": raw["dtype"],
        "time_s": raw["time_us_derived"] * 1e-6,
    })


def load_vidur(folder) -> pd.DataFrame:
    raw = pd.read_csv(folder / "vidur_gemm_a100_a40.csv.gz")
    return pd.DataFrame({
        "gpu_family": raw["gpu"], "m": raw["M"], "n": raw["N"], "k": raw["K"], "batch": 1,
        "dtype": "f16", "time_s": raw["time_ms_median"] * 1e-3,
        "time_min_s": raw["time_ms_min"] * 1e-3,
    })


def table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def quantiles(x: pd.Series) -> str:
    q = np.quantile(x, [0.05, 0.5, 0.95])
    return " / ".join(f"{v:.3g}" for v in q)


def sku_table(df: pd.DataFrame, candidates: tuple[str, ...], title: str) -> None:
    """Which candidate SKUs the measurements rule out."""
    print(f"### {title}: which SKU?\n")
    rows = []
    for key in candidates:
        gpu = get_gpu(key)
        est = roofline_frame(df, gpu=gpu)
        flops_s = est["flops"] / df["time_s"]
        bytes_s = est["compulsory_bytes"] / df["time_s"]
        over_peak = (flops_s > est["peak_flops_s"]).mean()
        over_bw = (bytes_s > gpu.mem_bandwidth_bytes_s).mean()
        rows.append([key, f"{est['peak_flops_s'].max() / 1e12:,.1f}",
                     f"{gpu.mem_bandwidth_bytes_s / 1e12:.3f}", f"{flops_s.max() / 1e12:,.1f}",
                     f"{bytes_s.max() / 1e12:.3f}", pct(over_peak), pct(over_bw),
                     pct((df["time_s"] < est["lower_bound_s"]).mean())])
    table(["SKU", "peak TFLOP/s", "DRAM TB/s", "max measured TFLOP/s", "max compulsory TB/s",
           "rows > peak", "rows > DRAM BW", "rows below bound"], rows)
    consistent = [r[0] for r in rows if r[5] == r[6] == pct(0)]
    ruled_out = [r[0] for r in rows if r[0] not in consistent]
    print(f"consistent with the measurements: {', '.join(consistent) or 'none'}"
          + (f"; ruled out: {', '.join(ruled_out)}" if ruled_out else "") + "\n")


def check(df: pd.DataFrame, key: str, groups: str, time_col: str = "time_s") -> list[list[str]]:
    """Rows per group: count, share at/above bound, measured/bound and measured/estimate."""
    est = roofline_frame(df, gpu=get_gpu(key))
    out = []
    for name, idx in df.groupby(groups, sort=False).groups.items():
        t, e = df.loc[idx, time_col], est.loc[idx]
        out.append([f"{name}", key, f"{len(idx):,}", pct((t >= e["lower_bound_s"]).mean()),
                    quantiles(t / e["lower_bound_s"]), quantiles(t / e["estimate_s"]),
                    pct((e["bound"] == "memory").mean())])
    return out


HEADER = ["data", "SKU", "rows", "at/above bound", "measured/bound p5/p50/p95",
          "measured/estimate p5/p50/p95", "memory-bound rows"]


def below_bound(df: pd.DataFrame, key: str, time_col: str = "time_s", limit: int = 8) -> None:
    est = roofline_frame(df, gpu=get_gpu(key))
    bad = df[df[time_col] < est["lower_bound_s"]]
    if bad.empty:
        return
    ratio = (bad[time_col] / est.loc[bad.index, "lower_bound_s"]).rename("measured/bound")
    print(f"{len(bad)} rows below the bound on {key} (worst {limit}):\n")
    print(pd.concat([bad, ratio, est.loc[bad.index, ["bound"]]], axis=1)
          .sort_values("measured/bound").head(limit).to_string())
    print()


def main() -> int:
    folder = shared_data_dir()
    if not folder.is_dir():
        print(f"skipped: {folder} is absent (the real data lives beside the repository)")
        return 0

    xla = load_xla(folder)
    main_rows = xla[xla["dtype"] != "fp8"]
    fp8 = xla[xla["dtype"] == "fp8"]
    print("## XLA matmul table (H100)\n")
    sku_table(main_rows, H100_CANDIDATES, "bf16 and TF32 rows")
    print("Assumed: h100-sxm. The table's own nominal_dense_peak_tflops (989.4 bf16, 494.7 f32)\n"
          "are the SXM peaks; the NVL card is not excluded by the timings alone.\n")
    table(HEADER, check(main_rows, "h100-sxm", "xla_dtype") + check(fp8, "h100-sxm", "xla_dtype"))
    below_bound(main_rows, "h100-sxm")
    fp8_est = roofline_frame(fp8, gpu=get_gpu("h100-sxm"))
    over_peak = fp8_est["flops"] / fp8["time_s"] > fp8_est["peak_flops_s"]
    over_bw = fp8_est["compulsory_bytes"] / fp8["time_s"] > fp8_est["mem_bandwidth_bytes_s"]
    below = fp8["time_s"] < fp8_est["lower_bound_s"]
    print(f"fp8 (suspect): of {len(fp8)} rows, {int(over_peak.sum())} exceed the dense FP8 peak "
          f"({fp8_est['peak_flops_s'].iloc[0] / 1e12:,.1f} TFLOP/s), "
          f"{int((over_bw & ~over_peak).sum())} more move their compulsory bytes faster than "
          f"DRAM ({fp8_est['mem_bandwidth_bytes_s'].iloc[0] / 1e12:.3f} TB/s); "
          f"below-bound rows not explained by either: {int((below & ~over_peak & ~over_bw).sum())}"
          "\n")

    vidur = load_vidur(folder)
    a100 = vidur[vidur["gpu_family"] == "a100"]
    a40 = vidur[vidur["gpu_family"] == "a40"]
    print("## Vidur fp16 linear layers (A100, A40)\n")
    sku_table(a100, A100_CANDIDATES, "A100")
    print("Vidur's A100 device config says 80 GB; the 80 GB SXM and PCIe cards differ only in\n"
          "bandwidth, which no row reaches, so both are reported below.\n")
    sku_table(a40, ("a40",), "A40")
    rows = []
    for frame, key in ((a100, "a100-sxm4-80gb"), (a100, "a100-pcie-80gb"), (a40, "a40")):
        rows += check(frame, key, "gpu_family")
        rows += [[f"{r[0]} (min time)", *r[1:]] for r in
                 check(frame, key, "gpu_family", time_col="time_min_s")]
    table(HEADER, rows)
    for frame, key in ((a100, "a100-pcie-80gb"), (a40, "a40")):
        below_bound(frame, key, "time_min_s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
