"""End-to-end sweeps on the fake backend: records, resume, kill -9, Ctrl-C, shards, failures."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from gemmperf.cli import main
from gemmperf.collect.fake import FailureRates
from gemmperf.collect.runner import SweepJob, estimate_job, merge_shard_files, run_job
from gemmperf.collect.space import Shard, item_key, record_item_key, resolve_shapes
from gemmperf.collect.sweep import SweepOptions
from gemmperf.collect.timing import TimingSettings
from gemmperf.records import read_records

FAMILIES = ("tiled", "cublas")
SHAPES = tuple(resolve_shapes("64,96"))          # 8 shapes, 96 exercises tile padding
DTYPES = ("f32", "f16")                           # tiled runs f32 only: f16 is invalid
SWEEP_ARGS = ["sweep", "--backend", "fake", "--kernels", "tiled,cublas", "--shapes", "64,96",
              "--min-window-ms", "5", "--power-window-ms", "200"]
PLANNED = len(SHAPES) * (6 + 1)                   # tiled has 6 tiles, cublas 1 config


def job(out: Path, **changes) -> SweepJob:
    options = SweepOptions(out_dir=out, timing=TimingSettings(min_window_s=0.005))
    fields = {"families": FAMILIES, "shapes": SHAPES, "dtypes": DTYPES, "options": options,
              "backend": "fake", "seed": 7}
    fields.update(changes)
    return SweepJob(**fields)


def lines(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def keys(rows: list[dict]) -> list[str]:
    return [record_item_key(r) for r in rows]


def test_sweep_records_every_config_once(tmp_path):
    summary = run_job(job(tmp_path))
    rows = lines(tmp_path / "records.jsonl")
    assert summary.stopped == "complete" and summary.written == len(rows) == summary.planned
    assert len(set(keys(rows))) == len(rows)
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok and all(r["source"] == "fake" and r["device_name"].startswith("fake ") for r in rows)
    for r in ok:
        assert 0 < r["runtime_min_s"] <= r["runtime_s"] <= r["runtime_max_s"]
        assert r["repeats"] >= 10 and r["window_s"] >= 0.005 and r["l2_flush"] is False
        assert r["power_w"] > r["idle_power_w"] > 0
        assert r["energy_j"] == pytest.approx(r["power_w"] * r["runtime_s"])
        assert r["power_method"] == "energy_counter" and r["gpu"] == "rtx-4070"
    invalid = [r for r in rows if r["status"] == "invalid"]
    assert len(invalid) == len(SHAPES) * 6 and len(ok) == len(rows) - len(invalid)
    assert all("is an SGEMM" in r["reason"] and r["runtime_s"] is None for r in invalid)
    frame = read_records(tmp_path)
    assert len(frame) == len(rows) and set(frame["source"]) == {"fake"}


def test_resume_skips_done_configs_and_writes_no_duplicates(tmp_path):
    first = run_job(job(tmp_path, options=dataclasses.replace(job(tmp_path).options,
                                                              max_minutes=0.0)))
    assert first.stopped == "time_limit" and first.written == 0
    run_job(job(tmp_path))
    again = run_job(job(tmp_path))
    assert again.written == 0 and again.skipped == again.planned
    rows = lines(tmp_path / "records.jsonl")
    assert len(rows) == len(set(keys(rows))) == again.planned
    # --no-resume measures again: a second run of every config, appended.
    run_job(job(tmp_path, options=dataclasses.replace(job(tmp_path).options, resume=False)))
    assert len(lines(tmp_path / "records.jsonl")) == 2 * again.planned


def test_fake_is_deterministic_per_seed(tmp_path):
    run_job(job(tmp_path / "a"))
    run_job(job(tmp_path / "b"))
    run_job(job(tmp_path / "c", seed=8))
    a, b, c = (lines(tmp_path / x / "records.jsonl") for x in "abc")
    runtimes = [[r["runtime_s"] for r in rows] for rows in (a, b, c)]
    assert runtimes[0] == runtimes[1] and runtimes[0] != runtimes[2]


def test_shard_union_equals_unsharded_sweep(tmp_path):
    run_job(job(tmp_path / "all"))
    whole = {record_item_key(r): r["runtime_s"] for r in lines(tmp_path / "all/records.jsonl")}
    union: dict[str, float] = {}
    for i in range(3):
        summary = run_job(job(tmp_path / "sharded", shard=Shard(i, 3)))
        assert summary.out_file.name == f"records.shard-{i + 1}-of-3.jsonl"
        part = {record_item_key(r): r["runtime_s"] for r in lines(summary.out_file)}
        assert part and not set(part) & set(union)
        union.update(part)
    assert union == whole


def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path):
    failures = FailureRates(invalid=0.1, compile_error=0.15, launch_error=0.1, wrong_result=0.15)
    summary = run_job(job(tmp_path, fake_failures=failures))
    rows = lines(tmp_path / "records.jsonl")
    statuses = Counter(r["status"] for r in rows)
    assert summary.stopped == "complete" and statuses == summary.statuses
    assert {"ok", "invalid", "compile_error", "launch_error", "wrong_result"} <= set(statuses)
    by_status = {r["status"]: r for r in rows}
    assert by_status["compile_error"]["reason"] == "simulated compile failure (injected)"
    assert by_status["launch_error"]["runtime_s"] is None
    wrong = by_status["wrong_result"]
    assert wrong["reason"].startswith("max relative error 0.5 exceeds")
    assert wrong["runtime_s"] > 0 and wrong["power_w"] is None  # timed, power skipped


def test_fatal_launch_error_stops_and_resume_moves_past_it(tmp_path):
    failing = job(tmp_path, fake_failures=FailureRates(launch_error=0.2, fatal_launch=True))
    runs = []
    for _ in range(40):
        runs.append(run_job(failing))
        if runs[-1].stopped == "complete":
            break
    assert [r.stopped for r in runs[:-1]] == ["fatal_error"] * (len(runs) - 1) and len(runs) > 2
    assert "CUDA context was lost" in runs[0].message
    rows = lines(tmp_path / "records.jsonl")
    assert len(rows) == len(set(keys(rows))) == runs[0].planned
    assert sum(r["status"] == "launch_error" for r in rows) == len(runs) - 1


def test_clock_lock_is_recorded_and_restored(tmp_path):
    from gemmperf.collect.fake import FakePowerSensor

    j = job(tmp_path, lock_clocks_mhz=1800, power_limit_w=150)
    rig = j.rig()
    device = rig.control.sensor.device
    assert isinstance(rig.control.sensor, FakePowerSensor)
    from gemmperf.collect.sweep import run_sweep

    run_sweep(j.plan(rig), rig, j.options)
    ok = [r for r in lines(tmp_path / "records.jsonl") if r["status"] == "ok"]
    assert {r["locked_sm_clock_mhz"] for r in ok} == {1800}
    assert {r["sm_clock_mhz"] for r in ok} == {1800} and {r["power_limit_w"] for r in ok} == {150}
    assert device.locked_sm_clock_mhz is None and device.power_limit_w == 200


def test_dry_run_counts_the_plan(tmp_path, capsys):
    plan = estimate_job(job(tmp_path))
    summary = run_job(job(tmp_path))
    assert plan.configs == summary.planned and plan.gpu_seconds > 0
    assert plan.invalid == summary.statuses["invalid"] == len(SHAPES) * 6
    assert estimate_job(job(tmp_path)).done == summary.planned
    assert main([*SWEEP_ARGS, "--out", str(tmp_path / "d"), "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["configs"] == PLANNED and out["invalid"] == 0
    # 56 configs x (200 ms power + 100 ms idle + 5 ms timing window): the windows dominate
    assert out["gpu_seconds"] == pytest.approx(PLANNED * 0.305, rel=0.02)


def test_merge_shard_files_dedups(tmp_path):
    run_job(job(tmp_path / "x", shard=Shard(0, 2)))
    run_job(job(tmp_path / "x", shard=Shard(1, 2)))
    shard_files = sorted((tmp_path / "x").glob("records.shard-*"))
    copy = tmp_path / "x" / "records.copy.jsonl"
    copy.write_text(shard_files[0].read_text())
    added = merge_shard_files(tmp_path / "x", [*shard_files, copy])
    rows = lines(tmp_path / "x" / "records.jsonl")
    assert added == len(rows) == len(set(keys(rows)))
    assert not any(p.exists() for p in [*shard_files, copy])


# ---------------------------------------------------------------------------------------------
# Real processes: kill -9, Ctrl-C, the CLI's one-line errors


def _default_sigint() -> None:
    # A command started in the background by a non-interactive shell (`cmd &`, as some CI
    # runners and nohup do) inherits SIGINT ignored, and Python then keeps ignoring it (as it
    # should: Ctrl-C at the terminal is not for background jobs). The sweep under test plays a
    # foreground command, so it starts with the default disposition whatever ran pytest.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "gemmperf", *SWEEP_ARGS, "--out", str(out), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=_default_sigint,
    )


def _wait_for_records(path: Path, count: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= count:
            return
        if proc.poll() is not None:
            pytest.fail(f"sweep ended early: {proc.stderr.read()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("sweep wrote no records in time")


def test_kill_9_loses_at_most_the_config_in_flight(tmp_path):
    out = tmp_path / "run"
    proc = _start(out, "--fake-latency-ms", "40")
    _wait_for_records(out / "records.jsonl", 10, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = lines(out / "records.jsonl")               # every line that is there is whole
    assert 10 <= len(before) < PLANNED
    assert main([*SWEEP_ARGS, "--out", str(out), "--json"]) == 0
    after = lines(out / "records.jsonl")
    assert after[: len(before)] == before                # nothing rewritten
    assert len(after) == PLANNED == len(set(keys(after)))
    fresh = tmp_path / "fresh"
    assert main([*SWEEP_ARGS, "--out", str(fresh), "--json"]) == 0
    assert sorted(keys(after)) == sorted(keys(lines(fresh / "records.jsonl")))


def test_ctrl_c_leaves_a_valid_file_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    proc = _start(out, "--fake-latency-ms", "40")
    _wait_for_records(out / "records.jsonl", 5, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted; every finished config is saved; to resume, run gemmperf sweep" in stderr
    rows = lines(out / "records.jsonl")
    assert 5 <= len(rows) < PLANNED and len(read_records(out)) == len(rows)
    assert main([*SWEEP_ARGS, "--out", str(out), "--json"]) == 0
    assert len(lines(out / "records.jsonl")) == PLANNED


def _machine_can_sweep() -> bool:
    from gemmperf.collect.device import doctor

    return doctor().can_sweep


@pytest.mark.skipif(_machine_can_sweep(), reason="this machine has a GPU")
def test_sweep_without_gpu_fails_in_one_line_pointing_at_fake(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "gemmperf", "sweep", "--shapes", "64", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "--backend fake" in proc.stderr
    assert proc.stderr.startswith("gemmperf: error: no GPU to sweep")


@pytest.mark.skipif(_machine_can_sweep(), reason="this machine has a GPU")
def test_doctor_exits_nonzero_without_gpu(capsys):
    assert main(["doctor", "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["can_sweep"] is False and report["problem"]
    assert "cannot sweep" in captured.err and "--backend fake" in captured.err


def test_cli_rejects_bad_input_in_one_line(tmp_path, capsys):
    for extra in (["--shard", "0/2"], ["--dtypes", "f13"], ["--gpu", "rtx-9999"],
                  ["--fake-failures", "boom=0.1"], ["--kernels", "nope"]):
        assert main([*SWEEP_ARGS, "--out", str(tmp_path), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("gemmperf: error:") and err.count("\n") == 1, err


def test_fake_uses_the_real_blocked_space(tmp_path):
    from gemmperf.collect.kernel_space import blocked_space

    j = job(tmp_path, families=("blocked",), shapes=((128, 128, 128, 1),), dtypes=("f32",))
    rig = j.rig()
    assert [i.config for i in j.plan(rig)] == blocked_space()


def test_item_keys_ignore_the_device(tmp_path):
    # Shards must agree across machines, so the shard key must not name the device.
    from gemmperf.problem import GemmProblem, KernelConfig

    assert "fake" not in item_key(GemmProblem(1, 1, 1), KernelConfig.make("tiled"))


def test_importing_the_collector_loads_no_gpu_library():
    code = (
        "import sys, gemmperf, gemmperf.cli.collect, gemmperf.collect.sweep, "
        "gemmperf.collect.runner, gemmperf.collect.device\n"
        "from gemmperf.collect.backend import backend_names\n"
        "assert backend_names() == ['blocked', 'cublas', 'cutlass', 'fake', 'tiled']\n"
        "loaded = [m for m in ('cupy', 'pynvml', 'ray', 'cutlass_cppgen') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
