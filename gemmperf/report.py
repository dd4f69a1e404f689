"""Plots and summaries. Matplotlib draws on an Agg canvas (no display, no pyplot global state).

So far: :func:`roofline_chart`, the log-log roofline of one GPU with GEMMs marked on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gemmperf.errors import InvalidConfigError
from gemmperf.hardware.specs import GpuSpec
from gemmperf.roofline import RooflineEstimate

#: Extra roofs drawn for reference next to the problem's own math path, when the GPU has them.
REFERENCE_KEYS = ("fp32", "tf32")
_KEY_LABELS = {"fp64": "FP64", "fp32": "FP32 (SIMT)", "tf32": "TF32 tensor", "fp16": "FP16 tensor",
               "fp16_acc16": "FP16 tensor, FP16 acc", "bf16": "BF16 tensor", "fp8": "FP8 tensor",
               "int8": "INT8 tensor"}
_TERA = 1e12


#: File types the Agg canvas writes (matplotlib's savefig formats without a display).
FIGURE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".webp", ".eps", ".ps", ".tif",
                   ".tiff")


def check_figure_path(path: str | Path) -> Path:
    """``path`` as a Path if a figure can be written there (a known image suffix, an existing
    folder), else :class:`~gemmperf.errors.InvalidConfigError`: commands check ``--plot``
    before their work, so a typo costs no run."""
    path = Path(path)
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise InvalidConfigError(f"cannot write a figure to {path}: name a "
                                 f"{', '.join(FIGURE_SUFFIXES)} file")
    if not path.parent.is_dir():
        what = "is a file, not a folder" if path.parent.exists() else "does not exist"
        raise InvalidConfigError(f"cannot write a figure to {path}: {path.parent} {what}")
    return path


def save_figure(fig: Any, path: str | Path, **options: Any) -> Path:
    """Write ``fig`` to ``path`` (checked by :func:`check_figure_path`); an OS error (no
    permission, disk full) becomes a one-line :class:`~gemmperf.errors.InvalidConfigError`."""
    path = check_figure_path(path)
    try:
        fig.savefig(path, **options)
    except OSError as exc:
        raise InvalidConfigError(f"cannot write a figure to {path}: "
                                 f"{exc.strerror or exc}") from exc
    return path


def _new_figure(width: float = 7.5, height: float = 5.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def roofline_chart(
    gpu: GpuSpec,
    estimate: RooflineEstimate,
    path: str | Path,
    *,
    math_key: str,
    labels: Sequence[str] | None = None,
    measured_flops_s: Any = None,
    title: str | None = None,
) -> Path:
    """Save a log-log roofline chart of ``gpu`` to ``path`` (PNG) and return the path.

    Draws the roof of ``math_key`` (peak FLOP/s and the DRAM-bandwidth slope) plus the FP32 and
    TF32 roofs for reference, and marks each row of ``estimate`` twice: its roofline bound at the
    compulsory-traffic intensity (filled) and its tile-aware estimate at the tile-model intensity
    (hollow), joined by a line. ``labels`` name the rows; ``measured_flops_s`` (optional, one per
    row) adds measured throughput at the compulsory intensity.
    """
    bandwidth = gpu.mem_bandwidth_bytes_s
    keys = [math_key] + [k for k in REFERENCE_KEYS if k in gpu.peak_flops and k != math_key]
    peaks = {k: gpu.peak(k) for k in keys}

    ai = np.atleast_1d(np.asarray(estimate.arithmetic_intensity, dtype=float))
    bound = np.atleast_1d(np.asarray(estimate.attainable_flops_s, dtype=float))
    tile_ai = np.atleast_1d(np.asarray(estimate.tile_intensity, dtype=float))
    est = np.atleast_1d(np.asarray(estimate.estimated_flops_s, dtype=float))
    ridges = [p / bandwidth for p in peaks.values()]
    lo = 10 ** np.floor(np.log10(min(0.5, *ai, *tile_ai, *(r / 20 for r in ridges))))
    hi = 10 ** np.ceil(np.log10(max(*(ai * 30), *tile_ai, *(r * 10 for r in ridges))))
    x = np.geomspace(lo, hi, 400)

    fig = _new_figure()
    ax = fig.add_subplot()
    for i, (key, peak) in enumerate(peaks.items()):
        main = i == 0
        ax.plot(x, np.minimum(peak, bandwidth * x) / _TERA, lw=2.4 if main else 1.2,
                ls="-" if main else "--", color=f"C{i}",
                label=f"{_KEY_LABELS.get(key, key)}: {peak / _TERA:,.1f} TFLOP/s")
        ax.annotate(f"ridge {peak / bandwidth:,.0f} FLOP/B", (peak / bandwidth, peak / _TERA),
                    textcoords="offset points", xytext=(6, -11), fontsize=7, color=f"C{i}")
    ax.plot([], [], " ", label=f"DRAM {bandwidth / 1e12:.2f} TB/s")

    for j in range(ai.size):
        ax.plot([ai[j], tile_ai[j]], [bound[j] / _TERA, est[j] / _TERA], color="C3", lw=0.8)
    # Hollow and larger underneath, so a bound and an estimate that coincide show as a ringed dot.
    ax.scatter(tile_ai, est / _TERA, facecolors="white", edgecolors="C3", zorder=3, s=80,
               label="tile-aware estimate (tile-model bytes)")
    ax.scatter(ai, bound / _TERA, color="C3", zorder=4, s=24,
               label="roofline bound (compulsory bytes)")
    if measured_flops_s is not None:
        measured = np.atleast_1d(np.asarray(measured_flops_s, dtype=float))
        ax.scatter(ai, measured / _TERA, marker="x", color="k", zorder=4, s=40, label="measured")
    for j, text in enumerate(labels or []):
        # Up and to the left: above the roof there is never anything else to collide with.
        ax.annotate(text, (ai[j], bound[j] / _TERA), textcoords="offset points", xytext=(-8, 10),
                    ha="right", fontsize=8, color="C3",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    top = max(peaks.values()) / _TERA
    floor = min(bandwidth * lo, *(est[np.isfinite(est)] / 2)) / _TERA if np.isfinite(est).any() \
        else bandwidth * lo / _TERA
    ax.set_ylim(floor, top * 2)
    ax.set_xlabel("arithmetic intensity (FLOP per DRAM byte)")
    ax.set_ylabel("throughput (TFLOP/s)")
    ax.set_title(title or f"Roofline: {gpu.name}", fontsize=11)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)
