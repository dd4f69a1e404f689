"""`gemmperf demo`: the README's main job runs offline and answers every section."""

from __future__ import annotations

import json

from gemmperf.cli import main
from gemmperf.cli.demo import DEMO_GPUS, DEMO_SHAPES


def test_demo_json_has_roofline_plan_and_budget(capsys):
    assert main(["demo", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["roofline"]) == len(DEMO_GPUS) * len(DEMO_SHAPES)
    for row in out["roofline"]:
        # the estimate never beats the strict bound, and throughput never beats the peak
        assert row["estimate_us"] >= row["lower_bound_us"] > 0
        assert 0 < row["tail_efficiency"] <= 1
    assert len(out["recommend"]) == 3 and all(p["runtime_s"] > 0 for p in out["recommend"])
    assert "rtx-3090" in out["recommend_by_analogy_with"]   # the demo GPU is not in the data
    assert 0 < out["plan"]["mfu"] < 1 and out["plan"]["gpu_hours"] > 0
    assert out["budget"]["n_opt"] > 0 and out["budget"]["d_opt"] > out["budget"]["n_opt"]


def test_demo_table_names_the_sections(capsys):
    assert main(["demo"]) == 0
    text = capsys.readouterr().out
    assert "Roofline of common training GEMMs" in text
    assert "Recommended clblast_xgemm configs" in text
    assert "Training plan:" in text and "Budget:" in text


def test_demo_with_a_dtype_some_gpus_lack_leaves_them_out_and_says_so(capsys):
    assert main(["demo", "--dtype", "fp8", "--json"]) == 0
    captured = capsys.readouterr()
    gpus = {row["gpu"] for row in json.loads(captured.out)["roofline"]}
    assert "a100-sxm4-80gb" not in gpus and "h100-sxm" in gpus
    assert "A100 SXM4 80GB left out: no fp8 math path" in captured.err
