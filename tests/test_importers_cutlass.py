"""CUTLASS profiler CSV importer: format fixtures (tests/fixtures/README.md) and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from gemmperf.errors import DataFormatError
from gemmperf.importers import import_cutlass_profiler

FIXTURES = Path(__file__).parent / "fixtures"
CUTLASS_V2 = FIXTURES / "cutlass_profiler_v2.gemm.csv"
CUTLASS_V3 = FIXTURES / "cutlass_profiler_v3.gemm.csv"


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
