"""autotune(): replay determinism, budget, strategies, few-shot model, collector measurement."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from recommend_helpers import ForestStandIn, synthetic_log_time, write_synthetic_recording

from gemmperf.errors import GemmperfError, InvalidConfigError
from gemmperf.hardware.specs import get_gpu
from gemmperf.problem import GemmProblem
from gemmperf.spaces import file_space, get_space
from gemmperf.tune.autotune import autotune
from gemmperf.tune.measure import CollectorMeasurer, ReplayMeasurer
from gemmperf.tune.strategies import GreedyLocalSearch, ModelGuided
from gemmperf.tune.surrogate import FewShotModel, one_hot

PROBLEM = GemmProblem(4096, 4096, 4096, dtype="f32", layout="nt")


@pytest.fixture(scope="module")
def xgemm():
    return get_space("clblast_xgemm", PROBLEM, "rtx-3090")


@pytest.fixture(scope="module")
def replay(xgemm, tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "synthetic_3090.jsonl"
    write_synthetic_recording(path, xgemm, "rtx-3090", count=400)
    return file_space(path)


@pytest.fixture(scope="module")
def model(replay):
    space, _ = replay
    # Trained on two *other* GPUs: the target's shared-memory preference is new to it.
    return ForestStandIn(space.candidates, ["rtx-2080-ti", "rtx-3060-laptop"])


def test_replay_is_deterministic_for_a_seed_and_respects_the_budget(replay, model):
    space, recording = replay
    runs = [autotune(space, space.problem, "rtx-3090", ReplayMeasurer(recording), budget=9,
                     strategy=s, model=model, seed=seed)
            for s, seed in (("model", 3), ("model", 3), ("random", 3), ("random", 3),
                            ("random", 4), ("greedy", 5), ("greedy", 5))]
    for run in runs:
        assert len(run.history) == 9
        assert run.history["config_id"].is_unique          # never measures a config twice
        assert (run.history["status"] == "ok").all()
    ids = [list(r.history["config_id"]) for r in runs]
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[5] == ids[6]
    assert ids[2] != ids[4]
    assert runs[0].reference_gpus == ["rtx-2080-ti", "rtx-3060-laptop"]


def test_model_guided_beats_random_on_the_synthetic_replay(replay, model):
    space, recording = replay
    best = recording.frame["runtime_s"].min()
    regret = {}
    for strategy in ("model", "random"):
        finals = [autotune(space, space.problem, "rtx-3090", ReplayMeasurer(recording),
                           budget=12, strategy=strategy, model=model, seed=s).best["runtime_s"]
                  / best for s in range(3)]
        regret[strategy] = float(np.median(finals))
    assert regret["model"] <= 1.02
    assert regret["model"] < regret["random"]


def test_budget_larger_than_the_space_stops_with_a_note(xgemm, tmp_path):
    path = tmp_path / "small.jsonl"
    write_synthetic_recording(path, xgemm, "rtx-3090", count=5)
    space, recording = file_space(path)
    run = autotune(space, space.problem, "rtx-3090", ReplayMeasurer(recording), budget=8,
                   strategy="random", seed=0)
    assert len(run.history) == 5
    assert "ran out after 5" in run.notes[0]


def test_json_summary_lists_every_measurement_and_the_best(replay, model):
    space, recording = replay
    run = autotune(space, space.problem, "rtx-3090", ReplayMeasurer(recording), budget=4,
                   model=model, seed=0)
    doc = json.loads(json.dumps(run.to_dict(), default=float))
    assert doc["budget"] == 4 and len(doc["measured"]) == 4
    first = doc["measured"][0]
    assert {"MWG", "NWG", "SA", "runtime_s", "status", "predicted_objective"} <= set(first)
    assert doc["best"]["runtime_s"] == min(m["runtime_s"] for m in doc["measured"])
    assert doc["strategy"] == "model" and doc["objective"] == "time"


def test_energy_objective_without_energy_measurements_is_an_error(replay, model):
    space, recording = replay
    with pytest.raises(GemmperfError, match="no energy"):
        autotune(space, space.problem, "rtx-3090", ReplayMeasurer(recording), budget=2,
                 strategy="random", objective="energy", seed=0)
    with pytest.raises(InvalidConfigError, match="budget"):
        autotune(space, space.problem, "rtx-3090", ReplayMeasurer(recording), budget=0)


def test_replay_noise_uses_the_recorded_spread(replay):
    space, recording = replay
    ids = list(space.candidates.index[:50])
    exact = ReplayMeasurer(recording).measure(space, ids)["runtime_s"]
    noisy = ReplayMeasurer(recording, noise=True, rng=np.random.default_rng(1)).measure(
        space, ids)["runtime_s"]
    ratio = (noisy / exact).to_numpy()
    assert not np.allclose(ratio, 1.0)
    # 1 % run-to-run spread over 32 runs: the mean moves by ~0.2 %.
    assert np.abs(ratio - 1).max() < 0.01


def test_greedy_neighbours_differ_in_exactly_one_tunable(xgemm):
    cands = xgemm.candidates.reset_index(drop=True)
    names = ("MWG", "NWG", "MDIMC", "NDIMC", "MDIMA", "NDIMB", "VWM", "VWN", "SA", "SB")
    search = GreedyLocalSearch(cands, names, np.random.default_rng(0))
    neighbours = search.neighbours(100)
    assert neighbours
    base = cands.loc[100, list(names)].to_numpy()
    for j in neighbours:
        assert (cands.loc[j, list(names)].to_numpy() != base).sum() == 1


def test_few_shot_model_learns_an_effect_the_priors_miss():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"A": rng.integers(0, 4, 400), "B": rng.integers(0, 2, 400)})
    prior = 0.3 * frame["A"].to_numpy(dtype=float)
    truth = prior - 0.5 * frame["B"].to_numpy()              # B=1 is 40 % faster on the target
    effects, labels = one_hot(frame, ["A", "B"])
    assert labels == [f"A={v}" for v in pd.unique(frame["A"])] + \
        [f"B={v}" for v in pd.unique(frame["B"])]
    model = FewShotModel(prior, effects)
    measured = list(range(12))
    mean, sd, weights = model.posterior(measured, truth[measured])
    assert np.corrcoef(mean, truth)[0, 1] > 0.98
    assert abs(weights.sum() - 1) < 1e-9 and (sd >= 0).all()
    guided = ModelGuided(prior, effects, np.random.default_rng(0))
    for _ in range(6):
        pick = guided.propose(1)[0]
        guided.observe(pick, truth[pick])
    assert min(guided.measured.values()) == pytest.approx(truth.min())


def test_collector_measurer_runs_the_sweep_path_on_the_fake(tmp_path):
    from gemmperf.collect.rig import fake_rig

    problem = GemmProblem(512, 512, 512)
    gpu = get_gpu("rtx-4070")
    space = get_space("blocked", problem, gpu)
    rig = fake_rig(["blocked"], gpu=gpu.key, seed=0, power=None)
    measurer = CollectorMeasurer(rig, problem, tmp_path)
    try:
        run = autotune(space, problem, gpu, measurer, budget=3, strategy="random", seed=1)
    finally:
        measurer.close()
    assert len(run.history) == 3 and (run.history["status"] == "ok").all()
    lines = (tmp_path / "autotune.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["source"] == "fake"


def test_synthetic_helper_prefers_shared_memory_only_on_the_target(xgemm):
    # Guards the premise of the few-shot tests above.
    c = xgemm.candidates.head(200)
    sa = c["SA"].to_numpy() == 1
    delta_3090 = synthetic_log_time(c, "rtx-3090")[sa].mean() - \
        synthetic_log_time(c, "rtx-3090")[~sa].mean()
    delta_other = synthetic_log_time(c, "rtx-2080-ti")[sa].mean() - \
        synthetic_log_time(c, "rtx-2080-ti")[~sa].mean()
    assert delta_3090 < 0 < delta_other


def test_a_model_trained_on_the_target_uses_its_own_predictions(replay):
    space, recording = replay
    knows_target = ForestStandIn(space.candidates, ["rtx-3090", "rtx-2080-ti"])
    run = autotune(space, space.problem, "rtx-3090", ReplayMeasurer(recording), budget=3,
                   model=knows_target, seed=0)
    assert run.reference_gpus == []
    assert "trained on clblast_xgemm measurements of rtx-3090" in run.notes[0]


def test_local_step_flips_the_tunable_the_priors_rank_against():
    # A full 4 x 4 x 2 x 2 grid; the priors say S=1 costs 30 %, on the target it saves 30 %.
    grid = pd.MultiIndex.from_product([range(4), range(4), range(2), range(2)],
                                      names=["A", "B", "S", "T"]).to_frame(index=False)
    a, b, s, t = (grid[c].to_numpy(dtype=float) for c in "ABST")
    prior = 0.2 * a + 0.1 * b + 0.3 * s + 0.05 * t
    truth = 0.2 * a + 0.1 * b - 0.3 * s + 0.05 * t
    effects, labels = one_hot(grid, list("ABST"))
    guided = ModelGuided(prior, effects, np.random.default_rng(0), labels=labels)
    steps = []
    for _ in range(5):
        pick = guided.propose(1)[0]
        guided.observe(pick, truth[pick])
        steps.append(pick)
    # Warm start at the prior's best (0, 0, 0, 0); the round-robin over tunables reaches S
    # within one try per tunable, and S=1 is the target's best.
    assert steps[0] == int(np.argmin(prior))
    assert min(guided.measured.values()) == pytest.approx(truth.min())


# ---------------------------------------------------------------------------------------------
# CLI: contradictions between the flags and the replay file are one-line errors


@pytest.fixture(scope="module")
def small_replay(xgemm, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli_replay") / "synthetic_3090.jsonl"
    write_synthetic_recording(path, xgemm, "rtx-3090", count=20)
    return path


@pytest.mark.parametrize(("extra", "message"), [
    (["--gpu", "h100"], "--gpu h100-sxm, but {path} was recorded on rtx-3090"),
    (["--dtype", "bf16"], "--dtype bf16, but {path} holds 4096x4096x4096 f32 records"),
    (["--m", "1024", "--n", "1024", "--k", "1024", "--dtype", "f32"],
     "has no records of 1024x1024x1024 f32; it holds 4096x4096x4096 f32"),
    (["--per-round", "0"], "--per-round must be at least 1, got 0"),
    (["--seed", "-1"], "--seed must be at least 0, got -1"),
])
def test_replay_contradictions_are_one_line_errors(capsys, small_replay, extra, message):
    from gemmperf.cli import main

    code = main(["autotune", "--replay", str(small_replay), "--budget", "2", "--strategy",
                 "random", *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("gemmperf: error:") and message.format(path=small_replay) in err


def test_replay_accepts_flags_that_agree_with_the_file(capsys, small_replay):
    from gemmperf.cli import main

    code = main(["autotune", "--replay", str(small_replay), "--budget", "2", "--strategy",
                 "random", "--gpu", "rtx-3090", "--dtype", "float32", "--json"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["gpu"] == "rtx-3090"


def test_autotune_out_that_is_a_file_is_one_line(capsys, tmp_path):
    from gemmperf.cli import main

    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    code = main(["autotune", "--backend", "fake", "--gpu", "rtx-4070", "--family", "tiled",
                 "--m", "256", "--n", "256", "--k", "256", "--dtype", "f32", "--budget", "1",
                 "--strategy", "random", "--out", str(afile)])
    err = capsys.readouterr().err
    assert code == 2 and err == f"gemmperf: error: --out {afile} is a file; give a folder\n"
    assert afile.read_text() == "keep me\n"
