"""Choosing kernel configurations and clocks: model-guided autotuning, pruning, DVFS.

- :mod:`gemmperf.tune.models`: the model protocol, the roofline fallback, candidate frames;
- :mod:`gemmperf.tune.autotune`: the measure-adapt-re-rank loop (:func:`autotune`);
- :mod:`gemmperf.tune.surrogate`: the few-shot correction of the predictor's priors;
- :mod:`gemmperf.tune.strategies`: model-guided, random and greedy local search;
- :mod:`gemmperf.tune.measure`: measuring through the collector, or replaying a recording;
- :mod:`gemmperf.tune.prune`: the top-k pruning hook for Triton / Kernel Tuner;
- :mod:`gemmperf.tune.power`, :mod:`gemmperf.tune.clocks`: DVFS power model, best SM clock.

Ranking a space (``gemmperf.recommend``) lives in :mod:`gemmperf.recommend`.
"""

from __future__ import annotations

from gemmperf.tune.autotune import AutotuneResult, autotune
from gemmperf.tune.clocks import recommend_clock
from gemmperf.tune.measure import CollectorMeasurer, ReplayMeasurer
from gemmperf.tune.prune import ConfigPruner

__all__ = ["AutotuneResult", "CollectorMeasurer", "ConfigPruner", "ReplayMeasurer", "autotune",
           "recommend_clock"]
