"""Importers on the real measurement files in ../shared/data (skipped where it is absent)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gemmperf.importers import (
    detect_source,
    import_kernel_tuner,
    import_table,
)
from gemmperf.importers.tables import match_sku
from gemmperf.records import COLUMNS, params_frame

# Real data: each file parsed once per session.


@pytest.fixture(scope="session")
def real(shared_data):
    cache: dict[str, pd.DataFrame] = {}

    def load(name: str) -> pd.DataFrame:
        if name not in cache:
            path = shared_data / name
            if name.startswith("kernel_tuner_") or name.startswith("kt_gemm_"):
                cache[name] = import_kernel_tuner(path)
            else:
                cache[name] = import_table(path)
        return cache[name]

    return load


KT_FILES = [
    # file, configs, device key, README best ms (mean time) and worst/best ratio
    ("kernel_tuner_xgemm_RTX_2080_Ti.json.gz", 17_956, "rtx-2080-ti", 11.48, 18.1),
    ("kernel_tuner_xgemm_RTX_3090.json.gz", 17_956, "rtx-3090", 5.66, 17.0),
    ("kernel_tuner_xgemm_RTX_3060_laptop.json.gz", 10_000, "rtx-3060-laptop", 22.62, 11.7),
]


@pytest.mark.shared_data
@pytest.mark.parametrize(("name", "configs", "gpu", "best_ms", "spread"), KT_FILES)
def test_kernel_tuner_caches_match_the_readme(real, name, configs, gpu, best_ms, spread):
    frame = real(name)
    assert len(frame) == configs
    assert list(frame.columns) == list(COLUMNS)
    assert (frame["status"] == "ok").all()
    assert (frame[["m", "n", "k"]] == 4096).all().all()  # K solved from the cache's GFLOP/s
    assert set(frame["dtype"]) == {"f32"} and set(frame["layout"]) == {"nt"}
    assert set(frame["family"]) == {"clblast_xgemm"} and set(frame["kernel_name"]) == {"Xgemm"}
    assert set(frame["gpu"]) == {gpu}
    assert (frame["repeats"] == 32).all()
    mean_ms = frame["runtime_mean_s"] * 1e3
    assert round(mean_ms.min(), 2) == best_ms
    assert round(mean_ms.max() / mean_ms.min(), 1) == spread
    params = params_frame(frame)
    assert (frame["tile_m"] == params["MWG"]).all() and (frame["tile_k"] == params["KWG"]).all()
    assert (frame["threads_per_block"] == params["MDIMC"] * params["NDIMC"]).all()
    assert (frame["runtime_min_s"] <= frame["runtime_s"]).all()
    assert (frame["runtime_s"] <= frame["runtime_max_s"]).all()


@pytest.mark.shared_data
def test_kernel_tuner_known_config_statistics(real):
    frame = real("kernel_tuner_xgemm_RTX_2080_Ti.json.gz")
    params = params_frame(frame)
    pick = dict(MWG=16, NWG=16, KWG=32, MDIMC=8, NDIMC=8, MDIMA=8, NDIMB=8, KWI=2, VWM=1, VWN=1,
                STRM=0, STRN=0, SA=0, SB=0, PRECISION=32)
    mask = np.logical_and.reduce([params[k] == v for k, v in pick.items()])
    row = frame[mask].iloc[0]
    # statistics.median / stdev of the entry's 32 "times" (ms), computed outside gemmperf
    assert row["runtime_s"] == pytest.approx(60.88689599999999e-3, rel=1e-12)
    assert row["runtime_mean_s"] == pytest.approx(60.880553000000006e-3, rel=1e-12)
    assert row["runtime_min_s"] == pytest.approx(59.962016e-3, rel=1e-12)
    assert row["runtime_max_s"] == pytest.approx(61.581151999999996e-3, rel=1e-12)
    assert row["runtime_std_s"] == pytest.approx(0.3326695207478143e-3, rel=1e-9)
    assert row["device_name"] == "NVIDIA GeForce RTX 2080 Ti"
    assert row["compute_capability"] == "7.5"


@pytest.mark.shared_data
def test_kernel_tuner_csv_export_a6000(real):
    frame = real("kt_gemm_milo_A6000_partial.csv.gz")
    assert len(frame) == 4214
    assert set(frame["gpu"]) == {"rtx-a6000"}
    assert (frame[["m", "n", "k"]] == 4096).all().all()  # cube side solved from gflops and time
    assert set(frame["tile_k"]) == {16, 32}
    first = frame.iloc[0]
    assert first["runtime_s"] == pytest.approx(11.358144e-3)  # time_ms (a mean) of data row 1
    assert first["runtime_std_s"] == pytest.approx(0.594445e-3)
    assert json.loads(first["params"])["GEMMK"] == 0 and json.loads(first["params"])["KREG"] == 1
    assert first["timestamp"] == "2025-03-11 23:33:26.333798+00:00"
    assert frame["runtime_iqr_s"].isna().all()  # no per-run times in a CSV export


@pytest.mark.shared_data
def test_vidur_table(real):
    frame = real("vidur_gemm_a100_a40.csv.gz")
    assert len(frame) == 58_440
    assert set(frame["family"]) == {"cublas"} and set(frame["dtype"]) == {"f16"}
    assert frame.groupby("device_name")["gpu"].unique().map(list).to_dict() == {
        "a100": ["a100-sxm4-80gb"], "a40": ["a40"]}
    params = params_frame(frame)
    assert (frame["m"] == params["num_tokens"]).all()
    row = frame[(frame["device_name"] == "a40") & (params["model"] == "meta-llama/Llama-2-7b-hf")
                & (params["op"] == "mlp_up_proj") & (params["num_tokens"] == 1024)
                & (params["tp"] == 2)].iloc[0]
    assert (row["m"], row["n"], row["k"]) == (1024, 11008, 4096)
    assert row["runtime_s"] == pytest.approx(0.878e-3)
    assert row["runtime_min_s"] == pytest.approx(0.861e-3)
    assert row["runtime_max_s"] == pytest.approx(0.879e-3)
    assert row["layout"] == "tn"


@pytest.mark.shared_data
def test_xla_table(real):
    frame = real("xla_matmul_perf_h100.csv")
    assert len(frame) == 2625
    assert len(frame[["batch", "m", "n", "k"]].drop_duplicates()) == 375
    assert set(frame["dtype"]) == {"bf16", "tf32", "fp8"}
    assert frame.groupby("dtype").size().to_dict() == {"bf16": 750, "fp8": 1125, "tf32": 750}
    assert set(frame["gpu"]) == {"h100-sxm"}  # SKU picked by matching the nominal peaks
    params = params_frame(frame)
    assert int(params["exceeds_peak"].sum()) == 87
    # Each fp8 block has rows above the dense peak: all of it is suspect, nothing else.
    assert frame.groupby("dtype")["status"].unique().map(list).to_dict() == {
        "bf16": ["ok"], "fp8": ["suspect"], "tf32": ["ok"]}
    reasons = frame.loc[frame["status"] == "suspect", "reason"]
    assert reasons.str.contains("above the dense peak").all()
    row = frame[(frame["batch"] == 2) & (frame["m"] == 1024) & (frame["n"] == 2048)
                & (frame["k"] == 512) & (frame["dtype"] == "tf32")
                & (params["table_version"].str.contains("ea2c45f"))].iloc[0]
    assert row["runtime_s"] == pytest.approx(21.809e-6)
    assert row["out_dtype"] == "f32"


@pytest.mark.shared_data
def test_training_data_leaves_suspect_rows_out_and_says_so(shared_data):
    from gemmperf.predict.data import load_data

    with pytest.warns(UserWarning, match="1,125 rows with status 'suspect' left out"):
        frame = load_data([shared_data / "xla_matmul_perf_h100.csv"])
    assert len(frame) == 1500 and set(frame["dtype"]) == {"bf16", "tf32"}


def test_match_sku_uses_peaks_not_just_the_name():
    sxm = {"bf16": 989.4e12, "tf32": 494.7e12}
    assert match_sku("H100", sxm) == "h100-sxm"
    assert match_sku("H100", {"bf16": 756e12}) == "h100-pcie"
    assert match_sku("H100", {"bf16": 1.0e12}) is None


@pytest.mark.shared_data
def test_power_and_energy_tables(real):
    fma = real("kt_fp32_power_vs_clock.csv")
    assert len(fma) == 101
    assert fma.groupby("gpu").size().to_dict() == {"a100-pcie-40gb": 91, "rtx-a4000": 10}
    assert set(fma["family"]) == {"fp32_fma_bench"}
    first = fma.iloc[0]
    assert first["power_w"] == pytest.approx(153.601) and first["sm_clock_mhz"] == 1410
    assert json.loads(first["params"])["flops"] == 3_710_851_743_744
    dvfs = real("gpuptxmodel_gtxtitanx_dvfs.csv")
    assert len(dvfs) == 800 and set(dvfs["gpu"]) == {"gtx-titan-x"}
    params = params_frame(dvfs)
    # README: 25 benchmarks; stencil2d appears twice per clock pair (two variants, one name)
    assert params["benchmark"].nunique() == 24
    assert (params["benchmark"] == "stencil2d").sum() == 64
    assert not dvfs.assign(i=params["instance"]).duplicated(
        ["kernel_name", "sm_clock_mhz", "mem_clock_mhz", "i"]).any()
    # energy (mJ -> J) agrees with power x time, so the units were converted consistently
    assert np.allclose(dvfs["energy_j"], dvfs["power_w"] * dvfs["runtime_s"], rtol=0.02)
    gemm = dvfs[(params["benchmark"] == "gemm") & (dvfs["mem_clock_mhz"] == 3505)
                & (dvfs["sm_clock_mhz"] == 1164)].iloc[0]
    assert gemm["runtime_s"] == pytest.approx(5.704132e-3)
    assert gemm["energy_j"] == pytest.approx(1.274628174)
    vadd = real("kt_vector_add_energy_rtx4000ada.csv")
    assert len(vadd) == 15 and set(vadd["gpu"]) == {"rtx-4000-ada"}
    assert vadd["energy_j"].notna().all() and vadd["temperature_c"].notna().all()


@pytest.mark.shared_data
def test_load_dataset_detects_every_shared_file(shared_data):
    kinds = {p.name: detect_source(p) for p in sorted(shared_data.iterdir())
             if not p.name.endswith(".md")}
    assert kinds == {
        "gpuptxmodel_gtxtitanx_dvfs.csv": "table",
        "kernel_tuner_xgemm_RTX_2080_Ti.json.gz": "kernel_tuner",
        "kernel_tuner_xgemm_RTX_3060_laptop.json.gz": "kernel_tuner",
        "kernel_tuner_xgemm_RTX_3090.json.gz": "kernel_tuner",
        "kt_fp32_power_vs_clock.csv": "table",
        "kt_gemm_milo_A6000_partial.csv.gz": "kernel_tuner",
        "kt_vector_add_energy_rtx4000ada.csv": "table",
        "vidur_gemm_a100_a40.csv.gz": "table",
        "xla_matmul_perf_h100.csv": "table",
    }


# ---------------------------------------------------------------------------------------------
# CUTLASS profiler (format fixtures; see tests/fixtures/README.md)
