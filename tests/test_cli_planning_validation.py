"""`gemmperf plan | budget | whatif`: every bad number or option combination is one line, exit 2."""

from __future__ import annotations

import json

import pytest

import gemmperf.cli as cli
from gemmperf.training import costmodel
from gemmperf.training.budget import arch_for_size, compute_optimal
from gemmperf.training.errors import PlanError
from gemmperf.training.planner import plan_training
from gemmperf.training.scaling import optimum

PLAN = ("plan", "--arch", "llama-2-7b", "--tokens", "1T", "--gpu", "a100", "--num-gpus", "64")
BUDGET = ("budget", "--gpu", "h100", "--gpu-hours", "1e5")
WHATIF = ("whatif", "--arch", "llama-2-7b", "--tokens", "1T", "--gpu", "a100",
          "--num-gpus", "64")


@pytest.fixture
def run(monkeypatch, capsys):
    # Only the training subcommands, on the calibrated roofline (fast, whatever model ships).
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("gemmperf.cli.training",))
    monkeypatch.setattr(costmodel, "_predictor", lambda: None)

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def _one_line_error(result: tuple[int, str, str], *needles: str) -> None:
    code, out, err = result
    assert code == 2 and out == ""
    assert err.startswith("gemmperf: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize(("extra", "needles"), [
    (("--price", "-1"), ("--price", "positive", "'-1'")),
    (("--price", "0"), ("--price", "positive")),
    (("--virtual-stages", "-3"), ("--virtual-stages", "positive integer")),
    (("--tp", "0"), ("--tp", "positive integer", "'0'")),
    (("--pp", "0"), ("--pp", "positive integer")),
    (("--ep", "0"), ("--ep", "positive integer")),
    (("--micro-batch", "0"), ("--micro-batch", "positive integer")),
    (("--virtual-stages", "0"), ("--virtual-stages", "positive integer")),
    (("--tp", "1.5"), ("--tp", "positive integer", "'1.5'")),
    (("--zero-stage", "4"), ("--zero-stage", "0 to 3")),
    (("--seq", "0"), ("--seq", "positive integer")),
    (("--global-batch-tokens", "1.5"), ("--global-batch-tokens", "whole number")),
    (("--pue", "0.9"), ("--pue", "at least 1.0")),
    (("--pue", "nan"), ("--pue", "at least 1.0")),
])
def test_plan_rejects_out_of_range_numbers(run, extra, needles):
    _one_line_error(run(*PLAN, *extra), *needles)


@pytest.mark.parametrize(("argv", "needles"), [
    # A negative number is out of range, not "not a number".
    (("--tokens", "-5"), ("--tokens", "must be a positive whole number of tokens", "'-5'")),
    (("--tokens", "1e400"), ("--tokens", "positive whole number")),
    (("--tokens", "lots"), ("--tokens", "positive whole number", "'lots'")),
    (("--num-gpus", "1.5"), ("--num-gpus", "positive integer", "'1.5'")),
    (("--num-gpus", "-8"), ("--num-gpus", "positive integer")),
])
def test_plan_rejects_bad_tokens_and_gpu_counts(run, argv, needles):
    options = dict(zip(PLAN[1::2], PLAN[2::2], strict=True)) | dict([argv])
    result = run("plan", *(x for pair in options.items() for x in pair))
    _one_line_error(result, *needles)
    assert "not a number" not in result[2]


@pytest.mark.parametrize(("argv", "needles"), [
    (("budget", "--gpu", "h100", "--gpu-hours", "1e5", "--num-gpus", "3.5"),
     ("--num-gpus", "positive integer", "'3.5'")),
    (("budget", "--gpu", "h100", "--gpu-hours", "-5"), ("--gpu-hours", "positive")),
    (("budget", "--gpu", "h100", "--energy-mwh", "0"), ("--energy-mwh", "positive")),
    (("budget", "--flops=-1e22"), ("--flops", "positive")),
    # Bare, as argparse (3.11) alone would take for an unknown option ("expected one argument").
    (("budget", "--flops", "-1e22"), ("--flops", "positive", "'-1e22'")),
    (("budget", "--gpu", "h100", "--usd", "-1e6", "--price", "2"), ("--usd", "positive")),
    (("budget", "--gpu", "h100", "--gpu-hours", "-4M"), ("--gpu-hours", "positive")),
    (("budget", "--gpu", "h100", "--usd", "1e6", "--price", "-2"), ("--price", "positive")),
    (("budget", "--gpu", "h100", "--usd=-1e6", "--price", "2"), ("--usd", "positive")),
    (("budget", "--gpu", "h100", "--usd", "1e6", "--price", "2", "--pue", "0"),
     ("--pue", "at least 1.0")),
    (("budget", "--flops", "1e22", "--tokens-per-param", "-5"), ("--tokens-per-param",)),
    (("budget", "--flops", "1e22", "--law", "deepseek", "--tokens-per-param", "0"),
     ("--tokens-per-param",)),
    (("budget", "--flops", "1e22", "--inference-tokens", "-1"), ("--inference-tokens",)),
    (("budget", "--flops", "1e22", "--seq", "-4096"), ("--seq", "positive integer")),
])
def test_budget_rejects_out_of_range_numbers(run, argv, needles):
    _one_line_error(run(*argv), *needles)


def test_budget_beyond_the_recipe_is_too_large_not_too_small(run):
    _one_line_error(run("budget", "--flops", "1e40"), "too large", "1024 layers x 65536 wide")
    _one_line_error(run("budget", "--flops", "1e10"), "too small")


@pytest.mark.parametrize(("argv", "needles"), [
    (("whatif", "--gpu", "", "--gpu-hours", "1e5"), ("--gpu", "at least one")),
    (("whatif", "--gpu", " , ", "--gpu-hours", "1e5"), ("--gpu", "at least one")),
    (("whatif", "--gpu", "h100", "--dtype", "", "--gpu-hours", "1e5"), ("--dtype",)),
    (("whatif", "--gpu", "h100", "--gpu-hours", "1e5,-1"), ("--gpu-hours", "'-1'")),
    (("whatif", "--gpu", "h100", "--gpu-hours", ""), ("--gpu-hours", "at least one value")),
    ((*WHATIF, "--gpu-hours", "1e5"), ("plan sweep", "does not use --gpu-hours")),
    ((*WHATIF, "--usd", "1e6", "--law", "epoch"), ("--usd, --law",)),
    (("whatif", "--gpu", "h100", "--gpu-hours", "1e5", "--tokens", "1T"),
     ("budget sweep", "does not use --tokens")),
    (("whatif", "--gpu", "h100", "--gpu-hours", "1e5", "--num-gpus", "64"), ("--num-gpus",)),
    (("whatif", "--arch", "llama-2-7b", "--tokens", "1T", "--gpu", "a100",
      "--num-gpus", "64,0"), ("--num-gpus", "positive integer", "'0'")),
    ((*WHATIF, "--price", "-1"), ("--price", "positive")),
    ((*WHATIF, "--pue", "0.5"), ("--pue",)),
    ((*WHATIF, "--seq", "2.5"), ("--seq",)),
])
def test_whatif_rejects_empty_lists_bad_numbers_and_ignored_options(run, argv, needles):
    _one_line_error(run(*argv), *needles)


@pytest.mark.parametrize("name", ["missing/w.png", "w.txt"])
def test_whatif_checks_the_plot_path_before_the_sweep(run, tmp_path, monkeypatch, name):
    def no_sweep(*args, **kwargs):
        raise AssertionError("the sweep ran before the --plot path was checked")

    monkeypatch.setattr("gemmperf.training.planner.plan_training", no_sweep)
    _one_line_error(run(*WHATIF, "--plot", str(tmp_path / name)))


def test_valid_calls_still_work(run, tmp_path):
    code, out, err = run(*PLAN, "--tp", "2", "--pp", "1", "--micro-batch", "1",
                         "--virtual-stages", "1", "--price", "2", "--pue", "1.2", "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert doc["parallelism"]["tp"] == 2 and doc["usd"] == pytest.approx(doc["gpu_hours"] * 2)
    assert doc["pue"] == pytest.approx(1.2)
    code, out, _ = run("budget", "--flops", "1e22", "--seq", "2k", "--json")
    assert code == 0 and json.loads(out)["tokens"] > 0
    png = tmp_path / "w.png"
    code, out, _ = run(*WHATIF, "--global-batch-tokens", "4M", "--plot", str(png))
    assert code == 0 and f"wrote {png}" in out and png.stat().st_size > 1000


# -- library checks behind the CLI -------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tp": 0}, "tp must be a positive integer"),
    ({"virtual_stages": -3}, "virtual_stages must be a positive integer"),
    ({"micro_batch": 0}, "micro_batch must be a positive integer"),
    ({"global_batch_tokens": 0}, "global_batch_tokens must be a positive integer"),
    ({"price_per_gpu_hour": -1.0}, "price_per_gpu_hour must be a positive number"),
    ({"pue": float("nan")}, "PUE is at least 1.0"),
])
def test_plan_training_rejects_zero_and_negative_settings(kwargs, message):
    with pytest.raises(PlanError, match=message):
        plan_training("llama-2-7b", gpu="a100", num_gpus=64, tokens=1e12, **kwargs)


def test_compute_optimal_and_optimum_reject_bad_settings():
    with pytest.raises(PlanError, match="num_gpus must be a positive integer"):
        compute_optimal(gpu="h100", gpu_hours=1e5, num_gpus=3.5)
    with pytest.raises(PlanError, match="tokens_per_param must be positive"):
        optimum(1e22, "deepseek", tokens_per_param=-5)  # was a math domain error
    with pytest.raises(PlanError, match="too large"):
        arch_for_size(1e19)
