"""Transfer by analogy to a GPU without data (gemmperf.predict.analogy): who the analogues are,
that the level stays the shared ensemble's, that a row's prediction does not depend on its
batch, that bundles keep it, and (on the real Kernel Tuner caches) that it ranks better."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from predict_helpers import xgemm_frame
from scipy.stats import spearmanr

from gemmperf.feature_inputs import Columns, numeric_column
from gemmperf.features import build_features
from gemmperf.predict.analogy import REFERENCE_ROWS, analogue_gpus, placed_on, reference_frame
from gemmperf.predict.forest import Predictor
from gemmperf.predict.persist import load_model, save_model

SMALL = {"targets": ("runtime",), "n_estimators": 8, "max_leaf_nodes": 64, "random_state": 0,
         "expert_min_rows": 100}
TRAIN_GPUS = ("rtx-3090", "rtx-2080-ti")


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return xgemm_frame(600, seed=3, gpus=TRAIN_GPUS)


@pytest.fixture(scope="module")
def models(train: pd.DataFrame) -> tuple[Predictor, Predictor]:
    """The same fit with and without analogy (identical trees: the same seeds)."""
    return Predictor(**SMALL).fit(train), Predictor(analogy=False, **SMALL).fit(train)


def unseen_rows(n: int = 40) -> pd.DataFrame:
    return xgemm_frame(n, seed=4, gpus=("a100-sxm4-80gb",))


def test_analogues_are_the_gpus_with_enough_rows_of_a_family_measured_on_two_or_more():
    families = np.array(["x"] * 5 + ["y"] * 3 + ["z"] * 6, dtype=object)
    gpus = np.array(["a", "a", "b", "b", "b", "a", "a", "a", "a", "a", "a", "b", "b", "c"],
                    dtype=object)
    # x: a 2, b 3 rows; y: a alone; z: a 3, b 2, c 1.
    assert analogue_gpus(families, gpus, min_rows=2) == {"x": ["a", "b"], "z": ["a", "b"]}
    assert analogue_gpus(families, gpus, min_rows=3) == {}


def test_fit_records_analogues_and_a_bounded_reference_sample(models, train):
    model, plain = models
    assert model.analogues_ == {"runtime": {"clblast_xgemm": ["rtx-2080-ti", "rtx-3090"]}}
    assert plain.analogues_ == {"runtime": {}} and plain.reference_rows_ == {"runtime": {}}
    reference = reference_frame(model.reference_rows_["runtime"]["clblast_xgemm"])
    assert len(reference) == min(REFERENCE_ROWS, len(train))
    assert "gpu" not in reference.columns and "runtime_s" not in reference.columns
    # Every reference row is a training row's config.
    keys = set(map(tuple, train[["m", "params"]].astype(str).to_numpy()))
    assert set(map(tuple, reference[["m", "params"]].astype(str).to_numpy())) <= keys


@pytest.mark.parametrize("n", [3, 70])   # object arrays for a few rows, a frame for more
def test_placed_on_stacks_one_copy_per_gpu_at_default_clocks(n):
    rows = unseen_rows(n).assign(sm_clock_mhz=1200.0, device_name="NVIDIA A100")
    placed = Columns(placed_on(rows, ["rtx-3090", "rtx-2080-ti"]))
    assert len(placed) == 2 * n
    assert list(placed.objects("gpu")) == ["rtx-3090"] * n + ["rtx-2080-ti"] * n
    assert "sm_clock_mhz" not in placed and "device_name" not in placed
    assert list(placed.objects("params")) == list(rows["params"]) * 2
    assert list(numeric_column(placed, "m")) == list(rows["m"]) * 2


def _config_frames() -> list[pd.DataFrame]:
    """A records frame (tunables in params JSON) and a candidate frame (tunables as columns)."""
    from gemmperf.hardware.specs import get_gpu
    from gemmperf.problem import GemmProblem
    from gemmperf.spaces import get_space
    from gemmperf.tune.models import candidate_frame

    problem = GemmProblem(4096, 4096, 4096, dtype="f32", layout="nt")
    space = get_space("clblast_xgemm", problem, "rtx-3090")
    candidates = candidate_frame(space.candidates.head(200), space.param_names, problem,
                                 get_gpu("rtx-3090"))
    return [unseen_rows(100).assign(gpu="rtx-3090"), candidates]


@pytest.mark.parametrize("which", [0, 1])
def test_config_columns_are_everything_the_features_read_but_gpu_and_clocks(which):
    frame = _config_frames()[which]
    assert any(c in frame.columns for c in ("MWG", "params"))
    kept = Columns(placed_on(frame, ["rtx-3090"]))
    full, placed = build_features(frame), build_features(kept)
    np.testing.assert_array_equal(full.values, placed.values)
    for column in full.categorical:
        assert list(full.categorical[column]) == list(placed.categorical[column])


def test_recommend_on_an_unseen_gpu_reads_the_tunables_of_the_candidates(models):
    # Candidate frames carry tunables as columns: a copy placed on an analogue must keep them
    # (without them every config looked alike on the analogues and the ranking was arbitrary).
    model, plain = models
    candidates = _config_frames()[1].assign(gpu="a100-sxm4-80gb")
    analogy = model.predict(candidates)["runtime_s"].to_numpy()
    shared = plain.predict(candidates)["runtime_s"].to_numpy()
    assert np.std(np.log(analogy)) > 0.5 * np.std(np.log(shared))
    assert spearmanr(analogy, shared).statistic > 0.5


def test_seen_gpus_are_predicted_as_without_analogy(models, train):
    model, plain = models
    rows = train.head(50)
    pd.testing.assert_frame_equal(model.predict(rows), plain.predict(rows))


def test_an_unseen_gpu_keeps_the_shared_ensembles_level_and_takes_the_analogues_structure(
        models):
    model, plain = models
    reference = reference_frame(model.reference_rows_["runtime"]["clblast_xgemm"])
    on_a100 = reference.assign(gpu="a100-sxm4-80gb")
    ratio = np.log(model.predict(on_a100)["runtime_s"] / plain.predict(on_a100)["runtime_s"])
    assert np.median(ratio) == pytest.approx(0.0, abs=1e-9)   # L, by construction
    assert ratio.std() > 1e-3                                  # ... and a structure of its own
    # The structure: the analogues' mean trees (each with its expert's mean shift).
    rows = unseen_rows()
    placed = build_features(placed_on(rows, ["rtx-2080-ti", "rtx-3090"]))
    matrix = model._matrix(placed)
    z = model.forests_["runtime"].predict_trees(matrix).mean(axis=0)
    for i, gpu in enumerate(("rtx-2080-ti", "rtx-3090")):
        block = slice(i * len(rows), (i + 1) * len(rows))
        z[block] += model.experts_["runtime"][gpu].predict_trees(matrix[block]).mean(axis=0)
    expected = z.reshape(2, len(rows)).mean(axis=0) + build_features(rows).log_base["runtime"]
    got = np.log(model.predict(rows)["runtime_s"].to_numpy())
    shift = got - expected
    assert np.allclose(shift, shift[0], atol=1e-9)             # one level shift, -L


def test_an_unseen_gpu_row_is_predicted_the_same_alone_or_in_a_batch(models):
    model, _ = models
    rows = unseen_rows()
    batch = model.predict(rows)
    for i in (0, 17, 39):
        alone = model.predict(rows.iloc[[i]])
        assert np.allclose(alone.to_numpy(), batch.iloc[[i]].to_numpy(), rtol=1e-12)


def test_the_interval_of_an_unseen_gpu_row_contains_its_prediction(models):
    pred = models[0].predict(unseen_rows())
    assert (pred["runtime_s_lo"] < pred["runtime_s"]).all()
    assert (pred["runtime_s"] < pred["runtime_s_hi"]).all()


def test_a_bundle_keeps_analogues_and_references(models, tmp_path):
    model, _ = models
    path = save_model(model, tmp_path / "m.npz")
    loaded = load_model(path)
    assert loaded.analogues_ == model.analogues_
    rows = unseen_rows()
    pd.testing.assert_frame_equal(loaded.predict(rows), model.predict(rows))


def test_rows_are_placed_only_on_analogues_with_their_math_path(models):
    # The RTX 2080 Ti (Turing) has no bf16 path: a bf16 row of a family measured on it and the
    # RTX 3090 has one analogue left, too few, so the shared ensemble predicts it, as without
    # analogy; f32 rows of the same batch still go by analogy.
    model, plain = models
    rows = pd.concat([unseen_rows(20).assign(dtype="bf16"), unseen_rows(20)], ignore_index=True)
    got, alone = model.predict(rows), plain.predict(rows)
    pd.testing.assert_frame_equal(got.head(20), alone.head(20))
    assert not np.allclose(got["runtime_s"].tail(20), alone["runtime_s"].tail(20))
    assert model.analogues("a100-sxm4-80gb", "clblast_xgemm", math_key="bf16") == []
    assert model.analogues("a100-sxm4-80gb", "clblast_xgemm", math_key="fp32") == [
        "rtx-2080-ti", "rtx-3090"]


def test_an_analogy_level_rests_on_the_reference_rows_every_gpu_involved_can_run():
    # Reference rows in bf16 (measured on the two Ampere GPUs only) cannot be placed on a
    # Turing GPU: a T4's f32 rows take their level from the f32 references, and bf16 rows on
    # an RTX 4090 go by the two analogues with bf16.
    train = xgemm_frame(900, seed=5, gpus=("rtx-3090", "rtx-2080-ti", "a100-sxm4-80gb"))
    ampere = train["gpu"] != "rtx-2080-ti"
    train.loc[ampere & (train.index % 3 == 0), "dtype"] = "bf16"
    model = Predictor(**SMALL).fit(train)
    plain = Predictor(analogy=False, **SMALL).fit(train)
    reference = reference_frame(model.reference_rows_["runtime"]["clblast_xgemm"])
    assert set(reference["dtype"]) == {"f32", "bf16"}
    assert model.analogues("rtx-4090", "clblast_xgemm", math_key="bf16") == [
        "a100-sxm4-80gb", "rtx-3090"]
    for gpu, dtype in (("t4", "f32"), ("rtx-4090", "bf16"), ("rtx-4090", "f32")):
        rows = unseen_rows(30).assign(gpu=gpu, dtype=dtype)
        got = model.predict(rows)
        assert np.isfinite(got.to_numpy()).all()
        assert (got["runtime_s_lo"] < got["runtime_s"]).all()
        assert (got["runtime_s"] < got["runtime_s_hi"]).all()
        assert not np.allclose(got["runtime_s"], plain.predict(rows)["runtime_s"])


@pytest.mark.shared_data
def test_real_held_out_gpu_ranked_better_by_analogy(shared_data):
    # Train on the RTX 2080 Ti and 3060 Laptop caches, rank the RTX 3090's configs (a small
    # ensemble, for time; benchmarks/predictor_accuracy.py has the full-size figures).
    from gemmperf.predict.data import load_data

    frame = load_data([shared_data / f"kernel_tuner_xgemm_{name}.json.gz"
                       for name in ("RTX_2080_Ti", "RTX_3060_laptop", "RTX_3090")])
    held = (frame["gpu"] == "rtx-3090").to_numpy()
    test = frame[held].sample(3000, random_state=0)
    true = pd.to_numeric(test["runtime_s"]).to_numpy(float)
    scores = {}
    for analogy in (True, False):
        model = Predictor(targets=("runtime",), n_estimators=8, max_leaf_nodes=4096,
                          expert_estimators=2, analogy=analogy, n_jobs=2).fit(frame[~held])
        scores[analogy] = spearmanr(model.predict(test)["runtime_s"], true).statistic
    assert scores[True] > scores[False] + 0.01
    assert scores[True] > 0.94
