"""``facescale bench KIND``: speed and memory benchmarks, each beside its baseline in one run.

Each ``facescale/cli/bench_<kind>.py`` defines ``register(bench_subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from facescale.cli._discovery import subcommand_modules


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="speed and memory benchmarks (each beside a baseline in the same run)",
        description="Speed and memory benchmarks. Each prints a table comparing facescale with a baseline.",
    )
    kinds = parser.add_subparsers(dest="bench_kind", metavar="KIND")
    for name in subcommand_modules(prefix="bench_"):
        # The literal "bench_" keeps what this can import visible to tests/test_layers.py.
        kind = name.removeprefix("bench_")
        importlib.import_module(f"facescale.cli.bench_{kind}").register(kinds)
    parser.set_defaults(func=lambda args: _missing_kind(parser, args))


def _missing_kind(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    parser.print_help()
    return 2
