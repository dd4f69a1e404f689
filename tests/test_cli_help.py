"""Every subcommand and option of the CLI says what it is for in ``--help``."""

from __future__ import annotations

import argparse

from gemmperf.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for inner, nested in _subparsers(sub):
                    yield f"{name} {inner}", nested


def test_every_option_has_help():
    missing = []
    commands = list(_subparsers(build_parser()))
    assert len(commands) >= 17   # demo, gpus, roofline, import, sweep, ..., clocks
    for name, sub in commands:
        assert sub.description or sub.format_usage(), name
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help: {missing}"
