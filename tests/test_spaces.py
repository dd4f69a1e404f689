"""Search spaces: Xgemm enumeration, constraints, pruning reasons, file spaces, safe expressions."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pandas as pd
import pytest

from gemmperf.errors import DataFormatError
from gemmperf.hardware.specs import get_gpu
from gemmperf.problem import GemmProblem
from gemmperf.records import RecordWriter, params_json
from gemmperf.spaces import SpaceError, check_values, file_space, get_space, load_space_spec
from gemmperf.spaces._expr import compile_expr, format_reason
from gemmperf.spaces.param_space import enumerate_space

XGEMM = GemmProblem(4096, 4096, 4096, dtype="f32", layout="nt")


@pytest.fixture(scope="module")
def xgemm():
    return get_space("clblast_xgemm", XGEMM, "rtx-3090")


def _satisfies(c: dict) -> bool:
    """The Kernel Tuner restrictions of the Xgemm caches, written out in plain Python."""
    return (c["KWG"] % c["KWI"] == 0 and c["MWG"] % (c["MDIMC"] * c["VWM"]) == 0
            and c["NWG"] % (c["NDIMC"] * c["VWN"]) == 0
            and c["MWG"] % (c["MDIMA"] * c["VWM"]) == 0
            and c["NWG"] % (c["NDIMB"] * c["VWN"]) == 0
            and c["KWG"] % ((c["MDIMC"] * c["NDIMC"]) / c["MDIMA"]) == 0
            and c["KWG"] % ((c["MDIMC"] * c["NDIMC"]) / c["NDIMB"]) == 0)


def test_xgemm_space_reproduces_the_kernel_tuner_count(xgemm):
    assert len(xgemm) == 82_944          # 4*4*3*3*3*3*4*4*2*2 products
    assert len(xgemm.candidates) == 17_956
    summary = xgemm.summary()
    assert summary["valid"] + summary["pruned"] == summary["total"]
    assert sum(summary["pruned_by_reason"].values()) == summary["pruned"]


def test_xgemm_validity_matches_an_independent_check(xgemm):
    spec = load_space_spec("clblast_xgemm")
    names = list(spec.parameters)
    rows = [dict(zip(names, values, strict=True))
            for values in itertools.product(*(spec.parameters[n] for n in names))]
    expected = np.array([_satisfies(r) for r in rows])
    assert expected.sum() == 17_956
    frame = xgemm.frame
    # The enumeration order is the product order, so rows line up one to one.
    assert (frame[names].to_numpy() == np.array([[r[n] for n in names] for r in rows])).all()
    assert (frame["valid"].to_numpy() == expected).all()


def test_pruned_configs_name_their_first_violated_constraint(xgemm):
    row = xgemm.frame[(xgemm.frame["MWG"] == 16) & (xgemm.frame["MDIMC"] == 32)].iloc[0]
    assert not row["valid"]
    assert row["reason"] == "violates MWG % (MDIMC * VWM) == 0"
    text = xgemm.explain(xgemm.frame.loc[[row.name]]).iloc[0]
    assert text.startswith(f"MWG=16 is not a multiple of MDIMC*VWM={32 * row['VWM']}")
    assert "smaller MDIMC" in text                      # actionable


def test_device_constraints_prune_with_the_gpu_limit():
    small = dataclasses.replace(get_gpu("rtx-3090"), key="tiny-gpu", max_threads_per_block=128)
    space = enumerate_space(load_space_spec("clblast_xgemm"), small)
    threads = space.frame["MDIMC"] * space.frame["NDIMC"]
    assert not space.frame.loc[threads > 128, "valid"].any()
    hit = space.pruned[space.pruned["reason"].str.contains("max_threads_per_block")].head(1)
    assert "the limit is 128 on this GPU" in space.explain(hit).iloc[0]


def test_default_config_is_clblast_nvidia_default_and_valid(xgemm):
    config = xgemm.config(xgemm.default_id)
    assert config.param_dict["MWG"] == 32 and config.param_dict["NWG"] == 64
    assert config.tile_m == 32 and config.threads_per_block == 8 * 32
    assert "CLBlast" in xgemm.default_source
    assert check_values(load_space_spec("clblast_xgemm"), config.param_dict) is None


def test_params_json_is_canonical_and_columns_match_the_importer(xgemm):
    row = xgemm.candidates.iloc[123]
    assert params_json(json.loads(row["params"])) == row["params"]
    assert row["tile_m"] == row["MWG"] and row["tile_k"] == row["KWG"]
    assert row["threads_per_block"] == row["MDIMC"] * row["NDIMC"]
    assert row["kernel_name"] == "Xgemm"


def test_check_values_reports_the_reason():
    spec = load_space_spec("clblast_xgemm")
    good = {**spec.default}
    assert check_values(spec, good) is None
    bad = {**good, "MWG": 16, "VWM": 8}
    assert "not a multiple of MDIMC*VWM=64" in check_values(spec, bad)
    assert "unknown tunable" in check_values(spec, {"FOO": 1})


@pytest.mark.parametrize("text", ["__import__('os').system('true')", "MWG.real", "f(MWG)",
                                  "[MWG]", "MWG if SA else NWG", "'a' == 'a'"])
def test_constraint_expressions_refuse_anything_but_arithmetic(text):
    with pytest.raises(DataFormatError):
        compile_expr(text)


def test_constraint_expressions_are_vectorised_and_safe_on_zero():
    f = compile_expr("KWG % ((MDIMC * NDIMC) / MDIMA) == 0 and 1 <= MWG < 64")
    out = f({"KWG": np.array([32, 32, 32]), "MDIMC": np.array([8, 8, 8]),
             "NDIMC": np.array([8, 32, 8]), "MDIMA": np.array([8, 4, 0]),
             "MWG": np.array([16, 16, 16])})
    # 64/8 = 8 divides 32; 256/4 = 64 does not; a zero divisor makes the rule false.
    assert out.tolist() == [True, False, False]
    assert format_reason("x={MWG * 2}", {"MWG": 3}) == "x=6"


def test_unknown_family_and_wrong_dtype_are_clear_errors():
    with pytest.raises(SpaceError, match="unknown kernel family 'nope'"):
        get_space("nope", XGEMM, "rtx-3090")
    with pytest.raises(SpaceError, match="for f32 GEMMs"):
        get_space("clblast_xgemm", GemmProblem(64, 64, 64, dtype="f16"), "rtx-3090")


def test_blocked_space_uses_the_backend_rules():
    space = get_space("blocked", GemmProblem(1024, 1024, 1024), "a100-sxm4-80gb")
    assert len(space.candidates) > 10
    assert space.default_id is not None
    assert space.config(space.default_id).tile_m == 128
    assert space.candidates["kernel_name"].str.startswith("blocked_sgemm<").all()
    f16 = get_space("tiled", GemmProblem(1024, 1024, 1024, dtype="f16"), "a100-sxm4-80gb")
    assert not f16.frame["valid"].any()
    assert "SGEMM" in f16.frame["reason"].iloc[0]


def _write_records(path, rows):
    with RecordWriter(path) as writer:
        for row in rows:
            writer.write(row)


def _xgemm_row(values: dict, runtime: float | None, status: str = "ok", reason=None) -> dict:
    return {"source": "test", "status": status, "reason": reason, "m": 1024, "n": 1024,
            "k": 1024, "dtype": "f32", "layout": "nt", "family": "clblast_xgemm",
            "kernel_name": "Xgemm", "gpu": "rtx-3090", "tile_m": values["MWG"],
            "tile_n": values["NWG"], "tile_k": values["KWG"],
            "threads_per_block": values["MDIMC"] * values["NDIMC"], "params": values,
            "runtime_s": runtime}


def test_file_space_lists_configs_prunes_failures_and_keeps_measurements(tmp_path):
    spec = load_space_spec("clblast_xgemm")
    good = dict(spec.default)
    other = {**good, "VWM": 2}
    broken = {**good, "VWN": 1}
    invalid = {**good, "MWG": 16, "VWM": 8}                 # violates the Xgemm constraints
    path = tmp_path / "recs.jsonl"
    _write_records(path, [_xgemm_row(good, 2e-3), _xgemm_row(good, 4e-3),
                          _xgemm_row(other, 3e-3),
                          _xgemm_row(broken, None, "compile_error", "ptxas died"),
                          _xgemm_row(invalid, 1e-3)])
    space, recording = file_space(path, gpu=get_gpu("rtx-3090"))
    assert len(space) == 4 and len(space.candidates) == 2
    assert space.problem == GemmProblem(1024, 1024, 1024, dtype="f32", layout="nt")
    reasons = space.pruned["reason"].tolist()
    assert any("recorded as compile_error on rtx-3090: ptxas died" in r for r in reasons)
    assert any(r.startswith("violates MWG % (MDIMC * VWM)") for r in reasons)
    good_id = space.find(good)
    assert recording.frame.at[good_id, "runtime_s"] == pytest.approx(3e-3)   # median of 2, 4
    assert space.default_id == good_id


def test_file_space_with_several_problems_asks_for_one(tmp_path):
    good = dict(load_space_spec("clblast_xgemm").default)
    row2 = {**_xgemm_row(good, 1e-3), "m": 2048}
    path = tmp_path / "two.jsonl"
    _write_records(path, [_xgemm_row(good, 1e-3), row2])
    with pytest.raises(SpaceError, match="holds 2 problems"):
        file_space(path)
    space, _ = file_space(path, problem=GemmProblem(2048, 1024, 1024, dtype="f32", layout="nt"))
    assert space.problem.m == 2048


@pytest.mark.shared_data
def test_kernel_tuner_cache_space_is_the_full_xgemm_space(shared_data, xgemm):
    space, recording = file_space(shared_data / "kernel_tuner_xgemm_RTX_3090.json.gz")
    assert len(space.candidates) == 17_956
    assert recording.gpus == ("rtx-3090",)
    assert recording.frame["runtime_s"].notna().all()
    # Same configs (as params JSON) as the enumerated space.
    assert set(space.candidates["params"]) == set(xgemm.candidates["params"])
    assert isinstance(space.frame, pd.DataFrame)


def test_cutlass_space_resolves_cutlass_default_tile():
    pytest.importorskip("cutlass_cppgen", reason="nvidia-cutlass is not installed")
    space = get_space("cutlass", GemmProblem(4096, 4096, 4096, dtype="f16"), "a100-sxm4-80gb")
    assert len(space.candidates) > 20
    default = space.config(space.default_id)
    assert (default.tile_m, default.tile_n, default.tile_k, default.stages) == (128, 256, 64, 3)
    assert "DefaultGemmConfiguration" in space.default_source


def test_params_json_column_is_canonical_json_across_chunks_and_types():
    from gemmperf.spaces.space import params_json_column

    rng = np.random.default_rng(5)
    names = [f"P{i:02d}" for i in range(11)]       # three chunks of tunables, the last short
    frame = pd.DataFrame({n: rng.choice([1, 2, 4, 8, 64], 400) for n in names})
    texts = params_json_column(frame, names[::-1])  # any order in, sorted keys out
    assert texts == [params_json(row) for row in frame.to_dict("records")]
    mixed = pd.DataFrame({"f": [1.5, 2.0, np.nan], "s": ["x", "y", "x"], "b": [True, False, True],
                          "i": pd.array([1, pd.NA, 3], dtype="Int64")})
    assert params_json_column(mixed, list(mixed.columns)) == [
        '{"b":true,"f":1.5,"i":1,"s":"x"}', '{"b":false,"f":2,"i":null,"s":"y"}',
        '{"b":true,"f":null,"i":3,"s":"x"}']
    assert [json.loads(t) for t in params_json_column(mixed, ["s"])] == [
        {"s": "x"}, {"s": "y"}, {"s": "x"}]
    assert params_json_column(frame.head(2), []) == ["{}", "{}"]
    assert params_json_column(frame.head(0), names) == []
