"""Reading predictor inputs: the fast paths for large frames give what the exact paths give."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gemmperf import feature_inputs
from gemmperf.errors import DataFormatError
from gemmperf.feature_inputs import (
    _SMALL,
    XGEMM_PARAMS,
    dtype_info,
    family_params,
    group_rows,
    numeric_column,
    text_column,
)

ROWS = 3 * _SMALL   # enough distinct params texts for the pyarrow reader to take over


def _params_texts(rows: int) -> list[str]:
    """Xgemm-like params with some rows lacking tunables, some with other fields only."""
    rng = np.random.default_rng(3)
    texts = []
    for i in range(rows):
        if i % 7 == 0:
            texts.append(json.dumps({"model": f"m{i}", "op": "attn", "tp": 2}))
        elif i % 11 == 0:
            texts.append("{}")
        else:
            texts.append(json.dumps({"MWG": int(rng.choice([16, 32, 64])), "KWI": 2,
                                     "VWM": int(rng.choice([1, 2, 4])), "flops": 1e9 * i,
                                     "extra": {"nested": [1, 2]}}, sort_keys=True))
    return texts


def _one_by_one(texts: list[str | None]) -> dict[str, np.ndarray]:
    """family_params of each row on its own: the small-frame path, row by row."""
    parts = [family_params(pd.DataFrame({"params": [t]}), XGEMM_PARAMS) for t in texts]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_many_params_texts_parse_like_one_at_a_time(monkeypatch):
    texts = [*_params_texts(ROWS), None]
    frame = pd.DataFrame({"params": texts})
    with monkeypatch.context() as patch:   # the pyarrow reader alone parses these
        patch.setattr(feature_inputs, "_parse_params_python", None)
        fast = family_params(frame, XGEMM_PARAMS)
    _assert_same(fast, _one_by_one(texts))
    assert np.nanmax(fast["MWG"]) == 64 and np.isnan(fast["MWG"][0])   # row 0 has no tunables
    assert fast["_flops"][1] == pytest.approx(1e9)
    # Text-typed (pyarrow-backed) columns take the same path.
    _assert_same(family_params(frame.astype({"params": "string"}), XGEMM_PARAMS), fast)


@pytest.mark.parametrize("odd", [
    '{"MWG": "12", "KWI": 2}',          # a number as text
    '{"MWG": true}',                    # a boolean
    '{"MWG": 16, "MWG": 32}',           # a duplicate key: JSON keeps the last
    '{\n  "MWG": 32,\n  "VWM": 2\n}',  # pretty-printed over several lines
    "",                                 # blank
    "[16, 32]",                         # JSON, but not an object
    '{"flops": 5e9}{"MWG": 8}',         # two objects in one text (not JSON)
])
def test_texts_the_fast_reader_does_not_take_give_the_exact_answer(odd):
    texts = [*_params_texts(ROWS), odd]
    frame = pd.DataFrame({"params": texts})
    if odd.startswith('{"flops": 5e9}{'):
        with pytest.raises(DataFormatError, match="params is not JSON"):
            family_params(frame, XGEMM_PARAMS)
        return
    if odd == "[16, 32]":
        with pytest.raises(DataFormatError, match="params is not a JSON object"):
            family_params(frame, XGEMM_PARAMS)
        return
    result = family_params(frame, XGEMM_PARAMS)
    _assert_same(result, _one_by_one(texts))
    expected = {'{"MWG": "12", "KWI": 2}': 12.0, '{"MWG": true}': 1.0,
                '{"MWG": 16, "MWG": 32}': 32.0, "": np.nan}
    np.testing.assert_array_equal(result["MWG"][-1], expected.get(odd, 32.0))


def test_params_that_cannot_be_a_json_object_or_a_number_are_errors():
    # Each would leave the tunable missing, the prediction at the family's defaults, silently.
    texts = _params_texts(ROWS)
    for bad, message in (("{not json", "not a JSON object"), ("VWM=2", "not a JSON object"),
                         ('{"MWG": 1,', "not a JSON object"), ('{"MWG": 1,}', "params is not JSON"),
                         ('{"VWM": "two"}', "VWM='two' is not a number")):
        with pytest.raises(DataFormatError, match=message):
            family_params(pd.DataFrame({"params": [*texts, bad]}), XGEMM_PARAMS)
        with pytest.raises(DataFormatError, match=message):   # the few-rows path too
            family_params(pd.DataFrame({"params": [bad]}), XGEMM_PARAMS)
    # Well-formed text no tunable is read from is not parsed (a batch's cost), and null is
    # a missing value, not an error.
    fine = family_params(pd.DataFrame({"params": [*texts, '{"other": [1, }', '{"VWM": null}']}),
                         XGEMM_PARAMS)
    _assert_same(fine, _one_by_one([*texts, "{}", "{}"]))


def test_numeric_column_of_objects_numbers_text_and_missing():
    values = [1, None, 2.5, "12", "abc", pd.NA, True] * 20
    frame = pd.DataFrame({"x": pd.Series(values, dtype=object)})
    got = numeric_column(frame, "x")
    expected = np.array([1, np.nan, 2.5, 12, np.nan, np.nan, 1] * 20, dtype=float)
    np.testing.assert_array_equal(got, expected)
    # Numbers and None only (a records frame's object columns): the same through numpy.
    plain = pd.DataFrame({"x": pd.Series([4096, None, 7] * 40, dtype=object)})
    np.testing.assert_array_equal(numeric_column(plain, "x"), [4096, np.nan, 7] * 40)
    np.testing.assert_array_equal(numeric_column(plain.head(3), "x"), [4096, np.nan, 7])


def test_text_column_of_text_objects_and_missing():
    for column in (pd.Series(["a", None, "b"] * 40, dtype=object),
                   pd.Series(["a", None, "b"] * 40, dtype="string"),
                   pd.Series(["a", np.nan, "b"] * 40, dtype=object)):
        got = text_column(pd.DataFrame({"t": column}), "t")
        assert got.dtype == object and list(got[:3]) == ["a", "", "b"]
    mixed = text_column(pd.DataFrame({"t": pd.Series([1, "x", None] * 40, dtype=object)}), "t")
    assert list(mixed[:3]) == ["1", "x", ""]


def test_dtype_triples_are_coded_consistently():
    dtypes = ["f16", "f16", "bf16", "f32", None, "f16", "tf32"] * 20
    accs = (["f32", None, "f32", None, None, "f16", None] * 19
            + ["f32", "", "f32", "", "", "f16", ""])
    frame = pd.DataFrame({"dtype": dtypes, "acc_dtype": accs})
    size, code, tensor, out_bytes, combo = dtype_info(frame)
    rows = [dtype_info(frame.iloc[[i]]) for i in range(7)]
    for i, (s, c, t, o, _) in enumerate(rows):
        np.testing.assert_array_equal([size[i], code[i], tensor[i], out_bytes[i]],
                                      [s[0], c[0], t[0], o[0]])
    assert combo[4] == -1 and np.isnan(size[4])          # no dtype: no combo
    # Rows of one (dtype, acc, out) triple share a code; different triples do not.
    triples = [(d, a or None) for d, a in zip(dtypes, accs, strict=True)]   # "" is missing
    for i in range(len(triples)):
        for j in range(7):
            assert (combo[i] == combo[j]) == (triples[i] == triples[j]) or combo[i] == -1
    _, distinct = group_rows(frame, ("dtype", "acc_dtype", "out_dtype"))
    assert len(distinct) == len(set(distinct)) == 7     # "" and missing: one group


def test_group_codes_groups_rows_by_their_code_tuples_in_order_of_appearance():
    from gemmperf._grouping import group_codes

    a = np.array([2, 0, 2, 1, 0])
    b = np.array([1, 1, 1, 0, 1])
    groups, decoded = group_codes([(a, 3), (b, 2)])
    assert list(groups) == [0, 1, 0, 2, 1]
    assert decoded == [(2, 1), (0, 1), (1, 0)]
    empty_groups, empty = group_codes([(np.zeros(0, dtype=np.int64), 0)])
    assert len(empty_groups) == 0 and empty == []
