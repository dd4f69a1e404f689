"""Where gemmperf's bundled files live.

The repository keeps ``data/``, ``kernels/`` and ``models/`` at its top level (fixed layout).
A wheel carries them inside the package as ``_data``, ``_kernels`` and ``_models`` (see
pyproject.toml); an editable install or a source checkout finds them next to the package.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parent


def _bundled(installed_name: str, repo_name: str) -> Path:
    installed = _PACKAGE_DIR / installed_name
    if installed.is_dir():
        return installed
    return _REPO_ROOT / repo_name


def data_dir() -> Path:
    """Folder with the GPU spec database, architecture presets and calibration tables."""
    return _bundled("_data", "data")


def kernels_dir() -> Path:
    """Folder with the CUDA sources of the hand-written kernels."""
    return _bundled("_kernels", "kernels")


def models_dir() -> Path:
    """Folder with the shipped model bundle(s)."""
    return _bundled("_models", "models")


def shared_data_dir() -> Path:
    """The real measurement data (``../shared/data`` beside the repository); may not exist."""
    return _REPO_ROOT.parent / "shared" / "data"
