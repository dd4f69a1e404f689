"""Records -> feature matrix for the predictor: roofline terms, tiles, occupancy, hardware ratios.

Every feature is either dimensionless or normalised by the GPU it runs on, so that one model can
carry what it learned on one GPU to another: times are in units of the roofline bound, traffic in
units of the compulsory bytes, shared memory in units of the SM's capacity. The targets are
normalised the same way (:attr:`FeatureSet.log_base`): the predictor learns

    log(runtime / runtime_base),  log(power / power_base),  log(energy / (power_base runtime_base))

and adds the base back. ``power_base`` is the TDP scaled by a first-order clock trend
(:data:`POWER_CLOCK_EXPONENT`); ``runtime_base`` is the roofline lower bound
``max(flops / rate, compulsory_bytes / bandwidth)`` (:mod:`gemmperf.roofline`) with two physical
corrections:

* *Clock.* Where a row records the SM clock, the compute rate scales by clock / boost clock.
  Where it records none and the spec gives the boost clock as a range (a laptop part, whose
  clock the laptop maker's power limit sets: NVIDIA quotes 1,283-1,703 MHz for the RTX 3060
  Laptop), the base takes the range's geometric middle, and the range, as a uniform
  distribution of log clock, is a per-row uncertainty (:attr:`FeatureSet.log_clock_sd`).
* *Shared FP32/INT32 datapath.* On GA10x/AD10x (and Maxwell, Pascal, GB20x) some FP32 lanes also
  execute the integer instructions of the main loop, so a SIMT GEMM cannot reach the quoted FP32
  peak. With F FP32 and I = rho F INT32 instructions per SM, D dedicated and S shared lanes,
  ``F + I <= (D + S) T`` and ``I <= S T`` give the attainable FP32 rate
  ``min((D + S) / (1 + rho), S / rho)`` lanes per clock (``data/simt_datapaths.json``).
  ``rho`` (:data:`INT32_PER_FP32_SIMT`) is an assumption, not a spec number.
* *FP8.* FP8 GEMMs reach a smaller share of their (doubled) peak than BF16 ones; where that was
  measured on a GPU (the best achievable matmul rate, MAMF: H100 SXM FP8 70.9 % of peak against
  BF16 80.3 %; ``data/training_kernels.json`` ``fp8_gemm``, as the training planner uses it),
  the fp8 rate is the quoted peak times that ratio (feature version 3). No fp8 row of the data
  is trusted (:mod:`gemmperf.importers.tables`), so nothing else tells the model this.

Rows without a GEMM shape (power tables of other kernels) get a 1 ms base unless their params
carry a ``flops`` count. Family tunables (CLBlast Xgemm's VWM, SA, ...) are features where a row
has them; a missing value is :data:`MISSING` (below every real value, so trees route it alike).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gemmperf._paths import data_dir
from gemmperf.errors import DataFormatError, InvalidProblemError, UnknownGpuError
from gemmperf.feature_inputs import (
    MATH_KEYS,
    XGEMM_PARAMS,
    Columns,
    dtype_info,
    factorize,
    family_params,
    math_keys_of,
    numeric_column,
    text_column,
    xgemm_footprint,
)
from gemmperf.hardware.occupancy import cc_limits, occupancy_arrays
from gemmperf.hardware.specs import GpuSpec, find_gpu, get_gpu
from gemmperf.roofline import roofline_arrays

#: Bump when a feature's meaning changes: a model bundle records the version it was trained with.
FEATURE_VERSION = 3   # 2: a boost-clock range's geometric middle where no clock is recorded
#                       3: the fp8 rate scaled by its measured efficiency relative to bf16
#: Stand-in for "not applicable / unknown" (trees send it to one side consistently).
MISSING = -1.0e6
#: INT32 instructions per FP32 instruction in a SIMT GEMM main loop (address arithmetic, loop
#: control). Assumed; it sets how far a shared FP32/INT32 datapath falls short of the FP32 peak
#: (see the module doc). 0.25 puts a GA10x SM at 0.8 of its FP32 peak.
INT32_PER_FP32_SIMT = 0.25
#: Power base = TDP x (SM clock / boost clock) ** this. Board power has a static part (flat in
#: the clock) and a dynamic part (~ f V^2, at least linear); trees cannot extrapolate, so the base
#: carries a first-order clock trend and the trees learn the rest. 0.5 sits between the two
#: (chosen on the DVFS and clock-sweep tables, see models/MODEL_CARD.md).
POWER_CLOCK_EXPONENT = 0.5
#: Runtime base for rows with no flop count (non-GEMM kernels of the power tables).
DEFAULT_BASE_S = 1.0e-3
CATEGORICAL_FEATURES = ("family", "kernel_name")

#: Numeric features, in the order of the matrix columns.
NUMERIC_FEATURES: tuple[str, ...] = (
    # problem
    "log2_m", "log2_n", "log2_k", "log2_batch", "element_bytes", "math_code", "tensor_core",
    "log_flops", "log_intensity", "log_intensity_over_ridge",
    # roofline (seconds, log) and the tile/wave model
    "log_compute_s", "log_memory_s", "log_base_s", "compute_over_memory",
    "tile_traffic_ratio", "log2_tiles", "waves", "tail_efficiency", "estimate_over_base",
    # kernel configuration
    "tile_m", "tile_n", "tile_k", "threads_per_block", "stages", "split_k",
    "regs_per_thread", "smem_fraction", "blocks_per_sm", "occupancy", "work_per_thread",
    "tile_reuse", "reg_spill",
    # CLBlast Xgemm family
    *XGEMM_PARAMS, "MWI", "NWI", "fragment_loads_per_fma",
    # problem x hardware, and the clock state
    "log_footprint_over_l2", "clock_ratio", "mem_clock_mhz",
)
# No GPU-identity features (SM count, compute capability, per-SM capacities...): with a handful
# of GPUs in the data they let trees memorise each GPU's level, which then lands arbitrarily on
# a GPU never seen (measured: leave-one-GPU-out error on the Kernel Tuner spaces got worse). The
# hardware enters through the bases and through the problem x hardware terms above.

TARGETS = ("runtime", "power", "energy")
TARGET_COLUMNS = {"runtime": "runtime_s", "power": "power_w", "energy": "energy_j"}


@dataclass(frozen=True)
class FeatureSet:
    """The feature matrix of a records frame and the log bases the targets are relative to."""

    values: np.ndarray                 # (rows, NUMERIC_FEATURES) float64, MISSING if not applicable
    categorical: Mapping[str, np.ndarray]  # CATEGORICAL_FEATURES -> text ("" where absent)
    log_base: Mapping[str, np.ndarray]  # target -> log of its base (runtime s, power W, energy J)
    gpu: np.ndarray                    # canonical GPU key per row
    #: Per row, the standard deviation (log units) of the runtime base's clock where the row
    #: records none and the spec gives only a range (laptop parts); 0 elsewhere.
    log_clock_sd: np.ndarray | None = None
    #: Per row, whether it records an SM or a memory clock (``sm_clock_mhz``, ``mem_clock_mhz``).
    clock_recorded: np.ndarray | None = None
    #: Per row, the board's default power limit in W (the spec's TDP; NaN where unknown).
    power_limit_w: np.ndarray | None = None

    @property
    def numeric(self) -> pd.DataFrame:
        """:attr:`values` as a DataFrame with the NUMERIC_FEATURES as column names."""
        return pd.DataFrame(self.values, columns=list(NUMERIC_FEATURES), copy=False)

    def math_keys(self) -> np.ndarray:
        """Per row, its math path (a MATH_KEYS entry; None for a row that is not a GEMM), as an
        object array, from the ``math_code`` feature (cheap: a single prediction asks)."""
        return math_keys_of(self.values[:, NUMERIC_FEATURES.index("math_code")])

    def factorized(self, column: str) -> tuple[np.ndarray, list[str]]:
        """(code per row, distinct values) of ``"gpu"`` or a categorical column; computed once
        (a prediction asks per target and per expert)."""
        cache = self.__dict__.setdefault("_factorized", {})
        if column not in cache:
            values = self.gpu if column == "gpu" else self.categorical[column]
            cache[column] = factorize(values)
        return cache[column]

    def isin(self, column: str, allowed: Iterable[str]) -> np.ndarray:
        """Row mask: the row's ``column`` value (see :meth:`factorized`) is in ``allowed``."""
        codes, values = self.factorized(column)
        wanted = set(allowed)
        return np.array([v in wanted for v in values] + [False], dtype=bool)[codes]


@functools.lru_cache(maxsize=1)
def _datapaths() -> dict[str, tuple[int, int]]:
    path = data_dir() / "simt_datapaths.json"
    try:
        doc = json.loads(path.read_text())
        return {e["compute_capability"]: (int(e["fp32_lanes_per_sm"]),
                                          int(e["shared_int32_lanes_per_sm"]))
                for e in doc["compute_capabilities"]}
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise DataFormatError(f"{path}: cannot read the SIMT datapath table ({exc})") from exc


def simt_efficiency(gpu: GpuSpec, rho: float = INT32_PER_FP32_SIMT) -> float:
    """Attainable fraction of the FP32 peak for a SIMT GEMM main loop (module doc)."""
    cc = f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}"
    lanes, shared = _datapaths().get(cc, (0, 0))
    if shared == 0 or lanes == 0 or rho <= 0:
        return 1.0
    return float(min(1.0 / (1.0 + rho), shared / (rho * lanes)))


def resolve_gpus(frame: pd.DataFrame | Columns,
                 lookup: Callable[[str], GpuSpec] = get_gpu) -> np.ndarray:
    """Canonical GPU key per row: the ``gpu`` column, else the ``device_name`` looked up."""
    cols = frame if isinstance(frame, Columns) else Columns(frame)
    keys = np.full(len(cols), None, dtype=object)
    if "gpu" in cols:
        # Canonicalise keys and aliases ("a100" -> "a100-sxm4-80gb") once per distinct value.
        codes, given = cols.factorize("gpu")
        canonical = [lookup(g).key if isinstance(g, str) and g else None for g in given]
        keys = np.array([*canonical, None], dtype=object)[codes]   # code -1 (missing): None
    if "device_name" in cols:
        todo = pd.isna(keys)
        if todo.any():
            names = cols.objects("device_name")
            for name in pd.unique(names[todo]):
                spec = find_gpu(name) if isinstance(name, str) and name else None
                if spec is not None:
                    keys[todo & (names == name)] = spec.key
    if pd.isna(keys).any():
        raise UnknownGpuError(
            f"{int(pd.isna(keys).sum())} row(s) name no known GPU (columns gpu / device_name); "
            "import with --gpu KEY or add the GPU to data/gpus.json"
        )
    return keys


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), np.nan)


def _occupancy(gpu_codes: np.ndarray, gpu_specs: list[GpuSpec], threads: np.ndarray,
               regs: np.ndarray, smem: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resident blocks per SM and occupancy where the launch footprint is known (else NaN)."""
    blocks = np.full(len(gpu_codes), np.nan)
    occ = np.full(len(gpu_codes), np.nan)
    known = np.isfinite(threads) & np.isfinite(regs) & (threads > 0)
    for code in np.unique(gpu_codes[known]):
        rows = known & (gpu_codes == code)
        res = occupancy_arrays(gpu_specs[int(code)], threads[rows].astype(np.int64),
                               np.round(regs[rows]).astype(np.int64),
                               np.nan_to_num(smem[rows], nan=0.0).astype(np.int64))
        blocks[rows] = res.blocks_per_sm
        occ[rows] = res.occupancy
    return blocks, occ


def _roofline(gpu_codes: np.ndarray, gpu_specs: list[GpuSpec], combo: np.ndarray,
              code: np.ndarray, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Roofline quantities per row (:func:`gemmperf.roofline.roofline_arrays`, one vectorised
    call per GPU and data-type combination); NaN for rows without a GEMM shape."""
    n = len(gpu_codes)
    names = ("flops", "compulsory_bytes", "tile_bytes", "memory_time_s", "estimate_s", "tiles",
             "waves", "tail_efficiency", "peak")
    out = {name: np.full(n, np.nan) for name in names}
    gemm = (combo >= 0) & np.isfinite(arrays["m"]) & np.isfinite(arrays["n"]) \
        & np.isfinite(arrays["k"])
    if not gemm.any():
        return out
    group = gpu_codes * (int(combo.max()) + 1) + combo
    for g in np.unique(group[gemm]):
        rows = np.flatnonzero(gemm & (group == g))
        spec, key = gpu_specs[int(gpu_codes[rows[0]])], MATH_KEYS[int(code[rows[0]])]
        est = roofline_arrays(
            arrays["m"][rows], arrays["n"][rows], arrays["k"][rows], arrays["batch"][rows],
            a_bytes=arrays["elem"][rows], c_bytes=arrays["out_bytes"][rows], gpu=spec,
            math_key=key, tile_m=arrays["tile_m"][rows], tile_n=arrays["tile_n"][rows],
            tile_k=arrays["tile_k"][rows], blocks_per_sm=arrays["blocks"][rows],
            split_k=arrays["split_k"][rows])
        with np.errstate(divide="ignore", invalid="ignore"):
            for name in names[:-1]:
                out[name][rows] = getattr(est, name)
        out["peak"][rows] = spec.peak(key)
    return out


def build_features(frame: pd.DataFrame | Columns,
                   lookup: Callable[[str], GpuSpec] = get_gpu) -> FeatureSet:
    """The feature matrix and target bases of a records-style frame (see the module doc).

    Needs, per row, a GPU (``gpu`` key or alias, or a ``device_name`` the spec database knows).
    GEMM rows have ``m, n, k, dtype``; config columns and family params are optional.
    """
    cols = Columns(frame)
    n = len(cols)
    keys = resolve_gpus(cols, lookup)
    gpu_codes, gpu_keys = factorize(keys)
    gpu_specs = [lookup(key) for key in gpu_keys]
    g = {name: np.array([_gpu_value(spec, name) for spec in gpu_specs], dtype=float)[gpu_codes]
         for name in _GPU_VALUES}
    f: dict[str, np.ndarray] = {}
    m, nn, k = (numeric_column(cols, c) for c in ("m", "n", "k"))
    for name, values in (("m", m), ("n", nn), ("k", k)):
        _check_parsed(cols, name, values)
    _check_whole_shapes(m, nn, k)
    batch = np.nan_to_num(numeric_column(cols, "batch"), nan=1.0)
    elem, code, tensor, out_bytes, combo = dtype_info(cols)
    untyped = np.flatnonzero(np.isfinite(m) & (combo < 0))
    if untyped.size:
        raise InvalidProblemError(f"{untyped.size} GEMM row(s) have no dtype (first: row "
                                  f"{int(untyped[0])}); give the operand type, e.g. f16")
    p = family_params(cols, XGEMM_PARAMS)
    tile = [numeric_column(cols, c) for c in ("tile_m", "tile_n", "tile_k")]
    for i, name in enumerate(("MWG", "NWG", "KWG")):  # Xgemm tiles fill missing common columns
        tile[i] = np.where(np.isnan(tile[i]), p[name], tile[i])
    threads = numeric_column(cols, "threads_per_block")
    threads = np.where(np.isnan(threads), p["MDIMC"] * p["NDIMC"], threads)
    xg = xgemm_footprint(p, elem, threads, g["regs_block"])
    regs = numeric_column(cols, "regs_per_thread")
    regs = np.where(np.isnan(regs), xg["regs"], regs)
    smem = numeric_column(cols, "smem_bytes_per_block")
    smem = np.where(np.isnan(smem), xg["smem"], smem)
    blocks, occ = _occupancy(gpu_codes, gpu_specs, threads, regs, smem)
    split_k = numeric_column(cols, "split_k")
    roof = _roofline(gpu_codes, gpu_specs, combo, code, {
        "m": m, "n": nn, "k": k, "batch": batch, "elem": elem, "out_bytes": out_bytes,
        "tile_m": tile[0], "tile_n": tile[1], "tile_k": tile[2], "blocks": blocks,
        "split_k": split_k})
    gemm = np.isfinite(roof["flops"])

    clock = numeric_column(cols, "sm_clock_mhz")
    recorded = np.isfinite(clock) & (clock > 0)
    clock_low = np.fmin(g["boost_low"], g["boost"])
    clock_ratio = np.where(recorded, clock / g["boost"], np.sqrt(clock_low / g["boost"]))
    # sd of log clock uniform on [log low, log boost]: (log boost - log low) / sqrt(12)
    log_clock_sd = np.where(recorded, 0.0, np.log(g["boost"] / clock_low) / np.sqrt(12.0))
    simt = np.isfinite(code) & (tensor == 0) & (code == MATH_KEYS.index("fp32"))
    # A bare flop count (no GEMM shape) is taken to run on the SIMT FP32 path.
    rate_scale = clock_ratio * np.where(simt | ~gemm, g["eff"], 1.0) \
        * np.where(code == MATH_KEYS.index("fp8"), g["fp8_eff"], 1.0)
    flops = np.where(gemm, roof["flops"], p["_flops"])
    peak = np.where(gemm, roof["peak"], g["fp32"])
    with np.errstate(divide="ignore", invalid="ignore"):
        compute_s = flops / (peak * rate_scale)
    memory_s = roof["memory_time_s"]
    base_s = np.fmax(compute_s, memory_s)
    base_s = np.where(np.isfinite(base_s) & (base_s > 0), base_s, DEFAULT_BASE_S)

    with np.errstate(divide="ignore", invalid="ignore"):
        f["log2_m"], f["log2_n"], f["log2_k"] = np.log2(m), np.log2(nn), np.log2(k)
        f["log2_batch"] = np.log2(batch)
        f["element_bytes"], f["math_code"], f["tensor_core"] = elem, code, tensor
        f["log_flops"] = _log(flops)
        intensity = flops / roof["compulsory_bytes"]
        f["log_intensity"] = _log(intensity)
        ridge = peak * rate_scale / g["bw"]
        f["log_intensity_over_ridge"] = _log(intensity / ridge)
        f["log_compute_s"], f["log_memory_s"] = _log(compute_s), _log(memory_s)
        f["log_base_s"] = np.log(base_s)
        f["compute_over_memory"] = _log(compute_s / memory_s)
        f["tile_traffic_ratio"] = roof["tile_bytes"] / roof["compulsory_bytes"]
        f["log2_tiles"] = np.log2(roof["tiles"])
        f["waves"] = roof["waves"]
        f["tail_efficiency"] = roof["tail_efficiency"]
        f["estimate_over_base"] = roof["estimate_s"] / base_s
        f["tile_m"], f["tile_n"], f["tile_k"] = tile
        f["threads_per_block"] = threads
        f["stages"] = numeric_column(cols, "stages")
        f["split_k"] = split_k
        f["regs_per_thread"] = regs
        f["smem_fraction"] = smem / g["smem_sm"]
        f["blocks_per_sm"], f["occupancy"] = blocks, occ
        f["work_per_thread"] = tile[0] * tile[1] / threads
        f["tile_reuse"] = tile[0] * tile[1] / (tile[0] + tile[1])
        f["reg_spill"] = xg["spill"]
        for name in XGEMM_PARAMS:
            f[name] = p[name]
        for name in ("MWI", "NWI", "fragment_loads_per_fma"):
            f[name] = xg[name]
        operands = (m * k + k * nn) * batch * elem
        f["log_footprint_over_l2"] = _log(operands / g["l2"])
        f["clock_ratio"] = clock_ratio
        f["mem_clock_mhz"] = mem_clock = numeric_column(cols, "mem_clock_mhz")

    columns = np.empty((len(NUMERIC_FEATURES), n), dtype=np.float64)   # row j: feature j
    for j, name in enumerate(NUMERIC_FEATURES):
        columns[j] = f[name]
    columns[~np.isfinite(columns)] = MISSING
    values = columns.T   # (rows, features), column-major: each feature contiguous
    categorical = {c: text_column(cols, c) for c in CATEGORICAL_FEATURES}
    power_base = g["tdp"] * clock_ratio ** POWER_CLOCK_EXPONENT
    log_base = {
        "runtime": np.log(base_s),
        "power": np.log(power_base),
        "energy": np.log(power_base * base_s),
    }
    return FeatureSet(values=values, categorical=categorical, log_base=log_base,
                      gpu=np.asarray(gpu_keys, dtype=object)[gpu_codes],
                      log_clock_sd=log_clock_sd,
                      clock_recorded=recorded | (np.isfinite(mem_clock) & (mem_clock > 0)),
                      power_limit_w=np.asarray(g["tdp"], dtype=float))


def _check_parsed(cols: Columns, name: str, values: np.ndarray) -> None:
    """A value given in column ``name`` that is not a number (read as NaN) is a mistake."""
    missing = np.flatnonzero(np.isnan(values))
    if name not in cols or not missing.size:
        return
    raw = cols.objects(name)[missing]
    given = np.array([v is not None and not (isinstance(v, float) and v != v)
                      and v is not pd.NA for v in raw], dtype=bool)
    if given.any():
        i = int(missing[np.argmax(given)])
        raise InvalidProblemError(f"{name} of row {i} is {raw[np.argmax(given)]!r}, not a "
                                  "number")


def _check_whole_shapes(m: np.ndarray, n: np.ndarray, k: np.ndarray) -> None:
    """A row gives all of m, n and k (a GEMM) or none (another kernel, e.g. a power table's);
    one missing or not a number is a mistake the 1 ms base of shapeless rows would hide."""
    given = np.isfinite(m).astype(int) + np.isfinite(n) + np.isfinite(k)
    partial = np.flatnonzero((given > 0) & (given < 3))
    if partial.size:
        i = int(partial[0])
        raise InvalidProblemError(
            f"{partial.size} row(s) give only part of a GEMM shape (first: row {i}, m={m[i]:g} "
            f"n={n[i]:g} k={k[i]:g}); give all of m, n and k as numbers, or none of them")


_GPU_VALUES = ("boost", "boost_low", "bw", "fp32", "tdp", "smem_sm", "l2", "eff",
               "fp8_eff", "regs_block")


def _gpu_value(spec: GpuSpec, name: str) -> float:
    values = {
        "boost": spec.boost_clock_mhz, "bw": spec.mem_bandwidth_bytes_s,
        "fp32": spec.peak("fp32"), "tdp": spec.tdp_w, "smem_sm": spec.smem_per_sm_bytes,
        "l2": spec.l2_bytes,
    }
    if name == "boost_low":   # the bottom of a boost-clock range (data/gpus.json "extra")
        return float(spec.extra.get("boost_clock_min_mhz") or spec.boost_clock_mhz)
    if name == "eff":
        return simt_efficiency(spec)
    if name == "fp8_eff":
        from gemmperf.training.kernels import fp8_efficiency  # its data file; lazily

        return fp8_efficiency(spec)
    if name == "regs_block":
        return float(cc_limits(spec).max_regs_per_block)
    return float(values[name])
