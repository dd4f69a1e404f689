"""Model bundles: round trip, metadata; corrupt, foreign, other-version and pickle files refused."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from predict_helpers import xgemm_frame

from gemmperf.errors import DataFormatError
from gemmperf.predict import persist
from gemmperf.predict.forest import Predictor
from gemmperf.predict.persist import load_model, read_metadata, save_model


@pytest.fixture(scope="module")
def model() -> Predictor:
    # expert_min_rows=60: the three GPUs (67 runtime rows each) get per-GPU experts, the
    # power and energy ensembles (~33 rows per GPU) do not.
    return Predictor(n_estimators=6, max_leaf_nodes=32, expert_min_rows=60).fit(xgemm_frame(200))


@pytest.fixture()
def bundle(tmp_path, model):
    return save_model(model, tmp_path / "m.npz", metadata={"note": "test"})


def test_round_trip_gives_identical_predictions(bundle, model):
    frame = xgemm_frame(40, seed=5)
    loaded = load_model(bundle)
    pd.testing.assert_frame_equal(loaded.predict(frame), model.predict(frame))
    clocked = frame.assign(sm_clock_mhz=900.0)   # the clock transfer reads clocked_families_
    pd.testing.assert_frame_equal(loaded.predict(clocked), model.predict(clocked))
    assert loaded.clocked_families_ == model.clocked_families_
    assert loaded.math_paths_ == model.math_paths_ == {t: ["fp32"] for t in model.forests_}
    assert loaded.get_params() == model.get_params()


def test_metadata_records_provenance_and_versions(bundle):
    meta = read_metadata(bundle)
    assert meta["format"] == "gemmperf-model" and meta["note"] == "test"
    assert meta["versions"]["scikit-learn"] and meta["versions"]["gemmperf"]
    assert meta["n_train"] == {"runtime": 200, "power": 100, "energy": 100}
    by_gpu = {row["gpu"]: row for row in meta["training_data"]}
    assert set(by_gpu) == {"rtx-3090", "rtx-2080-ti", "a100-sxm4-80gb"}
    assert by_gpu["rtx-3090"]["source"] == "synthetic" and by_gpu["rtx-3090"]["runtime"] == 67
    assert meta["trees"]["runtime"]["trees"] == 6
    assert sorted(meta["experts"]["runtime"]) == sorted(by_gpu) and meta["experts"]["power"] == {}


def test_bundle_is_not_a_pickle(bundle):
    with zipfile.ZipFile(bundle) as zf:
        for name in zf.namelist():
            header = zf.read(name)[:16]
            assert header.startswith(b"\x93NUMPY"), name   # plain .npy members only
    with np.load(bundle, allow_pickle=False) as npz:   # loads without enabling pickle
        assert "__meta__" in npz.files


def _rewrite(path, change):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def test_truncated_or_garbage_file_is_a_clear_error(bundle, tmp_path):
    data = bundle.read_bytes()
    bundle.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="corrupt"):
        load_model(bundle)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(DataFormatError, match="not a gemmperf model bundle or corrupt"):
        load_model(junk)
    # Not numpy's advice to load it with allow_pickle=True (which runs code from the file).
    table = tmp_path / "table.csv"
    table.write_text("m,n,k\n1,2,3\n")
    with pytest.raises(DataFormatError, match="zip") as error:
        load_model(table)
    assert "pickle" not in str(error.value)


def test_edited_arrays_fail_the_checksum(bundle):
    def nudge(arrays):
        arrays["runtime/value"] = arrays["runtime/value"] + np.float32(0.5)

    _rewrite(bundle, nudge)
    with pytest.raises(DataFormatError, match="checksum"):
        load_model(bundle)


@pytest.mark.parametrize("field,value,message", [
    ("format_version", persist.BUNDLE_VERSION + 1, "format version"),
    ("feature_version", -1, "feature version"),
    ("format", "something-else", "not a gemmperf model bundle"),
])
def test_other_version_or_foreign_bundle_is_refused(bundle, field, value, message):
    def edit(arrays):
        meta = json.loads(arrays["__meta__"].tobytes())
        meta[field] = value
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    _rewrite(bundle, edit)
    with pytest.raises(DataFormatError, match=message):
        load_model(bundle)


def test_pickle_needs_explicit_trust(tmp_path, model):
    path = save_model(model, tmp_path / "m.pkl")
    with pytest.raises(DataFormatError, match="refusing to unpickle"):
        load_model(path)
    assert isinstance(load_model(path, trust_pickle=True), Predictor)


def test_unfitted_model_and_bad_suffix_are_refused(tmp_path, model):
    with pytest.raises(DataFormatError, match="unfitted"):
        save_model(Predictor(), tmp_path / "x.npz")
    with pytest.raises(DataFormatError, match=r"\.npz"):
        save_model(model, tmp_path / "x.joblib")
    assert not list(tmp_path.glob("*.partial"))


def test_missing_default_bundle_message(tmp_path, monkeypatch):
    monkeypatch.setattr(persist, "default_model_path", lambda: tmp_path / "none.npz")
    with pytest.raises(DataFormatError, match="no such model file"):
        load_model()


def test_default_bundle_loads_and_predicts():
    path = persist.default_model_path()
    if not path.is_file():
        pytest.skip("no default bundle in models/ yet")
    model = load_model()
    frame = pd.DataFrame({"gpu": ["a100"], "m": [4096], "n": [4096], "k": [4096],
                          "dtype": ["f16"]})
    pred = model.predict(frame)
    assert 1e-5 < pred["runtime_s"].iloc[0] < 1e-1
    assert path.stat().st_size < 10e6
