"""The GPU spec database (data/gpus.json), its loader and lookup, and `gemmperf gpus`."""

from __future__ import annotations

import copy
import csv
import gzip
import json
import re
from pathlib import Path

import pytest

import gemmperf.cli as cli
from gemmperf._paths import data_dir
from gemmperf.errors import DataFormatError, UnknownGpuError
from gemmperf.hardware.specs import (
    PEAK_KEYS,
    GpuSpec,
    all_gpus,
    closest_gpus,
    find_gpu,
    get_gpu,
    load_gpu_database,
    normalize_name,
)

TERA, GIGA, KIB, MIB, GIB = 1e12, 1e9, 2**10, 2**20, 2**30

# FP32 FMA lanes per SM, per compute capability (architecture whitepapers): the FP32 peak must be
# 2 x SMs x lanes x boost clock. GP100, GV100, TU10x and GA100 have 64; the others 128.
FP32_LANES_PER_SM = {
    (5, 2): 128, (6, 0): 64, (6, 1): 128, (7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128,
    (8, 9): 128, (9, 0): 128, (10, 0): 128, (12, 0): 128,
}


def _gpu_table_doc() -> dict:
    return json.loads((data_dir() / "gpus.json").read_text())


# ------------------------------------------------------------------------------------------------
# The database as a whole


def test_every_entry_loads_with_si_units() -> None:
    gpus = all_gpus()
    assert len(gpus) >= 24
    assert len({g.key for g in gpus}) == len(gpus)
    for g in gpus:
        assert isinstance(g, GpuSpec)
        assert set(g.peak_flops) <= set(PEAK_KEYS) and "fp32" in g.peak_flops
        # SI: FLOP/s in the 1e11..1e16 range, bytes/s above 1e11, bytes above 1e9
        assert all(1e11 < v < 1e16 for v in g.peak_flops.values()), g.key
        assert g.mem_bandwidth_bytes_s > 1e11 and g.mem_bytes > 4 * GIB and g.l2_bytes >= MIB
        assert g.sources and g.notes


def test_covers_maxwell_to_blackwell_and_the_planning_gpus() -> None:
    assert {g.architecture for g in all_gpus()} >= {
        "Maxwell", "Pascal", "Volta", "Turing", "Ampere", "Ada Lovelace", "Hopper", "Blackwell"}
    wanted = {
        "GTX Titan X": "gtx-titan-x", "RTX 2080 Ti": "rtx-2080-ti", "Titan RTX": "titan-rtx",
        "RTX 3060 Laptop": "rtx-3060-laptop", "RTX 3090": "rtx-3090", "RTX A4000": "rtx-a4000",
        "RTX A6000": "rtx-a6000", "A40": "a40", "A100 PCIe 40GB": "a100-pcie-40gb",
        "A100 SXM4 80GB": "a100-sxm4-80gb", "A100 SXM4 40GB": "a100-sxm4-40gb",
        "A100 PCIe 80GB": "a100-pcie-80gb", "H100 PCIe": "h100-pcie", "H100 SXM": "h100-sxm",
        "V100 SXM2 32GB": "v100-sxm2-32gb", "V100 PCIe": "v100-pcie-32gb", "T4": "t4", "A10": "a10",
        "L4": "l4", "L40S": "l40s", "L40": "l40", "RTX 4070": "rtx-4070", "RTX 4090": "rtx-4090",
        "RTX 4000 Ada": "rtx-4000-ada", "H200": "h200-sxm", "B200": "b200", "GB200": "gb200",
        "RTX 5090": "rtx-5090", "P100": "p100-sxm2-16gb", "RTX A5000": "rtx-a5000",
    }
    assert {name: get_gpu(name).key for name in wanted} == wanted


def test_every_alias_and_nvml_name_maps_to_exactly_one_gpu() -> None:
    owners: dict[str, set[str]] = {}
    for g in all_gpus():
        for name in (g.key, g.name, *g.aliases, *g.nvml_names):
            owners.setdefault(normalize_name(name), set()).add(g.key)
            assert get_gpu(name) is g, name
    ambiguous = {n: keys for n, keys in owners.items() if len(keys) > 1}
    assert not ambiguous


def test_every_gpu_has_an_nvml_name_and_a_vendor_source() -> None:
    refs = _gpu_table_doc()["references"]
    for g in all_gpus():
        assert g.nvml_names, g.key
        cited = [s.split(":", 1)[0] for s in g.sources]
        assert all(c in refs for c in cited)
        product_sources = [c for c in cited if c not in ("cuda-cc", "tpu-db")]
        assert product_sources, f"{g.key} cites no product source"


# ------------------------------------------------------------------------------------------------
# Lookup


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ("h100", "h100-sxm"), ("H100-SXM", "h100-sxm"), ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("nvidia h100 pcie", "h100-pcie"), ("NVIDIA A100-SXM4-80GB", "a100-sxm4-80gb"),
        ("a100-80gb", "a100-sxm4-80gb"), ("NVIDIA A100-PCIE-40GB", "a100-pcie-40gb"),
        ("NVIDIA A100 80GB PCIe", "a100-pcie-80gb"), ("rtx4090", "rtx-4090"), ("4090", "rtx-4090"),
        ("NVIDIA GeForce RTX 4090", "rtx-4090"), ("GeForce RTX 4090", "rtx-4090"),
        ("NVIDIA GeForce RTX 3090", "rtx-3090"), ("NVIDIA GeForce RTX 3060 Laptop GPU",
                                                  "rtx-3060-laptop"),
        ("GeForce GTX TITAN X", "gtx-titan-x"), ("NVIDIA RTX A6000", "rtx-a6000"),
        ("NVIDIA A40", "a40"), ("Tesla T4", "t4"), ("Tesla V100-SXM2-32GB", "v100-sxm2-32gb"),
        ("  rtx_a4000 ", "rtx-a4000"), ("NVIDIA RTX 4000 Ada Generation", "rtx-4000-ada"),
        ("NVIDIA H200", "h200-sxm"), ("NVIDIA B200", "b200"), ("NVIDIA L40S", "l40s"),
    ],
)
def test_lookup_by_key_alias_marketing_and_nvml_name(query: str, key: str) -> None:
    assert get_gpu(query).key == key
    assert find_gpu(query) is get_gpu(query)


def test_lookup_passes_a_spec_through_and_normalizes_names() -> None:
    spec = get_gpu("l4")
    assert get_gpu(spec) is spec
    assert normalize_name("NVIDIA GeForce RTX 3090") == "rtx3090"
    assert normalize_name("Tesla V100-SXM2-32GB") == "v100sxm232gb"


def test_unknown_name_raises_one_line_error_with_close_matches() -> None:
    assert find_gpu("H100 SXM6") is None
    with pytest.raises(UnknownGpuError) as info:
        get_gpu("H100 SXM6")
    message = str(info.value)
    assert "\n" not in message and "'H100 SXM6'" in message
    assert "h100-sxm" in message.split("closest:")[1]
    assert closest_gpus("rtx 4000")[0] == "rtx-4000-ada"
    assert closest_gpus("xyzzy") == []  # nothing close: no misleading suggestions


# ------------------------------------------------------------------------------------------------
# Hand-checked numbers (NVIDIA whitepapers / datasheets; see the entries' sources)


def test_h100_sxm_numbers() -> None:
    h = get_gpu("h100-sxm")
    assert (h.compute_capability, h.sm_count, h.boost_clock_mhz) == ((9, 0), 132, 1980)
    assert h.peak("bf16") == pytest.approx(989.4 * TERA)
    assert h.peak("fp16") == pytest.approx(989.4 * TERA)
    assert h.peak("fp8") == pytest.approx(1978.9 * TERA)
    assert h.peak("tf32") == pytest.approx(494.7 * TERA)
    assert h.peak("fp32") == pytest.approx(66.9 * TERA)
    assert h.peak("fp64") == pytest.approx(66.9 * TERA)  # FP64 tensor-core rate
    assert h.extra["fp64_simt_flops"] == pytest.approx(33.5 * TERA)
    assert h.mem_bandwidth_bytes_s == pytest.approx(3.35e12, rel=0.01)
    assert (h.mem_bytes, h.l2_bytes) == (80 * GIB, 50 * MIB)
    assert (h.smem_per_sm_bytes, h.smem_per_block_bytes) == (228 * KIB, 227 * KIB)
    assert (h.tdp_w, h.interconnect_bytes_s) == (700, 450 * GIGA)


def test_a100_numbers() -> None:
    sxm40, sxm80, pcie40 = get_gpu("a100-sxm4-40gb"), get_gpu("a100-sxm4-80gb"), get_gpu(
        "a100-pcie-40gb")
    for a in (sxm40, sxm80, pcie40):
        assert (a.compute_capability, a.sm_count, a.boost_clock_mhz) == ((8, 0), 108, 1410)
        assert a.peak("bf16") == pytest.approx(312 * TERA)
        assert a.peak("fp32") == pytest.approx(19.5 * TERA)
        assert a.peak("tf32") == pytest.approx(156 * TERA)
        assert a.l2_bytes == 40 * MIB
        assert (a.smem_per_sm_bytes, a.smem_per_block_bytes) == (164 * KIB, 163 * KIB)
    assert sxm40.mem_bandwidth_bytes_s == pytest.approx(1555 * GIGA)
    assert pcie40.mem_bandwidth_bytes_s == pytest.approx(1555 * GIGA)
    assert sxm80.mem_bandwidth_bytes_s == pytest.approx(2039 * GIGA)
    assert (pcie40.tdp_w, sxm80.tdp_w) == (250, 400)


def test_rtx_3090_geforce_tensor_rates() -> None:
    g = get_gpu("rtx-3090")
    assert g.sm_count == 82
    assert g.peak("fp32") == pytest.approx(35.6 * TERA)
    assert g.peak("fp16") == pytest.approx(71 * TERA)  # FP32 accumulate: half rate on GeForce
    assert g.peak("fp16_acc16") == pytest.approx(142 * TERA)


@pytest.mark.parametrize(
    ("key", "smem_sm_kib", "smem_block_kib"),
    [("gtx-titan-x", 96, 48), ("gtx-1080-ti", 96, 48), ("p100-sxm2-16gb", 64, 48),
     ("v100-sxm2-32gb", 96, 96), ("t4", 64, 64), ("rtx-2080-ti", 64, 64),
     ("a100-sxm4-80gb", 164, 163), ("rtx-3090", 100, 99), ("rtx-a6000", 100, 99),
     ("rtx-4090", 100, 99), ("l40s", 100, 99), ("h100-sxm", 228, 227), ("b200", 228, 227),
     ("rtx-5090", 100, 99)],
)
def test_shared_memory_per_compute_capability(key: str, smem_sm_kib: int, smem_block_kib: int):
    g = get_gpu(key)
    assert g.smem_per_sm_bytes == smem_sm_kib * KIB
    assert g.smem_per_block_bytes == smem_block_kib * KIB


def test_peak_falls_back_from_fp16_acc16_and_names_missing_paths() -> None:
    h = get_gpu("h100-sxm")
    assert h.peak("fp16_acc16") == h.peak("fp16")  # no separate FP16-accumulate rate
    with pytest.raises(KeyError, match="no tf32 math path"):
        get_gpu("v100-sxm2-32gb").peak("tf32")


# ------------------------------------------------------------------------------------------------
# Internal consistency


@pytest.mark.parametrize("spec", all_gpus(), ids=lambda g: g.key)
def test_fp32_peak_is_sms_times_lanes_times_boost_clock(spec: GpuSpec) -> None:
    lanes = FP32_LANES_PER_SM[spec.compute_capability]
    expected = 2 * spec.sm_count * lanes * spec.boost_clock_mhz * 1e6
    assert spec.peak("fp32") == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("spec", all_gpus(), ids=lambda g: g.key)
def test_entry_is_internally_consistent(spec: GpuSpec) -> None:
    p = spec.peak_flops
    assert spec.smem_per_block_bytes <= spec.smem_per_sm_bytes
    assert spec.max_threads_per_block <= spec.max_threads_per_sm
    assert spec.max_threads_per_sm % 32 == 0 and spec.regs_per_sm == 65536
    assert spec.base_clock_mhz is None or spec.base_clock_mhz <= spec.boost_clock_mhz
    assert spec.l2_bytes < spec.mem_bytes
    if "tf32" in p:
        assert p["bf16"] >= p["tf32"] and p["fp16"] == p["bf16"]
    if "fp16_acc16" in p:
        assert p["fp16_acc16"] > p["fp16"] or spec.compute_capability < (7, 0)
    if "fp8" in p:
        assert p["fp8"] >= p["bf16"] and spec.compute_capability >= (8, 9)
    if "bf16" in p:
        assert spec.compute_capability >= (8, 0)
    if spec.compute_capability >= (7, 0):  # tensor cores: at least 2x the CUDA-core FP32 rate
        assert p["fp16"] >= 0.98 * 2 * p["fp32"]
    if spec.interconnect_bytes_s is not None and spec.pcie_bytes_s is not None:
        assert spec.interconnect_bytes_s >= spec.pcie_bytes_s


def test_per_sm_limits_agree_with_the_occupancy_table() -> None:
    path = data_dir() / "compute_capabilities.json"
    if not path.exists():
        pytest.skip("data/compute_capabilities.json (occupancy table) not present")
    rows = json.loads(path.read_text())["compute_capabilities"]
    table = {row["compute_capability"]: row for row in rows}
    for g in all_gpus():
        row = table[f"{g.compute_capability[0]}.{g.compute_capability[1]}"]
        mine = (g.max_threads_per_sm, g.max_blocks_per_sm, g.regs_per_sm, g.smem_per_sm_bytes,
                g.smem_per_block_bytes)
        theirs = (row["max_threads_per_sm"], row["max_blocks_per_sm"], row["regs_per_sm"],
                  row["smem_per_sm_bytes"], row["smem_per_block_bytes"])
        assert mine == theirs, g.key


# ------------------------------------------------------------------------------------------------
# Device names in the real data


def _kernel_tuner_device_name(path: Path) -> str:
    with gzip.open(path, "rt") as f:
        head = f.read(4096)  # "device_name" is near the top of a Kernel Tuner cache
    match = re.search(r'"device_name"\s*:\s*"([^"]+)"', head)
    assert match, f"no device_name in the head of {path.name}"
    return match.group(1)


def _csv_column(path: Path, column: str) -> set[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        return {row[column] for row in csv.DictReader(f)}


EXPECTED_DATA_DEVICES = {
    "NVIDIA GeForce RTX 2080 Ti": "rtx-2080-ti", "NVIDIA GeForce RTX 3090": "rtx-3090",
    "NVIDIA GeForce RTX 3060 Laptop GPU": "rtx-3060-laptop", "NVIDIA RTX A6000": "rtx-a6000",
    "NVIDIA A100-PCIE-40GB": "a100-pcie-40gb", "NVIDIA RTX A4000": "rtx-a4000",
    "NVIDIA RTX 4000 Ada Generation": "rtx-4000-ada", "GTX Titan X (Maxwell GM200)": "gtx-titan-x",
    "H100": "h100-sxm", "a100": "a100-sxm4-80gb", "a40": "a40",
}


@pytest.mark.shared_data
def test_every_device_named_in_the_real_data_resolves(shared_data: Path) -> None:
    names = {_kernel_tuner_device_name(p) for p in shared_data.glob("kernel_tuner_*.json.gz")}
    for pattern in ("*.csv", "*.csv.gz"):
        for path in shared_data.glob(pattern):
            names |= _csv_column(path, "gpu")
    assert len(names) >= 11
    resolved = {name: get_gpu(name).key for name in names}  # UnknownGpuError fails the test
    for name, key in EXPECTED_DATA_DEVICES.items():
        assert resolved.get(name) == key, name


@pytest.mark.shared_data
def test_sm_counts_match_the_power_data(shared_data: Path) -> None:
    with open(shared_data / "kt_fp32_power_vs_clock.csv", newline="") as f:
        pairs = {(row["gpu"], int(row["sm_count"])) for row in csv.DictReader(f)}
    assert pairs
    for name, sm_count in pairs:
        assert get_gpu(name).sm_count == sm_count


@pytest.mark.shared_data
def test_xla_table_nominal_peaks_are_the_resolved_h100s(shared_data: Path) -> None:
    math_of = {"bf16": "bf16", "f32": "tf32", "f8e4m3fn": "fp8", "f8e5m2": "fp8"}
    with open(shared_data / "xla_matmul_perf_h100.csv", newline="") as f:
        pairs = {(row["gpu"], row["dtype"], float(row["nominal_dense_peak_tflops"]))
                 for row in csv.DictReader(f)}
    for gpu, dtype, peak_tflops in pairs:
        math = math_of[dtype.split("x")[0]]
        assert get_gpu(gpu).peak(math) / TERA == pytest.approx(peak_tflops, rel=1e-3), dtype


# ------------------------------------------------------------------------------------------------
# Loader validation


def _write_db(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "gpus.json"
    path.write_text(json.dumps(doc))
    return path


def _small_doc() -> dict:
    doc = _gpu_table_doc()
    doc["gpus"] = [e for e in doc["gpus"] if e["key"] in ("h100-sxm", "a40")]
    return copy.deepcopy(doc)


def test_loader_accepts_a_valid_file_and_indexes_it(tmp_path: Path) -> None:
    db = load_gpu_database(_write_db(tmp_path, _small_doc()))
    assert [g.key for g in db.gpus] == ["a40", "h100-sxm"]
    assert db.by_key[db.index["h100"]].sm_count == 132


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("sm_count", "many", "field 'sm_count' must be a positive integer"),
        ("l2_kib", 0, "field 'l2_kib' must be a positive integer"),
        ("compute_capability", "9", "field 'compute_capability' must be 'major.minor'"),
        ("peak_tflops", {"fp32": 66.9, "fp4": 4000}, "field 'peak_tflops' has 'fp4'"),
        ("peak_tflops", {"bf16": 989.4}, "field 'peak_tflops' has 'fp32'"),
        ("smem_per_block_kib", 300, "field 'smem_per_block_kib' exceeds smem_per_sm_kib"),
        ("sources", ["no-such-ref"], "field 'sources' cites 'no-such-ref'"),
        ("extra", {"tensor_clock": 1830}, "field 'extra' key 'tensor_clock' needs a unit suffix"),
        ("bandwidth", 3352, "field 'bandwidth' is not a known field"),
    ],
)
def test_loader_names_the_entry_and_field_of_a_bad_value(
    tmp_path: Path, field: str, value: object, expected: str
) -> None:
    doc = _small_doc()
    entry = next(e for e in doc["gpus"] if e["key"] == "h100-sxm")
    entry[field] = value
    with pytest.raises(DataFormatError) as info:
        load_gpu_database(_write_db(tmp_path, doc))
    assert "entry 'h100-sxm'" in str(info.value) and expected in str(info.value)


def test_loader_rejects_an_alias_shared_by_two_gpus(tmp_path: Path) -> None:
    doc = _small_doc()
    next(e for e in doc["gpus"] if e["key"] == "a40")["aliases"].append("H-100")
    with pytest.raises(DataFormatError, match="ambiguous"):
        load_gpu_database(_write_db(tmp_path, doc))


def test_loader_reports_an_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "gpus.json"
    bad.write_text("{not json")
    with pytest.raises(DataFormatError, match="cannot read the GPU spec database"):
        load_gpu_database(bad)


# ------------------------------------------------------------------------------------------------
# CLI


@pytest.fixture
def gpus_cli(monkeypatch: pytest.MonkeyPatch):
    """`gemmperf` with only the gpus subcommand registered (other modules may be in progress)."""
    assert "gemmperf.cli.gpus" in cli.COMMAND_MODULES
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("gemmperf.cli.gpus",))
    return cli.main


def test_cli_lists_gpus_as_json(gpus_cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert gpus_cli(["gpus", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [g["key"] for g in listed] == [g.key for g in all_gpus()]
    h100 = next(g for g in listed if g["key"] == "h100-sxm")
    assert h100["peak_flops"]["bf16"] == pytest.approx(989.4e12)
    assert h100["compute_capability"] == "9.0" and h100["sm_arch"] == "sm_90"


def test_cli_shows_one_gpu(gpus_cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert gpus_cli(["gpus", "show", "NVIDIA A100-PCIE-40GB", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["key"] == "a100-pcie-40gb" and shown["sources"]
    assert gpus_cli(["gpus", "show", "4090"]) == 0
    table = capsys.readouterr().out
    assert "RTX 4090" in table and "TFLOP/s" in table and "source" in table


def test_cli_table_lists_every_gpu(
    gpus_cli, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # rich would elide columns on a narrow terminal
    assert gpus_cli(["gpus"]) == 0
    out = capsys.readouterr().out
    assert all(g.key in out for g in all_gpus())


def test_cli_unknown_gpu_is_one_line_and_exit_2(gpus_cli, capsys: pytest.CaptureFixture[str]):
    assert gpus_cli(["gpus", "show", "h10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gemmperf: error: unknown GPU 'h10'") and "\n" not in err
    assert "h100-sxm" in err
