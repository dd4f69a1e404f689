"""Kernel Tuner cache documents built in tests (the cache format's fields, synthetic values)."""

from __future__ import annotations

import json
from pathlib import Path

TUNABLES = ["MWG", "NWG", "KWG", "MDIMC", "NDIMC", "PRECISION"]


def cache_entry(mwg: int, time, times=None, gflops=None) -> dict:
    entry = dict(MWG=mwg, NWG=64, KWG=32, MDIMC=8, NDIMC=16, PRECISION=32, time=time)
    if times is not None:
        entry["times"] = times
    if gflops is not None:
        entry["GFLOP/s"] = gflops
    return entry


def cache_doc(entries: list[dict], problem_size=(256, 512)) -> dict:
    return {
        "device_name": "NVIDIA GeForce RTX 3090", "kernel_name": "Xgemm",
        "problem_size": list(problem_size), "tune_params_keys": TUNABLES,
        "tune_params": {k: sorted({e[k] for e in entries}) for k in TUNABLES},
        "cache": {",".join(str(e[k]) for k in TUNABLES): e for e in entries},
    }


def xgemm_gflops(time_ms: float, m=256, n=512, k=128) -> float:
    return (2 * m * n * k + 2 * m * k) / (time_ms * 1e-3) / 1e9  # the Xgemm cache's convention


def write_json(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc, indent=1))
    return path
