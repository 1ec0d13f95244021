"""``facescale bench infer``: backbone latency and throughput, torch eager beside onnxruntime."""

from __future__ import annotations

import argparse
import os
from typing import Any


def register(kinds: Any) -> None:
    parser = kinds.add_parser(
        "infer",
        help="inference latency (batch 1) and throughput (batch 64): torch eager vs onnxruntime",
        description=(
            "For each backbone, the median latency of one 112x112 face and the throughput at batch 64, "
            "for torch eager (the baseline) and onnxruntime running the same weights, in one table."
        ),
    )
    parser.add_argument(
        "--backbones", default="mbf,r18,r50", help="comma-separated backbone names (default: mbf,r18,r50)"
    )
    parser.add_argument("--device", default="cpu", help="torch device for the eager baseline (default: cpu)")
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads for both runtimes (default 0: every core)"
    )
    parser.add_argument("--batch", type=int, default=64, help="throughput batch size (default: 64)")
    parser.add_argument("--repeats", type=int, default=20, help="batch-1 timing repeats (default: 20)")
    parser.add_argument(
        "--batch-repeats", type=int, default=3, help="large-batch timing repeats (default: 3)"
    )
    parser.add_argument(
        "--runtimes",
        default="torch,onnxruntime,int8",
        help="comma-separated: torch, onnxruntime, int8 (default: all three)",
    )
    parser.add_argument(
        "--int8-formats",
        default="qdq",
        help="int8 graph formats to time: qdq and/or qoperator (default: qdq)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON line per backbone and runtime")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from facescale.bench.infer import bench_backbone, format_table, to_json
    from facescale.deploy.quantize import FORMATS as INT8_FORMATS
    from facescale.errors import FacescaleError
    from facescale.models import BACKBONES

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    for name in names:
        BACKBONES.get(name)  # an unknown name fails before any timing
    runtimes = tuple(r.strip() for r in args.runtimes.split(",") if r.strip())
    formats = tuple(f.strip() for f in args.int8_formats.split(",") if f.strip())
    unknown = sorted(set(runtimes) - {"torch", "onnxruntime", "int8"}) + sorted(
        set(formats) - set(INT8_FORMATS)
    )
    if unknown:
        raise FacescaleError(
            f"unknown runtime or int8 format {unknown[0]!r} (runtimes: torch, onnxruntime, int8; "
            f"formats: {', '.join(INT8_FORMATS)})"
        )
    rows: list = []
    done = 0
    for name in names:
        rows.extend(
            bench_backbone(
                name,
                device=args.device,
                threads=threads,
                batch=args.batch,
                latency_repeats=args.repeats,
                throughput_repeats=args.batch_repeats,
                runtimes=runtimes,
                int8_formats=formats,
            )
        )
        if args.json:
            for row in rows[done:]:
                print(to_json(row), flush=True)
        done = len(rows)
    if not args.json:
        print(f"torch {torch.__version__}, {threads} CPU thread(s), device {args.device}")
        print(format_table(rows))
    return 0
