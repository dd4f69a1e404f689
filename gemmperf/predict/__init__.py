"""The learned predictor of GEMM runtime, power and energy.

- :class:`Predictor` (:mod:`.forest`): scikit-learn-style multi-output tree ensemble on the
  hardware-normalised features of :mod:`gemmperf.features`, with calibrated 80% intervals;
  a GPU without training data is predicted by analogy with the GPUs its kernel family was
  measured on (:mod:`.analogy`), an unknown kernel by its family's average
  (:mod:`.unseen_kernels`); what fit records about its rows is in :mod:`.training_data`, how
  the ensembles are evaluated in :mod:`.ensembles`, and the trees are :mod:`.compact` arrays;
- :func:`load_model` / :func:`save_model` (:mod:`.persist`): safe ``.npz`` bundles; with no
  argument :func:`load_model` loads the shipped default model (``models/``);
- :func:`evaluate_model`, :func:`cross_validate` (:mod:`.evaluate`): metrics and split protocols;
- :func:`load_data` (:mod:`.data`): records from record files, raw measurement files or folders;
- :class:`GPPerfBaseline` (:mod:`.baseline`): the seed paper's recipe, for comparison.
"""

from __future__ import annotations

from gemmperf.predict.baseline import GPPerfBaseline
from gemmperf.predict.data import load_data
from gemmperf.predict.evaluate import cross_validate, evaluate_model, evaluate_predictions
from gemmperf.predict.forest import Predictor
from gemmperf.predict.persist import default_model_path, load_model, read_metadata, save_model

__all__ = [
    "GPPerfBaseline",
    "Predictor",
    "cross_validate",
    "default_model_path",
    "evaluate_model",
    "evaluate_predictions",
    "load_data",
    "load_model",
    "read_metadata",
    "save_model",
]
