"""Importers through `gemmperf import`: malformed input, options, GPU override, detection."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kernel_tuner_helpers import cache_doc, cache_entry, xgemm_gflops

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
from gemmperf.records import read_records, write_frame

FIXTURES = Path(__file__).parent / "fixtures"
CUTLASS_V2 = FIXTURES / "cutlass_profiler_v2.gemm.csv"
CUTLASS_V3 = FIXTURES / "cutlass_profiler_v3.gemm.csv"


def run_cli(*argv: str) -> int:
    """``gemmperf import ...`` through the real entry point (only this subcommand registered)."""
    return cli.main(["import", *argv])


@pytest.fixture(autouse=True)
def _only_import_command(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("gemmperf.cli.importers",))


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


VIDUR_HEADER = "gpu,model,op,num_tokens,tp,M,N,K,dtype,time_ms_median\n"


def _truncated_gzip_cache(folder: Path) -> Path:
    doc = cache_doc([cache_entry(m, 1.0, times=[1.0], gflops=xgemm_gflops(1.0))
                     for m in range(1, 50)])
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
    # a good file then a bad one, told to replace: nothing is written, the old output stays
    assert run_cli("cutlass-profiler", str(CUTLASS_V3), str(bad), "-o", str(out),
                   "--force") == 2
    assert out.read_bytes() == before
    assert "bad.csv" in capsys.readouterr().err


def test_an_existing_output_is_replaced_only_with_force(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert run_cli("cutlass-profiler", str(CUTLASS_V3), "-o", str(out)) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert run_cli("cutlass-profiler", str(CUTLASS_V2), "-o", str(out)) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before
    assert run_cli("cutlass-profiler", str(CUTLASS_V2), "-o", str(out), "--force") == 0
    assert out.read_bytes() != before


def test_cli_option_errors(tmp_path, capsys):
    out = tmp_path / "out.xlsx"
    assert run_cli("cutlass-profiler", str(CUTLASS_V2), "-o", str(out)) == 2
    assert "unknown output format" in capsys.readouterr().err
    out = tmp_path / "out.csv"
    assert run_cli("kernel-tuner", str(CUTLASS_V2), "--problem-size", "4096x4096", "-o",
                   str(out)) == 2
    assert "--problem-size must be MxNxK" in capsys.readouterr().err
    assert run_cli("cutlass-profiler", str(CUTLASS_V2), "--problem-size", "64x64x64", "-o",
                   str(out)) == 2
    assert "--problem-size is for Kernel Tuner caches" in capsys.readouterr().err
    assert not out.exists()
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


def test_load_data_types_numeric_schema_columns(tmp_path):
    # The vidur-like table has no tile or clock fields: the importer leaves them None, which
    # load_data turns into numbers (int64 where whole and complete, float64 with NaN otherwise).
    from gemmperf.predict.data import load_data

    path = tmp_path / "vidur_like.csv"
    path.write_text("gpu,model,op,num_tokens,tp,M,N,K,dtype,time_ms_median\n"
                    "a40,m,attn,8,1,8,64,32,fp16,0.01\n"
                    "a40,m,mlp,16,1,16,64,32,fp16,0.02\n")
    frame = load_data(path)
    assert pd.api.types.is_integer_dtype(frame["m"]) and list(frame["m"]) == [8, 16]
    assert frame["tile_m"].dtype == np.float64 and frame["tile_m"].isna().all()
    assert frame["sm_clock_mhz"].dtype == np.float64
    assert frame["runtime_s"].tolist() == pytest.approx([1e-5, 2e-5])
    assert not pd.api.types.is_numeric_dtype(frame["dtype"])   # text columns stay text
