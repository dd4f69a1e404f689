"""The few-shot model of the autotuner: the predictor's priors corrected by the measurements.

The target GPU's log objective (log runtime, energy or EDP) of candidate ``x`` is modelled as a
Gaussian process whose mean and covariance come from three parts::

    y(x) = c + sum_j w_j mu_j(x) + sum_p b_p[x_p] + f(x) + e

- ``mu_j``: the predictor's log predictions on *reference* GPUs (those it saw this kernel family
  measured on) and/or on the target; ``w_j ~ N(1/J, 1)`` (a priori, the target behaves like the
  average of its references; measurements say which reference it resembles, and how much);
- ``b_p[v] ~ N(0, t^2)``: per-value effects of each tunable (one-hot), what no reference shows
  (e.g. shared-memory staging paying off only on the new GPU); ``c ~ N(0, 100)``;
- ``f ~ GP(0, g^2 exp(-d_H(x, x')))``: a local residual over the Hamming distance ``d_H`` (the
  number of tunables two configs differ in), for interactions the additive part misses: a
  measured config informs its neighbours;
- ``e ~ N(0, s^2)``: measurement noise and everything else.

``t^2``, ``g^2`` and ``s^2`` are not tuned: the posterior is averaged over a log grid of them,
each setting weighted by its marginal likelihood of the measurements so far (Bayesian model
averaging; MacKay, "Bayesian interpolation", 1992). The autotuner minimises the lower
confidence bound ``mean - beta sd`` (Srinivas et al., GP-UCB, ICML 2010).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Grids (log-objective units^2): 0.001 is a ~3 % effect, 0.03 a ~17 % one, 0.1 ~32 %.
EFFECT_VARIANCES = (0.001, 0.003, 0.01, 0.03)
NOISE_VARIANCES = (0.001, 0.003, 0.01, 0.03)
LOCAL_VARIANCES = (0.0, 0.01, 0.03, 0.1)
#: Hamming length scale of the local residual: neighbours (one tunable apart) correlate e^-1.
HAMMING_SCALE = 1.0
INTERCEPT_VARIANCE = 100.0
WEIGHT_VARIANCE = 1.0
#: Exploration weight of the lower confidence bound.
BETA = 1.0
#: A tunable with more distinct values than this is not one-hot encoded.
MAX_LEVELS = 16


def one_hot(candidates: pd.DataFrame, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """One column per (tunable, value) for tunables with 2..MAX_LEVELS values among candidates;
    a tunable that partitions the candidates exactly like an earlier one (tile_m and MWG) is
    encoded once. Labels are ``"name=value"``."""
    columns, labels = [], []
    seen: set[bytes] = set()
    for name in names:
        if name not in candidates:
            continue
        codes, uniques = pd.factorize(candidates[name], use_na_sentinel=False)
        if not 2 <= len(uniques) <= MAX_LEVELS:
            continue
        key = pd.factorize(codes)[0].astype(np.int64).tobytes()
        if key in seen:
            continue
        seen.add(key)
        for level, value in enumerate(uniques):
            columns.append(codes == level)
            labels.append(f"{name}={value}")
    if not columns:
        return np.zeros((len(candidates), 0)), labels
    return np.column_stack(columns).astype(np.float64), labels


class FewShotModel:
    """Posterior of the model in the module docstring over a fixed candidate set.

    ``priors`` (n x J) are log predictions; ``effects`` (n x H) the one-hot matrix of
    :func:`one_hot` (each row has one 1 per encoded tunable).
    """

    def __init__(self, priors: np.ndarray, effects: np.ndarray, *,
                 effect_variances: Sequence[float] = EFFECT_VARIANCES,
                 noise_variances: Sequence[float] = NOISE_VARIANCES,
                 local_variances: Sequence[float] = LOCAL_VARIANCES) -> None:
        priors = np.asarray(priors, dtype=np.float64)
        if priors.ndim == 1:
            priors = priors[:, None]
        effects = np.asarray(effects, dtype=np.float64)
        self.n, self.j = priors.shape
        self.effects = effects
        self.groups = int(effects[0].sum().round()) if effects.size else 0
        self.design = np.column_stack([np.ones(self.n), priors, effects])
        h = effects.shape[1]
        self.prior_mean = np.r_[0.0, np.full(self.j, 1.0 / max(self.j, 1)), np.zeros(h)]
        # Prior variances of the intercept and the weights (fixed) ...
        self.fixed_var = np.r_[INTERCEPT_VARIANCE, np.full(self.j, WEIGHT_VARIANCE)]
        self.fixed = self.design[:, : 1 + self.j]
        self.fixed_own = np.einsum("ij,j,ij->i", self.fixed, self.fixed_var, self.fixed)
        # ... and the grid of the one-hot, local and noise variances.
        self.effect_variances = tuple(effect_variances)
        self.noise_variances = tuple(noise_variances)
        self.local_variances = tuple(local_variances)

    def prior_prediction(self) -> np.ndarray:
        """Prior mean of y for every candidate (the average of the priors)."""
        return self.design @ self.prior_mean

    def posterior(self, measured: Sequence[int], values: Sequence[float]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Posterior mean and sd per candidate given ``values`` (log objective) at candidate
        positions ``measured``, and the weight of each grid setting."""
        rows = np.asarray(measured, dtype=np.int64)
        y = np.asarray(values, dtype=np.float64)
        prior = self.prior_prediction()
        if rows.size == 0:
            return prior, np.zeros(self.n), np.array([1.0])
        resid = y - prior[rows]
        # Covariances of every candidate with the measured ones (function-space form):
        # fixed part + t * (shared one-hot levels) + g * exp(-Hamming distance).
        fixed = (self.fixed * self.fixed_var) @ self.fixed[rows].T           # n x k
        shared = self.effects @ self.effects[rows].T                        # n x k
        local = np.exp(-(self.groups - shared) / HAMMING_SCALE)
        evidence, means, variances = [], [], []
        eye = np.eye(len(rows))
        for t, g in itertools.product(self.effect_variances, self.local_variances):
            cross = fixed + t * shared + g * local
            own = self.fixed_own + t * self.groups + g
            for noise in self.noise_variances:
                chol = np.linalg.cholesky(cross[rows] + noise * eye)
                alpha = np.linalg.solve(chol, resid)
                evidence.append(-0.5 * alpha @ alpha - np.log(np.diag(chol)).sum())
                half = np.linalg.solve(chol, cross.T)                        # k x n
                means.append(prior + half.T @ alpha)
                variances.append(np.maximum(own - (half * half).sum(axis=0), 1e-12))
        weights = np.exp(np.array(evidence) - max(evidence))
        weights /= weights.sum()
        mean = sum(w * m for w, m in zip(weights, means, strict=True))
        second = sum(w * (v + m * m) for w, v, m in zip(weights, variances, means, strict=True))
        return mean, np.sqrt(np.maximum(second - mean * mean, 0.0)), weights

    def lower_bound(self, measured: Sequence[int], values: Sequence[float],
                    beta: float = BETA) -> np.ndarray:
        """``mean - beta sd`` per candidate (the acquisition the autotuner minimises)."""
        mean, sd, _ = self.posterior(measured, values)
        return mean - beta * sd
