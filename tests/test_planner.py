"""Training planner: consistency of the plan, layout choice, memory check, budgets and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gemmperf.cli import main
from gemmperf.hardware.specs import get_gpu
from gemmperf.training import costmodel
from gemmperf.training.budget import arch_for_size, compute_optimal
from gemmperf.training.calibrate import measurements, model_time, roofline_times
from gemmperf.training.comm import SystemSpec, all_reduce_time, ring_gather_time
from gemmperf.training.config import load_arch
from gemmperf.training.errors import DoesNotFitError, PlanError
from gemmperf.training.planner import plan_training


@pytest.fixture(autouse=True)
def _no_shipped_model(monkeypatch):
    """Plans here test the calibrated-roofline path, whatever model bundle ships in models/."""
    monkeypatch.setattr(costmodel, "_predictor", lambda: None)


@pytest.fixture
def llama7b_plan():
    return plan_training("llama-2-7b", gpu="a100", num_gpus=64, tokens=2e12, price_per_gpu_hour=2.0)


def test_plan_quantities_are_consistent(llama7b_plan):
    p = llama7b_plan
    assert p.tokens_per_s_per_gpu * p.num_gpus * p.step_time_s == pytest.approx(
        p.global_batch_tokens)
    assert p.gpu_hours == pytest.approx(p.days * 24 * p.num_gpus)
    assert p.energy_mwh == pytest.approx(p.avg_gpu_power_w * p.gpu_hours * p.pue / 1e6)
    assert p.usd == pytest.approx(p.gpu_hours * 2.0)
    assert sum(p.breakdown_s.values()) == pytest.approx(p.step_time_s)
    assert p.steps * p.global_batch_tokens == pytest.approx(2e12)
    assert p.parallelism.num_gpus == 64
    assert p.memory.fits


def test_mfu_is_bounded_by_the_measured_gemm_efficiency(llama7b_plan):
    p = llama7b_plan
    e_c = costmodel.gemm_params(get_gpu("a100"))[0]["e_c"]
    assert 0.2 < p.mfu < p.hfu < e_c
    assert p.model_tflops_per_gpu == pytest.approx(p.mfu * 312, rel=1e-3)
    assert p.breakdown_kind_s["mlp_up"] > p.breakdown_kind_s["attn_out"]
    assert p.avg_gpu_power_w <= get_gpu("a100").tdp_w


def test_layout_overrides_are_respected():
    p = plan_training("llama-2-70b", gpu="h100", num_gpus=64, tokens=1e11, tp=8, pp=2,
                      micro_batch=1, recompute=True)
    par = p.parallelism
    assert (par.tp, par.pp, par.dp, par.micro_batch, par.recompute) == (8, 2, 4, 1, True)
    assert p.hfu > p.mfu * 1.25  # a full extra forward pass of every layer


def test_big_models_need_pipeline_stages_and_say_when_they_do_not_fit():
    p = plan_training("llama-3.1-405b", gpu="h100", num_gpus=1024, tokens=1e12)
    assert p.parallelism.pp > 1 and p.parallelism.tp * p.parallelism.pp >= 16
    with pytest.raises(DoesNotFitError, match=r"does not fit on 8 x .*GiB per GPU"):
        plan_training("llama-3.1-405b", gpu="a100", num_gpus=8, tokens=1e12)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tp": 3}, "does not divide its 32 attention heads"),
    ({"tp": 8, "pp": 16}, "does not divide 64 GPUs"),
    ({"dtype": "f32"}, "must be bf16, fp16 or fp8"),
    ({"num_gpus": 0}, "positive integer"),
    ({"tokens": -1}, "positive number"),
    ({"pue": 0.9}, "PUE is at least 1.0"),
    ({"global_batch_tokens": 4096, "num_gpus": 1024}, "cannot keep 1024 GPUs busy"),
])
def test_bad_plans_fail_clearly(kwargs, message):
    args = {"gpu": "a100", "num_gpus": 64, "tokens": 1e12, **kwargs}
    with pytest.raises(PlanError, match=message):
        plan_training("llama-2-7b", **args)


def test_faster_hardware_and_fp8_shorten_the_run():
    base = plan_training("llama-3-8b", gpu="a100", num_gpus=256, tokens=1e12)
    h100 = plan_training("llama-3-8b", gpu="h100", num_gpus=256, tokens=1e12)
    fp8 = plan_training("llama-3-8b", gpu="h100", num_gpus=256, tokens=1e12, dtype="fp8")
    assert h100.days < base.days and fp8.days < h100.days
    more = plan_training("llama-3-8b", gpu="h100", num_gpus=512, tokens=1e12)
    assert more.days < h100.days


def test_moe_plan_uses_expert_parallelism():
    p = plan_training("mixtral-8x7b", gpu="h100", num_gpus=64, tokens=1e11)
    assert p.mfu > 0 and "expert_up" in p.breakdown_kind_s
    assert p.model_flops_per_token < 6 * load_arch("mixtral-8x7b").params.total / 2


def test_unfused_attention_is_slower_and_uses_more_memory():
    kwargs = {"gpu": "a100", "num_gpus": 64, "tokens": 1e11, "tp": 2, "pp": 1, "micro_batch": 1,
              "recompute": False}
    flash = plan_training("llama-2-7b", **kwargs)
    unfused = plan_training("llama-2-7b", flash_attention=False, **kwargs)
    assert unfused.step_time_s > flash.step_time_s
    assert unfused.memory.activations > flash.memory.activations


def test_predictor_timings_are_used_when_available(monkeypatch):
    def fake(gpu, problems):
        flops = np.array([p.flops for p in problems], float)
        return costmodel.GemmTiming(flops / 100e12, np.full(len(problems), 300.0), "predictor")

    monkeypatch.setattr(costmodel, "_predictor_timing", fake)
    p = plan_training("llama-2-7b", gpu="a100", num_gpus=8, tokens=1e10, tp=1, pp=1,
                      micro_batch=1, recompute=False)
    assert p.gemm_source.startswith("predictor")
    assert p.model_tflops_per_gpu < 100
    fallback = plan_training("llama-2-7b", gpu="a100", num_gpus=8, tokens=1e10, tp=1, pp=1,
                             micro_batch=1, recompute=False, use_predictor=False)
    assert fallback.gemm_source.startswith("calibrated roofline")


def test_calibration_entries_by_chip():
    assert "a100-sxm4-80gb fit" in costmodel.gemm_params(get_gpu("a100-40gb"))[1]
    assert "h100-sxm fit" in costmodel.gemm_params(get_gpu("h100-pcie"))[1]
    assert "pooled" in costmodel.gemm_params(get_gpu("l40s"))[1]
    params = costmodel.gemm_params(get_gpu("h100"))[0]
    t = model_time(params, np.array([1e-3, 2e-3]), np.array([1e-4, 1e-4]))
    assert t[1] > t[0] > 1e-3 / params["e_c"]


@pytest.mark.shared_data
def test_stored_calibration_reproduces_the_measurements(shared_data):
    data = measurements(shared_data)
    for gpu_key, grp in data.groupby("gpu"):
        gpu = get_gpu(gpu_key)
        tc, tm = roofline_times(gpu, grp["math_key"].iloc[0], grp["m"].to_numpy(),
                                grp["n"].to_numpy(), grp["k"].to_numpy(),
                                grp["batch"].to_numpy())
        pred = model_time(costmodel.gemm_params(gpu)[0], tc, tm)
        err = np.abs(pred / grp["time_s"].to_numpy() - 1)
        assert np.median(err) < 0.08, gpu_key


def test_alpha_beta_collectives():
    assert ring_gather_time(8e9, 8, 100e9, 0.0) == pytest.approx(7 / 8 * 0.08)
    assert all_reduce_time(8e9, 8, 100e9, 0.0) == pytest.approx(2 * 7 / 8 * 0.08)
    assert ring_gather_time(8e9, 1, 100e9, 1e-5) == 0.0
    system = SystemSpec.for_gpu(get_gpu("h100"))
    intra, _ = system.link(8, 1)
    inter, _ = system.link(16, 1)
    assert intra > inter > 0
    with pytest.raises(PlanError, match="PUE"):
        SystemSpec.for_gpu(get_gpu("h100"), pue=0.5)


def test_compute_optimal_spends_the_gpu_budget():
    r = compute_optimal(gpu="h100", gpu_hours=2e5, law="epoch")
    assert r.plan.gpu_hours == pytest.approx(2e5, rel=0.01)
    assert r.tokens == pytest.approx(r.plan.tokens)
    assert 6 * r.arch_params * r.tokens == pytest.approx(r.flops, rel=1e-6)
    assert 10 < r.tokens / r.arch_params < 30
    assert r.loss is not None and r.batch.deepseek_batch_tokens > 0


def test_compute_optimal_from_flops_and_other_budgets():
    r = compute_optimal(flops=5.76e23, law="epoch")
    assert r.plan is None and r.arch_params == pytest.approx(72e9, rel=0.05)
    e = compute_optimal(gpu="a100", energy_mwh=50, num_gpus=256)
    assert e.plan.energy_mwh == pytest.approx(50, rel=0.02)
    with pytest.raises(PlanError, match="price per GPU-hour"):
        compute_optimal(gpu="a100", usd=1e6)
    with pytest.raises(PlanError, match="needs a GPU"):
        compute_optimal(gpu_hours=1e5)
    with pytest.raises(PlanError, match="exactly one budget"):
        compute_optimal(gpu="a100", gpu_hours=1e5, flops=1e22)


def test_arch_recipe_hits_the_target_size():
    for target in (1e9, 8e9, 70e9, 400e9):
        arch = arch_for_size(target, "epoch")
        assert arch.params.total == pytest.approx(target, rel=0.06)
        assert 64 <= arch.hidden_size / arch.num_layers <= 160


# -- CLI ---------------------------------------------------------------------------------------

def test_cli_plan_json(capsys):
    assert main(["plan", "--arch", "llama-2-7b", "--tokens", "2T", "--gpu", "a100",
                 "--num-gpus", "512", "--price", "1.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("step_time_s", "tokens_per_s_per_gpu", "mfu", "gpu_hours", "days", "energy_mwh",
                "usd", "breakdown_s", "breakdown_kind_s"):
        assert key in out
    assert out["usd"] == pytest.approx(out["gpu_hours"] * 1.5)


def test_cli_budget_archs_whatif(capsys, tmp_path):
    assert main(["budget", "--gpu", "h100", "--gpu-hours", "1e5", "--law", "hoffmann",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["architecture"]["layers"] > 0 and out["plan"]["days"] > 0
    assert main(["archs", "--json"]) == 0
    assert any(r["name"] == "deepseek-v3" for r in json.loads(capsys.readouterr().out))
    png = tmp_path / "whatif.png"
    assert main(["whatif", "--arch", "llama-2-7b", "--tokens", "1T", "--gpu", "a100,h100",
                 "--num-gpus", "256", "--plot", str(png)]) == 0
    assert png.stat().st_size > 1000
    assert "h100" in capsys.readouterr().out


def test_cli_errors_exit_2(capsys):
    assert main(["plan", "--arch", "nope", "--tokens", "1T", "--gpu", "a100",
                 "--num-gpus", "8"]) == 2
    assert "unknown architecture preset" in capsys.readouterr().err
    assert main(["plan", "--arch", "llama-2-7b", "--tokens", "1T", "--gpu", "z9000",
                 "--num-gpus", "8"]) == 2


def test_calibration_fitter_recovers_known_parameters():
    # Exercises the fitting routine only: times generated from known parameters, not data.
    from gemmperf.training.calibrate import PARAM_NAMES, _fit

    truth = {"e_c": 0.7, "e_m": 0.85, "t0_s": 6e-6, "q": 2.0}
    rng = np.random.default_rng(0)
    tc = 10 ** rng.uniform(-6, -2, 400)
    tm = tc * 10 ** rng.uniform(-1.5, 1.0, 400)
    fitted = _fit([(tc, tm, model_time(truth, tc, tm))])
    for name in PARAM_NAMES:
        assert fitted[name] == pytest.approx(truth[name], rel=0.02), name


def test_activation_and_state_memory_follow_korthikanti():
    from gemmperf.training.layout import Parallelism
    from gemmperf.training.memory import activation_bytes_per_token, estimate_memory

    gpt3 = load_arch("gpt-3-175b")
    h, a, s = gpt3.hidden_size, gpt3.num_heads, 2048
    # 34 sbh of Korthikanti et al. 2022 minus the two 1-byte dropout masks (no dropout here):
    # 2 bytes x (4h norms/residual + 3h QKV + h O + 8h MLP) = 32 h per token.
    assert activation_bytes_per_token(gpt3, 1, False) == pytest.approx(32 * h + 2 * 2 * a)
    assert activation_bytes_per_token(gpt3, 1, False, dropout=True) == pytest.approx(
        34 * h + 2 * 2 * a)
    # Unfused attention keeps the softmax output (2 as); with attention dropout also its mask
    # and output: Korthikanti's 5 as.
    flash = activation_bytes_per_token(gpt3, 1, False, s, dropout=True)
    unfused = activation_bytes_per_token(gpt3, 1, False, s, flash_attention=False, dropout=True)
    assert unfused - flash == 5 * a * s
    plain = activation_bytes_per_token(gpt3, 1, False, s, flash_attention=False)
    assert plain - activation_bytes_per_token(gpt3, 1, False) == 2 * a * s
    par = Parallelism(tp=8, pp=16, dp=4)
    sharded = estimate_memory(gpt3, par, seq_len=s, capacity_bytes=80e9, micro_batches=16)
    plain = estimate_memory(gpt3, Parallelism(tp=8, pp=16, dp=4, distributed_optimizer=False),
                            seq_len=s, capacity_bytes=80e9, micro_batches=16)
    params = sharded.weights / 2
    assert plain.optimizer == pytest.approx(12 * params)
    assert sharded.optimizer == pytest.approx(12 * params / 4)
    assert sharded.gradients == pytest.approx(4 * params)


def test_communication_detail_adds_up():
    p = plan_training("mixtral-8x7b", gpu="h100", num_gpus=64, tokens=1e11, tp=2, ep=4)
    assert sum(p.communication_s.values()) == pytest.approx(p.breakdown_s["communication"])
    assert p.communication_s["expert_parallel"] > 0 and p.communication_s["tensor_parallel"] > 0


def test_predictor_coverage_follows_its_training_data():
    class Bundle:
        training_data_ = (
            {"source": "vidur", "gpu": "a100-sxm4-80gb", "rows": 10, "runtime": 10, "power": 0},
            {"source": "kt_fp32_power", "gpu": "a100-pcie-40gb", "rows": 5, "runtime": 5,
             "power": 5},
            {"source": "xla_matmul", "gpu": "h100-sxm", "rows": 5, "runtime": 5, "power": 5},
        )

    costmodel._COVERAGE.clear()
    try:
        assert costmodel.predictor_coverage(Bundle(), get_gpu("a100-40gb")) == ("cublas", False)
        # an FMA micro-benchmark's power is not a GEMM's: no power coverage from it
        assert costmodel.predictor_coverage(Bundle(), get_gpu("a100-pcie-40gb")) == \
            ("cublas", False)
        assert costmodel.predictor_coverage(Bundle(), get_gpu("h100")) == ("xla_library", True)
        assert costmodel.predictor_coverage(Bundle(), get_gpu("b200")) == (None, False)
    finally:
        costmodel._COVERAGE.clear()


def test_data_parallel_volume_holds_both_vocabulary_matrices_on_one_stage():
    from gemmperf.training.layout import Parallelism
    from gemmperf.training.step import dp_local_params

    llama = load_arch("llama-3-8b")                     # untied: embedding and LM head
    assert not llama.tie_word_embeddings
    layers = llama.num_layers
    one_stage = dp_local_params(llama, Parallelism(dp=8), [(layers, 0)])
    # The whole model's non-expert parameters: 8.03 B (the embedding and the head, 0.53 B each).
    assert one_stage == pytest.approx(llama.params.total, rel=1e-3)
    assert dp_local_params(llama, Parallelism(tp=2, dp=4), [(layers, 0)]) == one_stage / 2
    # Two stages: the fuller stage plus one matrix.
    vocab = llama.vocab_size * llama.hidden_size
    two = dp_local_params(llama, Parallelism(pp=2, dp=4), [(layers // 2, 0)] * 2)
    assert two == pytest.approx((llama.params.total - 2 * vocab) / 2 + vocab, rel=1e-3)


def test_unfused_causal_attention_is_timed_as_the_full_square_cublas_runs():
    from gemmperf.training.gemms import ATTENTION_CORE, training_gemms
    from gemmperf.training.layout import Parallelism
    from gemmperf.training.step import microbatch_cost

    arch, gpu = load_arch("gpt-3-175b"), get_gpu("a100-sxm4-80gb")
    par = Parallelism(tp=8, flash_attention=False)
    cost = microbatch_cost(arch, gpu, par, seq_len=2048, dtype="bf16", use_predictor=False)
    gemms = training_gemms(arch, seq_len=2048, micro_batch=1, tp=8, dtype="bf16",
                           flash_attention=False)
    core = [g for g in gemms if g.kind in ATTENTION_CORE]
    assert core and all(g.work_fraction < 0.51 for g in core)   # FLOPs: the unmasked half
    timing = costmodel.time_gemms(gpu, core, use_predictor=False)
    full = sum(t * g.count for t, g in zip(timing.runtime_s, core, strict=True))
    assert sum(cost.kind_s[k] for k in ATTENTION_CORE) == pytest.approx(full)


def test_the_search_scores_every_pipeline_depth_that_fits():
    # Stopping at the shallowest pipeline that fits had picked TP8 PP1 (4.55 s per step) over
    # TP4 PP8 mb2 (3.95 s), a layout the planner itself accepts when given.
    searched = plan_training("llama-2-70b", tokens=2e12, gpu="h100-sxm", num_gpus=1024)
    given = plan_training("llama-2-70b", tokens=2e12, gpu="h100-sxm", num_gpus=1024, tp=4,
                          pp=8, micro_batch=2)
    assert searched.step_time_s <= given.step_time_s * (1 + 1e-9)
    for tp, pp in ((8, 1), (8, 2), (4, 4)):
        fixed = plan_training("llama-2-70b", tokens=2e12, gpu="h100-sxm", num_gpus=1024,
                              tp=tp, pp=pp)
        assert searched.step_time_s <= fixed.step_time_s * (1 + 1e-9)
