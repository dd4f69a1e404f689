"""CLI: gemmperf recommend / autotune / clocks — JSON shape and one-line errors."""

from __future__ import annotations

import json

import pytest
from recommend_helpers import write_synthetic_recording

from gemmperf.cli import main
from gemmperf.problem import GemmProblem
from gemmperf.spaces import get_space

XGEMM = ["--gpu", "rtx-3090", "--m", "4096", "--n", "4096", "--k", "4096"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    space = get_space("clblast_xgemm", GemmProblem(4096, 4096, 4096, dtype="f32", layout="nt"),
                      "rtx-3090")
    path = tmp_path_factory.mktemp("cli") / "synthetic.jsonl"
    write_synthetic_recording(path, space, "rtx-3090", count=120)
    return path


def test_recommend_json_shape_and_explain(capsys, tmp_path):
    plot = tmp_path / "pareto.png"
    code, out, err = run(capsys, "recommend", *XGEMM, "--family", "clblast_xgemm", "--top", "3",
                         "--json", "--explain", "--objective", "edp", "--plot", str(plot))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["problem"]["dtype"] == "f32" and doc["problem"]["layout"] == "nt"
    assert doc["space"]["valid"] == 17_956 and doc["objective"] == "edp"
    assert len(doc["recommendations"]) == 3
    first = doc["recommendations"][0]
    assert first["rank"] == 1 and {"MWG", "NWG", "VWM", "SA"} <= set(first["config"])
    for key in ("runtime_s", "runtime_s_lo", "runtime_s_hi", "power_w", "energy_j", "bound",
                "roofline_fraction", "speedup_vs_default"):
        assert key in first
    assert doc["default"]["config"]["MWG"] == 32
    pruned = doc["pruned"]
    assert pruned["total"] == 82_944 - 17_956
    assert sum(g["count"] for g in pruned["by_reason"]) == pruned["total"]
    assert "not a multiple" in pruned["by_reason"][0]["examples"][0]["explanation"]
    assert plot.stat().st_size > 10_000


def test_recommend_on_a_gpu_outside_the_training_data_says_it_is_by_analogy(capsys):
    argv = ["recommend", "--gpu", "rtx-4090", "--m", "4096", "--n", "4096", "--k", "4096",
            "--dtype", "f32", "--family", "clblast_xgemm", "--top", "2"]
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["by_analogy_with"] == ["rtx-2080-ti", "rtx-3060-laptop", "rtx-3090", "rtx-a6000"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "rtx-4090 is not in the model's training data: predicted by analogy" in out


def test_recommend_table_from_a_space_file(capsys, recording):
    code, out, err = run(capsys, "recommend", "--gpu", "rtx-3090", "--space", str(recording),
                         "--top", "2")
    assert code == 0, err
    assert "configs in synthetic.jsonl: 120 valid of 120" in out
    assert "MWG=" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["recommend", *XGEMM, "--family", "nope"], "unknown kernel family 'nope'"),
    (["recommend", "--gpu", "rtx-3090", "--m", "64", "--family", "clblast_xgemm"],
     "give all of --m, --n and --k"),
    (["recommend", *XGEMM, "--family", "clblast_xgemm", "--top", "0"], "--top must be at least"),
    (["recommend", *XGEMM, "--family", "blocked"], "give --dtype"),
    (["recommend", "--gpu", "no-such-gpu", "--m", "1", "--n", "1", "--k", "1", "--dtype", "f32",
      "--family", "tiled"], "unknown GPU"),
    (["autotune", *XGEMM, "--family", "clblast_xgemm", "--budget", "0"], "--budget must be"),
    (["clocks", "--gpu", "h100-sxm", "--m", "64", "--n", "64"], "give all of --m, --n and --k"),
    (["autotune", *XGEMM, "--family", "clblast_xgemm", "--budget", "4"],
     "no collector backend measures clblast_xgemm"),
    (["recommend", *XGEMM, "--family", "clblast_xgemm", "--plot", "/nonexistent/p.png"],
     "/nonexistent does not exist"),
    (["clocks", *XGEMM, "--family", "clblast_xgemm", "--objective", "time"],
     "clocks answers --objective energy or edp"),
    (["clocks", *XGEMM, "--model", "/nonexistent.npz"], "--model needs --family"),
    (["recommend", *XGEMM, "--space", "/nonexistent.json"], "--space /nonexistent.json: no such"),
])
def test_cli_errors_are_one_line_with_exit_2(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("gemmperf: error:")]
    assert len(lines) == 1 and message in lines[0]


def test_autotune_replay_json(capsys, recording):
    code, out, err = run(capsys, "autotune", "--replay", str(recording), "--budget", "5",
                         "--strategy", "random", "--seed", "7", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["gpu"] == "rtx-3090" and doc["budget"] == 5 and len(doc["measured"]) == 5
    assert doc["best"]["runtime_s"] == min(m["runtime_s"] for m in doc["measured"])
    assert doc["regret_vs_recorded_best"] >= 1.0
    again = json.loads(run(capsys, "autotune", "--replay", str(recording), "--budget", "5",
                           "--strategy", "random", "--seed", "7", "--json")[1])
    assert [m["config_id"] for m in again["measured"]] == \
        [m["config_id"] for m in doc["measured"]]


def test_autotune_replay_refuses_a_family(capsys, recording):
    code, _, err = run(capsys, "autotune", "--replay", str(recording), "--family", "tiled",
                       "--budget", "2")
    assert code == 2 and "drop --family" in err


def test_autotune_on_the_fake_backend_records_every_measurement(capsys, tmp_path):
    code, out, err = run(capsys, "autotune", "--gpu", "rtx-4070", "--m", "256", "--n", "256",
                         "--k", "256", "--dtype", "f32", "--family", "tiled", "--budget", "3",
                         "--strategy", "greedy", "--backend", "fake", "--out", str(tmp_path),
                         "--json")
    assert code == 0, err
    assert "synthetic" in err
    doc = json.loads(out)
    assert len(doc["measured"]) == 3
    assert len((tmp_path / "autotune.jsonl").read_text().splitlines()) == 3


def test_clocks_json(capsys):
    code, out, err = run(capsys, "clocks", "--gpu", "a100-pcie-40gb", "--m", "8192", "--n",
                         "8192", "--k", "8192", "--dtype", "f16", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["calibration"] == "own"
    assert doc["clock_mhz"] < doc["boost_clock_mhz"]
    assert doc["time_cost"] >= 1.0 and 0 < doc["energy_saving"] < 1
    assert len(doc["curve"]) > 10


def test_explain_answers_even_when_every_config_is_pruned(capsys):
    # An f16 GEMM for the SGEMM-only blocked family: nothing to rank, the reasons are the answer,
    # grouped by cause (not by kernel name) with each example naming its kernel.
    argv = ["recommend", "--gpu", "gtx-titan-x", "--m", "256", "--n", "256", "--k", "256",
            "--dtype", "f16", "--family", "blocked", "--explain", "--examples", "2"]
    code, out, err = run(capsys, *argv)
    assert code == 2 and "all 160 pruned (reasons above)" in err and "see --explain" not in err
    assert "160  the kernel is an SGEMM" in out and out.count("e.g. blocked_sgemm<") == 2
    code, out, _ = run(capsys, *argv, "--json")
    doc = json.loads(out)
    assert code == 2 and doc["recommendations"] == [] and doc["pruned"]["total"] == 160
    assert len(doc["pruned"]["by_reason"]) == 1


def test_cutlass_on_a_gpu_its_python_interface_cannot_plan_for_is_one_line(capsys):
    pytest.importorskip("cutlass_library")
    code, _, err = run(capsys, "recommend", "--gpu", "gtx-titan-x", "--m", "256", "--n", "256",
                       "--k", "256", "--dtype", "f32", "--family", "cutlass")
    assert code == 2 and err.count("\n") == 1 and "plans no GEMM for sm_52" in err


def test_argument_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["recommend", "--gpu", "h100", "--objective", "speed"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "invalid choice: 'speed'" in err and "`gemmperf recommend --help`" in err


def test_clocks_prices_the_boost_clock_as_recommend_does(capsys):
    # One config, one energy at the boost clock: clocks scales the DVFS curve to the model's
    # power for the config recommend ranks first.
    code, out, _ = run(capsys, "clocks", *XGEMM, "--family", "clblast_xgemm", "--json")
    clock = json.loads(out)
    code2, out2, _ = run(capsys, "recommend", *XGEMM, "--dtype", "f32", "--family",
                         "clblast_xgemm", "--top", "1", "--json")
    top = json.loads(out2)["recommendations"][0]
    assert code == code2 == 0
    assert clock["energy_j"] / (1 - clock["energy_saving"]) == pytest.approx(top["energy_j"],
                                                                             rel=1e-6)


def test_clocks_table_marks_its_choice_and_says_when_the_boost_clock_wins(capsys):
    problem = ["--gpu", "rtx-3090", "--m", "4096", "--n", "4096", "--k", "4096", "--dtype", "f32"]
    code, out, err = run(capsys, "clocks", *problem)
    assert code == 0, err
    chosen = json.loads(run(capsys, "clocks", *problem, "--json")[1])["clock_mhz"]
    marked = [line for line in out.splitlines() if "lowest energy" in line and "│" in line]
    assert len(marked) == 1 and f"{chosen:,.0f}" in marked[0]
    code, out, err = run(capsys, "clocks", *problem, "--objective", "edp")
    assert code == 0, err
    assert "boost clock (1695 MHz) already gives the lowest edp" in out.splitlines()[0]
    assert "lowest edp (boost)" in out


@pytest.mark.parametrize("family", ["tiled", "blocked"])
def test_hand_written_kernels_are_timed_with_their_compiled_registers(capsys, family):
    # The space carries the ptxas table's registers: tiled_sgemm<32> (1024 threads, 32
    # registers on sm_80) launches 2 blocks per SM. With the default footprint's 128 registers
    # it "could not launch", and the roofline model used to rank it first at the strict bound.
    code, out, err = run(capsys, "recommend", "--gpu", "a100", "--m", "4096", "--n", "4096",
                         "--k", "4096", "--family", family, "--dtype", "f32", "--json")
    assert code == 0, err
    ranked = json.loads(out)["recommendations"]
    assert all(r["runtime_s"] is not None and r["runtime_s"] > 0 for r in ranked)
    assert all(r["roofline_fraction"] <= 1.0 + 1e-9 for r in ranked)
    code, out, err = run(capsys, "clocks", "--gpu", "a100", "--m", "4096", "--n", "4096",
                         "--k", "4096", "--family", family, "--dtype", "f32", "--json")
    assert code == 0, err
    assert json.loads(out)["config"] == f"best predicted {family} config (rank 1)"


def test_clocks_plot_writes_the_curve_and_checks_its_path_first(capsys, tmp_path):
    argv = ["clocks", "--gpu", "a100-pcie-40gb", "--m", "8192", "--n", "8192", "--k", "8192",
            "--dtype", "f16", "--json"]
    code, out, err = run(capsys, *argv, "--plot", str(tmp_path / "clocks.png"))
    assert code == 0, err
    assert json.loads(out)["plot"] == str(tmp_path / "clocks.png")
    assert (tmp_path / "clocks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run(capsys, *argv, "--plot", str(tmp_path / "missing" / "c.png"))
    assert code == 2 and "does not exist" in err
