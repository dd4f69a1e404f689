"""Features: hardware-normalised bases, family tunables, missing values, GPU resolution."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from predict_helpers import xgemm_frame

from gemmperf.errors import UnknownGpuError
from gemmperf.features import (
    DEFAULT_BASE_S,
    INT32_PER_FP32_SIMT,
    MISSING,
    NUMERIC_FEATURES,
    POWER_CLOCK_EXPONENT,
    build_features,
    resolve_gpus,
    simt_efficiency,
)
from gemmperf.hardware.specs import get_gpu
from gemmperf.roofline_frame import roofline_frame


def test_simt_efficiency_follows_the_datapath_table():
    # GA102: 64 dedicated + 64 shared lanes -> min(1/(1+rho), 64/(rho*128)) = 1/(1+rho).
    assert simt_efficiency(get_gpu("rtx-3090")) == pytest.approx(1 / (1 + INT32_PER_FP32_SIMT))
    assert simt_efficiency(get_gpu("rtx-2080-ti")) == 1.0   # Turing: separate INT32 units
    assert simt_efficiency(get_gpu("h100-sxm")) == 1.0
    assert simt_efficiency(get_gpu("rtx-3090"), rho=0.0) == 1.0
    # With a large integer share the shared lanes bound: S / (rho * lanes).
    assert simt_efficiency(get_gpu("rtx-3090"), rho=2.0) == pytest.approx(64 / (2.0 * 128))


def test_tensor_core_base_is_the_roofline_lower_bound():
    frame = pd.DataFrame({"m": [4096, 64], "n": [4096, 8192], "k": [4096, 8192],
                          "dtype": ["f16", "f16"], "gpu": ["a100-sxm4-80gb"] * 2})
    fs = build_features(frame)
    roof = roofline_frame(frame)
    assert np.allclose(np.exp(fs.log_base["runtime"]), roof["lower_bound_s"])
    # Power is relative to TDP, energy to TDP x the runtime base.
    tdp = get_gpu("a100-sxm4-80gb").tdp_w
    assert np.allclose(np.exp(fs.log_base["power"]), tdp)
    assert np.allclose(np.exp(fs.log_base["energy"]), tdp * roof["lower_bound_s"])


def test_fp8_base_takes_the_measured_fp8_efficiency_where_there_is_one():
    # H100 SXM: MAMF FP8 70.9 % of peak against BF16 80.3 % (data/training_kernels.json);
    # the L40S has no such measurement and keeps its quoted FP8 peak.
    frame = pd.DataFrame({"m": [8192] * 3, "n": [8192] * 3, "k": [8192] * 3,
                          "dtype": ["fp8", "bf16", "fp8"],
                          "gpu": ["h100-sxm", "h100-sxm", "l40s"]})
    base = np.exp(build_features(frame).log_base["runtime"])
    flops = 2.0 * 8192**3
    h100, l40s = get_gpu("h100-sxm"), get_gpu("l40s")
    assert base[0] == pytest.approx(flops / (h100.peak("fp8") * 0.883))
    assert base[1] == pytest.approx(flops / h100.peak("bf16"))
    assert base[2] == pytest.approx(flops / l40s.peak("fp8"))


def test_simt_base_uses_the_effective_fp32_rate_and_the_clock():
    gpu = get_gpu("rtx-3090")
    frame = pd.DataFrame({"m": [4096] * 2, "n": [4096] * 2, "k": [4096] * 2,
                          "dtype": ["f32"] * 2, "gpu": ["rtx-3090"] * 2,
                          "sm_clock_mhz": [np.nan, gpu.boost_clock_mhz / 2]})
    base = np.exp(build_features(frame).log_base["runtime"])
    flops = 2.0 * 4096**3
    assert base[0] == pytest.approx(flops / (gpu.peak("fp32") * simt_efficiency(gpu)))
    assert base[1] == pytest.approx(2 * base[0])   # half the clock, twice the compute time
    power = np.exp(build_features(frame).log_base["power"])
    assert power[0] == pytest.approx(gpu.tdp_w)
    assert power[1] == pytest.approx(gpu.tdp_w * 0.5**POWER_CLOCK_EXPONENT)


def test_an_unrecorded_clock_in_a_spec_range_takes_its_geometric_middle_and_its_spread():
    laptop = get_gpu("rtx-3060-laptop")   # NVIDIA: 1,283-1,703 MHz boost, set by the laptop
    low, high = laptop.extra["boost_clock_min_mhz"], laptop.boost_clock_mhz
    frame = pd.DataFrame({"m": [4096] * 3, "n": [4096] * 3, "k": [4096] * 3, "dtype": ["f32"] * 3,
                          "gpu": ["rtx-3060-laptop", "rtx-3060-laptop", "rtx-3090"],
                          "sm_clock_mhz": [np.nan, high, np.nan]})
    fs = build_features(frame)
    base = np.exp(fs.log_base["runtime"])
    clock_ratio = fs.numeric["clock_ratio"].to_numpy()
    assert clock_ratio[0] == pytest.approx(np.sqrt(low / high)) and clock_ratio[1] == 1.0
    assert base[0] == pytest.approx(base[1] * np.sqrt(high / low))
    # Uniform in log clock over the range: sd = width / sqrt(12); a recorded clock has none,
    # nor has a GPU with one boost clock.
    assert fs.log_clock_sd[0] == pytest.approx(np.log(high / low) / np.sqrt(12))
    assert fs.log_clock_sd[1] == 0 and fs.log_clock_sd[2] == 0 and clock_ratio[2] == 1.0


def test_xgemm_params_from_json_equal_params_as_columns():
    frame = xgemm_frame(12)
    wide = frame.drop(columns=["params"])
    params = pd.DataFrame([json.loads(p) for p in frame["params"]])
    wide = pd.concat([wide, params], axis=1)
    a = build_features(frame).numeric
    b = build_features(wide).numeric
    pd.testing.assert_frame_equal(a, b)
    assert (a["MWI"] == params["MWG"] / params["MDIMC"]).all()
    # Footprint estimates feed the occupancy calculator.
    assert (a["blocks_per_sm"] >= 1).all() and (a["occupancy"] <= 1).all()
    smem = (params["SA"] * params["MWG"] + params["SB"] * params["NWG"]) * 32 * 4
    smem_per_sm = np.array([get_gpu(g).smem_per_sm_bytes for g in frame["gpu"]])
    assert np.allclose(a["smem_fraction"], smem / smem_per_sm)


def test_rows_without_a_shape_get_missing_features_and_a_default_or_flops_base():
    frame = pd.DataFrame({
        "gpu": ["gtx-titan-x", "a100-pcie-40gb"], "kernel_name": ["gemm", "fp32_kernel"],
        "dtype": [None, "f32"], "sm_clock_mhz": [595.0, 705.0],
        "params": ['{"benchmark": "gemm"}', '{"flops": 1e12}'],
    })
    fs = build_features(frame)
    assert fs.numeric.shape == (2, len(NUMERIC_FEATURES))
    assert fs.numeric.loc[0, "log2_m"] == MISSING and fs.numeric.loc[0, "tile_m"] == MISSING
    base = np.exp(fs.log_base["runtime"])
    assert base[0] == pytest.approx(DEFAULT_BASE_S)
    a100 = get_gpu("a100-pcie-40gb")
    expected = 1e12 / (a100.peak("fp32") * 705.0 / a100.boost_clock_mhz)
    assert base[1] == pytest.approx(expected)
    assert np.isfinite(fs.numeric.to_numpy()).all()


def test_gpu_resolution_by_key_alias_or_device_name():
    frame = pd.DataFrame({"gpu": ["a100", None],
                          "device_name": [None, "NVIDIA GeForce RTX 3060 Laptop GPU"]})
    assert list(resolve_gpus(frame)) == ["a100-sxm4-80gb", "rtx-3060-laptop"]
    with pytest.raises(UnknownGpuError, match="name no known GPU"):
        resolve_gpus(pd.DataFrame({"device_name": ["Voodoo 5 6000"]}))


def test_features_do_not_depend_on_row_order_or_index():
    frame = xgemm_frame(30)
    shuffled = frame.sample(frac=1.0, random_state=1)
    a = build_features(frame).numeric
    b = build_features(shuffled).numeric
    order = shuffled.index.to_numpy()
    np.testing.assert_array_equal(a.to_numpy()[order], b.to_numpy())


@pytest.mark.shared_data
def test_kernel_tuner_features_are_complete_on_the_real_cache(shared_data):
    from gemmperf.predict.data import load_data

    frame = load_data([shared_data / "kernel_tuner_xgemm_RTX_3060_laptop.json.gz"])
    fs = build_features(frame.head(500))
    for name in ("MWI", "NWI", "occupancy", "waves", "regs_per_thread", "log_compute_s"):
        assert (fs.numeric[name] != MISSING).all(), name
    assert set(fs.gpu) == {"rtx-3060-laptop"}
