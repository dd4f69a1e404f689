"""Command-line options that several subcommands share, defined once so their names, types and
help read the same everywhere: the GEMM (``--gpu``, ``--m/--n/--k``, ``--batch``, ``--dtype``
...) and the model bundle (``--model``, ``--trust-pickle``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gemmperf.errors import RecordsPathError

DTYPES_HELP = "f64 f32 tf32 f16 bf16 fp8 int8"


def add_gemm_args(p: argparse.ArgumentParser, *, dims_required: bool, gpu_required: bool = True,
                  acc_dtype: bool = False, layout: bool = False,
                  dtype_default: str | None = None) -> None:
    """``--gpu``, ``--m/--n/--k``, ``--batch`` and ``--dtype``; with ``dims_required`` the
    dimensions and the dtype must be given (else they may come from a family or a file, and
    ``dtype_default`` says where from); optionally ``--acc-dtype`` and ``--layout``."""
    p.add_argument("--gpu", required=gpu_required,
                   help="GPU key, alias or name (see `gemmperf gpus`)")
    for name, text in (("m", "rows of A and C"), ("n", "columns of B and C"),
                       ("k", "inner dimension")):
        p.add_argument(f"--{name}", type=int, required=dims_required, default=None, help=text)
    p.add_argument("--batch", type=int, default=1, help="independent products (default 1)")
    dtype_help = f"operand type: {DTYPES_HELP}"
    p.add_argument("--dtype", required=dims_required, default=None,
                   help=dtype_help + (f" (default: {dtype_default})" if dtype_default else ""))
    if acc_dtype:
        p.add_argument("--acc-dtype", default=None,
                       help="accumulator type (default: the usual one, f32 for f16 and bf16; "
                            "f16 with --dtype f16 selects the fp16-accumulate tensor peak)")
    if layout:
        p.add_argument("--layout", default=None,
                       help="nn nt tn tt (default: the family's, else nn)")


def add_bundle_args(p: argparse.ArgumentParser, *, without_model: str | None = None) -> None:
    """``--model`` and ``--trust-pickle``. ``without_model`` names what a command falls back
    to where no bundle is shipped (e.g. "the roofline")."""
    fallback = f", else {without_model}" if without_model else ""
    p.add_argument("--model", default=None, metavar="MODEL",
                   help=f"model bundle (.npz; default: the shipped model{fallback})")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow a .pkl model (pickle runs code from the file)")


def add_force_arg(p: argparse.ArgumentParser, what: str) -> None:
    """``--force``: replace an existing ``what`` instead of refusing."""
    p.add_argument("--force", action="store_true", help=f"replace an existing {what}")


def refuse_overwrite(path: Any, *, force: bool, folder: bool = False) -> None:
    """A one-line error (before any work) where ``path`` already holds data and ``--force`` was
    not given: an existing file, or with ``folder`` a folder that is not empty."""
    target = Path(path)
    if force:
        return
    if folder:
        if target.is_dir() and any(target.iterdir()):
            raise RecordsPathError(f"{target} is not empty: give another folder, or --force to "
                                   "write into it (files of the same name are replaced)")
    elif target.is_file():
        raise RecordsPathError(f"{target} exists: give another name, or --force to replace it")


def path_arg(text: str) -> str:
    """argparse type of path options: the empty string is refused (``--plot ''`` must not mean
    "no plot", nor ``--out ''`` the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a file or folder name")
    return text


def folder_arg(text: str) -> Path:
    """:func:`path_arg` as a Path."""
    return Path(path_arg(text))
