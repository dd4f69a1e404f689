"""The ``gemmperf`` command line: one module per subcommand group, each a thin library call.

Every module in :data:`COMMAND_MODULES` has ``register(subparsers)``, which adds its subcommand(s)
and sets ``func`` to a function taking the parsed arguments and returning an exit code.
Errors the user can fix (:class:`~gemmperf.errors.GemmperfError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import NoReturn

from gemmperf.errors import GemmperfError

# Subcommand modules, in the order `gemmperf --help` lists them.
COMMAND_MODULES = (
    "gemmperf.cli.demo",
    "gemmperf.cli.gpus",
    "gemmperf.cli.roofline",
    "gemmperf.cli.importers",
    "gemmperf.cli.collect",
    "gemmperf.cli.training",
    "gemmperf.cli.predict",
    "gemmperf.cli.recommend",
)


#: A negative number as gemmperf options write numbers: decimal, exponent, unit suffix (2T).
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[KMGTPkmgtp]?$")


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other gemmperf error (argparse
    prints the whole usage block first); subcommand parsers inherit the class.

    A negative number is read as an option's value, so that the command's own check can say
    what is wrong with it: argparse (3.11) takes ``-5`` and ``-0.5`` as values but ``-1e22`` or
    ``-4M`` as unknown options ("expected one argument"). No gemmperf option looks like one."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"gemmperf: error: {message} (`{self.prog} --help` lists the options)\n")


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Print each warning a command raises as one ``gemmperf: warning:`` line on stderr, as
    soon as it is raised (resume's skipped lines, a trimmed torn tail), not in Python's
    two-line format with a source line; the warning state is restored afterwards."""

    def show(message: Warning | str, *rest: object, **kwargs: object) -> None:
        print(f"gemmperf: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="gemmperf",
        description="Measure, model and predict GEMM runtime, power and energy on NVIDIA GPUs.",
    )
    from gemmperf import __version__

    parser.add_argument("--version", action="version", version=f"gemmperf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    for sub in subparsers.choices.values():
        sub.set_defaults(command_parser=sub)   # its own --help is the one to point to
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        getattr(args, "command_parser", parser).error(
            f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with one_line_warnings():
            return int(args.func(args) or 0)
    except GemmperfError as exc:
        print(f"gemmperf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gemmperf: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `gemmperf gpus | head`
        return 0
    except OSError as exc:   # the environment, not the input: a full disk, a vanished mount
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"gemmperf: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
