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


def test_fake_backend_records_are_refused_unless_allowed(tmp_path, capsys):
    # Simulated times are never measurements: train / evaluate / cross-validate say so.
    fake = tmp_path / "fake.jsonl"
    write_frame(xgemm_frame(120).assign(source="fake"), fake)
    for argv in (["train", str(fake), "-o", str(tmp_path / "m.npz"), *SMALL],
                 ["evaluate", str(fake)], ["cross-validate", str(fake), "--split", "gpu"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "120 of 120 rows are fake-backend" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.npz").exists()
    assert main(["train", str(fake), "-o", str(tmp_path / "m.npz"), *SMALL, "--allow-fake"]) == 0


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
    assert out["power_w_hi"] <= 450.0   # the RTX 4090's TDP caps power and its interval
    assert main(args) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "by analogy with rtx-2080-ti" in text
    assert ("power stops at the 450 W power limit" in text) == (out["power_w_hi"] == 450.0)
    seen = [a if a != "rtx-4090" else "rtx-3090" for a in args]
    assert main([*seen, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["by_analogy_with"] == []


def test_predict_on_an_unseen_gpu_in_a_math_path_the_analogues_lack(capsys):
    # The shipped model: cuBLAS was measured on the A100 and A40, neither of which has FP8.
    # An FP8 GEMM on a B200 is left to the shared ensemble (which saw FP8 elsewhere), and the
    # output says it is not by analogy; FP16 on the B200 is.
    args = ["predict", "--gpu", "b200", "--m", "8192", "--n", "8192", "--k", "8192",
            "--family", "cublas", "--json"]
    for dtype, analogues in (("fp8", []), ("f16", ["a100-sxm4-80gb", "a40"])):
        assert main([*args, "--dtype", dtype]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["by_analogy_with"] == analogues
        assert 0 < out["runtime_s_lo"] < out["runtime_s"] < out["runtime_s_hi"]


def test_predict_without_a_family_is_the_vendor_library_and_says_so(capsys):
    # The shipped model knows cuBLAS (Vidur): no --family and no kernel options is cuBLAS;
    # a tile option describes some other kernel, so the row names no family.
    args = ["predict", "--gpu", "a100", "--m", "4096", "--n", "4096", "--k", "4096",
            "--dtype", "f16", "--json"]
    assert main(args) == 0
    default = json.loads(capsys.readouterr().out)
    assert default["family"] == "cublas" and default["family_defaulted"] is True
    assert main([*args, "--family", "cublas"]) == 0
    named = json.loads(capsys.readouterr().out)
    assert named["family_defaulted"] is False and named["runtime_s"] == default["runtime_s"]
    assert main([*args, "--tile-m", "128"]) == 0
    tiled = json.loads(capsys.readouterr().out)
    assert tiled["family"] is None and tiled["family_defaulted"] is False
    assert main(args[:-1]) == 0
    assert "cublas (default family)" in " ".join(capsys.readouterr().out.split())


_XGEMM_4K = ["predict", "--model", "MODEL", "--gpu", "rtx-3090", "--m", "4096", "--n", "4096",
             "--k", "4096", "--dtype", "f32", "--family", "clblast_xgemm"]


def test_predict_builds_the_row_recommend_ranks_for_the_same_config(capsys):
    # Same config, same answer: predict fills in the kernel name, the derived tile and thread
    # columns, and the space's default for the tunables not given.
    import gemmperf as gp

    top = gp.recommend(gp.GemmProblem(4096, 4096, 4096, dtype="f32"), "rtx-3090",
                       family="clblast_xgemm", top=1).iloc[0]
    names = ("MWG", "NWG", "KWG", "MDIMC", "NDIMC", "MDIMA", "NDIMB", "KWI", "VWM", "VWN",
             "STRM", "STRN", "SA", "SB")
    given = [a for name in names for a in ("--param", f"{name}={int(top[name])}")]
    base = [a for a in _XGEMM_4K if a not in ("--model", "MODEL")]
    assert main([*base, *given, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["runtime_s"] == pytest.approx(top["runtime_s"], rel=1e-9)
    assert out["params"]["PRECISION"] == 32   # from the space's default
    assert main([*base, "--json"]) == 0   # no tunables at all: the space's default config
    assert json.loads(capsys.readouterr().out)["params"]["MWG"] == 32


@pytest.mark.parametrize("argv,message", [
    (["predict", "--gpu", "voodoo2", "--m", "8", "--n", "8", "--k", "8", "--dtype", "f32"],
     "unknown GPU"),
    (["predict", "--gpu", "a100", "--m", "8", "--n", "8", "--k", "8", "--dtype", "f32",
      "--param", "novalue"], "KEY=VALUE"),
    (["evaluate", "--model", "/nonexistent/m.npz", "x.jsonl"], "no such"),
    (["train", "/nonexistent/data.jsonl", "-o", "/tmp/never.npz"], "no such file"),
    ([*_XGEMM_4K, "--param", "MWG=7"], "MWG=7 is not a multiple of MDIMC*VWM"),
    ([*_XGEMM_4K, "--param", "FOO=3"], "unknown tunable(s) FOO"),
    ([*_XGEMM_4K, "--param", "MWG=abc"], "take numbers"),
    ([*_XGEMM_4K, "--sm-clock", "0"], "not an SM clock"),
    ([*_XGEMM_4K, "--sm-clock", "99999"], "not an SM clock"),
    ([*_XGEMM_4K, "--tile-m", "-1"], "--tile-m -1: must be positive"),
    ([*_XGEMM_4K[:-1], "nosuch"], "unknown --family 'nosuch'"),
    ([*_XGEMM_4K[:-1], "tiled", "--param", "X=1"], "has no tunables"),
    ([*_XGEMM_4K[:-2], "--param", "MWG=64"], "--param needs --family"),
    ([a if a != "f32" else "bf16" for a in _XGEMM_4K], "space is for f32 GEMMs"),
    (["train", "x.jsonl", "-o", "/tmp/never.npz", "--trees", "0"], "--trees 0"),
    (["train", "x.jsonl", "-o", "/tmp/never.npz", "--max-leaves", "1"], "--max-leaves 1"),
    (["train", "x.jsonl", "-o", "/tmp/never.npz", "--jobs", "0"], "--jobs 0"),
    (["cross-validate", "x.jsonl", "--split", "shape", "--folds", "0"], "--folds 0"),
    (["cross-validate", "x.jsonl", "--split", "shape", "--trees", "-1"], "--trees -1"),
])
def test_user_errors_exit_2_with_one_line(argv, message, capsys, model):
    argv = [a if a != "MODEL" else str(model) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_train_rejects_unknown_targets(data, tmp_path, capsys):
    assert main(["train", str(data), "-o", str(tmp_path / "x.npz"), "--targets", "speed"]) == 2
    assert "--targets" in capsys.readouterr().err


def test_output_paths_that_cannot_be_written_fail_before_the_work(data, model, tmp_path, capsys):
    # A file where a folder must go, or a model name without .npz/.pkl: one line, exit 2,
    # before training (or predicting), and nothing written.
    blocker = tmp_path / "afile"
    blocker.write_text("")
    for argv, message in (
            (["train", str(data), "-o", str(blocker / "m.npz"), *SMALL], "afile is a file"),
            (["train", str(data), "-o", str(tmp_path / "m.bin"), *SMALL], "end in .npz"),
            (["train", str(data), "-o", str(tmp_path), *SMALL], "end in .npz"),
            (["evaluate", "--model", str(model), str(data), "--report", str(blocker)],
             "--report"),
            (["evaluate", "--model", str(model), str(data), "--report", str(blocker / "r")],
             "cannot hold a folder")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_train_and_report_refuse_to_replace_data_without_force(data, model, tmp_path, capsys):
    bundle = tmp_path / "kept.npz"
    bundle.write_bytes(b"an earlier model")
    report = tmp_path / "rep"
    report.mkdir()
    (report / "summary.md").write_text("the user's notes")
    for argv in (["train", str(data), "-o", str(bundle), *SMALL],
                 ["evaluate", "--model", str(model), str(data), "--report", str(report)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "--force" in err and len(err.splitlines()) == 1
    assert bundle.read_bytes() == b"an earlier model"
    assert (report / "summary.md").read_text() == "the user's notes"
    assert main(["evaluate", "--model", str(model), str(data), "--report", str(report),
                 "--force"]) == 0
    assert (report / "summary.md").read_text() != "the user's notes"
