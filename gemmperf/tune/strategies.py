"""Search strategies over a space's candidates: model-guided, random search, greedy local search.

A strategy sees candidates by position (0..n-1 in the autotuner's candidate table) and proposes
the next ones to measure; it is told every measured value (log objective; ``inf`` for a config
that failed). All randomness comes from the ``numpy.random.Generator`` it is given.

- :class:`ModelGuided`: measures each prior's best config first (warm start), then the
  candidate with the lowest confidence bound of the few-shot model
  (:mod:`gemmperf.tune.surrogate`) among the incumbent's one-tunable neighbours (or, once those
  are spent, among all plausible candidates), re-fits, repeats. The generator only breaks
  exact ties, which are common early on (configs that differ only in tunables not measured yet
  score alike), so seeds do change the path.
- :class:`RandomSearch`: uniform sampling without replacement.
- :class:`GreedyLocalSearch`: Kernel Tuner's ``greedy_ils`` idea: from a random start, move to
  the first improving neighbour (configs differing in one tunable, visited in random order);
  at a local optimum, restart from a random configuration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from gemmperf.tune.surrogate import BETA, FewShotModel

STRATEGIES = ("model", "random", "greedy")
#: Plausible candidates of the model-guided search: the best 3 % (at least 64) of each prior.
POOL_FRACTION = 0.03
POOL_MIN = 64


class Strategy(Protocol):
    """What the autotune loop drives."""

    name: str

    def propose(self, count: int) -> list[int]:
        """Up to ``count`` unmeasured candidate positions to measure next."""

    def observe(self, position: int, value: float) -> None:
        """The measured log objective of ``position`` (``inf`` when it failed)."""


class _Base:
    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n = n
        self.rng = rng
        self.measured: dict[int, float] = {}

    def observe(self, position: int, value: float) -> None:
        self.measured[int(position)] = float(value)

    def _unmeasured(self) -> np.ndarray:
        mask = np.ones(self.n, dtype=bool)
        if self.measured:
            mask[list(self.measured)] = False
        return np.flatnonzero(mask)


class RandomSearch(_Base):
    """Uniform random sampling without replacement."""

    name = "random"

    def propose(self, count: int) -> list[int]:
        free = self._unmeasured()
        take = min(count, len(free))
        return [int(i) for i in self.rng.choice(free, size=take, replace=False)]


class ModelGuided(_Base):
    """Model-guided search (see :mod:`gemmperf.tune.surrogate` for the model).

    1. Warm start: the best candidate of each prior column in turn (each reference GPU's
       predicted best, and the target's), the classic way to transfer a tuning from earlier
       tasks (Feurer et al., "Initializing Bayesian hyperparameter optimization via
       meta-learning", AAAI 2015).
    2. Then *local* steps while the incumbent has unmeasured neighbours, otherwise *global*
       ones. (Alternating the two, every second or third step local, left the held-out
       RTX 3090 at regret 1.086 after 16 measurements in a 5-seed replay of
       benchmarks/recommender_regret.py's protocol; local first reached 1.000: the
       shared-memory flip it needs came too late.)

       - *global*: the lowest confidence bound of the corrected model among the *plausible*
         candidates, those within the best :data:`POOL_FRACTION` of at least one prior
         column. The few-shot model is unsure about configs far from every measurement, and
         a bound that rewards that uncertainty would otherwise spend measurements on configs
         that no GPU the model knows runs well;
       - *local*: the lowest confidence bound among the one-tunable neighbours of the best
         config measured so far, pool or not, changing the tunable tried least often around
         that incumbent (a trust region around the incumbent, as in TuRBO: Eriksson et al.,
         "Scalable global optimization via local Bayesian optimization", NeurIPS 2019; the
         round-robin over tunables is coordinate search). A new GPU's best config is often a
         known-good config with one tunable changed (shared-memory staging, a vector width)
         that no reference GPU ranks highly; the local step finds it without waiting for the
         global model to learn that tunable's effect.
    """

    name = "model"

    def __init__(self, priors: np.ndarray, effects: np.ndarray, rng: np.random.Generator,
                 beta: float = BETA, pool_fraction: float = POOL_FRACTION,
                 labels: Sequence[str] | None = None) -> None:
        super().__init__(len(effects), rng)
        # Tunable of each one-hot column (labels "name=value" from surrogate.one_hot).
        names = [str(label).split("=", 1)[0] for label in labels] if labels is not None \
            else [str(j) for j in range(np.shape(effects)[1])]
        codes, uniques = pd.factorize(pd.Series(names, dtype=object))
        self.column_group = codes.astype(np.int64)
        self.n_tunables = len(uniques)
        self.incumbent: int | None = None
        self.tries = np.zeros(self.n_tunables, dtype=np.int64)
        priors = np.asarray(priors, dtype=np.float64)
        priors = priors[:, None] if priors.ndim == 1 else priors
        self.model = FewShotModel(priors, effects)
        self.beta = beta
        self.warm = [np.argsort(priors[:, j], kind="stable") for j in range(priors.shape[1])]
        keep = max(POOL_MIN, int(pool_fraction * self.n))
        self.pool = np.zeros(self.n, dtype=bool)
        for order in self.warm:
            self.pool[order[:keep]] = True
        self.last_mean = self.model.prior_prediction()
        self.last_sd = np.zeros(self.n)

    def propose(self, count: int) -> list[int]:
        picks: list[int] = []
        believed = dict(self._finite())
        for _ in range(count):
            taken = set(self.measured) | set(picks)
            pick = self._warm_pick(taken)
            if pick is None:
                if believed:
                    mean, sd, _ = self.model.posterior(list(believed), list(believed.values()))
                else:
                    mean, sd = self.model.prior_prediction(), np.zeros(self.n)
                self.last_mean, self.last_sd = mean, sd
                bound = mean - self.beta * sd
                region = self._neighbourhood(bound, taken)
                score = np.where(self.pool if region is None else region, bound, np.inf)
                score[list(taken)] = np.inf
                if not np.isfinite(score).any():   # the pool is spent: the whole space
                    score = mean - self.beta * sd
                    score[list(taken)] = np.inf
                    if not np.isfinite(score).any():
                        break
                best = np.flatnonzero(score == score.min())
                pick = int(best[0] if len(best) == 1 else self.rng.choice(best))
            picks.append(pick)
            believed[pick] = float(self.last_mean[pick])  # batch: "kriging believer"
        return picks

    def _warm_pick(self, taken: set[int]) -> int | None:
        """While the warm start lasts (one step per prior column): the column's best untried
        candidate; afterwards None."""
        step = len(taken)
        if step >= len(self.warm):
            return None
        return next((int(i) for i in self.warm[step] if int(i) not in taken), None)

    def _neighbourhood(self, score: np.ndarray, taken: set[int]) -> np.ndarray | None:
        """The local step's candidates: the unmeasured neighbours of the best measured config
        that change the tunable tried least often around it (ties: the tunable whose best
        neighbour scores lowest). None before any measurement or without tunables."""
        finite = dict(self._finite())
        effects = self.model.effects
        if not finite or effects.shape[1] == 0:
            return None
        incumbent = min(finite, key=finite.__getitem__)
        if incumbent != self.incumbent:
            self.incumbent, self.tries = incumbent, np.zeros(self.n_tunables, dtype=np.int64)
        neighbours = np.abs(effects @ effects[incumbent] - (self.model.groups - 1)) < 0.5
        neighbours[list(taken)] = False
        # The tunable a neighbour changes: the group of its one-hot column the incumbent lacks.
        changed = self.column_group[np.argmax(effects * (1.0 - effects[incumbent]), axis=1)]
        best_group, best_key = None, None
        for group in np.unique(changed[neighbours]):
            rows = neighbours & (changed == group)
            key = (self.tries[group], float(score[rows].min()))
            if best_key is None or key < best_key:
                best_group, best_key = group, key
        if best_group is None:
            return None
        self.tries[best_group] += 1
        return neighbours & (changed == best_group)

    def _finite(self) -> list[tuple[int, float]]:
        # A failed config tells nothing about the objective's shape; it is just never retried.
        return [(i, v) for i, v in self.measured.items() if math.isfinite(v)]

    def predicted(self, position: int) -> tuple[float, float]:
        """Posterior mean and sd of ``position`` at the last proposal (log objective)."""
        return float(self.last_mean[position]), float(self.last_sd[position])


class GreedyLocalSearch(_Base):
    """First-improvement hill climbing over one-tunable neighbours with random restarts."""

    name = "greedy"

    def __init__(self, candidates: pd.DataFrame, names: Sequence[str],
                 rng: np.random.Generator) -> None:
        super().__init__(len(candidates), rng)
        self.names = [n for n in names if n in candidates and candidates[n].nunique() > 1]
        self.values = [candidates[n].to_numpy(dtype=object) for n in self.names]
        self.levels = [pd.unique(v) for v in self.values]
        self.index = {tuple(row): i for i, row in enumerate(zip(*self.values, strict=True))} \
            if self.names else {}
        self.current: int | None = None
        self.queue: list[int] = []

    def neighbours(self, position: int) -> list[int]:
        """Candidates that differ from ``position`` in exactly one tunable."""
        row = [v[position] for v in self.values]
        out = []
        for p, levels in enumerate(self.levels):
            for level in levels:
                if level == row[p]:
                    continue
                key = (*row[:p], level, *row[p + 1:])
                hit = self.index.get(key)
                if hit is not None:
                    out.append(hit)
        return out

    def _restart(self) -> int | None:
        free = self._unmeasured()
        if len(free) == 0:
            return None
        start = int(self.rng.choice(free))
        self.current = start
        self.queue = []
        return start

    def observe(self, position: int, value: float) -> None:
        super().observe(position, value)
        current = self.measured.get(self.current, math.inf) if self.current is not None \
            else math.inf
        if self.current is None or position == self.current or value < current:
            # First improvement (or the start): move there and queue its neighbours.
            self.current = position
            order = self.neighbours(position)
            self.rng.shuffle(order)
            self.queue = order

    def propose(self, count: int) -> list[int]:
        picks: list[int] = []
        while len(picks) < count:
            self.queue = [q for q in self.queue if q not in self.measured and q not in picks]
            if self.current is None or not self.queue:
                start = self._restart()  # local optimum (or nothing yet): random restart
                if start is None or start in picks:
                    break
                picks.append(start)
                continue
            picks.append(self.queue.pop(0))
        return picks
