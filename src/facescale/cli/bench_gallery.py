"""``facescale bench gallery``: search time of a large gallery, faiss beside numpy."""

from __future__ import annotations

import argparse
from typing import Any


def register(kinds: Any) -> None:
    parser = kinds.add_parser(
        "gallery",
        help="gallery search time on random vectors: faiss IndexFlatIP vs numpy",
        description=(
            "Exact best-match search among SIZE random unit vectors (default one million 512-d: 2 GB), "
            "one query and a batch of queries, faiss beside a numpy matrix product."
        ),
    )
    parser.add_argument("--size", type=int, default=1_000_000, help="gallery entries (default: 1,000,000)")
    parser.add_argument("--dim", type=int, default=512, help="embedding size (default: 512)")
    parser.add_argument("--batch", type=int, default=64, help="queries per batch (default: 64)")
    parser.add_argument("--repeats", type=int, default=10, help="timing repeats (default: 10)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facescale.bench.gallery_search import bench_search, format_table

    rows = bench_search(args.size, args.dim, args.batch, args.repeats)
    print(format_table(rows, args.size, args.dim, args.batch))
    return 0
