"""Shape specs, shards, stable keys and validity limits (collect/space.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gemmperf.collect.space import (
    Shard,
    SpecError,
    SweepPlan,
    item_key,
    limit_reason,
    make_problems,
    parse_dim_spec,
    parse_shape_list,
    read_shape_csv,
    record_item_key,
    resolve_shapes,
    stable_hash,
)
from gemmperf.hardware.specs import get_gpu
from gemmperf.problem import GemmProblem, KernelConfig


def test_dimension_specs():
    assert parse_dim_spec("512:8192:x2") == [512, 1024, 2048, 4096, 8192]
    assert parse_dim_spec("256:1024:+256") == [256, 512, 768, 1024]
    assert parse_dim_spec("1024,2048") == [1024, 2048]
    assert parse_dim_spec("100:1000:x3") == [100, 300, 900]
    assert parse_dim_spec("128,512:2048:x2,512") == [128, 512, 1024, 2048]
    assert parse_dim_spec("64:100:x1.5") == [64, 96]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("512:8192", "START:STOP:xFACTOR"),
        ("512:256:x2", "below start"),
        ("512:8192:x1", "must be > 1"),
        ("512:8192:/2", r"xFACTOR or \+STEP"),
        ("0,1", "positive"),
        ("abc", "not an integer"),
        ("1,,2", "empty item"),
        ("1:10000000:+1", "more than"),
    ],
)
def test_bad_dimension_specs(spec, message):
    with pytest.raises(SpecError, match=message):
        parse_dim_spec(spec)


def test_shape_lists_and_grids():
    assert parse_shape_list("4096x4096x1024, 1x2x3") == [(4096, 4096, 1024, 1), (1, 2, 3, 1)]
    assert parse_shape_list("8x64x64x32") == [(64, 64, 32, 8)]
    with pytest.raises(SpecError, match="is not MxNxK"):
        parse_shape_list("4096x4096")
    assert len(resolve_shapes("512:2048:x2")) == 27
    assert resolve_shapes(m="128", n="256,512", k="64") == [(128, 256, 64, 1), (128, 512, 64, 1)]
    with pytest.raises(SpecError, match="either --shapes or"):
        resolve_shapes("512", m="1")
    with pytest.raises(SpecError, match="all of --m, --n and --k"):
        resolve_shapes(m="1", n="2")


def test_shape_csv(tmp_path):
    path = tmp_path / "shapes.csv"
    path.write_text("name,M,N,K,batch\nqkv,4096,12288,4096,\nproj,4096,4096,4096,2\n")
    assert read_shape_csv(path) == [(4096, 12288, 4096, 1), (4096, 4096, 4096, 2)]
    assert resolve_shapes(str(path)) == read_shape_csv(path)
    (tmp_path / "bad.csv").write_text("m,n\n1,2\n")
    with pytest.raises(SpecError, match="needs columns m, n, k"):
        read_shape_csv(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("m,n,k\n1,x,2\n")
    with pytest.raises(SpecError, match=r"bad2.csv:2: m, n, k and batch must be integers, "
                                        r"got 1, x, 2, 1"):
        read_shape_csv(tmp_path / "bad2.csv")
    with pytest.raises(SpecError, match="cannot read shape CSV"):
        read_shape_csv(tmp_path / "missing.csv")


def test_shard_parse():
    assert Shard.parse("1/4") == Shard(0, 4)
    assert str(Shard.parse(" 4 / 4 ")) == "4/4"
    for bad in ("0/4", "5/4", "1-4", "a/b"):
        with pytest.raises(SpecError):
            Shard.parse(bad)


def test_stable_hash_is_the_same_in_another_process():
    text = item_key(GemmProblem(1, 2, 3), KernelConfig.make("tiled", tile_m=16))
    code = (
        "import sys; from gemmperf.collect.space import stable_hash; "
        "print(stable_hash(sys.argv[1]))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, text], capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert int(other.stdout) == stable_hash(text)


@given(st.lists(st.text(min_size=1), min_size=1, max_size=50, unique=True),
       st.integers(min_value=1, max_value=7))
def test_shards_partition_any_key_set(keys, count):
    owners = [[s for s in range(count) if Shard(s, count).owns(k)] for k in keys]
    assert all(len(o) == 1 for o in owners)


def test_record_key_round_trip():
    problem = GemmProblem(33, 17, 65, dtype="f16", layout="tn")
    config = KernelConfig.make("cutlass", tile_m=128, tile_n=64, stages=3, swizzle="Identity4",
                               alignment_a=8)
    row = {
        "m": 33, "n": 17, "k": 65, "batch": 1, "dtype": "f16", "acc_dtype": None,
        "out_dtype": None, "layout": "tn", "family": "cutlass", "tile_m": 128, "tile_n": 64,
        "tile_k": None, "stages": 3, "params": {"alignment_a": 8, "swizzle": "Identity4"},
    }
    assert record_item_key(row) == item_key(problem, config)
    row["params"] = '{"swizzle":"Identity4","alignment_a":8}'   # as a DataFrame holds it
    assert record_item_key(row) == item_key(problem, config)
    assert record_item_key({"family": "x"}) is None


def test_limit_reasons_are_actionable():
    spec = get_gpu("rtx-4070")
    too_big = KernelConfig.make("x", threads_per_block=256, smem_bytes_per_block=132 * 1024)
    assert limit_reason(too_big, spec) == (
        "uses 132 KiB shared memory, the limit is 99 KiB on sm_89: reduce stages or tile size"
    )
    threads = KernelConfig.make("x", threads_per_block=2048)
    assert "2048 threads per block, the limit is 1024" in limit_reason(threads, spec)
    regs = KernelConfig.make("x", threads_per_block=1024, regs_per_thread=255)
    assert "registers per block" in limit_reason(regs, spec)
    assert limit_reason(KernelConfig.make("x", threads_per_block=256), spec) is None


class TwoConfigs:
    family = "two"

    def configs(self, problem):
        yield KernelConfig.make("two", tile_m=1)
        yield KernelConfig.make("two", tile_m=2)

    def invalid_reason(self, problem, config):
        return "too small" if config.tile_m == 1 else None


def test_plan_is_lazy_and_sharded():
    problems = make_problems([(64, 64, 64, 1), (128, 128, 128, 1)], ["f32", "f16"])
    assert [p.dtype for p in problems] == ["f32", "f32", "f16", "f16"]
    plan = SweepPlan(problems, {"two": TwoConfigs()})
    items = list(plan)
    assert len(items) == 8 and sum(i.invalid_reason == "too small" for i in items) == 4
    shards = [list(SweepPlan(problems, {"two": TwoConfigs()}, shard=Shard(i, 3)))
              for i in range(3)]
    assert sorted(i.key for s in shards for i in s) == sorted(i.key for i in items)
