"""`gemmperf train | evaluate | cross-validate | predict` end to end on small record files."""

from __future__ import annotations

import json

import pytest
from predict_helpers import xgemm_frame

from gemmperf.cli import main
from gemmperf.records import write_frame

SMALL = ["--trees", "6", "--max-leaves", "32"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "records.jsonl"
    write_frame(xgemm_frame(240), path)
    return path


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m.npz"
    assert main(["train", str(data), "-o", str(out), *SMALL]) == 0
    return out


def test_train_writes_a_bundle_with_metadata(data, tmp_path, capsys):
    out = tmp_path / "runtime_only.npz"
    code = main(["train", str(data), "-o", str(out), "--targets", "runtime", "--seed", "3",
                 "--json", *SMALL])
    assert code == 0 and out.is_file()
    meta = json.loads(capsys.readouterr().out)
    assert meta["targets"] == ["runtime"] and meta["params"]["random_state"] == 3
    assert meta["training_files"][0]["data_file"] == "records.jsonl"


def test_evaluate_json_has_the_documented_top_level_keys(data, model, capsys, tmp_path):
    code = main(["evaluate", "--model", str(model), str(data), "--json",
                 "--report", str(tmp_path / "rep")])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("n", "mape", "median_ape", "r2_log", "spearman", "coverage_80"):
        assert key in out
    assert out["n"] == 240 and set(out["targets"]) == {"runtime", "power", "energy"}
    written = {p.split("/")[-1] for p in out["report"]}
    assert {"predicted_vs_measured_runtime.png", "error_by_size.png", "summary.md"} <= written
    assert (tmp_path / "rep" / "error_by_size.png").read_bytes()[:4] == b"\x89PNG"
    assert "| all | runtime |" in (tmp_path / "rep" / "summary.md").read_text()


def test_cross_validate_gpu_split_json(data, capsys):
    code = main(["cross-validate", str(data), "--split", "gpu", "--json", *SMALL])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["split"] == "gpu" and len(out["folds"]) == 3


def test_predict_one_gemm_json_and_table(model, capsys):
    args = ["predict", "--model", str(model), "--gpu", "rtx 3090", "--m", "1024", "--n", "1024",
            "--k", "1024", "--dtype", "f32", "--family", "clblast_xgemm", "--tile-m", "64",
            "--tile-n", "64", "--threads", "64", "--param", "MWG=64", "--param", "NWG=64",
            "--param", "MDIMC=8", "--param", "NDIMC=8", "--param", "SA=1"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["gpu"] == "rtx-3090" and out["gpu_in_training_data"] is True
    assert out["runtime_s_lo"] <= out["runtime_s"] <= out["runtime_s_hi"]
    assert out["energy_j"] > 0
    assert main(args) == 0
    assert "80% low" in capsys.readouterr().out


def test_predict_names_the_gpus_an_unseen_gpu_is_predicted_by_analogy_with(capsys):
    # The shipped model: CLBlast Xgemm was measured on four GPUs, the RTX 4090 is not one.
    args = ["predict", "--gpu", "rtx-4090", "--m", "4096", "--n", "4096", "--k", "4096",
            "--dtype", "f32", "--family", "clblast_xgemm", "--param", "MWG=64",
            "--param", "NWG=64", "--param", "MDIMC=16", "--param", "NDIMC=16"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["gpu_in_training_data"] is False
    assert out["by_analogy_with"] == ["rtx-2080-ti", "rtx-3060-laptop", "rtx-3090", "rtx-a6000"]
    assert main(args) == 0
    assert "by analogy with rtx-2080-ti" in " ".join(capsys.readouterr().out.split())
    seen = [a if a != "rtx-4090" else "rtx-3090" for a in args]
    assert main([*seen, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["by_analogy_with"] == []


@pytest.mark.parametrize("argv,message", [
    (["predict", "--gpu", "voodoo2", "--m", "8", "--n", "8", "--k", "8", "--dtype", "f32"],
     "unknown GPU"),
    (["predict", "--gpu", "a100", "--m", "8", "--n", "8", "--k", "8", "--dtype", "f32",
      "--param", "novalue"], "KEY=VALUE"),
    (["evaluate", "--model", "/nonexistent/m.npz", "x.jsonl"], "no such"),
    (["train", "/nonexistent/data.jsonl", "-o", "/tmp/never.npz"], "no such file"),
])
def test_user_errors_exit_2_with_one_line(argv, message, capsys, model):
    argv = [a if a != "MODEL" else str(model) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_train_rejects_unknown_targets(data, tmp_path, capsys):
    assert main(["train", str(data), "-o", str(tmp_path / "x.npz"), "--targets", "speed"]) == 2
    assert "--targets" in capsys.readouterr().err
