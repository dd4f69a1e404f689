"""`gemmperf sweep` input validation: bad numbers, --out a file, resume under other measurement
conditions, corrupt record lines. Each bad input is one line and exit 2, with no record written;
records already written are never changed."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from gemmperf.cli import main
from gemmperf.collect.runner import SweepJob, merge_shard_files, run_job
from gemmperf.collect.space import record_item_key
from gemmperf.collect.sweep import SweepOptions
from gemmperf.collect.timing import TimingSettings

# One cublas config per shape on the fake H100 (boost clock 1980 MHz): a sweep takes ~0.1 s.
SWEEP = ["sweep", "--backend", "fake", "--gpu", "h100-sxm", "--kernels", "cublas",
         "--min-window-ms", "1", "--power-window-ms", "1", "--json"]


TWO_SHAPES = "256x256x256,512x512x512"


def sweep(capsys, out: Path, *extra: str, shapes: str = TWO_SHAPES) -> tuple[int, dict, str]:
    code = main([*SWEEP, "--shapes", shapes, "--out", str(out), *extra])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else {}, captured.err


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gemmperf: error:") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(("extra", "message"), [
    (["--fake-latency-ms", "-1"], "--fake-latency-ms must be a number >= 0, got -1"),
    (["--min-window-ms", "0"], "--min-window-ms must be a number > 0"),
    (["--min-window-ms", "nan"], "--min-window-ms must be a number > 0, got nan"),
    (["--power-window-ms", "-5"], "--power-window-ms must be a number > 0"),
    (["--max-minutes", "-1"], "--max-minutes must be a number > 0"),
    (["--max-minutes", "0"], "--max-minutes must be a number > 0"),
    (["--min-repeats", "0"], "--min-repeats must be a number >= 1"),
    (["--warmup", "-1"], "--warmup must be a number >= 0"),
    (["--power-limit", "-5"], "--power-limit must be a number > 0"),
    (["--ray-workers", "0"], "--ray-workers must be a number >= 1"),
    (["--device", "-1"], "--device must be a number >= 0"),
    (["--lock-clocks", "-100"], "--lock-clocks must be a positive SM clock in MHz, got -100"),
    (["--lock-clocks", "99999"], "--lock-clocks 99999 MHz is above h100-sxm's boost clock of "
                                 "1980 MHz"),
])
def test_bad_numbers_fail_in_one_line_before_any_record(capsys, tmp_path, extra, message):
    out = tmp_path / "run"
    for dry in ([], ["--dry-run"]):
        err = one_line_error(capsys, [*SWEEP, "--shapes", "256", "--out", str(out), *extra, *dry])
        assert message in err
    assert not out.exists()


def test_lock_at_the_boost_clock_is_accepted_and_recorded(capsys, tmp_path):
    code, summary, err = sweep(capsys, tmp_path, "--lock-clocks", "1980", shapes="256")
    assert code == 0 and summary["written"] == 1, err
    row = json.loads((tmp_path / "records.jsonl").read_text())
    assert row["locked_sm_clock_mhz"] == 1980 and row["sm_clock_mhz"] == 1980


def test_control_refuses_a_lock_above_the_sensor_maximum(tmp_path):
    # The library path (no CLI check): DeviceControl asks the sensor before locking anything.
    from gemmperf.errors import GemmperfError

    options = SweepOptions(out_dir=tmp_path, timing=TimingSettings(min_window_s=0.001),
                           power=None)
    job = SweepJob(families=("cublas",), shapes=((256, 256, 256, 1),), dtypes=("f32",),
                   options=options, backend="fake", fake_gpu="h100-sxm", lock_clocks_mhz=2500)
    with pytest.raises(GemmperfError, match="above this GPU's maximum SM clock of 1980 MHz"):
        run_job(job)
    assert not (tmp_path / "records.jsonl").exists()


@pytest.mark.parametrize("sub", ["", "sub"])
def test_out_that_is_a_file_is_one_line(capsys, tmp_path, sub):
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    out = afile / sub if sub else afile
    err = one_line_error(capsys, [*SWEEP, "--shapes", "256", "--out", str(out)])
    assert ("is a file; give a folder" if not sub else "is a file, so it cannot hold a folder") \
        in err
    assert afile.read_text() == "keep me\n"


def test_record_writer_reports_an_unwritable_path(tmp_path):
    from gemmperf.errors import GemmperfError
    from gemmperf.records import RecordWriter

    (tmp_path / "afile").write_text("")
    with pytest.raises(GemmperfError, match="is a file; give a folder"):
        RecordWriter(tmp_path / "afile" / "records.jsonl")
    (tmp_path / "records.jsonl").mkdir()
    with pytest.raises(GemmperfError, match="cannot append records"):
        RecordWriter(tmp_path / "records.jsonl")


# ---------------------------------------------------------------------------------------------
# Resume keys include the measurement conditions


def test_resume_measures_again_under_other_conditions_only(capsys, tmp_path):
    path = tmp_path / "records.jsonl"
    runs = [
        (["--lock-clocks", "1000"], 2),
        (["--lock-clocks", "1000"], 0),                  # identical rerun: all done
        (["--lock-clocks", "1500"], 2),                  # another clock: measured again
        (["--lock-clocks", "1500", "--l2-flush"], 2),    # another L2 state
        ([], 2),                                         # unlocked
        (["--power-limit", "500"], 2),                   # another power limit
        (["--power-limit", "500"], 0),
        (["--l2-flush", "--lock-clocks", "1500"], 0),    # option order does not matter
    ]
    for extra, written in runs:
        before = path.read_text() if path.exists() else ""
        code, summary, err = sweep(capsys, tmp_path, *extra)
        assert code == 0 and summary["written"] == written, (extra, err)
        assert path.read_text().startswith(before)       # appended, never rewritten
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 10
    conditions = {(r["locked_sm_clock_mhz"], r["l2_flush"], r["power_limit_setting_w"])
                  for r in rows}
    assert conditions == {(1000, False, None), (1500, False, None), (1500, True, None),
                          (None, False, None), (None, False, 500)}


def test_records_without_a_condition_field_still_resume(capsys, tmp_path):
    # Records written before power_limit_setting_w existed (or invalid rows, with a null
    # l2_flush) state no such condition: an identical rerun must still skip them.
    assert sweep(capsys, tmp_path)[0] == 0
    path = tmp_path / "records.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        del row["power_limit_setting_w"]
    rows[0]["status"], rows[0]["l2_flush"] = "invalid", None
    old = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(old)
    code, summary, err = sweep(capsys, tmp_path)
    assert code == 0 and summary["written"] == 0 and summary["skipped_done"] == 2, err
    code, summary, _ = sweep(capsys, tmp_path, "--lock-clocks", "1200")
    assert summary["written"] == 1                        # the invalid config stays done
    assert path.read_text().startswith(old)


def test_merge_keeps_the_same_config_under_other_conditions(tmp_path):
    def job(out: Path, lock: int | None) -> SweepJob:
        options = SweepOptions(out_dir=out, timing=TimingSettings(min_window_s=0.001),
                               power=None)
        return SweepJob(families=("cublas",), shapes=((256, 256, 256, 1),), dtypes=("f32",),
                        options=options, backend="fake", fake_gpu="h100-sxm",
                        lock_clocks_mhz=lock)

    run_job(job(tmp_path, 1000))
    run_job(job(tmp_path / "other", 1500))
    shard = tmp_path / "records.ray-1-of-1.jsonl"
    (tmp_path / "other" / "records.jsonl").rename(shard)
    copy = tmp_path / "records.ray-1-of-2.jsonl"
    copy.write_text((tmp_path / "records.jsonl").read_text())  # an exact duplicate
    assert merge_shard_files(tmp_path, [shard, copy]) == 1
    rows = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [r["locked_sm_clock_mhz"] for r in rows] == [1000, 1500]
    assert len({record_item_key(r) for r in rows}) == 1


# ---------------------------------------------------------------------------------------------
# Lines that are not JSON


def test_resume_warns_about_a_corrupt_line_and_measures_its_config_again(capsys, tmp_path):
    assert sweep(capsys, tmp_path)[0] == 0
    path = tmp_path / "records.jsonl"
    first, second = path.read_text().splitlines(keepends=True)
    damaged = first + "not json\n" + second[:40] + "\n"   # line 3 was a whole record once
    path.write_text(damaged)
    code, summary, err = sweep(capsys, tmp_path)
    assert code == 0 and summary["written"] == 1 and summary["skipped_done"] == 1
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == [f"gemmperf: warning: {path}: skipped lines 2, 3: not a JSON record (its "
                        "config counts as not done; remove the line, gemmperf train rejects "
                        "the file)"]
    text = path.read_text()
    assert text.startswith(damaged) and text.count("\n") == 4
    assert record_item_key(json.loads(text.splitlines()[-1])) == record_item_key(
        json.loads(second))


def test_a_torn_last_line_is_trimmed_with_one_warning(capsys, tmp_path):
    assert sweep(capsys, tmp_path)[0] == 0
    path = tmp_path / "records.jsonl"
    first, second = path.read_text().splitlines(keepends=True)
    path.write_text(first + second[:40])                  # kill -9 mid-write
    code, summary, err = sweep(capsys, tmp_path)
    assert code == 0 and summary["written"] == 1, err
    assert err.splitlines() == [f"gemmperf: warning: {path}: dropped a torn last record (40 "
                                "bytes) left by an interrupted writer"]
    assert path.read_text().startswith(first) and path.read_text().count("\n") == 2


def test_a_file_that_is_not_records_jsonl_is_left_untouched(capsys, tmp_path):
    assert sweep(capsys, tmp_path)[0] == 0
    path = tmp_path / "records.jsonl"
    foreign = gzip.compress(path.read_bytes())           # e.g. records gzipped in place
    path.write_bytes(foreign)
    err = one_line_error(capsys, [*SWEEP, "--shapes", TWO_SHAPES, "--out", str(tmp_path)])
    assert "is not a JSONL records file" in err
    assert path.read_bytes() == foreign


def test_a_fake_sweep_never_mixes_into_measured_records(capsys, tmp_path):
    assert sweep(capsys, tmp_path)[0] == 0
    path = tmp_path / "records.jsonl"
    measured = path.read_text().replace('"source":"fake"', '"source":"sweep"')
    path.write_text(measured)
    for extra in ((), ("--no-resume",), ("--dry-run",)):
        err = one_line_error(capsys, [*SWEEP, "--shapes", TWO_SHAPES, "--out", str(tmp_path),
                                      *extra])
        assert "would mix simulated and measured times" in err
    assert path.read_text() == measured
