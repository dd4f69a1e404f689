"""Non-GEMM kernel model of the training planner: fused attention tables, sustained clocks,
memory-bound kernel inventory, ZeRO stages and overlapped collectives."""

from __future__ import annotations

import json

import pytest

from gemmperf.cli import main
from gemmperf.hardware.specs import get_gpu
from gemmperf.problem import GemmProblem
from gemmperf.training import costmodel, kernels
from gemmperf.training.comm import SystemSpec
from gemmperf.training.config import load_arch
from gemmperf.training.errors import PlanError
from gemmperf.training.layout import Parallelism
from gemmperf.training.memory import estimate_memory
from gemmperf.training.planner import plan_training
from gemmperf.training.step import _dp_exposed, _hidden


@pytest.fixture(autouse=True)
def _no_shipped_model(monkeypatch):
    """Plans here test the calibrated-roofline path, whatever model bundle ships in models/."""
    monkeypatch.setattr(costmodel, "_predictor", lambda: None)


def _fraction(gpu: str, name: str, **kw) -> float:
    args = {"seq_len": 2048, "head_dim": 128, "causal": True, "backward": False, **kw}
    return kernels.attention_fraction(get_gpu(gpu), name, **args)


def test_attention_tables_reproduce_the_published_points():
    h100 = get_gpu("h100").peak("bf16")
    table = kernels.kernel_data()["attention"]["kernels"]["fa3"]["tflops"]
    assert _fraction("h100", "fa3") * h100 == pytest.approx(table["fwd_causal"]["128"][2] * 1e12)
    bwd = _fraction("h100", "fa2", causal=False, backward=True, seq_len=16384)
    assert bwd * h100 == pytest.approx(322e12)
    # FA4 on B200 reproduces its single published point (causal 2-CTA backward at 8k).
    b200 = get_gpu("b200").peak("bf16")
    assert _fraction("b200", "fa4", seq_len=8192, backward=True) * b200 == pytest.approx(
        1208.6e12)
    # FA2 on A100: the best point is the paper's "up to 73% / 63% of the theoretical maximum".
    assert _fraction("a100", "fa2", seq_len=16384, causal=False) == pytest.approx(0.73)
    assert _fraction("a100", "fa2", seq_len=16384, causal=False, backward=True) == \
        pytest.approx(0.63)


def test_attention_efficiency_behaves_physically():
    # Longer sequences, bigger heads and no mask all run closer to peak; backward is slower;
    # FA3 beats FA2 on the H100; lengths outside the measured range are clipped.
    assert _fraction("h100", "fa3", seq_len=512) < _fraction("h100", "fa3", seq_len=8192)
    assert _fraction("h100", "fa3", head_dim=64) < _fraction("h100", "fa3", head_dim=128)
    assert _fraction("h100", "fa3") < _fraction("h100", "fa3", causal=False)
    assert _fraction("h100", "fa3", backward=True) < _fraction("h100", "fa3")
    assert _fraction("h100", "fa2") == pytest.approx(298e12 / get_gpu("h100").peak("bf16"))
    assert _fraction("h100", "fa2") < _fraction("h100", "fa3")
    assert _fraction("h100", "fa3", seq_len=65536) == _fraction("h100", "fa3", seq_len=16384)
    mid = _fraction("h100", "fa3", seq_len=3000)
    assert _fraction("h100", "fa3", seq_len=2048) < mid < _fraction("h100", "fa3", seq_len=4096)


def test_attention_kernel_choice_follows_the_architecture():
    assert kernels.default_attention(get_gpu("a100")) == "fa2"
    assert kernels.default_attention(get_gpu("h100")) == "fa3"
    assert kernels.default_attention(get_gpu("b200")) == "fa4"
    assert kernels.default_attention(get_gpu("v100-sxm2-32gb")) == "unfused"
    assert kernels.resolve_attention(get_gpu("h100"), None, flash_attention=False) == "unfused"
    with pytest.raises(PlanError, match="no published measurement for NVIDIA A100"):
        kernels.resolve_attention(get_gpu("a100"), "fa3")
    with pytest.raises(PlanError, match="must be one of"):
        kernels.resolve_attention(get_gpu("a100"), "fa9")
    fwd, bwd = kernels.attention_time(get_gpu("h100"), "fa3", fwd_flops=1e12, seq_len=4096,
                                      head_dim=128, causal=True)
    fwd2, bwd2 = kernels.attention_time(get_gpu("h100"), "fa3", fwd_flops=1e12, seq_len=4096,
                                        head_dim=128, causal=True, forward_passes=2)
    assert bwd > 2.5 * fwd and fwd2 == pytest.approx(2 * fwd) and bwd2 == bwd


def test_sustained_clock_and_fp8_slow_compute_bound_gemms_only():
    h100 = get_gpu("h100")
    assert kernels.sustained_clock_factor(h100) == pytest.approx(755 / 834, abs=1e-3)
    assert kernels.sustained_clock_factor(get_gpu("a100")) == 1.0
    big = GemmProblem(16384, 16384, 16384, dtype="bf16", acc_dtype="f32")
    costmodel._TIMES.clear()
    sustained = costmodel._calibrated(h100, [big])[0]
    params = costmodel.gemm_params(h100)[0]
    peak_time = big.flops / h100.peak("bf16")
    # Compute-bound: at least the calibrated compute time slowed by the sustained factor.
    assert sustained > peak_time / params["e_c"] / 0.905 * 0.99
    fp8 = GemmProblem(16384, 16384, 16384, dtype="fp8", acc_dtype="f32")
    t8 = costmodel._calibrated(h100, [fp8])[0]
    assert sustained / t8 == pytest.approx(2 * 0.883, rel=0.02)  # 2x peak, 0.883 x efficiency
    scale = costmodel._sustained_scale(h100, [big, GemmProblem(4096, 1, 4096, dtype="bf16")])
    assert scale[0] == pytest.approx(1 / 0.905, rel=0.01) and scale[1] < 1.01


def test_memory_bound_kernel_inventory():
    arch = load_arch("llama-2-7b")
    h, f = arch.hidden_size, arch.intermediate_size
    rope = 2 * (arch.num_heads + arch.num_kv_heads) * arch.head_dim
    base = kernels.layer_work(arch, tokens=1, tp=1, moe_layer=False, recompute=False,
                              seq_len=4096, attention="fa2", dropout=False,
                              local_matmul_params=0)
    # Forward 4h + 6h + 3f + rope, backward 12h + 5f + rope, 2 bytes each (module doc).
    assert base.bytes == pytest.approx(2 * (22 * h + 8 * f + 2 * rope))
    assert base.kernels == 12
    recomputed = kernels.layer_work(arch, tokens=1, tp=1, moe_layer=False, recompute=True,
                                    seq_len=4096, attention="fa2", dropout=False,
                                    local_matmul_params=0)
    assert recomputed.bytes == pytest.approx(base.bytes + 2 * (10 * h + 3 * f + rope))
    dropout = kernels.layer_work(arch, tokens=1, tp=1, moe_layer=False, recompute=False,
                                 seq_len=4096, attention="fa2", dropout=True,
                                 local_matmul_params=0)
    assert dropout.bytes == pytest.approx(base.bytes + 2 * h + 2 * (4 * h + h))
    unfused = kernels.layer_work(arch, tokens=1, tp=1, moe_layer=False, recompute=False,
                                 seq_len=4096, attention="unfused", dropout=False,
                                 local_matmul_params=1000)
    assert unfused.bytes == pytest.approx(base.bytes + 2 * 5 * arch.num_heads * 4096 + 6000)
    sharded = kernels.layer_work(arch, tokens=8, tp=8, moe_layer=False, recompute=False,
                                 seq_len=4096, attention="fa2", dropout=False,
                                 local_matmul_params=0)
    assert sharded.bytes == pytest.approx(base.bytes)
    gpu = get_gpu("h100")
    t = kernels.kernel_time(gpu, kernels.KernelWork(3.352e9, 10), efficiency=0.5, launch_s=1e-6)
    assert t == pytest.approx(2e-3 + 1e-5)


def test_zero_stages_trade_memory_for_communication():
    arch = load_arch("llama-2-13b")
    mems = {z: estimate_memory(arch, Parallelism(tp=1, pp=1, dp=64, zero_stage=z), seq_len=4096,
                               capacity_bytes=80e9, micro_batches=4)
            for z in (0, 1, 2, 3)}
    assert mems[0].optimizer > mems[1].optimizer == mems[2].optimizer == mems[3].optimizer
    assert mems[1].gradients > mems[2].gradients
    assert mems[2].weights > mems[3].weights
    assert [mems[z].total for z in (0, 1, 2, 3)] == sorted(
        (mems[z].total for z in (0, 1, 2, 3)), reverse=True)
    with pytest.raises(PlanError, match="zero_stage"):
        Parallelism(zero_stage=4).check(arch)


def test_overlapped_collectives_cost_contention_and_unoverlapped_cost_everything():
    system = SystemSpec.for_gpu(get_gpu("h100"))
    assert system.overlap_slowdown == pytest.approx(0.189)
    assert _hidden(1.0, 10.0, 0.2) == pytest.approx(0.2)
    assert _hidden(10.0, 1.0, 0.2) == pytest.approx(9.2)
    par = Parallelism(tp=1, pp=1, dp=64)
    overlapped = _dp_exposed(1, 1.0, 0.5, 3.0, 4, 32, par, system, True)
    assert overlapped == pytest.approx(0.189 * 1.5)
    assert _dp_exposed(1, 1.0, 0.5, 3.0, 4, 32, par, system, False) == pytest.approx(1.5)
    assert _dp_exposed(0, 1.0, 0.5, 3.0, 4, 32, par, system, False) == pytest.approx(2.0)
    fsdp = _dp_exposed(3, 1.0, 0.5, 3.0, 4, 32, Parallelism(dp=64, zero_stage=3), system, True)
    assert fsdp > 4 * 0.189 * 2.0  # every micro-batch gathers twice and reduces once


def test_plan_reports_its_kernel_model_and_options():
    h100 = plan_training("llama-3-8b", gpu="h100", num_gpus=64, tokens=1e11)
    assert h100.attention_kernel == "fa3" and h100.sustained_clock_factor == pytest.approx(0.905)
    assert "flash_attention" in h100.breakdown_kind_s
    assert "attn_score" not in h100.breakdown_kind_s
    assert any("sustained" in n for n in h100.notes)
    a100 = plan_training("llama-3-8b", gpu="a100", num_gpus=64, tokens=1e11)
    assert a100.attention_kernel == "fa2" and a100.sustained_clock_factor == 1.0
    assert any("no sustained-clock measurement" in n for n in a100.notes)
    kwargs = {"gpu": "h100", "num_gpus": 64, "tokens": 1e11, "tp": 1, "pp": 1,
              "micro_batch": 1, "recompute": False, "check_memory": False}
    fa2 = plan_training("llama-3-8b", attention="fa2", zero_stage=1, **kwargs)
    fa3 = plan_training("llama-3-8b", attention="fa3", zero_stage=1, **kwargs)
    assert fa2.step_time_s > fa3.step_time_s
    fsdp = plan_training("llama-3-8b", zero_stage=3, **kwargs)
    assert fsdp.parallelism.zero_stage == 3 and "ZeRO-3" in fsdp.parallelism.describe()
    assert fsdp.memory.weights < fa3.memory.weights
    drop = plan_training("llama-3-8b", dropout=True, zero_stage=1, **kwargs)
    assert drop.step_time_s > fa3.step_time_s
    late = plan_training("llama-3-8b", overlap_grad_reduce=False, zero_stage=1, **kwargs)
    assert late.communication_s["data_parallel_exposed"] > \
        fa3.communication_s["data_parallel_exposed"]
    for bad, message in (({"zero_stage": 5}, "zero_stage"), ({"grad_reduce_dtype": "f64"},
                                                              "grad_reduce_dtype")):
        with pytest.raises(PlanError, match=message):
            plan_training("llama-3-8b", **{**kwargs, **bad})


def test_zero3_is_the_fallback_when_nothing_else_fits():
    p = plan_training("llama-2-7b", gpu="a100-40gb", num_gpus=8, tokens=1e10,
                      global_batch_tokens=64 * 4096, tp=1, pp=1)
    assert p.parallelism.zero_stage == 3
    assert any("ZeRO-3" in n for n in p.notes)
    unchecked = plan_training("llama-2-7b", gpu="a100-40gb", num_gpus=8, tokens=1e10,
                              global_batch_tokens=64 * 4096, tp=1, pp=1, zero_stage=1,
                              check_memory=False)
    assert not unchecked.memory.fits and any("memory check skipped" in n for n in unchecked.notes)


def test_cli_plan_kernel_options(capsys):
    assert main(["plan", "--arch", "llama-2-7b", "--tokens", "1T", "--gpu", "h100",
                 "--num-gpus", "64", "--attention", "fa2", "--zero-stage", "3", "--dropout",
                 "--grad-reduce-dtype", "bf16", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["attention_kernel"] == "fa2" and out["parallelism"]["zero_stage"] == 3
    assert main(["plan", "--arch", "llama-2-7b", "--tokens", "1T", "--gpu", "a100",
                 "--num-gpus", "64", "--attention", "fa3"]) == 2
    assert "no published measurement" in capsys.readouterr().err
