"""Model bundles: a fitted :class:`~gemmperf.predict.forest.Predictor` on disk, in a format that
cannot execute code when loaded.

A bundle is a compressed ``.npz`` (a zip of ``.npy`` arrays, read with ``allow_pickle=False``):
the tree arrays of each target (:mod:`gemmperf.predict.compact`) plus ``__meta__``, a UTF-8 JSON
document with the format and feature versions, feature names, category vocabularies, estimator
parameters, interval calibration, training data provenance (sources, GPUs, row counts), package
versions and metrics, and a SHA-256 over every array. Loading checks all of it and fails with a
one-line :class:`~gemmperf.errors.DataFormatError` on a corrupt, truncated, foreign or
other-version file.

Plain pickle (``.pkl``) is supported for experiments only: pickle runs arbitrary code on load, so
:func:`load_model` refuses it unless ``trust_pickle=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gemmperf._paths import models_dir
from gemmperf.errors import DataFormatError, InvalidConfigError
from gemmperf.features import CATEGORICAL_FEATURES, FEATURE_VERSION, NUMERIC_FEATURES
from gemmperf.predict.compact import CompactForest
from gemmperf.predict.forest import Predictor

BUNDLE_FORMAT = "gemmperf-model"
#: Bump when the bundle layout changes; a bundle of another version is refused with a message.
BUNDLE_VERSION = 5   # 2: per-GPU expert ensembles (``experts``); 3: analogues, reference rows,
#                      families per target; 4: families trained with clocks (clock_transfer);
#                      5: math paths trained per target (unseen_math), the GPUs each family
#                      was measured on (levels)
DEFAULT_MODEL_NAME = "gemmperf-default.npz"
_META = "__meta__"


def default_model_path() -> Path:
    """Where the shipped default bundle lives (``models/`` in a checkout, inside a wheel)."""
    return models_dir() / DEFAULT_MODEL_NAME


def save_model(model: Predictor, path: str | os.PathLike[str],
               metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` (``.npz`` bundle, or ``.pkl`` pickle) atomically.

    ``metadata`` (JSON-ready: data files, metrics, notes) is stored with the bundle.
    """
    if not hasattr(model, "forests_"):
        raise DataFormatError("cannot save an unfitted model: call fit first")
    path = check_model_path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".pkl":
            with open(tmp, "wb") as f:
                pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
        else:   # .npz (check_model_path allows no other suffix)
            arrays: dict[str, np.ndarray] = {}
            for target, forest in model.forests_.items():
                arrays.update(forest.to_arrays(f"{target}/"))
            for target, experts in _experts(model).items():
                for gpu, expert in experts.items():
                    arrays.update(expert.to_arrays(f"{target}/expert/{gpu}/"))
            meta = _metadata(model, arrays, metadata or {})
            arrays[_META] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except OSError as exc:   # a full disk, no permission
        raise DataFormatError(f"{path}: cannot write the model ({exc.strerror or exc})") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def check_model_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path if a model can be written there (``.npz`` or ``.pkl``, in a folder
    that is or can become one), else a DataFormatError; writes nothing, so a command can ask
    before it trains."""
    from gemmperf.records import RecordsPathError, check_records_folder

    path = Path(path)
    if path.suffix not in (".npz", ".pkl"):
        raise DataFormatError(f"{path}: model files end in .npz (safe bundle) or .pkl (pickle)")
    if path.is_dir():
        raise DataFormatError(f"{path} is a folder; give the model file's name")
    try:
        check_records_folder(path.parent)
    except RecordsPathError as exc:
        raise DataFormatError(f"{path}: {exc}") from None
    return path


def load_model(path: str | os.PathLike[str] | None = None, *,
               trust_pickle: bool = False) -> Predictor:
    """Load a model bundle; with no ``path``, the shipped default (``models/``).

    ``.pkl`` files are unpickled only with ``trust_pickle=True`` (pickle executes code).
    """
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise DataFormatError(f"a model path is a str or Path, got {path!r}")
    path = default_model_path() if path is None else Path(path)
    if not path.is_file():
        hint = " (the default bundle: run benchmarks or `gemmperf train` to create it)" \
            if path == default_model_path() else ""
        raise DataFormatError(f"{path}: no such model file{hint}")
    if path.suffix == ".pkl":
        if not trust_pickle:
            raise DataFormatError(
                f"{path}: refusing to unpickle (pickle runs code from the file); pass "
                "trust_pickle=True / --trust-pickle only for a file you made yourself"
            )
        try:
            with open(path, "rb") as f:
                model = pickle.load(f)  # trusted explicitly by the caller (trust_pickle)
        except Exception as exc:  # pickle raises whatever the bytes make it raise
            raise DataFormatError(f"{path}: not a readable pickle ({type(exc).__name__}: "
                                  f"{exc})") from None
        if not isinstance(model, Predictor):
            raise DataFormatError(f"{path}: the pickle holds a {type(model).__name__}, "
                                  "not a gemmperf Predictor")
        return model
    arrays, meta = _read_bundle(path)
    return _rebuild(path, arrays, meta)


def read_metadata(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The metadata of a bundle (validated like :func:`load_model`)."""
    path = default_model_path() if path is None else Path(path)
    return _read_bundle(path)[1]


def bundle_metadata(model: Predictor) -> dict[str, Any]:
    """The metadata a bundle of ``model`` would carry, without writing it (no checksum)."""
    return _metadata(model, {}, {})


# ---------------------------------------------------------------------------------------------


def _checksum(arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        if name == _META:
            continue
        arr = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def _metadata(model: Predictor, arrays: Mapping[str, np.ndarray],
              extra: Mapping[str, Any]) -> dict[str, Any]:
    import sklearn

    from gemmperf import __version__

    state = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "feature_version": FEATURE_VERSION,
        "feature_names": list(model.feature_names_),
        "categories": {k: list(v) for k, v in model.categories_.items()},
        "params": _jsonable(model.get_params()),
        "targets": list(model.forests_),
        "interval_scale": dict(model.interval_scale_),
        "gpu_level_sd": dict(model.gpu_level_sd_),
        "gpus": {t: list(v) for t, v in model.gpus_.items()},
        "kernels": {t: {f: list(k) for f, k in v.items()} for t, v in model.kernels_.items()},
        "math_paths": {t: list(v) for t, v in model.math_paths_.items()},
        "families": {t: list(v) for t, v in getattr(model, "families_", {}).items()},
        "family_gpus": {t: {f: list(g) for f, g in v.items()}
                        for t, v in model.family_gpus_.items()},
        "clocked_families": list(model.clocked_families_),
        "n_train": dict(model.n_train_),
        "training_data": list(model.training_data_),
        "trees": {t: {"trees": f.n_trees, "nodes": f.n_nodes} for t, f in model.forests_.items()},
        "experts": {t: {g: {"trees": f.n_trees, "nodes": f.n_nodes} for g, f in e.items()}
                    for t, e in _experts(model).items()},
        "expert_interval_scale": dict(getattr(model, "expert_interval_scale_", {})),
        "analogues": {t: {f: list(g) for f, g in v.items()}
                      for t, v in getattr(model, "analogues_", {}).items()},
        "reference_rows": dict(getattr(model, "reference_rows_", {})),
        "versions": {"gemmperf": __version__, "scikit-learn": sklearn.__version__,
                     "numpy": np.__version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sha256": _checksum(arrays),
    }
    clash = sorted(set(extra) & set(state))
    if clash:   # the model's own state must come from the model, not from a caller's note
        raise InvalidConfigError(f"metadata key(s) {', '.join(clash)} are the bundle's own; "
                                 "name your metadata otherwise")
    return {**state, **extra}


def _experts(model: Predictor) -> dict[str, dict[str, CompactForest]]:
    """The per-GPU expert ensembles of a fitted model (none for one fitted before they
    existed, e.g. an old pickle)."""
    return {t: dict(e) for t, e in getattr(model, "experts_", {}).items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _read_bundle(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if not path.is_file():
        raise DataFormatError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        # np.load would try it as a bare .npy and, failing, suggest allow_pickle=True: advice
        # that runs code from the file, and beside the point for a CSV handed over as --model.
        raise DataFormatError(f"{path}: not a gemmperf model bundle or corrupt: not a "
                              "complete .npz (zip) archive, which `gemmperf train -o MODEL.npz` "
                              "writes")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise DataFormatError(f"{path}: not a gemmperf model bundle or corrupt ({exc})") from None
    if _META not in arrays:
        raise DataFormatError(f"{path}: not a gemmperf model bundle (no {_META} record)")
    try:
        meta = json.loads(arrays[_META].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"{path}: corrupt bundle metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise DataFormatError(f"{path}: not a gemmperf model bundle")
    version = meta.get("format_version")
    made_by = meta.get("versions", {}).get("gemmperf", "?")
    if version != BUNDLE_VERSION:
        raise DataFormatError(
            f"{path}: bundle format version {version} (written by gemmperf {made_by}); this "
            f"gemmperf reads version {BUNDLE_VERSION}: retrain with `gemmperf train`"
        )
    if meta.get("feature_version") != FEATURE_VERSION:
        raise DataFormatError(
            f"{path}: trained with feature version {meta.get('feature_version')} (gemmperf "
            f"{made_by}); this gemmperf computes version {FEATURE_VERSION}: retrain with "
            "`gemmperf train`"
        )
    if meta.get("sha256") != _checksum(arrays):
        raise DataFormatError(f"{path}: checksum mismatch: the bundle is corrupt or was edited")
    return arrays, meta


def _rebuild(path: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Predictor:
    expected = [*NUMERIC_FEATURES, *(f"{c}_code" for c in CATEGORICAL_FEATURES)]
    if list(meta.get("feature_names", [])) != expected:
        raise DataFormatError(f"{path}: the bundle's feature list differs from this gemmperf's "
                              "(same feature version, edited file?): retrain")
    try:
        params = dict(meta["params"])
        params["targets"] = tuple(params["targets"])
        model = Predictor(**params)
        model.categories_ = {c: list(meta["categories"][c]) for c in CATEGORICAL_FEATURES}
        model.feature_names_ = tuple(expected)
        model.forests_ = {t: CompactForest.from_arrays(arrays, f"{t}/", len(expected))
                          for t in meta["targets"]}
        model.experts_ = {
            t: {str(g): CompactForest.from_arrays(arrays, f"{t}/expert/{g}/", len(expected))
                for g in meta["experts"].get(t, {})}
            for t in model.forests_}
        model.expert_interval_scale_ = {t: float(meta["expert_interval_scale"][t])
                                        for t in model.forests_ if model.experts_[t]}
        model.interval_scale_ = {t: float(meta["interval_scale"][t]) for t in model.forests_}
        model.gpu_level_sd_ = {t: float(meta["gpu_level_sd"][t]) for t in model.forests_}
        model.gpus_ = {t: [str(g) for g in meta["gpus"][t]] for t in model.forests_}
        model.kernels_ = {t: {str(f): [str(k) for k in ks] for f, ks in meta["kernels"][t].items()}
                          for t in model.forests_}
        model.math_paths_ = {t: [str(k) for k in meta["math_paths"][t]] for t in model.forests_}
        model.n_train_ = {t: int(meta["n_train"][t]) for t in model.forests_}
        model.families_ = {t: [str(f) for f in meta["families"][t]] for t in model.forests_}
        model.family_gpus_ = {t: {str(f): [str(g) for g in gs]
                                  for f, gs in meta["family_gpus"][t].items()}
                              for t in model.forests_}
        model.clocked_families_ = [str(f) for f in meta["clocked_families"]]
        model.analogues_ = {t: {str(f): [str(g) for g in gs]
                                for f, gs in meta["analogues"].get(t, {}).items()}
                            for t in model.forests_}
        model.reference_rows_ = {t: {str(f): {str(c): list(v) for c, v in columns.items()}
                                     for f, columns in meta["reference_rows"].get(t, {}).items()}
                                 for t in model.forests_}
        model.training_data_ = list(meta.get("training_data", []))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataFormatError(f"{path}: incomplete bundle metadata ({exc})") from None
    scales = [*model.interval_scale_.values(), *model.expert_interval_scale_.values(),
              *model.gpu_level_sd_.values()]
    if not all(np.isfinite(v) and v >= 0 for v in scales):
        raise DataFormatError(f"{path}: an interval scale in the metadata is not a finite "
                              "number >= 0 (edited file?): retrain")
    model.metadata_ = dict(meta)
    return model
