"""`gemmperf roofline`: table, JSON, chart, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest

import gemmperf.cli as cli


@pytest.fixture
def run(monkeypatch, capsys):
    # Only this subcommand: the test must not depend on the other subcommand modules.
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("gemmperf.cli.roofline",))

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["roofline", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def test_table(run):
    code, out, err = run("--gpu", "h100-sxm", "--m", "4096", "--n", "4096", "--k", "4096",
                         "--dtype", "bf16")
    assert code == 0 and err == ""
    for text in ("137.4 GFLOP", "100.7 MB", "compute", "138.9 us", "989.4 TFLOP/s",
                 "tail efficiency", "waves"):
        assert text in out


def test_json(run):
    code, out, _ = run("--gpu", "a100-sxm4-80gb", "--m", "1", "--n", "8192", "--k", "8192",
                       "--dtype", "f16", "--tile-n", "64", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["flops"] == 2 * 8192 * 8192
    assert doc["bound"] == "memory"
    assert doc["tile"] == {"m": 16, "n": 64, "k": 32}
    assert doc["lower_bound_s"] == pytest.approx(doc["compulsory_bytes"] / 2.039e12)
    assert doc["lower_bound_s"] <= doc["estimate_s"]


def test_plot(run, tmp_path):
    png = tmp_path / "roof.png"
    code, out, _ = run("--gpu", "a40", "--m", "512", "--n", "512", "--k", "8192", "--batch", "4",
                       "--dtype", "f32", "--plot", str(png))
    assert code == 0 and str(png) in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--gpu", "h100", "--m", "-5", "--n", "8", "--k", "8", "--dtype", "bf16"),
         "m must be positive"),
        (("--gpu", "h100", "--m", "8", "--n", "8", "--k", "8", "--dtype", "bf17"),
         "unknown dtype 'bf17'"),
        (("--gpu", "no-such-gpu", "--m", "8", "--n", "8", "--k", "8", "--dtype", "bf16"),
         "unknown GPU"),
        (("--gpu", "a100-sxm4-80gb", "--m", "8", "--n", "8", "--k", "8", "--dtype", "fp8"),
         "no fp8 math path"),
        (("--gpu", "h100", "--m", "8", "--n", "8", "--k", "8", "--dtype", "bf16", "--tile-k",
          "-32"), "tile_k must be an integer >= 1, got -32"),
        (("--gpu", "h100", "--m", "8", "--n", "8", "--k", "8", "--dtype", "bf16", "--plot",
          "/nonexistent/dir/x.png"), "/nonexistent/dir does not exist"),
        (("--gpu", "h100", "--m", "8", "--n", "8", "--k", "8", "--dtype", "bf16", "--plot",
          "x.txt"), "name a .png"),
    ],
)
def test_bad_input_is_one_line_exit_2(run, argv, message):
    code, out, err = run(*argv)
    assert code == 2 and out == ""
    assert err.startswith("gemmperf: error: ") and message in err
    assert err.count("\n") == 1


def test_a_plot_under_a_file_says_the_file_is_in_the_way(run, tmp_path):
    (tmp_path / "afile").write_text("")
    code, _, err = run("--gpu", "h100", "--m", "8", "--n", "8", "--k", "8", "--dtype", "bf16",
                       "--plot", str(tmp_path / "afile" / "x.png"))
    assert code == 2 and "afile is a file, not a folder" in err


def test_a_tile_that_cannot_launch_is_noted(run):
    argv = ("--gpu", "h100", "--m", "1", "--n", "1024", "--k", "1024", "--dtype", "bf16",
            "--json")
    code, out, _ = run(*argv, "--tile-m", "100000")
    assert code == 0
    assert "do not fit the shared memory of one block on sm_90" in json.loads(out)["note"]
    code, out, _ = run(*argv, "--tile-m", "128")
    assert code == 0 and json.loads(out)["note"] is None
