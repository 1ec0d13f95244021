"""``facescale models``: every backbone with its parameters and multiply-accumulates at 112x112."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the backbones with parameters and MACs at 112x112",
        description=(
            "List every registered backbone with its parameter count and multiply-accumulates for "
            "one 112x112 image, both measured by running the model (on the meta device: instant, "
            "no memory). Use a name in model.name of a config."
        ),
    )
    parser.add_argument("names", nargs="*", help="only these backbones (default: all)")
    parser.add_argument(
        "--embedding-size", type=int, default=None, help="embedding size to measure with (default 512)"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facescale.models import BACKBONES
    from facescale.models.complexity import measure_backbone

    names = args.names or list(BACKBONES)
    for name in names:
        BACKBONES.get(name)  # unknown names fail with suggestions before any work
    rows = []
    for name in names:
        options = {} if args.embedding_size is None else {"embedding_size": args.embedding_size}
        c = measure_backbone(name, **options)
        about = (BACKBONES.get(name).__doc__ or "").strip().splitlines()[0].rstrip(".")
        rows.append((name, f"{c.mparams:.2f}", f"{c.gmacs:.3f}", about))
    header = ("backbone", "params (M)", "MACs (G)", "architecture")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|---|--:|--:|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for i, row in enumerate([header, *rows]):
            cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].rjust(widths[2]), row[3]]
            print("  ".join(cells))
            if i == 0:
                print("  ".join("-" * w for w in widths))
    size = args.embedding_size or 512
    print(f"\n(embedding size {size}; MACs for one 112x112 image, counted by running the model)")
    return 0
