"""Helpers shared by CLI modules: config arguments and logging set-up."""

from __future__ import annotations

import argparse
from typing import Any


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", metavar="YAML", help="a recipe from configs/ (overrides the defaults)"
    )
    parser.add_argument(
        "-o",
        "--override",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one key, e.g. -o optim.lr=0.05 -o data.batch_size=64 (repeatable)",
    )


def describe_defaults() -> str:
    """The config sections and their keys, for --help epilogs."""
    from facescale.config import all_keys

    keys: dict[str, list[str]] = {}
    for key in all_keys():
        section, _, rest = key.partition(".")
        keys.setdefault(section, []).append(rest)
    return "config keys:\n" + "\n".join(f"  {s}: {', '.join(k)}" for s, k in keys.items())


def print_json(obj: Any) -> None:
    import json

    print(json.dumps(obj, indent=2, default=str))
