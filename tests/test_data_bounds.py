"""benchmarks/data_bounds.py: references from the measurements alone (GPU transfer, power)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "data_bounds.py"


@pytest.fixture(scope="module")
def bound():
    spec = importlib.util.spec_from_file_location("data_bounds", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_agreeing_gpus_transfer_perfectly_and_a_flipped_best_shows_as_regret(bound):
    base = np.array([1.0, 1.1, 1.3, 2.0, 4.0])
    table = pd.DataFrame({"a": base, "b": 3 * base, "c": 0.5 * base},
                         index=[f"cfg{i}" for i in range(5)])
    same = bound.transfer(table, "c")
    assert same["spearman"] == pytest.approx(1.0) and same["top1_regret"] == 1.0
    # On "c" the second config is the fastest: the pick (first config) costs 1/0.8.
    table.loc["cfg1", "c"] = 0.4
    flipped = bound.transfer(table, "c")
    assert flipped["top1_regret"] == pytest.approx(0.5 / 0.4)
    assert flipped["top1_rank"] == 2
    assert flipped["best_of_top5"] == 1.0 and flipped["configs"] == 5
    # Configs a training GPU did not measure are left out.
    table.loc["cfg4", "a"] = np.nan
    assert bound.transfer(table, "c")["configs"] == 4


@pytest.mark.shared_data
def test_real_caches_give_the_documented_reference(bound, shared_data):
    results = {g: bound.transfer(bound.measured_table(str(shared_data)), g)
               for g in bound.CACHES}
    assert all(r["configs"] == 10_000 for r in results.values())
    assert results["rtx-3090"]["top1_regret"] > 1.4   # the SA=1 preference nothing else shows
    assert results["rtx-3090"]["top1_rank"] > 100
    common = bound.one_config_for_all(bound.measured_table(str(shared_data)))
    assert common["configs_within_on_every_gpu"] == 0 and common["best_worst_case_regret"] > 1.1
    assert all(0.9 < r["spearman"] < 0.97 for r in results.values())
    assert results["rtx-2080-ti"]["mape_level_known"] > 12   # the target, out of reach
    power = bound.unseen_benchmark_power(pd.read_csv(shared_data / bound.DVFS_TABLE))
    assert power["benchmarks"] == 24 and 10 < power["median_ape"] < 20


def test_one_config_for_all_is_the_best_worst_case(bound):
    table = pd.DataFrame({"a": [1.0, 1.04, 2.0], "b": [1.5, 1.02, 1.0]},
                         index=["fast on a", "good on both", "fast on b"])
    common = bound.one_config_for_all(table)
    assert common["best_worst_case_regret"] == pytest.approx(1.04)
    assert common["configs_within_on_every_gpu"] == 1 and common["configs"] == 3
    assert bound.one_config_for_all(table, within=1.03)["configs_within_on_every_gpu"] == 0


def test_level_known_mape_takes_the_best_constant(bound):
    measured = np.array([1.0, 2.0, 4.0, 8.0])
    assert bound.level_known_mape(3 * measured, measured) == pytest.approx(0.0)
    predicted = measured * np.array([1.0, 1.1, 0.8, 1.3])
    best = bound.level_known_mape(predicted, measured)
    grid = [np.mean(np.abs(c * predicted / measured - 1)) * 100
            for c in np.linspace(0.5, 1.5, 20001)]
    assert best == pytest.approx(min(grid), abs=1e-3)


def test_unseen_benchmark_power_is_the_others_geometric_mean(bound):
    rows = [{"benchmark": b, "mem_clock_mhz": 810, "core_clock_mhz": c, "avg_power_w": w * c}
            for b, w in (("a", 1.0), ("b", 2.0), ("c", 4.0)) for c in (500, 1000)]
    result = bound.unseen_benchmark_power(pd.DataFrame(rows))
    # a from b, c: sqrt(2 * 4) = 2.83 (+183 %); b from a, c: 2 (0 %); c from a, b: 1.41 (-65 %).
    assert result["benchmarks"] == 3 and result["rows"] == 6
    assert result["median_ape"] == pytest.approx(100 * (1 - np.sqrt(2) / 4))
