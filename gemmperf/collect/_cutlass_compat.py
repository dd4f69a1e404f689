"""Version quirks of nvidia-cutlass 4.2's Python interface (``cutlass_cppgen``), in one place.

Everything here works around behaviour of the installed library; the backend
(:mod:`gemmperf.collect.cutlass_backend`) only calls these functions. Verified with
nvidia-cutlass 4.2.0.0 + cuda-python 12.9.10 (cuda-bindings 12.9.10) + nvcc 13.0 on a GPU-less
machine. Each quirk, and what we do about it:

1. **cuda-python must be 12.x.** ``cutlass_cppgen`` imports the legacy modules ``cuda.cuda`` and
   ``cuda.cudart`` and reads ``cuda.__version__``; cuda-python 13 removed all three, so it cannot
   work at all (hence ``cuda-python>=12.3,<13`` in the ``gpu`` extra). :func:`load` checks this
   and says so in one line.
2. **CUDA-version check.** ``initialize_cuda_context`` (first compile) calls
   ``check_cuda_versions``, which demands cuda-python's version >= nvcc's. With a CUDA 13 toolkit no
   usable cuda-python passes (quirk 1), although 12.x bindings drive a CUDA 13 driver fine (the
   driver API is backward compatible). We keep the check but let cuda-python 12.x with nvcc >= 13
   through with a warning (:func:`_relaxed_check_cuda_versions`). NOT verified on a GPU.
3. **Plan construction queries the device even when ``cc=`` is given**:
   ``OperationBase.__init__`` calls ``get_option_registry()``, which builds
   ``OptionRegistry(device_cc())`` for *every* generator architecture (50..100, GEMM and conv;
   about 20 s). We install a GEMM-only registry for exactly the (device cc, kernel cc) pair
   instead (:func:`use_registry`, about 1.5 s, cached), so no device is needed to enumerate tiles.
   The generator also reads ``cutlass_cppgen._nvcc_version``, which is only set by the version
   check of quirk 2; :func:`load` sets it from ``nvcc --version`` (or :data:`ASSUMED_TOOLKIT`).
4. **Files in the working directory.** Importing ``cutlass_cppgen`` creates ``compiled_cache.db``
   (CUTLASS's compiled-kernel cache, an sqlite file of cubins and host .so files keyed by the
   emitted source) in the current directory, and compiling sets ``tempfile.tempdir = "./"`` and
   writes temporary sources and ``cutlass_python_compilation_*_error.txt`` logs there. We import
   and compile inside the cache directory (:func:`in_cache_dir`; default
   ``$GEMMPERF_CUTLASS_CACHE`` or ``~/.cache/gemmperf/cutlass``) and point the cache at an
   absolute path there, restoring the working directory and ``tempfile.tempdir`` afterwards.
5. **nvcc behind a wrapper.** The CUDA install path is derived from ``which nvcc``; a wrapper at
   ``/usr/local/bin/nvcc`` makes it ``/usr/local`` (harmless: nvcc adds its own include path).
   Set ``CUDA_INSTALL_PATH`` to override. The host-side .so links ``-lcuda``, which needs the
   driver's ``libcuda.so`` (or the toolkit's ``lib64/stubs``) on the link path.
6. **Per-launch overhead.** Every ``ExecutableOperation.run`` calls ``supports_cluster_launch()``,
   which re-imports and re-parses ``cuda.__version__`` (a deprecation warning on 12.9) before
   consulting its cache; we memoise it, so a launch is argument packing plus ``cuLaunchKernel``.

Two more quirks are handled where the configs are built (:mod:`gemmperf.collect.cutlass_tiles`,
``CutlassBackend._compile``): the interface divides sm_90 tile shapes by the cluster shape
although the generator's are already per-CTA (so a "cooperative 128x128, cluster 2x1" kernel
would be emitted with a 64-row CTA tile and fail a static_assert; we pass ``tile * cluster``),
and its registry lists C alignment 1 for the sm_90 fp8 kernels, which TMA epilogues reject (we
pick the C alignment from the leading dimension and output type). Compiling this way was
checked with nvcc 13.0 for sm_89 (2.x f16, bf16, SIMT f32) and sm_90a (3.x f16 pingpong, tf32,
fp8 cooperative), device code and host library; running needs a GPU.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import tempfile
import threading
import warnings
from bisect import bisect_right
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gemmperf.errors import BackendUnavailableError

log = logging.getLogger(__name__)

#: CUDA toolkit version the kernel generator assumes when nvcc is not on PATH (enumeration only;
#: compiling needs nvcc anyway). Some generator branches depend on it (e.g. sm_90 needs >= 12.0).
ASSUMED_TOOLKIT = "12.8"

_LOCK = threading.RLock()
_STATE: dict[str, Any] = {}
_REGISTRIES: dict[tuple[int, int], Any] = {}


def default_cache_dir() -> Path:
    """``$GEMMPERF_CUTLASS_CACHE``, else ``$XDG_CACHE_HOME/gemmperf/cutlass`` (``~/.cache``)."""
    explicit = os.environ.get("GEMMPERF_CUTLASS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gemmperf" / "cutlass"


@contextlib.contextmanager
def in_cache_dir(cache_dir: Path) -> Iterator[None]:
    """Run with the working directory at ``cache_dir`` (quirk 4); restores cwd and tempdir."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _LOCK:
        old_cwd, old_tempdir = os.getcwd(), tempfile.tempdir
        os.chdir(cache_dir)
        try:
            yield
        finally:
            os.chdir(old_cwd)
            tempfile.tempdir = old_tempdir


def _cuda_python_version() -> str:
    try:
        import cuda  # the cuda-python namespace package
    except ImportError as exc:
        raise BackendUnavailableError(
            "the cutlass backend needs cuda-python 12.x: pip install 'cuda-python>=12.3,<13'"
        ) from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # 12.9 deprecates cuda.__version__
        version = getattr(cuda, "__version__", None)
    if version is None:  # quirk 1: cuda-python 13 dropped cuda.__version__, cuda.cuda, cuda.cudart
        raise BackendUnavailableError(
            "nvidia-cutlass 4.2 needs the cuda.cuda/cuda.cudart modules that cuda-python 13 "
            "removed: pip install 'cuda-python>=12.3,<13'"
        )
    return str(version)


def _major(version: str) -> int:
    return int(version.split("rc")[0].split(".")[0])


def load(cache_dir: Path) -> Any:
    """Import ``cutlass_cppgen`` once with every quirk handled; return the module.

    Raises :class:`BackendUnavailableError` (one line, with the fix) when the package or a
    usable cuda-python is missing.
    """
    with _LOCK:
        if "module" in _STATE:
            return _STATE["module"]
        cuda_version = _cuda_python_version()
        # cuda-python 12.9 deprecates what cutlass_cppgen uses (quirk 1), on every launch too.
        for message in (r"The cuda\.(cuda|cudart|nvrtc) module is deprecated",
                        r"accessing cuda\.__version__ is deprecated"):
            warnings.filterwarnings("ignore", message=message, category=FutureWarning)
        try:
            with in_cache_dir(cache_dir):
                cutlass = importlib.import_module("cutlass_cppgen")
                compiler = importlib.import_module("cutlass_cppgen.backend.compiler")
                importlib.import_module("cuda.cuda")
                importlib.import_module("cuda.cudart")
        except ImportError as exc:
            raise BackendUnavailableError(
                f"the cutlass backend needs nvidia-cutlass 4.2 ({exc.name or exc} is missing): "
                "pip install 'gemmperf[gpu]'"
            ) from exc
        # Quirk 4: an absolute cache path, whatever the working directory is later.
        compiler.CACHE_FILE = str(cache_dir / cutlass.CACHE_FILE)
        # Quirk 3: the kernel generator reads this; normally set by the device-time version check.
        try:
            cutlass._nvcc_version = cutlass.nvcc_version()
        except Exception:  # nvcc missing or failing: enumeration still works, compiling won't
            log.info("nvcc not usable; enumerating CUTLASS kernels for CUDA %s", ASSUMED_TOOLKIT)
            cutlass._nvcc_version = ASSUMED_TOOLKIT
        # Quirk 2.
        original_check = cutlass.check_cuda_versions
        cutlass.check_cuda_versions = _relaxed_check(cutlass, original_check, cuda_version)
        # Quirk 6: answer the per-launch cluster-launch question once.
        operation = importlib.import_module("cutlass_cppgen.backend.operation")
        operation.supports_cluster_launch = _memoized(operation.supports_cluster_launch)
        _STATE.update(module=cutlass, cuda_python=cuda_version, cache_dir=cache_dir)
        return cutlass


def _relaxed_check(cutlass: Any, original: Any, cuda_version: str) -> Any:
    def _relaxed_check_cuda_versions() -> None:
        try:
            original()
        except Exception as exc:
            nvcc = cutlass.nvcc_version()
            if not (_major(cuda_version) == 12 and _major(nvcc) >= 13):
                raise
            cutlass._nvcc_version = nvcc
            if not _STATE.get("warned"):
                _STATE["warned"] = True
                log.warning("CUTLASS version check relaxed (cuda-python %s, nvcc %s): %s",
                            cuda_version, nvcc, exc)

    return _relaxed_check_cuda_versions


def _memoized(function: Any) -> Any:
    result: list[Any] = []

    def memoized() -> Any:
        if not result:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                result.append(function())
        return result[0]

    return memoized


def versions() -> dict[str, str]:
    """Versions of the loaded stack (empty before :func:`load`), for records and reports."""
    if "module" not in _STATE:
        return {}
    cutlass = _STATE["module"]
    return {
        "cutlass_cppgen": str(getattr(cutlass, "__version__", "?")),
        "cuda_python": _STATE["cuda_python"],
        "nvcc": str(cutlass._nvcc_version),
    }


def generator_kernel_cc(cutlass: Any, cc: int) -> int:
    """The closest kernel architecture the interface generates at or below ``cc``."""
    from cutlass_cppgen.library_defaults import _generator_ccs

    ccs = sorted(_generator_ccs)
    index = bisect_right(ccs, cc)
    if index == 0:
        raise BackendUnavailableError(f"CUTLASS generates no kernels for sm_{cc}")
    return ccs[index - 1]


def plan_cc(cutlass: Any, cc: int, kernel_cc: int) -> int:
    """The ``cc`` to give a plan: the device's, unless CUTLASS's shared-memory table lacks it.

    ``valid_stage_count`` indexes ``cutlass_library.SharedMemPerCC[cc]`` (sm_70..sm_100 only), so
    for e.g. sm_120 we stand in the kernel architecture and apply gemmperf's own shared-memory
    limit (``invalid_reason``) instead.
    """
    from cutlass_library import SharedMemPerCC

    if cc not in SharedMemPerCC and kernel_cc not in SharedMemPerCC:   # e.g. Maxwell's sm_50
        raise BackendUnavailableError(
            f"the CUTLASS Python interface plans no GEMM for sm_{cc}: its shared-memory table "
            f"covers sm_{min(SharedMemPerCC)} to sm_{max(SharedMemPerCC)}")
    return cc if cc in SharedMemPerCC else kernel_cc


def use_registry(cutlass: Any, cc: int, kernel_cc: int) -> None:
    """Install a GEMM-only option registry for (``cc``, ``kernel_cc``) (quirk 3); cached."""
    with _LOCK:
        key = (cc, kernel_cc)
        if key not in _REGISTRIES:
            _REGISTRIES[key] = _build_registry(cutlass, cc, kernel_cc)
        cutlass._option_registry = _REGISTRIES[key]


def _build_registry(cutlass: Any, cc: int, kernel_cc: int) -> Any:
    import cutlass_library
    # ArchOptions reads ``cutlass_library.generator`` as an attribute; the submodule is bound only
    # once something imports it, which depends on import order (seen under pytest): import it here.
    importlib.import_module("cutlass_library.generator")
    from cutlass_cppgen.library_defaults import ArchOptions, OptionRegistry

    gemm = cutlass_library.OperationKind.Gemm
    kinds = [cutlass_library.GemmKind.Universal, cutlass_library.GemmKind.Universal3x]
    try:
        registry = OptionRegistry.__new__(OptionRegistry)
        registry.registry = {kernel_cc: {gemm: ArchOptions(cc, kernel_cc, gemm, kinds)}}
        registry.options_for_cc(kernel_cc, gemm)  # the interface the plans use
    except (AttributeError, TypeError) as exc:  # internals changed: the documented, slow way
        log.info("falling back to the full CUTLASS option registry (%s)", exc)
        registry = OptionRegistry(cc)
    return registry
