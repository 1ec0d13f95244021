"""``facescale bench eval``: IJB-C-sized 1:1 scoring, facescale beside the per-batch numpy loop."""

from __future__ import annotations

import argparse
from typing import Any


def register(kinds: Any) -> None:
    parser = kinds.add_parser(
        "eval",
        help="IJB 1:1 scoring speed at IJB-C's sizes (15.6M pairs, 23k templates) vs a numpy loop",
        description=(
            "Score IJB-C's number of template pairs on random 512-d features, then read the ROC and "
            "TAR at FAR 1e-6..1e-1, beside insightface's per-batch numpy loop (timed on a prefix of "
            "the pairs and extrapolated). Needs about 1 GB of memory."
        ),
    )
    parser.add_argument("--templates", type=int, default=23_124, help="template count (IJB-C: 23,124)")
    parser.add_argument("--pairs", type=int, default=15_658_489, help="pair count (IJB-C: 15,658,489)")
    parser.add_argument("--dim", type=int, default=512, help="feature size (512)")
    parser.add_argument(
        "--baseline-pairs", type=int, default=1_000_000, help="pairs the baseline is timed on (1,000,000)"
    )
    parser.add_argument("--threads", type=int, default=0, help="scoring threads (0: all cores)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facescale.bench.eval import format_bench, run_scoring_bench
    from facescale.errors import FacescaleError

    if min(args.templates, args.pairs, args.dim, args.baseline_pairs) < 1:
        raise FacescaleError("--templates, --pairs, --dim and --baseline-pairs must be positive")
    bench = run_scoring_bench(
        num_templates=args.templates,
        num_pairs=args.pairs,
        dim=args.dim,
        baseline_pairs=args.baseline_pairs,
        threads=args.threads or None,
    )
    print(format_bench(bench))
    return 0
