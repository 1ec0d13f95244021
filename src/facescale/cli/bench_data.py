"""``facescale bench data``: training-loader images/s per worker and overall, beside naive PIL loading."""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any


def register(kinds: Any) -> None:
    parser = kinds.add_parser(
        "data",
        help="loader throughput (decoded + augmented images/s) vs a naive PIL loop",
        description=(
            "Decoded + augmented + normalised training images per second: a naive single-process PIL "
            "loop, facescale's decoder in-process (= one worker), the full loader with N workers and, "
            "with --dali, the DALI loader, in one run on the same data. Without --root a small "
            "SynthFace RecordIO set is generated in a temporary folder first."
        ),
    )
    parser.add_argument("--root", help="dataset to read (default: generate a small SynthFace rec)")
    parser.add_argument("--format", default="recordio", help="format of --root (default recordio)")
    parser.add_argument("--images", type=int, default=4096, help="images timed per row (default 4096)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--workers", type=int, default=2, help="loader worker processes (default 2)")
    parser.add_argument("--strong", action="store_true", help="add rows with every augmentation at p=0.5")
    parser.add_argument(
        "--dali",
        action="store_true",
        help="add rows for the DALI loader (the dali extra): GPU decoding when CUDA is available",
    )
    parser.add_argument(
        "--identities", type=int, default=64, help="SynthFace identities to generate (default 64)"
    )
    parser.add_argument(
        "--per-identity", type=int, default=16, help="SynthFace images per identity (default 16)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads in the main process (default 1: per-image tensor ops in the naive loop "
        "only slow down with more; 0 keeps torch's default)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facescale.bench.data import format_rows, run_data_bench
    from facescale.config import DataConfig
    from facescale.data.datasets import open_dataset

    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="facescale-bench-data-") as scratch:
        root = args.root
        if root is None:
            from facescale.data.synth.generate import generate_synthface

            root = os.path.join(scratch, "synthface")
            generate_synthface(
                root, args.identities, args.per_identity, 0, 0, seed=0, workers=max(1, args.workers)
            )
        dataset = open_dataset(DataConfig(format=args.format, root=root))
        print(f"dataset: {root} ({len(dataset)} images, {dataset.num_classes} classes)")
        rows = run_data_bench(
            dataset, args.images, args.batch_size, args.workers, args.strong, dali=args.dali
        )
        print(format_rows(rows))
    return 0
