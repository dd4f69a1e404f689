"""recommend(): ranking with a stand-in model, objectives, default speedup; the pruning hook."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from recommend_helpers import AnalyticModel, synthetic_log_time

from gemmperf.errors import InvalidConfigError, InvalidProblemError
from gemmperf.problem import GemmProblem, KernelConfig
from gemmperf.recommend import rank_space, recommend
from gemmperf.spaces import get_space, load_space_spec
from gemmperf.tune.models import RooflineModel, model_for_family, reference_gpus
from gemmperf.tune.prune import ConfigPruner, config_values

PROBLEM = GemmProblem(4096, 4096, 4096, dtype="f32", layout="nt")


@pytest.fixture(scope="module")
def space():
    return get_space("clblast_xgemm", PROBLEM, "rtx-3090")


def test_recommend_ranks_by_the_model_and_carries_tunables(space):
    result = recommend(PROBLEM, "rtx-3090", space=space, model=AnalyticModel(), top=5)
    assert list(result["rank"]) == [1, 2, 3, 4, 5]
    expected = np.sort(np.exp(synthetic_log_time(space.candidates, "rtx-3090")))[:5]
    assert np.allclose(result["runtime_s"].to_numpy(), expected)
    for name in ("MWG", "NWG", "VWM", "SA", "params", "runtime_s_lo", "runtime_s_hi",
                 "power_w", "energy_j", "bound", "roofline_fraction", "speedup_vs_default"):
        assert name in result.columns
    assert (result["MWG"] == 128).all()                 # the stand-in favours big tiles
    assert result.attrs["space"]["valid"] == 17_956
    assert result.attrs["default"]["rank"] > 5
    assert "VWM" in result.attrs["tunables"] and "KWG" not in result.attrs["tunables"]


def test_speedup_is_relative_to_the_default_config(space):
    table = rank_space(space, PROBLEM, "rtx-3090", AnalyticModel())
    default = table[table["is_default"]].iloc[0]
    assert default["speedup_vs_default"] == pytest.approx(1.0)
    best = table.iloc[0]
    assert best["speedup_vs_default"] == pytest.approx(default["runtime_s"] / best["runtime_s"])


def test_energy_and_edp_objectives_use_predicted_power(space):
    by_time = rank_space(space, PROBLEM, "rtx-3090", AnalyticModel(), objective="time")
    by_energy = rank_space(space, PROBLEM, "rtx-3090", AnalyticModel(), objective="energy")
    by_edp = rank_space(space, PROBLEM, "rtx-3090", AnalyticModel(), objective="edp")
    assert (by_energy["energy_j"] == by_energy["runtime_s"] * by_energy["power_w"]).all()
    assert np.all(np.diff(by_energy["energy_j"].to_numpy()) >= 0)
    assert np.all(np.diff(by_edp["edp_js"].to_numpy()) >= 0)
    # The stand-in halves power at VWN=8, so the energy ranking prefers VWN=8 configs.
    assert by_energy.iloc[0]["VWN"] == 8 and by_time.iloc[0]["VWN"] != 8
    assert (by_energy["power_source"] == "model").all()


def test_without_power_predictions_the_utilisation_model_fills_in(space):
    table = rank_space(space, PROBLEM, "rtx-3090", AnalyticModel(power=False), objective="edp")
    assert (table["power_source"].str.startswith("utilization model")).all()
    assert (table["power_w"] > 0).all() and (table["power_w"] <= 350).all()


def test_roofline_fallback_ranks_a_backend_family():
    result = recommend(GemmProblem(2048, 2048, 2048), "a100-sxm4-80gb", family="blocked",
                       model=RooflineModel(), top=3)
    assert len(result) == 3
    assert result["runtime_s"].is_monotonic_increasing
    assert result.attrs["model"].startswith("roofline")


def test_a_family_the_model_never_measured_is_ranked_by_the_roofline():
    # Trees that never saw a family give its configs one time: the roofline ranks instead.
    trained = SimpleNamespace(families_={"runtime": ["clblast_xgemm"]}, predict=lambda frame: None)
    result = recommend(GemmProblem(2048, 2048, 2048), "a100-sxm4-80gb", family="blocked",
                       model=trained, top=3)
    assert result.attrs["model"] == "roofline (the model has no blocked measurements)"
    assert result["runtime_s"].is_monotonic_increasing
    assert model_for_family(trained, "clblast_xgemm") is trained
    assert model_for_family(AnalyticModel(), "blocked").__class__ is AnalyticModel


def test_bad_requests_are_one_line_errors(space):
    with pytest.raises(InvalidConfigError, match="objective must be one of"):
        recommend(PROBLEM, "rtx-3090", space=space, model=AnalyticModel(), objective="speed")
    with pytest.raises(InvalidConfigError, match="top must be an integer >= 1"):
        recommend(PROBLEM, "rtx-3090", space=space, model=AnalyticModel(), top=0)
    with pytest.raises(InvalidConfigError, match="give a kernel family"):
        recommend(PROBLEM, "rtx-3090", model=AnalyticModel())


def test_reference_gpus_come_from_the_models_training_data():
    model = SimpleNamespace(training_data_=[
        {"source": "kernel_tuner", "gpu": "rtx-3090", "runtime": 100},
        {"source": "kernel_tuner", "gpu": "rtx-2080-ti", "runtime": 200},
        {"source": "vidur", "gpu": "a100-sxm4-80gb", "runtime": 9000},
    ])
    assert reference_gpus(model, "clblast_xgemm", "rtx-3090") == ["rtx-2080-ti"]
    assert reference_gpus(model, "clblast_xgemm", "rtx-4090") == ["rtx-2080-ti", "rtx-3090"]


# -- pruning hook ------------------------------------------------------------------------------


def test_pruner_keeps_the_top_k_of_kernel_tuner_dicts_and_drops_invalid_ones(space):
    spec = load_space_spec("clblast_xgemm")
    default = dict(spec.default)
    configs = [dict(space.config(i).param_dict) for i in space.candidates.index[:40]]
    configs.append({**default, "MWG": 16, "VWM": 8})            # violates the constraints
    pruner = ConfigPruner("rtx-3090", family="clblast_xgemm", model=AnalyticModel(), top_k=5,
                          problem=PROBLEM)
    kept = pruner.prune(configs)
    assert len(kept) == 5
    assert all(any(k is c for c in configs) for k in kept)   # the same objects
    assert not any(k is configs[-1] for k in kept)
    scores = pruner.scores(configs, PROBLEM)
    assert np.isinf(scores[-1])
    assert kept[0] is configs[int(np.argmin(scores))]


def test_kernel_tuner_restriction_admits_exactly_the_top_k():
    spec = load_space_spec("clblast_xgemm")
    tune_params = {n: list(v) for n, v in spec.parameters.items()}
    tune_params["MWG"] = [64, 128]
    tune_params["NWG"] = [64, 128]
    pruner = ConfigPruner("rtx-3090", family="clblast_xgemm", model=AnalyticModel(), top_k=7,
                          problem=PROBLEM)
    restriction = pruner.kernel_tuner_restriction(tune_params)
    import itertools

    names = list(tune_params)
    admitted = [c for c in itertools.product(*tune_params.values())
                if restriction(dict(zip(names, c, strict=True)))]
    assert len(admitted) == 7


class FakeTritonConfig:
    def __init__(self, kwargs, num_warps, num_stages):
        self.kwargs, self.num_warps, self.num_stages = kwargs, num_warps, num_stages


def test_pruner_reads_triton_configs_and_named_args():
    configs = [FakeTritonConfig({"BLOCK_SIZE_M": m, "BLOCK_SIZE_N": n, "BLOCK_SIZE_K": 32},
                                num_warps=w, num_stages=3)
               for m in (32, 64, 128) for n in (32, 64, 128) for w in (4, 8)]
    values = config_values(configs[0])
    assert values == {"tile_m": 32, "tile_n": 32, "tile_k": 32, "stages": 3,
                      "threads_per_block": 128}
    pruner = ConfigPruner("h100-sxm", model=RooflineModel(), top_k=4, dtype="f16")
    kept = pruner(configs, {"M": 4096, "N": 4096, "K": 4096, "a_ptr": None})
    assert len(kept) == 4 and all(isinstance(k, FakeTritonConfig) for k in kept)
    with pytest.raises(InvalidProblemError, match="lack M"):
        pruner(configs, {"rows": 4096})


def test_pruner_accepts_kernel_configs():
    configs = [KernelConfig.make("blocked", tile_m=t, tile_n=t, tile_k=8, threads_per_block=256,
                                 stages=2, thread_m=8, thread_n=8) for t in (32, 64, 128)]
    pruner = ConfigPruner("a100-sxm4-80gb", family="blocked", model=RooflineModel(), top_k=2,
                          problem=GemmProblem(4096, 4096, 4096))
    assert len(pruner.prune(configs)) == 2
    with pytest.raises(InvalidConfigError, match="top_k"):
        ConfigPruner("a100-sxm4-80gb", model=RooflineModel(), top_k=0)


def test_package_level_recommend_is_the_function_even_after_importing_its_module():
    import importlib

    import gemmperf

    module = importlib.import_module("gemmperf.recommend")
    assert callable(gemmperf.recommend) and gemmperf.recommend is module.recommend
    assert gemmperf.ConfigPruner.__name__ == "ConfigPruner"


def test_roofline_model_gives_no_time_to_a_footprint_that_cannot_launch():
    import pandas as pd

    rows = pd.DataFrame({"gpu": "a100", "m": 4096, "n": 4096, "k": 4096, "dtype": "f32",
                         "tile_m": 32, "tile_n": 32, "tile_k": 32, "threads_per_block": 1024,
                         "regs_per_thread": [32, 128]})   # 1024 x 128 > the 64K register file
    runtime = RooflineModel().predict(rows)["runtime_s"].to_numpy()
    assert np.isfinite(runtime[0]) and runtime[0] > 0
    assert np.isnan(runtime[1])
