"""Predictor intervals: conformal calibration units, the unseen-GPU level term and the
unseen-kernel scatter."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from predict_helpers import SMALL, xgemm_frame

from gemmperf.features import build_features
from gemmperf.hardware.specs import get_gpu
from gemmperf.predict import calibration
from gemmperf.predict.forest import Predictor
from gemmperf.predict.training_data import (
    calibration_groups,
    gpu_level_sd,
    gpu_levels,
    new_draw_factor,
)
from gemmperf.predict.unseen_kernels import unseen_kernels


def test_interval_is_calibrated_on_held_out_rows():
    train, test = xgemm_frame(600, seed=1), xgemm_frame(300, seed=2)
    model = Predictor(targets=("runtime",), n_estimators=16, max_leaf_nodes=128).fit(train)
    pred = model.predict(test)
    true = test["runtime_s"]
    inside = (true >= pred["runtime_s_lo"]) & (true <= pred["runtime_s_hi"])
    assert model.interval_scale_["runtime"] > 0
    assert 0.6 <= inside.mean() <= 0.97


def test_unseen_gpu_widens_the_interval_by_the_between_gpu_level_scatter():
    frame = xgemm_frame(300)
    seen = frame[frame["gpu"] != "a100-sxm4-80gb"]
    model = Predictor(targets=("runtime",), **SMALL).fit(seen)
    assert model.gpus_["runtime"] == ["rtx-2080-ti", "rtx-3090"]
    assert model.gpu_level_sd_["runtime"] > 0
    row = seen.head(1)
    moved = row.assign(gpu="a100-sxm4-80gb")
    width = lambda p: float(np.log(p["runtime_s_hi"] / p["runtime_s_lo"]).iloc[0])  # noqa: E731
    assert width(model.predict(moved)) > width(model.predict(row))
    # On a laptop part the unrecorded clock (a range on the spec sheet) widens it further (in
    # quadrature with the level term, so by less the wider that already is).
    laptop = row.assign(gpu="rtx-3060-laptop")
    clocked = laptop.assign(sm_clock_mhz=get_gpu("rtx-3060-laptop").boost_clock_mhz)
    assert width(model.predict(laptop)) > width(model.predict(clocked)) + 0.01


def test_a_model_of_one_gpu_says_its_interval_on_another_leaves_the_level_out():
    frame = xgemm_frame(300)
    one = frame[frame["gpu"] == "rtx-3090"]
    model = Predictor(targets=("runtime",), **SMALL).fit(one)
    assert model.gpu_level_sd_["runtime"] == 0
    with pytest.warns(UserWarning, match="runtime interval on rtx-2080-ti leaves out"):
        model.predict(one.head(2).assign(gpu="rtx-2080-ti"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # on the GPU it measured: nothing to say
        model.predict(one.head(2))


def test_the_level_term_is_a_prediction_interval_for_a_new_gpu():
    # Two GPUs of one family, levels +-0.1 around their mean: s = 0.1 * sqrt(2) with 1 degree
    # of freedom; a third GPU's 80 % half-width is t(0.9, 1) * s * sqrt(1 + 1/2) = 0.533,
    # returned as the sd whose normal 0.9 quantile gives it.
    z = np.array([0.1, 0.1, -0.1, -0.1])
    gpus = np.array(["a", "a", "b", "b"])
    families = np.array(["f"] * 4)
    sd = gpu_level_sd(z, gpus, families, interval=0.8)
    assert sd * 1.2815516 == pytest.approx(3.0776835 * 0.1 * np.sqrt(2) * np.sqrt(1.5), rel=1e-6)
    # Many GPUs: the t quantile and the mean's uncertainty fade, leaving the sample sd.
    levels = np.linspace(-0.2, 0.2, 200)
    many = gpu_level_sd(levels, np.arange(200).astype(str), np.array(["f"] * 200))
    assert many == pytest.approx(np.std(levels, ddof=1), rel=0.01)
    assert gpu_level_sd(z, np.array(["a"] * 4), families) == 0.0   # one GPU: nothing to say


def test_one_more_draw_of_few_values_is_wider_than_their_scatter():
    assert new_draw_factor(2, 1, 0.8) == pytest.approx(3.0776835 / 1.2815516 * np.sqrt(1.5))
    assert new_draw_factor(4, 3, 0.8) == pytest.approx(1.6377444 / 1.2815516 * np.sqrt(1.25))
    assert 1.0 < new_draw_factor(1000, 999, 0.8) < 1.002


def test_calibration_holds_out_problems_where_a_gpu_has_many_and_configs_where_it_has_one():
    shapes = pd.DataFrame({"family": "cublas", "m": np.repeat(np.arange(12) * 64 + 64, 2),
                           "n": 512, "k": 512, "dtype": "f16"})   # 12 shapes, each twice
    one_shape = pd.DataFrame({"family": "clblast_xgemm", "m": [4096] * 5, "n": 4096,
                              "k": 4096, "dtype": "f32"})        # 5 configs of one shape
    frame = pd.concat([shapes, one_shape], ignore_index=True)
    units = calibration_groups(frame, np.array(["a100"] * len(shapes) + ["rtx-3090"] * 5))
    assert (units[:24:2] == units[1:24:2]).all()                  # a shape's twins together
    assert len(set(units[:24])) == 12
    assert len(set(units[24:])) == 5 and not set(units[24:]) & set(units[:24])
    # The same shape on another GPU is another unit.
    moved = calibration_groups(shapes, np.array(["a100"] * 12 + ["a40"] * 12))
    assert len(set(moved)) == 24
    # Every row its own unit: the codes are the row order (calibration draws unchanged).
    assert calibration_groups(one_shape, np.array(["rtx-3090"] * 5)).tolist() == [0, 1, 2, 3, 4]


def test_calibration_holds_out_a_clock_with_every_benchmark_run_at_it():
    # A DVFS table: 12 benchmarks (one "shape") at 10 core clocks x 2 memory clocks.
    clocks = pd.MultiIndex.from_product([range(600, 1600, 100), [3000, 3500]]).to_frame()
    dvfs = pd.DataFrame({"family": "dvfs_benchmark",
                         "kernel_name": np.repeat([f"bench{i}" for i in range(12)], 20),
                         "sm_clock_mhz": np.tile(clocks[0].to_numpy(), 12),
                         "mem_clock_mhz": np.tile(clocks[1].to_numpy(), 12)})
    units = calibration_groups(dvfs, np.array(["gtx-titan-x"] * len(dvfs)))
    assert len(set(units)) == 20
    for _, rows in dvfs.groupby(["sm_clock_mhz", "mem_clock_mhz"]).groups.items():
        assert len(set(units[rows])) == 1                 # a clock: all 12 benchmarks
    # Shapes win over clocks: a swept shape is held out at all its clocks.
    shapes = dvfs.assign(m=np.repeat(np.arange(12) * 64 + 64, 20), n=512, k=512)
    units = calibration_groups(shapes, np.array(["a100"] * len(shapes)))
    assert len(set(units)) == 12 and all(len(set(units[i:i + 20])) == 1 for i in range(0, 240, 20))
    # Few clocks and one shape: every row its own unit.
    few = dvfs[dvfs["sm_clock_mhz"] < 1000]
    assert calibration_groups(few, np.array(["a100"] * len(few))).tolist() == list(range(len(few)))


def test_few_calibration_units_are_each_held_out_once(monkeypatch):
    seen = []
    original = calibration.calibration_ratios

    def record(model, rows, z, gpus, held, chosen):
        seen.append(held.copy())
        return original(model, rows, z, gpus, held, chosen)

    monkeypatch.setattr(calibration, "calibration_ratios", record)
    small = xgemm_frame(150)                      # 150 rows, each its own unit: 5 folds
    model = Predictor(targets=("runtime",), **SMALL).fit(small)
    assert len(seen) == 5
    assert (np.sum(seen, axis=0) == 1).all()      # every row scored exactly once
    assert model.interval_scale_["runtime"] > 0
    seen.clear()
    Predictor(targets=("runtime",), **SMALL).fit(xgemm_frame(300))   # enough: one 20 % draw
    assert len(seen) == 1 and 0.1 < seen[0].mean() < 0.3


def test_repeated_measurements_do_not_make_the_interval_too_narrow_on_new_shapes():
    # Each shape measured twice (like the XLA table's two versions): held out row by row, the
    # calibration would see a twin of every held-out row and under-cover new shapes.
    rng = np.random.default_rng(3)

    def table(shapes: np.ndarray) -> pd.DataFrame:
        m, n, k = (np.repeat(shapes[:, i], 2) for i in range(3))
        flops = 2.0 * m * n * k
        # a shape's own effect, shared by its twins, and run-to-run noise
        noise = np.repeat(rng.normal(0, 0.15, len(shapes)), 2) \
            + rng.normal(0, 0.005, 2 * len(shapes))
        return pd.DataFrame({"source": "table", "family": "cublas", "m": m, "n": n, "k": k,
                             "dtype": "f16", "gpu": "h100-sxm",
                             "runtime_s": flops / 4e14 * np.exp(noise) + 5e-6})
    sizes = (2 ** rng.uniform(8, 13, size=(600, 3))).astype(int)   # 600 distinct shapes
    train, test = table(sizes[:400]), table(sizes[400:])
    model = Predictor(targets=("runtime",), n_estimators=16, max_leaf_nodes=256).fit(train)
    pred = model.predict(test)
    true = test["runtime_s"]
    inside = (true >= pred["runtime_s_lo"]) & (true <= pred["runtime_s_hi"])
    assert 0.7 <= inside.mean() <= 0.95   # 0.68 when calibrated row by row


def test_gpu_levels_compare_like_configs_not_config_mix():
    # Config c has effect c / 10; GPU levels -0.1 / 0 / +0.1. GPUs a and b measured configs
    # 0-99, c only the slow half 50-99, and d (like the RTX A6000 prefix) configs no other GPU
    # has. Medians of each GPU's own rows would put c 0.05 too high and d anywhere.
    rows = [(g, c) for g, span in (("a", range(100)), ("b", range(100)), ("c", range(50, 100)),
                                  ("d", range(200, 300))) for c in span]
    gpus = np.array([g for g, _ in rows])
    configs = np.array([c for _, c in rows])
    level = {"a": -0.1, "b": 0.0, "c": 0.1, "d": 0.5}
    z = configs / 10 + np.array([level[g] for g in gpus])
    [levels] = gpu_levels(z, gpus, configs)                        # one linked group
    assert sorted(levels.index) == ["a", "b", "c"]                 # d shares no config
    assert levels.to_dict() == pytest.approx({"a": -0.1, "b": 0.0, "c": 0.1}, abs=1e-6)
    # Two groups linked by nothing: each is levelled on its own, not against the other.
    apart = np.isin(gpus, ["a", "b"])
    both = np.concatenate([z[apart], z[apart] + 5.0])
    names = np.concatenate([gpus[apart], np.where(gpus[apart] == "a", "e", "f")])
    where = np.concatenate([configs[apart], configs[apart] + 1000])
    groups = gpu_levels(both, names, where)
    assert sorted(sorted(g.index) for g in groups) == [["a", "b"], ["e", "f"]]
    for group in groups:   # a and e run 0.1 below b and f, in each group
        assert group.sort_index().tolist() == pytest.approx([-0.05, 0.05], abs=1e-6)
    families = np.array(["f"] * len(z))
    matched = gpu_level_sd(z, gpus, families, configs=configs)
    assert matched < gpu_level_sd(z, gpus, families)                # the config mix inflates it
    # A family whose GPUs share no config (one kernel's rows differing in their clock, say)
    # falls back to each GPU's own median.
    alone = gpu_level_sd(z[gpus != "c"], gpus[gpus != "c"], families[gpus != "c"],
                         configs=np.arange((gpus != "c").sum()))
    assert alone == gpu_level_sd(z[gpus != "c"], gpus[gpus != "c"], families[gpus != "c"])


def test_unseen_kernel_is_averaged_over_the_family_with_its_scatter_in_the_interval():
    rng = np.random.default_rng(0)
    levels = {"a": 80.0, "b": 120.0, "c": 160.0}
    rows = [{"gpu": "gtx-titan-x", "family": "bench", "kernel_name": name,
             "sm_clock_mhz": clock, "runtime_s": 1e-3, "power_w": watts * (clock / 1000) ** 0.5
             * float(np.exp(rng.normal(0, 0.005)))}
            for name, watts in levels.items() for clock in np.linspace(600, 1100, 12)]
    model = Predictor(targets=("power",), **SMALL).fit(pd.DataFrame(rows))
    assert model.kernels_["power"] == {"bench": ["a", "b", "c"]}
    new = pd.DataFrame([{"gpu": "gtx-titan-x", "family": "bench", "kernel_name": "d",
                         "sm_clock_mhz": 1000.0}])
    pred = model.predict(new).iloc[0]
    assert pred["power_w"] == pytest.approx(np.exp(np.mean(np.log([80, 120, 160]))), rel=0.05)
    assert pred["power_w_lo"] < 100 and pred["power_w_hi"] > 140
    # The scatter is a prediction interval for one more kernel: sample sd x t x sqrt(1 + 1/3).
    known = pd.concat([new.assign(kernel_name=k) for k in levels], ignore_index=True)
    per_kernel = np.log(model.predict(known)["power_w"].to_numpy())
    features = build_features(new)
    [(rows, _, scatter)] = unseen_kernels(model, "power", model._matrix(features), features)
    assert rows.tolist() == [0]
    assert scatter[0] == pytest.approx(np.std(per_kernel, ddof=1) * new_draw_factor(3, 2, 0.8),
                                       rel=1e-4)


def test_an_expert_is_calibrated_even_where_holding_out_leaves_it_too_few_rows(monkeypatch):
    # 300 rows of one GPU, experts from 250: the final fit has an expert, a calibration fit on
    # ~80 % of the rows would not by the row count alone. It must get one there too, or the
    # expert's (narrower) tree spread would be scaled as the shared ensemble's (the XLA
    # table's 1,200 rows per fold: 80 % coverage came out 0.03).
    chosen_seen = []
    original = calibration.calibration_ratios

    def record(model, rows, z, gpus, held, chosen):
        chosen_seen.append(list(chosen))
        shared, expert = original(model, rows, z, gpus, held, chosen)
        assert len(expert) == held.sum()            # every held-out row scored with it
        return shared, expert

    monkeypatch.setattr(calibration, "calibration_ratios", record)
    model = Predictor(targets=("runtime",), expert_min_rows=250, **SMALL).fit(
        xgemm_frame(300, gpus=("rtx-3090",)))
    assert chosen_seen == [["rtx-3090"]] and list(model.experts_["runtime"]) == ["rtx-3090"]
    assert model.expert_interval_scale_["runtime"] != model.interval_scale_["runtime"]
