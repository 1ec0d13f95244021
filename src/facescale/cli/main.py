"""The ``facescale`` command: one subcommand per module in this package.

Every module ``facescale/cli/<name>.py`` (not starting with ``_`` or ``bench_``) defines
``register(subparsers)``, which adds its parser and sets ``func`` to a function taking the
parsed arguments and returning an exit code. Modules import heavy libraries inside that
function so ``facescale --help`` stays fast. ``bench_*`` modules hang under ``facescale bench``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from facescale import __version__
from facescale.cli._discovery import subcommand_modules
from facescale.errors import FacescaleError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facescale",
        description="Train, evaluate, export and run face-recognition models at scale.",
    )
    parser.add_argument("--version", action="version", version=f"facescale {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in subcommand_modules():
        importlib.import_module(f"facescale.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FacescaleError as e:
        print(f"facescale {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"facescale {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
