"""Time and power of the GEMMs of a training step.

GEMMs: the trained predictor (``gemmperf.predict``) when its bundle trained on library-GEMM
runtimes (cuBLAS via Vidur, XLA) of the GPU's chip -- its power too where it trained on power
measured on that GPU; otherwise the strict roofline bent by the calibrated efficiency curve of
:mod:`gemmperf.training.calibrate` (``data/training_calibration.json``): the GPU's own fit when
its chip was measured, else the pooled fit. Unfused attention's two batched GEMMs are timed like
any other GEMM (their L x L scores go through DRAM); fused attention is timed from its own kernel
benchmarks in :mod:`gemmperf.training.kernels`.

Both sources are short-burst measurements at boost clock. Training holds the GPU at its power
limit, so the compute part of every GEMM is divided by the GPU's sustained/burst matmul ratio
(:func:`gemmperf.training.kernels.sustained_clock_factor`, 1.0 where none is published). The
calibration measured 16-bit GEMMs; FP8 GEMMs are scaled by the GPU's measured FP8/BF16
efficiency ratio (:func:`gemmperf.training.kernels.fp8_efficiency`). The memory-bound kernels
(norms, activations, optimizer) live in :mod:`gemmperf.training.kernels`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from gemmperf._paths import data_dir
from gemmperf.errors import GemmperfError
from gemmperf.hardware.specs import GpuSpec
from gemmperf.problem import GemmProblem
from gemmperf.roofline import roofline_arrays
from gemmperf.training.calibrate import CALIBRATION_FILE, model_time
from gemmperf.training.comm import system_defaults
from gemmperf.training.errors import PlanError
from gemmperf.training.gemms import TrainingGemm
from gemmperf.training.kernels import fp8_efficiency, sustained_clock_factor


@lru_cache(maxsize=1)
def calibration() -> dict[str, Any]:
    """The parsed calibration table (``data/training_calibration.json``)."""
    path = data_dir() / CALIBRATION_FILE
    if not path.is_file():
        raise PlanError(f"missing {path}; run `python -m gemmperf.training.calibrate`")
    return json.loads(path.read_text())


def gemm_params(gpu: GpuSpec) -> tuple[dict[str, float], str]:
    """Efficiency parameters for ``gpu`` and a label saying where they come from."""
    cal = calibration()
    for entry in cal["gemm"]:
        if entry["gpu"] == gpu.key or (gpu.chip and entry.get("chip") == gpu.chip):
            return dict(entry["params"]), f"calibrated roofline ({entry['gpu']} fit)"
    return dict(cal["gemm_pooled"]["params"]), "calibrated roofline (pooled fit)"


def memory_bound_efficiency() -> float:
    return float(calibration()["memory_bound"]["bandwidth_efficiency"])


def power_fractions() -> tuple[float, float]:
    """(GEMM, memory-bound/idle) power as fractions of TDP for the no-predictor fallback."""
    power = system_defaults()["power"]
    return (float(power["gemm_fraction_of_tdp"]),
            float(calibration()["memory_bound"]["power_fraction_of_tdp"]))


@dataclass(frozen=True)
class GemmTiming:
    """Per-GEMM time (s) and power (W) for a list of problems, and which model produced it."""

    runtime_s: np.ndarray
    power_w: np.ndarray
    source: str


@lru_cache(maxsize=65536)
def _math(problem: GemmProblem) -> tuple[str, int, int]:
    return problem.peak_key, problem.element_bytes, problem.output_bytes_per_element


# Calibrated times by (GPU key, problem): plans and layout searches re-time the same shapes.
_TIMES: dict[tuple[str, GemmProblem], float] = {}
_TIMES_LIMIT = 500_000


def _calibrated(gpu: GpuSpec, problems: Sequence[GemmProblem]) -> np.ndarray:
    out = np.empty(len(problems))
    todo: dict[tuple[str, int, int], list[int]] = {}
    for i, p in enumerate(problems):
        hit = _TIMES.get((gpu.key, p))
        if hit is None:
            todo.setdefault(_math(p), []).append(i)
        else:
            out[i] = hit
    if not todo:
        return out
    params, _ = gemm_params(gpu)
    sustained = sustained_clock_factor(gpu)
    if len(_TIMES) > _TIMES_LIMIT:
        _TIMES.clear()
    for (key, a_bytes, c_bytes), idx in todo.items():
        rows = np.array(idx)
        m = np.array([problems[i].m for i in idx], float)
        n = np.array([problems[i].n for i in idx], float)
        k = np.array([problems[i].k for i in idx], float)
        b = np.array([problems[i].batch for i in idx], float)
        try:
            r = roofline_arrays(m, n, k, b, a_bytes=a_bytes, c_bytes=c_bytes, gpu=gpu,
                                math_key=key)
        except GemmperfError as exc:
            raise PlanError(f"{gpu.name}: {exc}") from None
        # The calibration measured 16-bit bursts; sustained training runs the tensor cores at
        # the power-limited clock, and FP8 GEMMs reach a smaller share of their peak
        # (kernels.sustained_clock_factor, kernels.fp8_efficiency).
        scale = sustained * (fp8_efficiency(gpu) if key == "fp8" else 1.0)
        times = model_time(params, np.asarray(r.compute_time_s, float) / scale,
                           r.memory_time_s)
        out[rows] = times
        for i, t in zip(idx, times, strict=True):
            _TIMES[(gpu.key, problems[i])] = float(t)
    return out


def _sustained_scale(gpu: GpuSpec, problems: Sequence[GemmProblem]) -> np.ndarray:
    """Per-problem slowdown of a burst-measured time at the sustained clock.

    The compute share of the strict roofline, tc / (tc + tm), runs 1/factor slower; the
    memory share does not.
    """
    factor = sustained_clock_factor(gpu)
    if factor == 1.0:
        return np.ones(len(problems))
    tc = np.array([p.flops / gpu.peak(p.peak_key) for p in problems], float)
    tm = np.array([p.batch * (p.element_bytes * (p.m * p.k + p.k * p.n)
                              + p.output_bytes_per_element * p.m * p.n) for p in problems],
                  float) / gpu.mem_bandwidth_bytes_s
    share = tc / (tc + tm)
    return share / factor + (1.0 - share)


@lru_cache(maxsize=1)
def _predictor() -> Any:
    """The shipped predictor bundle, loaded once; None when there is none."""
    try:
        from gemmperf.predict import load_model  # lands with the predictor; optional here
    except ImportError:
        return None
    try:
        return load_model()
    except (GemmperfError, OSError, ValueError):
        return None


# Library-GEMM importers (gemmperf.importers.tables) -> the kernel family their rows carry.
LIBRARY_FAMILY_BY_SOURCE = {"vidur": "cublas", "xla_matmul": "xla_library"}

# Predicted (runtime s, power W) by (GPU key, problem); the bundle's coverage per GPU key.
_PREDICTED: dict[tuple[str, GemmProblem], tuple[float, float]] = {}
_COVERAGE: dict[str, tuple[str | None, bool]] = {}


def predictor_coverage(model: Any, gpu: GpuSpec) -> tuple[str | None, bool]:
    """(library family to predict with, or None; whether power is covered) for ``gpu``.

    Runtime is trusted where the bundle trained on library-GEMM runtimes of a GPU with the same
    chip (or key); power only where it trained on library-GEMM power measured on this very GPU
    (an FMA micro-benchmark's power, say, is not a GEMM's: it had put the A100 PCIe 40GB's
    training runs at 0.64 x TDP against 0.95 on every other A100).
    """
    if gpu.key in _COVERAGE:
        return _COVERAGE[gpu.key]
    from gemmperf.hardware.specs import find_gpu

    best: tuple[int, str | None] = (0, None)
    power = False
    for row in getattr(model, "training_data_", None) or []:
        spec = find_gpu(str(row.get("gpu", "")))
        if spec is None:
            continue
        same_chip = spec.key == gpu.key or (bool(gpu.chip) and spec.chip == gpu.chip)
        family = LIBRARY_FAMILY_BY_SOURCE.get(str(row.get("source")))
        runtime_rows = int(row.get("runtime", 0) or 0)
        if same_chip and family and runtime_rows > best[0]:
            best = (runtime_rows, family)
        power |= spec.key == gpu.key and family is not None \
            and int(row.get("power", 0) or 0) > 0
    _COVERAGE[gpu.key] = (best[1], power)
    return _COVERAGE[gpu.key]


def _frame(gpu: GpuSpec, problems: Sequence[GemmProblem], family: str) -> Any:
    import pandas as pd

    return pd.DataFrame({
        "gpu": gpu.key, "family": family, "source": "gemmperf-planner",
        "m": [p.m for p in problems], "n": [p.n for p in problems], "k": [p.k for p in problems],
        "batch": [p.batch for p in problems], "dtype": [p.dtype for p in problems],
        "acc_dtype": [p.acc_dtype for p in problems], "layout": [p.layout for p in problems],
    })


def _predict_missing(model: Any, gpu: GpuSpec, problems: Sequence[GemmProblem], family: str,
                     power_covered: bool) -> bool:
    """Predict the problems not cached yet; False if the bundle cannot predict them."""
    missing = list(dict.fromkeys(p for p in problems if (gpu.key, p) not in _PREDICTED))
    if not missing:
        return True
    try:
        pred = model.predict(_frame(gpu, missing, family))
        runtime = np.asarray(pred["runtime_s"], float)
        power = np.asarray(pred["power_w"], float) if power_covered and "power_w" in pred \
            else np.full(len(missing), np.nan)
    except (GemmperfError, KeyError, ValueError, TypeError):
        _COVERAGE[gpu.key] = (None, False)
        return False
    if not np.all(np.isfinite(runtime) & (runtime > 0)):
        _COVERAGE[gpu.key] = (None, False)
        return False
    fallback_w = power_fractions()[0] * gpu.tdp_w
    power = np.where(np.isfinite(power) & (power > 0), power, fallback_w)
    for p, t, w in zip(missing, runtime, power, strict=True):
        _PREDICTED[(gpu.key, p)] = (float(t), float(w))
    return True


def _predictor_timing(gpu: GpuSpec, problems: Sequence[GemmProblem]) -> GemmTiming | None:
    """The trained predictor's runtime (and power where covered), or None for an uncovered GPU."""
    model = _predictor()
    if model is None:
        return None
    family, power_covered = predictor_coverage(model, gpu)
    if family is None or not _predict_missing(model, gpu, problems, family, power_covered):
        return None
    values = np.array([_PREDICTED[(gpu.key, p)] for p in problems], float).reshape(-1, 2)
    label = f"predictor ({family}{'' if power_covered else '; power: TDP fallback'})"
    return GemmTiming(values[:, 0] * _sustained_scale(gpu, problems), values[:, 1], label)


def time_gemms(gpu: GpuSpec, gemms: Sequence[TrainingGemm], *, use_predictor: bool = True
               ) -> GemmTiming:
    """Time and power of each GEMM entry (one kernel launch of its problem), sustained clock."""
    problems = [g.problem for g in gemms]
    if use_predictor:
        predicted = _predictor_timing(gpu, problems)
        if predicted is not None:
            return predicted
    runtime = _calibrated(gpu, problems)
    gemm_fraction, _ = power_fractions()
    return GemmTiming(runtime, np.full(len(problems), gemm_fraction * gpu.tdp_w),
                      gemm_params(gpu)[1])
