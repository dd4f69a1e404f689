"""Synthetic records with a known structure, for contract tests of the predictor (not accuracy)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

GPUS = ("rtx-3090", "rtx-2080-ti", "a100-sxm4-80gb")
#: A forest small enough for contract tests (not for accuracy).
SMALL = {"n_estimators": 8, "max_leaf_nodes": 64, "random_state": 0}


def xgemm_frame(n: int = 300, seed: int = 0, gpus: tuple[str, ...] = GPUS) -> pd.DataFrame:
    """CLBlast-Xgemm-like rows: runtime = a smooth function of the config, times a GPU factor.

    Half the rows also carry power and energy (the other half have none), so multi-target fits
    see partially labelled data.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        gpu = gpus[i % len(gpus)]
        mwg, nwg = rng.choice([16, 32, 64, 128], size=2)
        mdimc, ndimc = rng.choice([8, 16], size=2)
        vwm, vwn = rng.choice([1, 2, 4], size=2)
        sa, sb = rng.integers(0, 2, size=2)
        size = int(rng.choice([512, 1024, 2048]))
        params = {"MWG": int(mwg), "NWG": int(nwg), "KWG": 32, "MDIMC": int(mdimc),
                  "NDIMC": int(ndimc), "MDIMA": int(mdimc), "NDIMB": int(ndimc), "KWI": 2,
                  "VWM": int(vwm), "VWN": int(vwn), "SA": int(sa), "SB": int(sb)}
        flops = 2.0 * size**3
        speed = {"rtx-3090": 20e12, "rtx-2080-ti": 11e12, "a100-sxm4-80gb": 15e12}[gpu]
        quality = (1 + 0.5 * np.log2(mwg * nwg / 256) ** 2 / 9) * (1.2 - 0.1 * (sa + sb))
        runtime = flops / speed * quality * float(np.exp(rng.normal(0, 0.01)))
        row = {"source": "synthetic", "status": "ok", "m": size, "n": size, "k": size,
               "dtype": "f32", "family": "clblast_xgemm", "kernel_name": "Xgemm", "gpu": gpu,
               "tile_m": int(mwg), "tile_n": int(nwg), "tile_k": 32,
               "threads_per_block": int(mdimc * ndimc), "params": json.dumps(params),
               "runtime_s": runtime}
        if i % 2 == 0:
            row["power_w"] = 150.0 + 50.0 * (sa + sb) + rng.normal(0, 1)
            row["energy_j"] = row["power_w"] * runtime
        rows.append(row)
    return pd.DataFrame(rows)
