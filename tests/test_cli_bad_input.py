"""Bad input found by probing every subcommand: each is one ``gemmperf: error:`` line and a
non-zero exit, never a traceback, and nothing already written changes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from predict_helpers import xgemm_frame

from gemmperf.cli import main
from gemmperf.records import write_frame

SWEEP_DRY = ["sweep", "--backend", "fake", "--gpu", "h100-sxm", "--kernels", "tiled",
             "--dry-run", "--json"]
PLAN = ["plan", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1T", "--arch"]


def one_line_error(capsys, argv: list[str], code: int = 2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("gemmperf: error:") and err.count("\n") == 1, err
    return err


@pytest.fixture()
def records(tmp_path) -> Path:
    path = tmp_path / "records.jsonl"
    write_frame(xgemm_frame(40), path)
    return path


def _edit_first_record(path: Path, **values) -> None:
    lines = path.read_text().splitlines()
    row = json.loads(lines[0])
    row.update(values)
    path.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")


@pytest.mark.parametrize(("content", "message"), [
    (gzip.compress(b"m,n,k\n64,64,64\n"), "not a UTF-8 text CSV"),
    (b"m,n,k\ninf,2,2\n", "must be integers, got inf, 2, 2"),
    (b"m,n,k\n1.5,2,2\n", "must be integers, got 1.5, 2, 2"),
])
def test_a_bad_shapes_csv(capsys, tmp_path, content, message):
    shapes = tmp_path / "shapes.csv"
    shapes.write_bytes(content)
    err = one_line_error(capsys, [*SWEEP_DRY, "--shapes", str(shapes), "--out",
                                  str(tmp_path / "out")])
    assert message in err


@pytest.mark.parametrize(("values", "message"), [
    ({"m": "abc"}, "record 1: m must be a number, got 'abc'"),
    ({"status": "weird"}, "record 1: status 'weird' is not one of ok, "),
    ({"runtime_s": -0.5}, "record 1: an ok row has runtime_s = -0.5, not a positive finite"),
])
def test_records_with_impossible_values_are_refused_by_name(capsys, records, tmp_path,
                                                            values, message):
    _edit_first_record(records, **values)
    for argv in (["train", str(records), "-o", str(tmp_path / "m.npz")],
                 ["import", "auto", str(records), "-o", str(tmp_path / "copy.csv")]):
        assert message in one_line_error(capsys, argv)
    assert not (tmp_path / "m.npz").exists() and not (tmp_path / "copy.csv").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_outputs_on_a_virtual_file_system_fail_before_the_work(capsys, records):
    assert "/proc/x.csv: cannot write" in one_line_error(
        capsys, ["import", "auto", str(records), "-o", "/proc/x.csv"])
    assert "--report /proc/rep: cannot create the folder" in one_line_error(
        capsys, ["evaluate", str(records), "--report", "/proc/rep"])


@pytest.mark.parametrize(("text", "message"), [
    ('{"hidden_size": NaN, "num_attention_heads": 8}', "hidden_size must be an integer, got nan"),
    ('{"hidden_size": 1e400, "num_attention_heads": 8}', "hidden_size must be an integer"),
    ("[1, 2]", "holds one JSON object"),
])
def test_a_config_json_that_cannot_be_an_architecture(capsys, tmp_path, text, message):
    config = tmp_path / "c.json"
    config.write_text(text)
    assert message in one_line_error(capsys, [*PLAN, str(config)])
    config.write_bytes(b"\xff\xfe{")
    assert "not UTF-8 text" in one_line_error(capsys, [*PLAN, str(config)])


def test_model_options_and_files(capsys, records, tmp_path):
    assert "--seed -1" in one_line_error(
        capsys, ["train", str(records), "-o", str(tmp_path / "m.npz"), "--seed", "-1"])
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle at all")
    assert "not a readable pickle" in one_line_error(
        capsys, ["evaluate", "--model", str(junk), "--trust-pickle", str(records)])


def test_an_unknown_option_points_to_its_own_subcommand_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["roofline", "--gpu", "h100", "--m", "8", "--n", "8", "--k", "8", "--dtype",
              "bf16", "--bogus", "64"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert "unrecognized arguments: --bogus 64 (`gemmperf roofline --help`" in err


def test_a_records_folder_entry_that_is_a_folder(capsys, tmp_path):
    (tmp_path / "records.jsonl").mkdir()
    err = one_line_error(capsys, [*SWEEP_DRY, "--shapes", "256", "--out", str(tmp_path)])
    assert "is not a file" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["plan", "--arch", "llama-3-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1T",
      "--tp", "1", "--pp", "1", "--virtual-stages", "4"], "they need pp > 1"),
    (["plan", "--arch", "llama-3-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1e-3"],
     "--tokens must be a positive whole number of tokens"),
    (["plan", "--arch", "llama-3-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1T",
      "--global-batch-tokens", "1"], "is less than one 8,192-token sequence"),
    (["budget", "--flops", "1e24", "--num-gpus", "64", "--pue", "1.5"],
     "num_gpus, pue (--num-gpus, --pue) would do nothing"),
    (["budget", "--usd", "1e6", "--price", "2"], "needs a GPU (--gpu)"),
    (["sweep", "--backend", "fake", "--gpu", "h100", "--kernels", "tiled", "--shapes", "256",
      "--out", "never-written", "--dry-run", "--fake-failures", "bogus=0.1"],
     "unknown status 'bogus'"),
    (["sweep", "--backend", "fake", "--gpu", "h100", "--kernels", "tiled", "--shapes", "256",
      "--out", "never-written", "--dry-run", "--power-limit", "100000"],
     "power limit 100000 W is outside this GPU's range 350-700 W"),
])
def test_planning_and_sweep_options_that_would_mislead(capsys, argv, message):
    assert message in one_line_error(capsys, argv)
    assert not Path("never-written").exists()


def test_whatif_exits_2_when_no_scenario_could_be_planned(capsys):
    assert main(["whatif", "--arch", "llama-3-8b", "--tokens", "1T", "--gpu", "h100",
                 "--num-gpus", "1", "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)[0]["error"].startswith("llama-3-8b does not fit")
    assert captured.err.startswith("gemmperf: error: no scenario could be planned")


XGEMM_3090 = Path(__file__).resolve().parents[2] / "shared" / "data" / \
    "kernel_tuner_xgemm_RTX_3090.json.gz"
needs_shared = pytest.mark.skipif(not XGEMM_3090.is_file(), reason="needs ../shared/data")


@needs_shared
@pytest.mark.parametrize(("extra", "message"), [
    (["--dtype", "f16"], "--dtype f16 differs from the file's problem (4096x4096x4096, batch 1"),
    (["--layout", "tt"], "--layout tt differs"),
    (["--batch", "7"], "--batch 7 differs"),
])
def test_recommend_on_a_file_refuses_options_the_file_overrides(capsys, extra, message):
    assert message in one_line_error(capsys, ["recommend", "--gpu", "rtx-3090", "--space",
                                              str(XGEMM_3090), *extra])


@needs_shared
def test_import_options_that_would_be_ignored_or_contradict_the_file(capsys, tmp_path):
    out = str(tmp_path / "o.csv")
    assert "contradicts the cache's own problem_size [4096, 4096]" in one_line_error(
        capsys, ["import", "kernel-tuner", str(XGEMM_3090), "-o", out, "--problem-size",
                 "1x2x3"])
    assert "--device-name is for import cutlass-profiler" in one_line_error(
        capsys, ["import", "kernel-tuner", str(XGEMM_3090), "-o", out, "--device-name", "x"])
    assert not Path(out).exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--threads", "100000"], "100000 threads per block, the limit is 1024"),
    (["--smem", "999999999"], "shared memory, the limit is 163 KiB per block"),
    (["--regs", "9999"], "9999 registers per thread, the limit is 255"),
    (["--threads", "1024", "--regs", "128"], "131072 registers per block"),
    (["--mem-clock", "1e9"], "--mem-clock 1e+09: not a memory clock"),
])
def test_predict_refuses_a_footprint_the_gpu_cannot_launch(capsys, extra, message):
    assert message in one_line_error(capsys, ["predict", "--gpu", "a100", "--m", "4096", "--n",
                                              "4096", "--k", "4096", "--dtype", "f16", *extra])


def test_a_jsonl_file_without_record_columns_is_not_records(capsys, tmp_path):
    path = tmp_path / "n.jsonl"
    path.write_text('{"a": 1}\n')
    assert "not gemmperf records (no status column" in one_line_error(
        capsys, ["import", "auto", str(path), "-o", str(tmp_path / "n.csv")])


@pytest.mark.parametrize("argv", [
    ["roofline", "--gpu", "h100", "--m", "8", "--n", "8", "--k", "8", "--dtype", "bf16",
     "--plot", ""],
    ["sweep", "--backend", "fake", "--gpu", "h100", "--kernels", "tiled", "--shapes", "256",
     "--out", " ", "--dry-run"],
    ["train", "x.jsonl", "-o", ""],
])
def test_an_empty_path_is_refused_not_read_as_no_path_or_here(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "an empty path" in err and err.count("\n") == 1


@pytest.mark.parametrize(("extra", "message"), [
    (["--explain", "--examples", "-1"], "--examples must be 0 or more"),
    (["--examples", "3"], "add --explain"),
])
def test_recommend_examples_needs_explain(capsys, extra, message):
    assert message in one_line_error(capsys, ["recommend", "--gpu", "a100", "--m", "4096",
                                              "--n", "4096", "--k", "4096", "--family",
                                              "tiled", "--dtype", "f32", *extra])
