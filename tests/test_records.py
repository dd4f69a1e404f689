"""Record schema, the append-only JSONL writer, and the JSONL/Parquet/CSV readers and writer."""

from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
import pandas as pd
import pytest

from gemmperf.errors import DataFormatError, RecordsPathError
from gemmperf.records import (
    COLUMNS,
    SCHEMA_VERSION,
    Record,
    RecordWriter,
    iter_jsonl,
    normalize_frame,
    params_frame,
    params_json,
    read_records,
    write_frame,
)


def _record(i: int, **kw) -> Record:
    base = dict(source="fake", m=64 * (i + 1), n=128, k=256, dtype="f32", family="tiled",
                tile_m=16, tile_n=16, params={"unroll": i, "vec": 4}, gpu="rtx-3090",
                compute_capability="8.6", driver_version="550", runtime_s=1e-3 * (i + 1),
                timestamp="2026-01-01T00:00:00.000+00:00")
    base.update(kw)
    return Record(**base)


def test_record_rejects_unknown_status():
    with pytest.raises(ValueError, match="status must be one of"):
        Record(source="fake", status="crashed")


def test_jsonl_round_trip_keeps_every_field(tmp_path):
    path = tmp_path / "runs.jsonl"
    records = [_record(i) for i in range(3)] + [
        _record(3, status="invalid", reason="uses 132 KiB shared memory", runtime_s=None)
    ]
    with RecordWriter(path) as writer:
        for rec in records:
            writer.write(rec)
    assert writer.written == 4
    rows = list(iter_jsonl(path))
    assert [r["m"] for r in rows] == [64, 128, 192, 256]
    assert rows[1]["params"] == {"unroll": 1, "vec": 4}
    assert rows[3]["status"] == "invalid" and rows[3]["runtime_s"] is None
    assert set(rows[0]) == set(COLUMNS)
    frame = read_records(path)
    assert list(frame.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert frame["runtime_s"].iloc[2] == pytest.approx(3e-3)
    assert frame["compute_capability"].tolist() == ["8.6"] * 4
    assert (frame["schema_version"] == SCHEMA_VERSION).all()


def test_writer_turns_nan_into_null_instead_of_crashing(tmp_path):
    path = tmp_path / "runs.jsonl"
    with RecordWriter(path) as writer:
        writer.write(_record(0, power_w=float("nan"), params={"x": float("inf"), "y": np.int64(3)}))
    (row,) = iter_jsonl(path)
    assert row["power_w"] is None
    assert row["params"] == {"x": None, "y": 3}
    assert "NaN" not in path.read_text()


def test_torn_last_line_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "runs.jsonl"
    with RecordWriter(path) as writer:
        writer.write(_record(0))
        writer.write(_record(1))
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"source":"fake","m":5')  # killed mid-write
    with pytest.warns(UserWarning, match="torn last line 3"):
        rows = list(iter_jsonl(path))
    assert len(rows) == 2


def test_reopening_trims_the_torn_tail_so_appends_stay_valid(tmp_path):
    path = tmp_path / "runs.jsonl"
    with RecordWriter(path) as writer:
        writer.write(_record(0))
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"source":"fake","m":5')
    with pytest.warns(UserWarning, match="dropped a torn last record"):
        writer = RecordWriter(path)
    with writer:
        writer.write(_record(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the file is clean now: no torn-line warning
        rows = list(iter_jsonl(path))
    assert [r["m"] for r in rows] == [64, 128]


def test_reopening_keeps_a_complete_record_that_lacks_only_its_newline(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(_record(0).to_dict()))  # no trailing newline
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with RecordWriter(path) as writer:
            writer.write(_record(1))
    assert [r["m"] for r in iter_jsonl(path)] == [64, 128]


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "runs.jsonl"
    lines = [json.dumps(_record(i).to_dict()) for i in range(3)]
    lines[1] = lines[1][:40]  # damaged, but followed by more records: not a torn tail
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"runs\.jsonl:2: not a JSON record"):
        read_records(path)


def test_non_object_line_is_an_error(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text('[1, 2]\n')
    with pytest.raises(DataFormatError, match=r"runs\.jsonl:1: expected a JSON object"):
        list(iter_jsonl(path))


def test_gzipped_jsonl_is_read(tmp_path):
    import gzip

    path = tmp_path / "runs.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps(_record(0).to_dict()) + "\n")
    assert read_records(path)["m"].tolist() == [64]


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_frame_round_trip_keeps_params_types_and_text_columns(tmp_path, suffix):
    frame = pd.DataFrame([_record(i).to_dict() for i in range(4)])
    frame.loc[2, "status"] = "timeout"
    frame.loc[2, "reason"] = "exceeded 10 s"
    frame.loc[2, "runtime_s"] = np.nan
    frame["params"] = [*frame["params"][:3], {"unroll": 8, "note": "a,b \"quoted\""}]
    path = write_frame(frame, tmp_path / f"out{suffix}")
    back = read_records(path)
    assert list(back.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert len(back) == 4
    # params survive as canonical JSON text (sorted keys) in every format
    assert back["params"].tolist() == [params_json(p) for p in frame["params"]]
    assert params_frame(back)["unroll"].tolist() == [0, 1, 2, 8]
    # "8.6" stays text (a CSV reader would make it the float 8.6), "550" too
    assert back["compute_capability"].tolist() == ["8.6"] * 4
    assert back["driver_version"].tolist() == ["550"] * 4
    assert back["status"].tolist() == ["ok", "ok", "timeout", "ok"]
    assert math.isnan(back["runtime_s"].iloc[2])
    assert back["runtime_s"].iloc[3] == pytest.approx(4e-3)
    assert back["reason"].iloc[2] == "exceeded 10 s"


def test_normalize_frame_fills_schema_and_keeps_extra_columns():
    frame = pd.DataFrame({"source": ["x"], "m": [8], "extra": [1], "params": [None]})
    out = normalize_frame(frame)
    assert list(out.columns) == [*COLUMNS, "extra"]
    assert out["params"].iloc[0] == "{}"
    assert out["batch"].iloc[0] == 1 and out["schema_version"].iloc[0] == SCHEMA_VERSION


def test_params_json_is_canonical_and_rejects_non_objects():
    assert params_json({"b": 1, "a": np.int64(2)}) == '{"a":2,"b":1}'
    assert params_json('{"b":1,"a":2}') == '{"a":2,"b":1}'
    assert params_json(float("nan")) == "{}"
    assert params_json({"x": float("nan")}) == '{"x":null}'
    with pytest.raises(DataFormatError, match="not a JSON object"):
        params_json("[1, 2]")


def test_write_frame_rejects_unknown_format_before_writing(tmp_path):
    with pytest.raises(DataFormatError, match="unknown output format"):
        write_frame(pd.DataFrame({"source": ["x"]}), tmp_path / "out.xlsx")
    assert list(tmp_path.iterdir()) == []


def test_write_frame_failure_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "out.parquet"
    write_frame(pd.DataFrame([_record(0).to_dict()]), path)
    before = path.read_bytes()

    def explode(self, target, *args, **kwargs):
        with open(target, "wb") as f:
            f.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", explode)
    with pytest.raises(OSError, match="disk full"):
        write_frame(pd.DataFrame([_record(1).to_dict()]), path)
    assert path.read_bytes() == before  # the previous complete file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]  # no .partial left behind


def test_write_frame_output_has_normal_permissions(tmp_path):
    path = write_frame(pd.DataFrame([_record(0).to_dict()]), tmp_path / "out.csv")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_read_records_errors_name_the_file(tmp_path):
    with pytest.raises(DataFormatError, match="no such file"):
        read_records(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataFormatError, match=r"bad\.parquet: cannot read as \.parquet"):
        read_records(bad)
    odd = tmp_path / "x.txt"
    odd.write_text("hello")
    with pytest.raises(DataFormatError, match="unknown record format"):
        read_records(odd)


def test_read_records_folder_reads_every_record_file(tmp_path):
    write_frame(pd.DataFrame([_record(0).to_dict()]), tmp_path / "a.parquet")
    write_frame(pd.DataFrame([_record(1).to_dict()]), tmp_path / "b.csv")
    with RecordWriter(tmp_path / "c.jsonl") as writer:
        writer.write(_record(2))
    frame = read_records(tmp_path)
    assert sorted(frame["m"].tolist()) == [64, 128, 192]


def test_writer_refuses_to_trim_or_append_to_a_file_that_is_not_records(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text("m,n,k,runtime_s\n4096,4096,4096,0.01")   # a CSV saved under the name
    with pytest.raises(RecordsPathError, match="not a JSONL records file"):
        RecordWriter(path)
    assert path.read_text() == "m,n,k,runtime_s\n4096,4096,4096,0.01"


def test_nothing_is_written_that_read_records_would_refuse(tmp_path):
    out = tmp_path / "w.jsonl"
    for frame, message in ((pd.DataFrame({"source": ["s"], "status": ["great"]}), "great"),
                           (pd.DataFrame({"source": ["s"], "status": ["ok"],
                                          "runtime_s": [float("inf")]}), "runtime_s = inf")):
        with pytest.raises(DataFormatError, match=message):
            write_frame(frame, out)
    assert not out.exists()
    with RecordWriter(out) as writer:
        with pytest.raises(DataFormatError, match="runtime_s = -1"):
            writer.write({"source": "s", "status": "ok", "runtime_s": -1})
        with pytest.raises(DataFormatError, match="a record is a Record or a mapping"):
            writer.write(["a", "b"])
    assert out.read_text() == ""
