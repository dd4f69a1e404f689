"""A scikit-learn-style predictor of GEMM runtime, power and energy: one tree ensemble per target.

Real data rarely has all three targets (the Kernel Tuner spaces have runtime only, the DVFS
tables runtime, power and energy), so each target's ensemble trains on the rows that carry it and
the three live in one estimator. Targets are learned relative to the hardware-normalised bases of
:mod:`gemmperf.features` in log space (errors are relative; a 2x miss weighs the same at 10 us and
at 10 ms): ``z = log(y) - log(base)``.

Uncertainty: the spread of the per-tree predictions, scaled to cover ``interval`` of rows held
out in whole problems or clocks (conformal calibration, :mod:`gemmperf.predict.calibration`).
The final ensemble is then fitted on all rows. That calibration describes GPUs the model has
seen; for a GPU it has not, the half-width also gets (in quadrature) the scatter of per-GPU
levels that the hardware-normalised base leaves unexplained (``gpu_level_sd_``, estimated from
kernel families measured on two or more GPUs, on the configs they share) as a prediction
interval for a new GPU: Student's t on the few levels it rests on, and the uncertainty of their
mean (:func:`gemmperf.predict.training_data.gpu_level_sd`). A row naming a kernel the
model has not seen, of a family it has seen with several kernels (a new benchmark of a DVFS
table), is predicted as the average over that family's kernels, their scatter widening the
interval the same way; a row of a math path no training row has (e.g. fp8) gets the scatter of
the known paths of its kind placed on it (:mod:`gemmperf.predict.unseen_math`).

Per-GPU experts: the shared ensemble sees every GPU through hardware-normalised features only
(so that it transfers), which leaves some of what is specific to one measured GPU unfitted (on
all shared data with 16,384 leaves, ~7 % in-sample error on the RTX 3090's Xgemm space and its
own best config ranked wrong). For each GPU with :attr:`expert_min_rows` rows of a target, a
small ensemble of the same learner fits the shared ensemble's residuals on that GPU's rows
(a two-level model: shared trend + per-group correction, as in gradient boosting's first
stage or a random-effects model). A GPU with an expert gets it added; any other GPU is
predicted by the shared ensemble alone, as before. On a GPU with an expert the interval uses
the expert's tree spread, with its own calibrated scale.

Transfer by analogy: a row on a GPU the model has no data for, of a family measured on two or
more GPUs, is predicted as the mean of the row placed on each of those GPUs, at the shared
ensemble's level for the new GPU (:mod:`gemmperf.predict.analogy`); its interval also gets the
analogues' disagreement in quadrature. ``analogy=False`` turns it off.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

from gemmperf.errors import DataFormatError, InvalidConfigError
from gemmperf.features import (
    CATEGORICAL_FEATURES,
    MISSING,
    NUMERIC_FEATURES,
    TARGET_COLUMNS,
    TARGETS,
    FeatureSet,
    build_features,
)
from gemmperf.predict.analogy import (
    analogies,
    analogue_gpus,
    capable_analogues,
    reference_rows,
)
from gemmperf.predict.calibration import interval_scales
from gemmperf.predict.clock_transfer import as_measured, clocked_families
from gemmperf.predict.compact import CompactForest
from gemmperf.predict.ensembles import center_spread, normal_quantile, tree_predictions
from gemmperf.predict.inputs import (
    check_clocks,
    require_fitted,
    target_names,
    warn_unknown_families,
)
from gemmperf.predict.levels import family_gpus, with_level_term
from gemmperf.predict.physical_limits import apply_physical_limits
from gemmperf.predict.training_data import (
    calibration_groups,
    config_keys,
    gpu_level_sd,
    kernels_by_family,
    target_values,
    training_summary,
)
from gemmperf.predict.unseen_kernels import unseen_kernels
from gemmperf.predict.unseen_math import trained_math_paths, unseen_math
from gemmperf.records import params_as_text

LEARNERS = ("extra_trees", "random_forest")
#: A target needs at least this many rows to get an ensemble.
MIN_ROWS = 10


class Predictor(BaseEstimator):
    """Multi-output tree-ensemble predictor of ``runtime_s``, ``power_w`` and ``energy_j``.

    ``fit(records)`` and ``predict(records)`` take records-style DataFrames (one row per problem,
    config and GPU; see :mod:`gemmperf.records`). ``predict`` returns, per target present in the
    model, the point prediction and the bounds of its ``interval`` prediction interval
    (``runtime_s``, ``runtime_s_lo``, ``runtime_s_hi``, ...). Energy comes from its own ensemble
    for kernel families the energy rows covered, else from runtime x power (the energy ensemble
    has never seen how, say, a GEMM's runtime depends on its config).

    No runtime is predicted below a kernel call's fixed cost, and no power above the board's
    power limit (:mod:`gemmperf.predict.physical_limits`).

    Parameters are stored untouched (scikit-learn contract); learned state ends in ``_``.
    """

    def __init__(self, targets: tuple[str, ...] = TARGETS, learner: str = "extra_trees",
                 n_estimators: int = 32, max_leaf_nodes: int | None = 16384,
                 min_samples_leaf: int = 1, max_features: float = 1.0, interval: float = 0.8,
                 calibration_fraction: float = 0.2, random_state: int | None = 0,
                 n_jobs: int | None = None, expert_estimators: int = 8,
                 expert_leaf_nodes: int = 4096, expert_min_rows: int = 1000,
                 analogy: bool = True) -> None:
        self.targets = targets
        self.learner = learner
        self.n_estimators = n_estimators
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.interval = interval
        self.calibration_fraction = calibration_fraction
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.expert_estimators = expert_estimators
        self.expert_leaf_nodes = expert_leaf_nodes
        self.expert_min_rows = expert_min_rows
        self.analogy = analogy

    # -- fitting --------------------------------------------------------------------------------

    def fit(self, X: pd.DataFrame, y: pd.DataFrame | None = None) -> Predictor:
        """Fit one ensemble per target on the rows of ``X`` that have it.

        ``y``, when given, holds the target columns (``runtime_s``, ``power_w``, ``energy_j``;
        NaN where a row lacks one); otherwise they are read from ``X``.
        """
        self._check_params()
        targets = target_values(X, y, self.targets)
        X = params_as_text(X)
        features = build_features(X)
        self.categories_ = {
            c: sorted(v for v in pd.unique(features.categorical[c]) if v)
            for c in CATEGORICAL_FEATURES
        }
        self.feature_names_ = (*NUMERIC_FEATURES, *(f"{c}_code" for c in CATEGORICAL_FEATURES))
        matrix = self._matrix(features)
        rng = np.random.default_rng(self.random_state)
        self.forests_: dict[str, CompactForest] = {}
        self.interval_scale_: dict[str, float] = {}
        self.gpu_level_sd_: dict[str, float] = {}
        self.gpus_: dict[str, list[str]] = {}
        self.kernels_: dict[str, dict[str, list[str]]] = {}
        self.math_paths_: dict[str, list[str]] = {}
        self.families_: dict[str, list[str]] = {}
        self.family_gpus_: dict[str, dict[str, list[str]]] = {}
        self.n_train_: dict[str, int] = {}
        self.experts_: dict[str, dict[str, CompactForest]] = {}
        self.expert_interval_scale_: dict[str, float] = {}
        self.analogues_: dict[str, dict[str, list[str]]] = {}
        self.reference_rows_: dict[str, dict[str, dict[str, list]]] = {}
        # Its own stream, so that sampling reference rows leaves the calibration draws as they were.
        reference_rng = np.random.default_rng(
            None if self.random_state is None else (self.random_state, 1))
        configs = config_keys(X)   # which rows ran the same config on different GPUs
        units = calibration_groups(X, features.gpu)   # what calibration holds out whole
        for target in self.targets:
            values = targets[target]
            ok = np.isfinite(values) & (values > 0)
            if ok.sum() < MIN_ROWS:
                continue
            z = np.log(values[ok]) - features.log_base[target][ok]
            rows = matrix[ok]
            gpus = features.gpu[ok]
            scale, expert_scale = interval_scales(self, rows, z, gpus, units[ok], rng)
            self.interval_scale_[target] = scale
            self.forests_[target] = self._fit_forest(rows, z)
            self.experts_[target] = self._fit_experts(self.forests_[target], rows, z, gpus)
            if self.experts_[target]:
                self.expert_interval_scale_[target] = expert_scale
            self.n_train_[target] = int(ok.sum())
            self.gpus_[target] = sorted(pd.unique(gpus))
            self.kernels_[target] = kernels_by_family(features, ok)
            self.math_paths_[target] = trained_math_paths(features, ok)
            families = features.categorical["family"][ok]
            self.families_[target] = sorted(map(str, pd.unique(families)))
            self.family_gpus_[target] = family_gpus(families, gpus)
            self.gpu_level_sd_[target] = gpu_level_sd(z, gpus, families, self.interval,
                                                       configs[ok])
            self.analogues_[target] = analogue_gpus(families, gpus, self.expert_min_rows) \
                if self.analogy else {}
            positions = np.flatnonzero(ok)
            self.reference_rows_[target] = {
                family: reference_rows(X, positions[families == family], reference_rng)
                for family in self.analogues_[target]}
        if not self.forests_:
            raise DataFormatError(
                f"no target has {MIN_ROWS}+ rows with a positive value "
                f"({', '.join(TARGET_COLUMNS[t] for t in self.targets)}): nothing to train on"
            )
        self.clocked_families_ = clocked_families(features)
        self.training_data_ = training_summary(X, features, targets)
        return self

    def _check_params(self) -> None:
        if isinstance(self.targets, str):
            raise InvalidConfigError(f"targets is a tuple of names: give ({self.targets!r},)")
        for name, low in (("n_estimators", 1), ("min_samples_leaf", 1), ("expert_estimators", 0),
                          ("expert_leaf_nodes", 2), ("expert_min_rows", MIN_ROWS),
                          ("max_leaf_nodes", 2)):
            value = getattr(self, name)
            if name == "max_leaf_nodes" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise InvalidConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (isinstance(self.max_features, numbers.Real) and 0 < self.max_features <= 1):
            raise InvalidConfigError(f"max_features is the share of features each split "
                                     f"considers, in (0, 1]; got {self.max_features!r}")
        if self.learner not in LEARNERS:
            raise InvalidConfigError(f"learner must be one of {', '.join(LEARNERS)}, "
                                     f"got {self.learner!r}")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            raise InvalidConfigError(f"targets must be among {', '.join(TARGETS)}, "
                                     f"got {', '.join(map(str, self.targets)) or 'none'}")
        if not 0 < self.interval < 1:
            raise InvalidConfigError(f"interval must be in (0, 1), got {self.interval}")
        if not 0 < self.calibration_fraction < 1:
            raise InvalidConfigError("calibration_fraction must be in (0, 1), "
                                     f"got {self.calibration_fraction}")

    def _learner(self, expert: bool = False) -> ExtraTreesRegressor | RandomForestRegressor:
        cls = ExtraTreesRegressor if self.learner == "extra_trees" else RandomForestRegressor
        return cls(n_estimators=self.expert_estimators if expert else self.n_estimators,
                   max_leaf_nodes=self.expert_leaf_nodes if expert else self.max_leaf_nodes,
                   min_samples_leaf=self.min_samples_leaf, max_features=self.max_features,
                   random_state=self.random_state, n_jobs=self.n_jobs)

    def _fit_forest(self, rows: np.ndarray, z: np.ndarray, expert: bool = False
                    ) -> CompactForest:
        est = self._learner(expert).fit(rows, z)
        return CompactForest.from_sklearn(est.estimators_, rows.shape[1])

    def _expert_gpus(self, gpus: np.ndarray) -> list[str]:
        """The GPUs with ``expert_min_rows`` rows among ``gpus``: those that get an expert."""
        if self.expert_estimators == 0:
            return []
        keys, counts = np.unique(gpus.astype(str), return_counts=True)
        return [str(g) for g in keys[counts >= self.expert_min_rows]]

    def _fit_experts(self, forest: CompactForest, rows: np.ndarray, z: np.ndarray,
                     gpus: np.ndarray, chosen: list[str] | None = None
                     ) -> dict[str, CompactForest]:
        """Per-GPU residual ensembles (module doc) for the ``chosen`` GPUs (default: those
        with ``expert_min_rows`` rows here) that have rows here."""
        chosen = [g for g in (self._expert_gpus(gpus) if chosen is None else chosen)
                  if (gpus == g).any()]
        if not chosen:
            return {}
        residual = z - forest.predict_trees(rows).mean(axis=0)
        return {str(g): self._fit_forest(rows[gpus == g], residual[gpus == g], expert=True)
                for g in chosen}

    def _vocabulary_codes(self, column: str) -> dict[str, int]:
        """``categories_[column]`` as a value -> code dict (cached: a single prediction must
        stay cheap; keyed by the categories' identity, so a refit gets a new one)."""
        cache = self.__dict__.setdefault("_vocabulary_codes_cache", {})
        key = (column, id(self.categories_))
        if key not in cache:
            cache[key] = {v: i for i, v in enumerate(self.categories_[column])}
        return cache[key]

    def _matrix(self, features: FeatureSet) -> np.ndarray:
        """The float32 matrix the trees read: numeric features, then categorical codes."""
        width = len(NUMERIC_FEATURES)
        matrix = np.empty((len(features.gpu), width + len(CATEGORICAL_FEATURES)),
                          dtype=np.float32)
        matrix[:, :width] = features.values
        for j, c in enumerate(CATEGORICAL_FEATURES):
            # Vocabulary code of each distinct value (MISSING: not seen in training), per row.
            rows, values = features.factorized(c)
            lookup = self._vocabulary_codes(c)
            codes = np.array([lookup.get(v, MISSING) for v in values] + [MISSING],
                             dtype=np.float32)
            matrix[:, width + j] = codes[rows]
        return matrix

    # -- prediction -----------------------------------------------------------------------------

    def predict(self, X: pd.DataFrame, targets: tuple[str, ...] | None = None
                ) -> pd.DataFrame:
        """Point predictions and interval bounds per target, indexed like ``X``.

        ``targets`` restricts the ensembles that run (default: all the model has), e.g.
        ``("runtime", "power")`` where energy is taken as their product anyway.
        """
        require_fitted(self)
        targets = target_names(targets)
        X = params_as_text(X)
        features = build_features(X)
        check_clocks(X, features.gpu)
        warn_unknown_families(X, getattr(self, "families_", {}))
        # Rows with a clock their family was never measured at: the trees see them as measured
        # and the bases carry the clock (gemmperf.predict.clock_transfer).
        clock = as_measured(X, features, getattr(self, "clocked_families_", None))
        matrix = self._matrix(clock.tree_features if clock else features)
        chosen = [t for t in self.forests_ if targets is None or t in targets]
        if targets is not None and not chosen:
            raise InvalidConfigError(f"the model has no {', '.join(targets)} ensemble "
                                     f"(has: {', '.join(self.forests_)})")
        shared, experts = tree_predictions(self, matrix, features, chosen)
        out: dict[str, np.ndarray] = {}
        clock_bases = None       # the clock transfer's bases, once the runtime center is known
        z_score = normal_quantile(0.5 + self.interval / 2)
        for target in chosen:
            unseen = ~features.isin("gpu", self.gpus_[target])   # GPUs without target data
            center, spread = center_spread(shared[target])
            half = self.interval_scale_[target] * spread
            for rows, expert_trees in experts[target]:
                # The expert's own tree spread: on a measured GPU the shared trees disagree
                # mostly about which GPU a row is like, which the expert has settled.
                shift, local = center_spread(expert_trees)
                center[rows] += shift
                half[rows] = self.expert_interval_scale_[target] * local
            # A GPU the ensemble never saw, of a family measured on several: by analogy
            # (module doc of gemmperf.predict.analogy).
            for rows, trees, scatter in analogies(self, target, X, features, unseen):
                center[rows], spread = center_spread(trees)
                half[rows] = np.hypot(self.interval_scale_[target] * spread, z_score * scatter)
            # A kernel the ensemble never saw (by name) of a family it saw with several: the
            # average over that family's known kernels, plus their scatter in the interval.
            for rows, mean, scatter in unseen_kernels(self, target, matrix, features):
                center[rows] = mean
                half[rows] = np.hypot(half[rows], z_score * scatter)
            # A math path no training row has: how far the known paths disagree about the row.
            for rows, scatter in unseen_math(self, target, X, features):
                half[rows] = np.hypot(half[rows], z_score * scatter)
            # A GPU, or a family on a GPU, never measured: the between-GPU level scatter
            # (gemmperf.predict.levels).
            half = with_level_term(self, target, features, unseen, half, z_score)
            base = features.log_base[target]
            if clock is not None:
                if clock_bases is None or target == "runtime":
                    clock_bases = clock.log_bases(center if target == "runtime" else None)
                base = clock_bases[target]
            name = TARGET_COLUMNS[target]
            out[name] = np.exp(center + base)
            out[name + "_lo"] = np.exp(center - half + base)
            out[name + "_hi"] = np.exp(center + half + base)
        apply_physical_limits(out, features, getattr(self, "families_", {}).get("energy"))
        # One float block (a dict of columns costs pandas ~3x as much to assemble), under a
        # column Index built once per set of names (text names cost ~0.15 ms a frame more).
        names = tuple(out)
        cache = self.__dict__.setdefault("_output_columns", {})
        if names not in cache:
            cache[names] = pd.Index(names, dtype=object)
        return pd.DataFrame(np.column_stack(list(out.values())) if out else None,
                            columns=cache[names], index=X.index)

    def analogues(self, gpu: str, family: str, target: str = "runtime",
                  math_key: str | None = None) -> list[str]:
        """The GPUs a ``family`` row on ``gpu`` (a canonical spec key) is predicted by analogy
        with: empty where the model trained on that GPU or the family has fewer than two
        measured GPUs (:mod:`gemmperf.predict.analogy`), or, given the row's ``math_key``
        (:func:`gemmperf.problem.peak_key`), fewer than two with that math path."""
        require_fitted(self)
        if target not in self.forests_ or gpu in self.gpus_[target]:
            return []
        every = getattr(self, "analogues_", {}).get(target, {}).get(family, [])
        return capable_analogues(every, math_key) if every else []

    def predict_log_trees(self, X: pd.DataFrame, target: str = "runtime") -> np.ndarray:
        """Per-tree predictions of log(target) (n_trees x n_rows) of the shared ensemble alone
        (no expert, analogy or unseen-kernel averaging), for diagnostics."""
        require_fitted(self)
        if target not in self.forests_:
            raise InvalidConfigError(f"the model has no {target} ensemble "
                                     f"(has: {', '.join(self.forests_)})")
        X = params_as_text(X)
        features = build_features(X)
        clock = as_measured(X, features, getattr(self, "clocked_families_", None))
        trees = self.forests_[target].predict_trees(
            self._matrix(clock.tree_features if clock else features))
        base = clock.log_bases()[target] if clock else features.log_base[target]
        return trees + base[None, :]
