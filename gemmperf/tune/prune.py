"""A pruning hook for autotuners: keep the top-k of a list of configs by predicted objective.

:class:`ConfigPruner` ranks whatever configs an autotuner holds and keeps the ``top_k`` most
promising, so the autotuner benchmarks k configs instead of all of them:

- Triton: ``@triton.autotune(configs, key=["M", "N", "K"],
  prune_configs_by={"early_config_prune": ConfigPruner("h100-sxm", dtype="f16", top_k=8)})``;
  Triton calls it as ``early_config_prune(configs, named_args, **kwargs)`` and benchmarks what it
  returns. Each ``triton.Config``'s ``kwargs`` (``BLOCK_SIZE_M``/``BLOCK_M``, ...), ``num_warps``
  and ``num_stages`` become tile_m/n/k, threads_per_block and stages.
- Kernel Tuner: ``restrictions=[pruner.kernel_tuner_restriction(tune_params, problem)]`` keeps
  the top-k of the whole ``tune_params`` product (tunables as the family names them, e.g.
  CLBlast's MWG, ...), and a restriction is a callable of the parameter dict.
- anything else: :meth:`ConfigPruner.prune` takes KernelConfigs, tunable dicts or Config-like
  objects and returns the same objects, best first.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gemmperf.errors import InvalidConfigError, InvalidProblemError
from gemmperf.hardware.specs import get_gpu
from gemmperf.problem import GemmProblem, KernelConfig
from gemmperf.spaces.param_space import (
    bundled_param_families,
    check_values,
    derive_columns,
    first_violations,
    load_space_spec,
)
from gemmperf.spaces.space import COMMON_COLUMNS, params_json_column
from gemmperf.tune.autotune import objective_values
from gemmperf.tune.models import load_default_model, predict_frame

#: Triton meta-parameter names -> record columns.
TRITON_ALIASES = {
    "BLOCK_SIZE_M": "tile_m", "BLOCK_M": "tile_m", "BLOCK_SIZE_N": "tile_n", "BLOCK_N": "tile_n",
    "BLOCK_SIZE_K": "tile_k", "BLOCK_K": "tile_k", "SPLIT_K": "split_k", "num_stages": "stages",
}
WARP_SIZE = 32
_TORCH_DTYPES = {"float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64",
                 "float8_e4m3fn": "fp8", "float8_e5m2": "fp8", "int8": "int8"}


def config_values(config: Any) -> dict[str, Any]:
    """Tunables of one config: a KernelConfig, a mapping, or an object with ``kwargs``
    (``triton.Config``), with Triton's names mapped to record columns."""
    if isinstance(config, KernelConfig):
        values = {c: getattr(config, c) for c in COMMON_COLUMNS if getattr(config, c) is not None}
        values.update(config.param_dict)
        return values
    if isinstance(config, Mapping):
        values = dict(config)
    elif hasattr(config, "kwargs"):
        values = dict(config.kwargs)
        for name in ("num_warps", "num_stages"):
            if getattr(config, name, None) is not None:
                values[name] = getattr(config, name)
    else:
        raise InvalidConfigError(f"cannot read tunables from a {type(config).__name__}: give "
                                 "KernelConfigs, dicts or objects with .kwargs")
    out = {TRITON_ALIASES.get(k, k): v for k, v in values.items()}
    if "num_warps" in out:
        out["threads_per_block"] = int(out.pop("num_warps")) * WARP_SIZE
    return out


class ConfigPruner:
    """Keep the ``top_k`` configs by predicted ``objective`` on ``gpu`` (module docstring).

    ``problem`` fixes the GEMM; otherwise Triton's ``named_args`` give it through ``shape_args``
    (the names of M, N, K) and ``dtype`` (or the torch dtype of the argument ``dtype_arg``).
    """

    def __init__(self, gpu: str, *, family: str = "triton", model: Any = None, top_k: int = 8,
                 objective: str = "time", problem: GemmProblem | None = None,
                 shape_args: Sequence[str] = ("M", "N", "K"), dtype: str | None = None,
                 dtype_arg: str | None = None, layout: str = "nn") -> None:
        if top_k < 1:
            raise InvalidConfigError(f"top_k must be at least 1, got {top_k}")
        objective_values(pd.DataFrame({"runtime_s": [], "energy_j": []}), objective)
        self.gpu = get_gpu(gpu)
        self.family = family
        self.model = model if model is not None else load_default_model()
        self.top_k = top_k
        self.objective = objective
        self.problem = problem
        self.shape_args = tuple(shape_args)
        self.dtype = dtype
        self.dtype_arg = dtype_arg
        self.layout = layout

    # -- ranking --------------------------------------------------------------------------------

    def scores(self, configs: Sequence[Any], problem: GemmProblem) -> np.ndarray:
        """Predicted objective per config (inf for a config the family's rules reject)."""
        rows = [config_values(c) for c in configs]
        if not rows:
            return np.zeros(0)
        frame = pd.DataFrame(rows)
        invalid = self._invalid(rows)
        spec = self._space_spec()
        if spec is not None:
            frame = derive_columns(spec, frame)
        for name in ("m", "n", "k", "batch", "dtype", "layout"):
            frame[name] = getattr(problem, name)
        frame["gpu"] = self.gpu.key
        frame["family"] = self.family
        tunables = [c for c in frame.columns if c not in COMMON_COLUMNS and c not in (
            "m", "n", "k", "batch", "dtype", "layout", "gpu", "family", "kernel_name")]
        other = [c for c in tunables if not pd.api.types.is_numeric_dtype(frame[c].dtype)]
        frame["params"] = params_json_column(frame, other)
        pred = predict_frame(self.model, frame, self.gpu)
        values = objective_values(pred, self.objective)
        return np.where(invalid | ~np.isfinite(values), np.inf, values)

    def _space_spec(self) -> Any:
        if self.family not in bundled_param_families():
            return None
        return load_space_spec(self.family)

    def _invalid(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """Configs the family's space file rules out (vectorised over all rows)."""
        spec = self._space_spec()
        if spec is None:
            return np.zeros(len(rows), dtype=bool)
        frame = pd.DataFrame(rows)
        if all(name in frame for name in spec.parameters):
            return first_violations(spec, frame, self.gpu) >= 0
        return np.array([check_values(spec, {k: v for k, v in r.items() if k in spec.parameters},
                                      self.gpu) is not None for r in rows])

    def prune(self, configs: Iterable[Any], problem: GemmProblem | None = None) -> list[Any]:
        """The ``top_k`` best of ``configs`` (the same objects), best first."""
        configs = list(configs)
        problem = problem or self.problem
        if problem is None:
            raise InvalidProblemError("ConfigPruner needs a problem (problem=GemmProblem(...))")
        scores = self.scores(configs, problem)
        order = np.argsort(scores, kind="stable")
        keep = [i for i in order if np.isfinite(scores[i])][: self.top_k]
        return [configs[i] for i in keep]

    # -- Triton -----------------------------------------------------------------------------------

    def problem_from_args(self, named_args: Mapping[str, Any]) -> GemmProblem:
        """The GEMM of a Triton launch: M, N, K from ``shape_args``, dtype as configured."""
        if self.problem is not None:
            return self.problem
        missing = [a for a in self.shape_args if a not in named_args]
        if missing:
            raise InvalidProblemError(
                f"the kernel's arguments lack {', '.join(missing)}; pass shape_args=(...) naming "
                "its M, N, K arguments, or problem=GemmProblem(...)")
        m, n, k = (int(named_args[a]) for a in self.shape_args)
        dtype = self.dtype
        if dtype is None and self.dtype_arg is not None:
            torch_dtype = str(getattr(named_args.get(self.dtype_arg), "dtype", ""))
            dtype = _TORCH_DTYPES.get(torch_dtype.removeprefix("torch."))
        if dtype is None:
            raise InvalidProblemError("set dtype= (or dtype_arg= naming a tensor argument)")
        return GemmProblem(m, n, k, dtype=dtype, layout=self.layout)

    def __call__(self, configs: Sequence[Any], named_args: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> list[Any]:
        """Triton's ``early_config_prune(configs, named_args, **kwargs)``."""
        return self.prune(configs, self.problem_from_args(named_args or {}))

    # -- Kernel Tuner -----------------------------------------------------------------------------

    def kernel_tuner_restriction(self, tune_params: Mapping[str, Sequence[Any]],
                                 problem: GemmProblem | None = None
                                 ) -> Callable[[Mapping[str, Any]], bool]:
        """A Kernel Tuner restriction admitting only the top-k of the ``tune_params`` product."""
        names = list(tune_params)
        product = [dict(zip(names, values, strict=True))
                   for values in itertools.product(*(tune_params[n] for n in names))]
        keep = self.prune(product, problem)
        allowed = {tuple(c[n] for n in names) for c in keep}

        def restriction(params: Mapping[str, Any]) -> bool:
            return tuple(params[n] for n in names) in allowed

        return restriction
