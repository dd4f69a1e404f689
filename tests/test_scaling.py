"""Scaling laws: published constants, compute optima, over-training, inference-aware optima."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gemmperf.training.errors import PlanError
from gemmperf.training.scaling import batch_guidance, get_law, laws, optimum

CHINCHILLA_FLOPS = 5.76e23   # Hoffmann et al. 2022: Gopher's (and Chinchilla's) compute budget


def test_constants_come_from_the_data_file_with_sources():
    table = laws()
    assert set(table) == {"hoffmann", "epoch", "kaplan", "deepseek"}
    assert table["hoffmann"].constants == {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34,
                                           "beta": 0.28}
    assert table["epoch"].stderr["B"] == 1293.23
    for law in table.values():
        assert "arXiv" in law.source


def test_epoch_fit_recovers_chinchilla_70b_on_1p4t_tokens():
    opt = optimum(CHINCHILLA_FLOPS, "epoch")
    assert opt.n_params == pytest.approx(70e9, rel=0.10)
    assert opt.tokens == pytest.approx(1.4e12, rel=0.10)
    assert 15 < opt.tokens_per_param < 25                  # Epoch: ~20 tokens per parameter
    lo, hi = opt.n_params_interval
    assert lo < 70e9 < hi
    lo, hi = opt.tokens_interval
    assert lo < 1.4e12 < hi
    assert 6 * opt.n_params * opt.tokens == pytest.approx(CHINCHILLA_FLOPS)


def test_uncertainty_is_reproducible_with_a_seed():
    a = optimum(1e22, "epoch", seed=3)
    b = optimum(1e22, "epoch", seed=3)
    assert a.n_params_interval == b.n_params_interval
    assert a.loss_interval[0] < a.loss < a.loss_interval[1]


def test_chinchilla_closed_form_is_the_minimum_of_the_loss_on_the_budget():
    for key in ("hoffmann", "epoch"):
        law = get_law(key)
        opt = optimum(1e23, key)
        n = np.logspace(8, 12, 20001)
        best = n[np.argmin(law.loss(n, 1e23 / (6 * n)))]
        assert opt.n_params == pytest.approx(best, rel=1e-3)


def test_hoffmann_published_approach3_constants_favour_smaller_models():
    # Besiroglu et al. 2024: the rounded approach-3 fit implies far more tokens per parameter
    # than Chinchilla's own 20, i.e. a smaller model at Chinchilla's compute.
    opt = optimum(CHINCHILLA_FLOPS, "hoffmann")
    assert 25e9 < opt.n_params < 45e9
    assert opt.tokens_per_param > 50


def test_kaplan_model_grows_as_compute_to_the_0p73():
    small, big = optimum(1e21, "kaplan"), optimum(1e22, "kaplan")
    assert big.n_params / small.n_params == pytest.approx(10 ** 0.73)
    assert big.loss < small.loss
    assert small.params_counted == "non_embedding"


def test_deepseek_m_times_d_is_the_budget():
    opt = optimum(1e24, "deepseek")
    assert opt.flops_per_token * opt.tokens == pytest.approx(1e24, rel=2e-3)
    assert opt.loss is None
    assert opt.n_params == pytest.approx(opt.flops_per_token / 6)


def test_fixed_tokens_per_param_overtrains_on_the_same_budget():
    base = optimum(1e23, "epoch")
    over = optimum(1e23, "epoch", tokens_per_param=200)
    assert over.tokens / over.n_params == pytest.approx(200)
    assert 6 * over.n_params * over.tokens == pytest.approx(1e23)
    assert over.n_params < base.n_params and over.loss > base.loss


def test_inference_aware_optimum_matches_the_compute_optimal_loss_with_a_smaller_model():
    base = optimum(1e23, "epoch")
    aware = optimum(1e23, "epoch", inference_tokens=2e13)
    assert aware.loss == pytest.approx(base.loss, rel=1e-9)
    assert get_law("epoch").loss(aware.n_params, aware.tokens) == pytest.approx(aware.loss)
    assert aware.n_params < base.n_params
    assert aware.training_flops > 1e23
    total = aware.training_flops + aware.inference_flops
    assert total < 1e23 + 2 * base.n_params * 2e13     # cheaper than the Chinchilla model overall
    # With no inference the compute-optimal point comes back.
    zero = optimum(1e23, "epoch", inference_tokens=0)
    assert zero.n_params == pytest.approx(base.n_params, rel=0.01)


def test_kaplan_inference_aware_uses_its_own_loss_surface():
    aware = optimum(1e22, "kaplan", inference_tokens=0)
    assert aware.training_flops == pytest.approx(1e22, rel=0.01)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"flops": -1.0}, "positive number of FLOPs"),
    ({"flops": math.inf}, "positive number of FLOPs"),
    ({"flops": 1e22, "law": "gpt4"}, "unknown scaling law"),
    ({"flops": 1e22, "tokens_per_param": 20, "inference_tokens": 1e12}, "not both"),
    ({"flops": 1e22, "law": "deepseek", "inference_tokens": 1e12}, "no loss formula"),
    ({"flops": 1e22, "tokens_per_param": -5}, "must be positive"),
])
def test_bad_requests(kwargs, message):
    flops = kwargs.pop("flops")
    with pytest.raises(PlanError, match=message):
        optimum(flops, **kwargs)


def test_batch_guidance_formulas():
    g = batch_guidance(1e24, loss=2.0)
    assert g.deepseek_batch_tokens == pytest.approx(0.2920 * 1e24 ** 0.3271)
    assert g.deepseek_learning_rate == pytest.approx(0.3118 * 1e24 ** -0.125)
    assert g.kaplan_critical_batch_tokens == pytest.approx(2.1e8 / 2.0 ** (1 / 0.21))
    # Merrill et al. 2025: 1024 -> 2048 sequences at 168B tokens -> 4096 at 503B (4096 tokens each)
    assert g.warmup_schedule_tokens == ((0.0, 1024 * 4096), (168e9, 2048 * 4096),
                                        (503e9, 4096 * 4096))
    assert batch_guidance(1e24).kaplan_critical_batch_tokens is None
