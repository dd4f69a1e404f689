"""GemmProblem / KernelConfig: validation, canonical dtypes, FLOPs, hashing."""

from __future__ import annotations

import numpy as np
import pytest

from gemmperf.errors import InvalidProblemError
from gemmperf.problem import GemmProblem, KernelConfig, canonical_dtype, peak_key


def test_flops_is_two_mnk_times_batch():
    assert GemmProblem(4096, 4096, 4096, dtype="bf16").flops == 2 * 4096**3
    assert GemmProblem(3, 5, 7, batch=4).flops == 2 * 3 * 5 * 7 * 4


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [("float16", "f16"), ("FP16", "f16"), ("bfloat16", "bf16"), ("float32", "f32"),
     ("e4m3", "fp8"), ("TF32", "tf32"), ("s8", "int8")],
)
def test_dtype_aliases(alias, canonical):
    assert canonical_dtype(alias) == canonical


def test_unknown_dtype_names_the_choices():
    with pytest.raises(InvalidProblemError, match=r"unknown dtype 'f12'.*f32"):
        GemmProblem(1, 1, 1, dtype="f12")


@pytest.mark.parametrize("bad", [0, -4])
def test_non_positive_sizes_are_rejected(bad):
    with pytest.raises(InvalidProblemError, match="must be positive"):
        GemmProblem(bad, 8, 8)


def test_non_integer_sizes_are_rejected_but_numpy_ints_accepted():
    with pytest.raises(InvalidProblemError, match="integer"):
        GemmProblem(2.5, 8, 8)
    with pytest.raises(InvalidProblemError, match="integer"):
        GemmProblem(True, 8, 8)
    assert GemmProblem(np.int64(8), 8, 8).m == 8


def test_peak_key_follows_accumulator():
    assert peak_key("f16") == "fp16"
    assert peak_key("f16", "f16") == "fp16_acc16"
    assert GemmProblem(8, 8, 8, dtype="tf32").peak_key == "tf32"


def test_kernel_config_sorts_common_and_family_params():
    cfg = KernelConfig.make("clblast_xgemm", tile_m=64, tile_n=32, VWM=2, SA=1)
    assert cfg.tile_m == 64 and cfg.param_dict == {"SA": 1, "VWM": 2}
    assert cfg.get("VWM") == 2 and cfg.get("tile_n") == 32 and cfg.get("stages", 3) == 3
    same = KernelConfig.make("clblast_xgemm", SA=1, VWM=2, tile_n=32, tile_m=64)
    assert cfg == same and hash(cfg) == hash(same) and cfg.key() == same.key()
