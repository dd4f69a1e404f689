"""Inputs the planner and the architecture reader refuse (a probe of the Python API): strings
where flags belong, numpy integers accepted as integers, bools not accepted as numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gemmperf._paths import data_dir
from gemmperf.training.config import load_arch
from gemmperf.training.errors import ArchConfigError, PlanError
from gemmperf.training.planner import plan_training

LLAMA = dict(gpu="h100", num_gpus=64, tokens=1e12)


@pytest.mark.parametrize(("option", "value"), [("recompute", "no"), ("flash_attention", "yes"),
                                               ("check_memory", 0), ("dropout", "false")])
def test_a_flag_is_true_or_false(option, value):
    with pytest.raises(PlanError, match=f"{option} must be True or False"):
        plan_training("llama-3-8b", **LLAMA, **{option: value})


@pytest.mark.parametrize(("option", "value"), [("tokens", True), ("pue", True),
                                               ("num_gpus", True)])
def test_a_bool_is_not_a_number(option, value):
    with pytest.raises(PlanError, match=option.replace("pue", "PUE")):
        plan_training("llama-3-8b", **{**LLAMA, option: value})


def test_numpy_integers_are_integers():
    plain = plan_training("llama-3-8b", **LLAMA, tp=2, seq_len=4096)
    numpy = plan_training("llama-3-8b", gpu="h100", num_gpus=np.int64(64),
                          tokens=np.float64(1e12), tp=np.int32(2), seq_len=np.int64(4096))
    assert numpy.step_time_s == plain.step_time_s
    assert numpy.parallelism == plain.parallelism


def _llama_config(**changes) -> dict:
    config = json.loads((data_dir() / "archs" / "llama-3-8b.json").read_text())["config"]
    return {**config, **changes}


@pytest.mark.parametrize(("changes", "message"), [
    ({"tie_word_embeddings": "false"}, "tie_word_embeddings must be true or false"),
    ({"attention_bias": "no"}, "attention_bias must be true or false"),
    ({"max_position_embeddings": -1}, "max_position_embeddings must be positive"),
])
def test_an_architecture_config_with_impossible_values(changes, message):
    assert load_arch(_llama_config()).params.total > 8e9   # the unchanged config loads
    with pytest.raises(ArchConfigError, match=message):
        load_arch(_llama_config(**changes))


@pytest.mark.parametrize(("options", "message"), [
    ({"usd": 1e6, "gpu": "h100", "price_per_gpu_hour": float("nan")},
     "price_per_gpu_hour must be a positive number, got nan"),
    ({"usd": 1e6, "gpu": "h100", "price_per_gpu_hour": "2"},
     "price_per_gpu_hour must be a positive number, got '2'"),
    ({"flops": 1e24, "tokens_per_param": "20"}, "tokens_per_param must be a positive number"),
    ({"flops": 1e24, "num_gpus": 64}, "without a gpu \\(--gpu\\) no plan is made, so num_gpus"),
    ({"flops": 1e24, "pue": 0.5}, "PUE is at least 1.0"),
])
def test_compute_optimal_names_the_option_that_is_wrong(options, message):
    from gemmperf.training.budget import compute_optimal

    with pytest.raises(PlanError, match=message):
        compute_optimal(**options)
