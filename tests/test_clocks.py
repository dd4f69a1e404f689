"""DVFS power model and the energy-optimal clock (and its check on the measured sweeps)."""

from __future__ import annotations

import numpy as np
import pytest

from gemmperf.errors import InvalidConfigError
from gemmperf.hardware.specs import get_gpu
from gemmperf.tune.clocks import check_on_records, clock_grid, recommend_clock
from gemmperf.tune.power import DvfsParams, dvfs_params, utilization_power

PARAMS = DvfsParams(sigma=0.2, kappa=0.75, v_knee=0.8, activity_at_peak=0.6)


def test_power_model_shape():
    gpu = get_gpu("a100-pcie-40gb")
    f = clock_grid(gpu)
    assert f[-1] == gpu.boost_clock_mhz and np.all(np.diff(f) > 0)
    power = PARAMS.power(gpu, f, 1.0)
    assert np.all(np.diff(power) > 0)
    # At the boost clock a fully active kernel draws the TDP; idle draws the static share.
    assert power[-1] == pytest.approx(gpu.tdp_w)
    assert PARAMS.power(gpu, gpu.boost_clock_mhz, 0.0) == pytest.approx(0.2 * gpu.tdp_w)
    # Below the knee the voltage is flat, so power is linear in the clock.
    low = f[f < 0.7 * gpu.boost_clock_mhz]
    slope = np.diff(PARAMS.power(gpu, low, 1.0)) / np.diff(low)
    assert np.allclose(slope, slope[0])


def test_compute_bound_energy_is_lowest_at_the_knee():
    gpu = get_gpu("a100-pcie-40gb")
    answer = recommend_clock(gpu, runtime_s=1e-3, compute_s=1.0, memory_s=0.0,
                             roofline_fraction=1.0, params=PARAMS)
    knee = PARAMS.kappa * gpu.boost_clock_mhz
    assert abs(answer.clock_mhz - knee) <= 15
    assert answer.time_cost == pytest.approx(gpu.boost_clock_mhz / answer.clock_mhz)
    assert 0 < answer.energy_saving < 1
    edp = recommend_clock(gpu, runtime_s=1e-3, compute_s=1.0, memory_s=0.0,
                          roofline_fraction=1.0, params=PARAMS, objective="edp")
    assert edp.clock_mhz >= answer.clock_mhz             # delay weighs against slow clocks


def test_memory_bound_kernels_can_drop_the_clock_further():
    gpu = get_gpu("a100-pcie-40gb")
    compute = recommend_clock(gpu, runtime_s=1e-3, compute_s=1.0, memory_s=0.0,
                              roofline_fraction=1.0, params=PARAMS)
    memory = recommend_clock(gpu, runtime_s=1e-3, compute_s=0.2, memory_s=1.0,
                             roofline_fraction=0.5, params=PARAMS)
    assert memory.clock_mhz < compute.clock_mhz
    assert memory.time_cost == pytest.approx(1.0)        # still memory bound at that clock


def test_calibration_lookup_and_utilisation_power():
    own, calibrated = dvfs_params(get_gpu("a100-pcie-40gb"))
    generic, is_own = dvfs_params(get_gpu("h100-sxm"))
    assert calibrated and not is_own and own != generic
    watts = utilization_power(get_gpu("h100-sxm"), np.array([0.0, 0.5, 1.0, np.nan]))
    assert np.all(np.diff(watts[:3]) > 0) and watts[3] == watts[0]
    with pytest.raises(InvalidConfigError, match="clock objective"):
        recommend_clock("h100-sxm", runtime_s=1e-3, compute_s=1.0, memory_s=0.0,
                        roofline_fraction=1.0, objective="time")


@pytest.mark.shared_data
def test_recommended_clocks_on_the_measured_sweeps(shared_data):
    from gemmperf.importers import load_dataset

    records = load_dataset([shared_data / "kt_fp32_power_vs_clock.csv",
                            shared_data / "gpuptxmodel_gtxtitanx_dvfs.csv"])
    own = check_on_records(records, leave_gpu_out=False)
    other = check_on_records(records, leave_gpu_out=True)
    assert set(own["gpu"]) == {"a100-pcie-40gb", "rtx-a4000", "gtx-titan-x"}
    # With its own calibration the chosen clock is within 1 % of the lowest measured energy;
    # with the other GPUs' calibration, still better than running at the top clock.
    assert (own["energy_ratio"] <= 1.01).all()
    assert (other["energy_ratio"] < other["top_clock_energy_ratio"]).all()
    assert np.median(other["energy_ratio"]) < 1.1


def test_a_predicted_power_rescales_the_curve_but_not_the_choice():
    gpu = get_gpu("a100-pcie-40gb")
    plain = recommend_clock(gpu, runtime_s=1e-3, compute_s=1.0, memory_s=0.0,
                            roofline_fraction=1.0, params=PARAMS)
    scaled = recommend_clock(gpu, runtime_s=1e-3, compute_s=1.0, memory_s=0.0,
                             roofline_fraction=1.0, params=PARAMS, power_at_boost_w=100.0)
    assert scaled.clock_mhz == plain.clock_mhz
    assert scaled.curve["power_w"].iloc[-1] == pytest.approx(100.0)
    assert scaled.energy_saving == pytest.approx(plain.energy_saving)


def test_pareto_mask():
    from gemmperf.report_recommend import pareto_mask

    time = np.array([1.0, 2.0, 3.0, 1.5, 2.5])
    energy = np.array([5.0, 3.0, 1.0, 6.0, 3.5])
    assert pareto_mask(time, energy).tolist() == [True, True, True, False, False]


def test_summary_rows_keep_the_chosen_and_the_boost_clock():
    answer = recommend_clock("rtx-3090", runtime_s=5e-3, compute_s=4.9e-3, memory_s=1e-3,
                             roofline_fraction=0.9)
    rows = answer.summary_rows(rows=8)
    clocks = rows["clock_mhz"].tolist()
    assert answer.clock_mhz in clocks and answer.boost_clock_mhz == clocks[-1]
    assert clocks == sorted(clocks) and 8 <= len(rows) <= 10
    assert answer.clock_mhz < answer.boost_clock_mhz   # the choice is a row of its own


def test_a_config_without_finite_times_is_one_clear_error():
    with pytest.raises(InvalidConfigError, match="finite times"):
        recommend_clock("a100", runtime_s=float("inf"), compute_s=1e-3, memory_s=1e-4,
                        roofline_fraction=0.5)
