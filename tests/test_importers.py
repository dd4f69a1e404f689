"""Importers: real measurement files (../shared/data), format fixtures, and malformed input."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gemmperf.cli as cli
from gemmperf.errors import DataFormatError, UnknownGpuError
from gemmperf.importers import (
    detect_source,
    detect_table_kind,
    import_cutlass_profiler,
    import_kernel_tuner,
    import_table,
    load_dataset,
)
from gemmperf.importers.tables import match_sku
from gemmperf.records import COLUMNS, params_frame, read_records, write_frame

FIXTURES = Path(__file__).parent / "fixtures"
CUTLASS_V2 = FIXTURES / "cutlass_profiler_v2.gemm.csv"
CUTLASS_V3 = FIXTURES / "cutlass_profiler_v3.gemm.csv"


def run_cli(*argv: str) -> int:
    """``gemmperf import ...`` through the real entry point (only this subcommand registered)."""
    return cli.main(["import", *argv])


@pytest.fixture(autouse=True)
def _only_import_command(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("gemmperf.cli.importers",))


# ---------------------------------------------------------------------------------------------
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
    row = frame[(frame["batch"] == 2) & (frame["m"] == 1024) & (frame["n"] == 2048)
                & (frame["k"] == 512) & (frame["dtype"] == "tf32")
                & (params["table_version"].str.contains("ea2c45f"))].iloc[0]
    assert row["runtime_s"] == pytest.approx(21.809e-6)
    assert row["out_dtype"] == "f32"


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
@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".csv"])
def test_cli_round_trip_on_real_files(shared_data, tmp_path, capsys, suffix):
    out = tmp_path / f"kt{suffix}"
    src = shared_data / "kt_gemm_milo_A6000_partial.csv.gz"
    assert run_cli("kernel-tuner", str(src), "-o", str(out)) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("wrote 4,214 rows (4,214 ok, 0 failed)")
    assert "NVIDIA RTX A6000 -> rtx-a6000" in line
    back = read_records(out)
    direct = import_kernel_tuner(src)
    assert len(back) == len(direct)
    assert back["params"].tolist() == direct["params"].tolist()
    assert np.allclose(back["runtime_s"], direct["runtime_s"])
    out2 = tmp_path / f"xla{suffix}"
    assert run_cli("table", str(shared_data / "xla_matmul_perf_h100.csv"), "-o", str(out2)) == 0
    assert len(read_records(out2)) == 2625


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


def test_cutlass_profiler_v2_fixture():
    frame = import_cutlass_profiler(CUTLASS_V2, device_name="NVIDIA A100-SXM4-80GB")
    assert len(frame) == 10
    assert frame["status"].tolist() == ["ok"] * 6 + ["invalid", "wrong_result", "launch_error",
                                                     "ok"]
    assert frame["reason"].iloc[6] == (
        "cutlass_profiler: disposition not_supported, status misaligned_operand")
    assert frame["dtype"].tolist()[:6] == ["f32", "tf32", "f16", "f16", "f16", "int8"]
    assert frame["layout"].tolist()[:3] == ["nn", "nt", "tn"]
    assert frame["acc_dtype"].iloc[5] == "s32" and frame["out_dtype"].iloc[5] == "s32"
    assert frame["split_k"].iloc[3] == 4 and frame["batch"].iloc[4] == 4
    simt = frame.iloc[0]
    assert (simt["tile_m"], simt["tile_n"], simt["tile_k"], simt["stages"]) == (128, 128, 8, 2)
    assert simt["threads_per_block"] == 4 * 2 * 1 * 32
    assert simt["runtime_s"] == pytest.approx(7.93e-3)
    assert simt["family"] == "cutlass" and simt["kernel_name"].startswith("cutlass_simt_sgemm")
    assert json.loads(simt["params"])["op_class"] == "simt"
    cublas = frame.iloc[9]
    assert cublas["family"] == "cublas" and pd.isna(cublas["tile_m"])
    assert frame["runtime_s"].iloc[6:9].isna().all()
    assert set(frame["gpu"]) == {"a100-sxm4-80gb"}


def test_cutlass_profiler_v3_fixture_uses_the_gpu_tag():
    frame = import_cutlass_profiler(CUTLASS_V3)
    assert frame["status"].tolist() == ["ok", "ok", "ok", "invalid"]
    assert frame["dtype"].tolist() == ["f16", "bf16", "fp8", "f16"]
    assert frame["out_dtype"].tolist() == ["f16", "bf16", "bf16", "f16"]
    assert set(frame["device_name"]) == {"NVIDIA H100 80GB HBM3"}
    assert set(frame["gpu"]) == {"h100-sxm"} and set(frame["compute_capability"]) == {"9.0"}
    params = json.loads(frame["params"].iloc[0])
    assert (params["cluster_m"], params["raster_order"]) == (2, "heuristic")
    assert params["swizzle_size"] == 1
    assert frame["stages"].iloc[0] == 7


def test_cutlass_profiler_rejects_bad_files(tmp_path):
    header = CUTLASS_V2.read_text().splitlines()[1]
    row = CUTLASS_V2.read_text().splitlines()[2]
    conv = tmp_path / "conv.csv"
    conv.write_text(header + "\n" + row.replace(",gemm,", ",conv2d,", 1) + "\n")
    with pytest.raises(DataFormatError, match="conv2d are not GEMMs"):
        import_cutlass_profiler(conv)
    odd = tmp_path / "odd.csv"
    odd.write_text(header + "\n" + row.replace(",passed,", ",exploded,") + "\n")
    with pytest.raises(DataFormatError, match="unknown Disposition 'exploded'"):
        import_cutlass_profiler(odd)
    zero = tmp_path / "zero.csv"
    zero.write_text(header + "\n" + row.replace(",7.93,", ",0,") + "\n")
    with pytest.raises(DataFormatError, match=r"Runtime \(ms\) must be a positive number"):
        import_cutlass_profiler(zero)
    short = tmp_path / "short.csv"
    short.write_text(header.replace(",Runtime", ",Time") + "\n" + row + "\n")
    with pytest.raises(DataFormatError, match=r"missing column.*Runtime"):
        import_cutlass_profiler(short)
    plain = tmp_path / "plain.csv"
    plain.write_text("a,b\n1,2\n")
    with pytest.raises(DataFormatError, match="not a CUTLASS profiler CSV"):
        import_cutlass_profiler(plain)


def test_cutlass_profiler_appended_runs_repeat_the_header(tmp_path):
    lines = CUTLASS_V2.read_text().splitlines()[1:]
    appended = tmp_path / "append.csv"
    appended.write_text("\n".join(lines + lines) + "\n")  # --append=true writes a second header
    assert len(import_cutlass_profiler(appended)) == 20


# ---------------------------------------------------------------------------------------------
# Kernel Tuner caches built here (failures, unclosed files, malformed values)

TUNABLES = ["MWG", "NWG", "KWG", "MDIMC", "NDIMC", "PRECISION"]


def _entry(mwg: int, time, times=None, gflops=None) -> dict:
    entry = dict(MWG=mwg, NWG=64, KWG=32, MDIMC=8, NDIMC=16, PRECISION=32, time=time)
    if times is not None:
        entry["times"] = times
    if gflops is not None:
        entry["GFLOP/s"] = gflops
    return entry


def _cache_doc(entries: list[dict], problem_size=(256, 512)) -> dict:
    return {
        "device_name": "NVIDIA GeForce RTX 3090", "kernel_name": "Xgemm",
        "problem_size": list(problem_size), "tune_params_keys": TUNABLES,
        "tune_params": {k: sorted({e[k] for e in entries}) for k in TUNABLES},
        "cache": {",".join(str(e[k]) for k in TUNABLES): e for e in entries},
    }


def _gflops(time_ms: float, m=256, n=512, k=128) -> float:
    return (2 * m * n * k + 2 * m * k) / (time_ms * 1e-3) / 1e9  # the Xgemm cache's convention


def _write_json(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc, indent=1))
    return path


def test_kernel_tuner_failures_become_rows(tmp_path):
    entries = [
        _entry(16, 2.5, times=[2.0, 3.0, 2.5, 2.6], gflops=_gflops(2.5)),
        _entry(32, "CompilationFailedConfig"),
        _entry(64, "InvalidConfig"),
        _entry(128, "RuntimeFailedConfig"),
        _entry(256, 1e20),  # failure marker of older Kernel Tuner releases
    ]
    frame = import_kernel_tuner(_write_json(tmp_path / "c.json", _cache_doc(entries)))
    assert frame["status"].tolist() == ["ok", "compile_error", "invalid", "launch_error",
                                        "launch_error"]
    assert frame["reason"].iloc[1] == "Kernel Tuner: CompilationFailedConfig"
    assert "1e+20" in frame["reason"].iloc[4]
    assert frame["runtime_s"].iloc[1:].isna().all()
    ok = frame.iloc[0]
    assert (ok["m"], ok["n"], ok["k"]) == (256, 512, 128)  # K solved from GFLOP/s
    assert ok["runtime_s"] == pytest.approx(2.55e-3)  # median of 4 runs
    assert ok["runtime_mean_s"] == pytest.approx(2.525e-3)
    # numpy's linear percentiles of [2.0, 2.5, 2.6, 3.0]: q25 = 2.375, q75 = 2.7
    assert ok["runtime_iqr_s"] == pytest.approx((2.7 - 2.375) * 1e-3)
    assert ok["repeats"] == 4 and ok["threads_per_block"] == 128
    assert set(frame["gpu"]) == {"rtx-3090"}


def test_kernel_tuner_unclosed_cache_is_read_with_a_warning(tmp_path):
    entries = [_entry(m, 1.0 + m / 100, times=[1.0 + m / 100] * 3, gflops=_gflops(1.0 + m / 100))
               for m in (16, 32, 64)]
    text = json.dumps(_cache_doc(entries), indent=1)
    body = text[: text.rindex("}", 0, text.rindex("}"))].rstrip()  # drop the two closing braces
    running = tmp_path / "running.json"
    running.write_text(body + ",\n")  # Kernel Tuner leaves a trailing comma after each entry
    with pytest.warns(UserWarning, match="not closed.*3 complete entries"):
        assert len(import_kernel_tuner(running)) == 3
    torn = tmp_path / "torn.json"
    torn.write_text(body + ',\n"128,64,32,8,16,32": {"MWG": 128, "NWG": 6')
    with pytest.warns(UserWarning, match="2 complete entries|3 complete entries"):
        frame = import_kernel_tuner(torn)
    assert len(frame) == 3  # the torn fourth entry is dropped


def test_kernel_tuner_problem_size_override_and_missing_k(tmp_path):
    entries = [_entry(16, 2.0, times=[2.0, 2.0])]  # no GFLOP/s: K cannot be solved
    path = _write_json(tmp_path / "c.json", _cache_doc(entries))
    with pytest.raises(DataFormatError, match=r"cannot infer K.*problem_size"):
        import_kernel_tuner(path)
    frame = import_kernel_tuner(path, problem_size=(256, 512, 64))
    assert (frame["m"].iloc[0], frame["k"].iloc[0]) == (256, 64)


@pytest.mark.parametrize(("time", "times", "message"), [
    (-1.0, None, r"time \(ms\) must be a positive number, got -1 for config 16,64,32,8,16,32"),
    (float("nan"), None, "time \\(ms\\) must be a positive number, got missing/NaN"),
    (2.0, [2.0, float("nan")], "run time that is NaN, infinite or <= 0"),
    (2.0, [2.0, -3.0], "run time that is NaN, infinite or <= 0"),
    (2.0, [2.0, "fast"], "non-numeric run time"),
    ("Crashed", None, "has time 'Crashed'; expected milliseconds or one of InvalidConfig"),
])
def test_kernel_tuner_bad_times_are_errors(tmp_path, time, times, message):
    doc = _cache_doc([_entry(16, time, times=times, gflops=1.0)])
    with pytest.raises(DataFormatError, match=message):
        import_kernel_tuner(_write_json(tmp_path / "c.json", doc))


def test_kernel_tuner_csv_export_failure_rows(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(
        "gpu,MWG,NWG,KWG,MDIMC,NDIMC,PRECISION,time_ms,time_std,gflops,n_times,time_field_raw\n"
        f"NVIDIA RTX A6000,16,64,32,8,8,32,2.0,0.1,{2 * 64**2 * 65 / 2e-3 / 1e9},32,2.0\n"
        "NVIDIA RTX A6000,16,64,32,8,16,32,,,,,CompilationFailedConfig\n"
    )
    frame = import_kernel_tuner(path)
    assert frame["status"].tolist() == ["ok", "compile_error"]
    assert (frame["m"].iloc[0], frame["k"].iloc[0]) == (64, 64)  # cube side from gflops
    assert frame["repeats"].iloc[0] == 32 and pd.isna(frame["repeats"].iloc[1])


# ---------------------------------------------------------------------------------------------
# Malformed input: clear error naming the file, exit code 2, no output file


VIDUR_HEADER = "gpu,model,op,num_tokens,tp,M,N,K,dtype,time_ms_median\n"


def _truncated_gzip_cache(folder: Path) -> Path:
    doc = _cache_doc([_entry(m, 1.0, times=[1.0], gflops=_gflops(1.0)) for m in range(1, 50)])
    data = gzip.compress(json.dumps(doc).encode())
    path = folder / "cache.json.gz"
    path.write_bytes(data[: len(data) // 2])  # a download cut short
    return path


def _gzip_text(name: str, text: str):
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(gzip.compress(text.encode()))
        return path
    return make


def _text(name: str, text: str):
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_text(text)
        return path
    return make


MALFORMED = [
    ("kernel-tuner", _truncated_gzip_cache, "truncated or corrupt gzip"),
    ("kernel-tuner", _text("x.json", "{not json"),
     r"not valid JSON \(Expecting property name.* line 1, column 2\)"),
    ("kernel-tuner", _text("e.json", ""), "empty file"),
    ("kernel-tuner", _gzip_text("e.json.gz", ""), "empty file"),
    ("kernel-tuner", _text("l.json", "[1, 2]"), "not a Kernel Tuner cache"),
    ("kernel-tuner", _text("o.json", '{"a": 1}'), "not a Kernel Tuner cache"),
    ("kernel-tuner", _text("k.csv", "gpu,MWG\nA6000,16\n"), r"missing column\(s\) time_ms"),
    ("table", _text("t.csv", "foo,bar\n1,2\n"),
     "unrecognised table header; supported kinds: xla_matmul"),
    ("table", _text("h.csv", "b,m,n,k,dtype,time_us_derived\n"), "header but no rows"),
    ("table", _text("v.csv", VIDUR_HEADER + "a100,m,attn,8,1,8,64,64,fp16,0.01\n"
                                           "a100,m,attn,16,1,16,64,64,fp16,\n"),
     r"time_ms_median must be a positive number, got missing/NaN \(data row 2\)"),
    ("table", _text("n.csv", VIDUR_HEADER + "a100,m,attn,8,1,8,64,64,fp16,-0.5\n"),
     "time_ms_median must be a positive number, got -0.5"),
    ("table", _text("d.csv", VIDUR_HEADER + "a100,m,attn,8,1,8,64,64.5,fp16,0.5\n"),
     "column K must hold integers, got 64.5"),
    ("table", _text("x.csv", "b,m,n,k,dtype,time_us_derived\n1,64,64,64,f32xf32,3.0\n"),
     "dtype 'f32xf32' is not of the form 'AxB->C'"),
    ("cutlass-profiler", _gzip_text("c.csv.gz", "garbage\n"), "not a CUTLASS profiler CSV"),
]


@pytest.mark.parametrize(("source", "make", "message"), MALFORMED)
def test_malformed_input_is_a_clear_error_and_writes_nothing(tmp_path, capsys, source, make,
                                                              message):
    bad = make(tmp_path)
    out = tmp_path / "out.parquet"
    assert run_cli(source, str(bad), "-o", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("gemmperf: error: ") and bad.name in err
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_failed_import_keeps_a_previous_output_intact(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert run_cli("cutlass-profiler", str(CUTLASS_V3), "-o", str(out)) == 0
    before = out.read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text("nonsense\n")
    # a good file then a bad one: nothing is written, the old output stays as it was
    assert run_cli("cutlass-profiler", str(CUTLASS_V3), str(bad), "-o", str(out)) == 2
    assert out.read_bytes() == before
    assert "bad.csv" in capsys.readouterr().err


def test_cli_option_errors(tmp_path, capsys):
    out = tmp_path / "out.xlsx"
    assert run_cli("cutlass-profiler", str(CUTLASS_V2), "-o", str(out)) == 2
    assert "unknown output format" in capsys.readouterr().err
    out = tmp_path / "out.csv"
    assert run_cli("kernel-tuner", str(CUTLASS_V2), "--problem-size", "4096x4096", "-o",
                   str(out)) == 2
    assert "--problem-size must be MxNxK" in capsys.readouterr().err
    assert run_cli("cutlass-profiler", str(CUTLASS_V3), "--gpu", "a=b", "--gpu", "c",
                   "-o", str(out)) == 2
    assert "--gpu takes one GPU for all rows" in capsys.readouterr().err
    assert run_cli("cutlass-profiler", str(CUTLASS_V3), "--gpu", "a100=a100-pcie-80gb",
                   "-o", str(out)) == 2
    assert "does not have" in capsys.readouterr().err
    assert not out.exists()


def test_gpu_override(tmp_path, capsys):
    frame = import_cutlass_profiler(CUTLASS_V3, gpu="h100-pcie")
    assert set(frame["gpu"]) == {"h100-pcie"}
    frame = import_cutlass_profiler(CUTLASS_V3, gpu={"NVIDIA H100 80GB HBM3": "H100 NVL"})
    assert set(frame["gpu"]) == {"h100-nvl"}
    with pytest.raises(UnknownGpuError, match="unknown GPU 'mi300x'"):
        import_cutlass_profiler(CUTLASS_V3, gpu="mi300x")
    out = tmp_path / "o.csv"
    assert run_cli("cutlass-profiler", str(CUTLASS_V2), "--gpu", "a100-pcie-80gb", "-o",
                   str(out)) == 0
    assert "unnamed device -> a100-pcie-80gb" in capsys.readouterr().out


def test_unknown_device_keeps_its_name_and_no_gpu(tmp_path):
    frame = import_cutlass_profiler(CUTLASS_V2, device_name="Imaginary GPU 9000")
    assert frame["gpu"].isna().all() and set(frame["device_name"]) == {"Imaginary GPU 9000"}


def test_table_kind_detection_lists_kinds():
    assert detect_table_kind(["b", "m", "n", "k", "dtype", "time_us_derived", "x"]).name \
        == "xla_matmul"
    with pytest.raises(DataFormatError, match=r"vidur .*time_ms_median"):
        detect_table_kind(["a"])


def test_load_dataset_mixes_records_and_imports(tmp_path):
    records = tmp_path / "r.parquet"
    write_frame(import_cutlass_profiler(CUTLASS_V3), records)
    frame = load_dataset([records, CUTLASS_V2])
    assert len(frame) == 14
    assert sorted(set(frame["source"])) == ["cutlass_profiler"]
    assert detect_source(records) == "records" and detect_source(CUTLASS_V2) == "cutlass_profiler"
    with pytest.raises(DataFormatError, match="unrecognised file; supported"):
        detect_source(FIXTURES / "README.md")


def test_forced_table_kind(tmp_path, capsys):
    path = tmp_path / "vidur_like.csv"
    path.write_text("gpu,model,op,num_tokens,tp,M,N,K,dtype,time_ms_median\n"
                    "a40,m,attn,8,1,8,64,32,fp16,0.01\n")
    frame = import_table(path, kind="vidur")
    assert (frame["k"].iloc[0], frame["gpu"].iloc[0]) == (32, "a40")
    out = tmp_path / "o.parquet"
    assert run_cli("table", str(path), "--table-kind", "xla_matmul", "-o", str(out)) == 2
    assert "not a xla_matmul table: missing column(s) b, m, n, k" in capsys.readouterr().err
    assert run_cli("table", str(path), "--table-kind", "nope", "-o", str(out)) == 2
    assert "unknown table kind 'nope'; supported: xla_matmul, vidur" in capsys.readouterr().err
