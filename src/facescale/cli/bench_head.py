"""``facescale bench head``: Partial FC step time and memory beside the dense update and a full softmax."""

from __future__ import annotations

import argparse
from typing import Any


def _int_list(text: str) -> list[int]:
    try:
        values = [int(float(v)) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of class counts") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: class counts must be >= 1")
    return values


def register(kinds: Any) -> None:
    parser = kinds.add_parser(
        "head",
        help="classification-head step time and memory: Partial FC modes vs dense update vs full softmax",
        description=(
            "For each class count, one training step of the head alone (forward + backward + update on "
            "random embeddings): median time, peak memory and bytes of training state per class, for "
            "facescale's sparse Partial FC (fp32, lean bf16, bf16 offloaded to host memory), the dense "
            "arcface_torch-style update, and a plain full softmax (nn.Linear + cross-entropy + SGD), "
            "side by side. Modes whose state would exceed --max-state-gb are estimated, not run."
        ),
    )
    parser.add_argument(
        "--classes",
        type=_int_list,
        default=[100_000, 1_000_000],
        help="comma-separated (default 100000,1000000)",
    )
    parser.add_argument("--dim", type=int, default=512, help="embedding size (default 512)")
    parser.add_argument("--batch", type=int, default=128, help="global batch per step (default 128)")
    parser.add_argument("--sample-rate", type=float, default=0.1, help="Partial FC sample rate (default 0.1)")
    parser.add_argument(
        "--modes",
        default="sparse,sparse-bf16,offload-bf16,dense,full-softmax",
        help="comma-separated subset of sparse, sparse-bf16, offload-bf16, dense, full-softmax",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (default 0: torch's default; on a shared machine 1 gives steadier times)",
    )
    parser.add_argument("--steps", type=int, default=3, help="timed steps per mode (median; default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument(
        "--max-state-gb",
        type=float,
        default=8.0,
        help="estimate (do not run) a mode whose training state would exceed this (default 8)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from facescale.bench.head import format_table, run_head_bench
    from facescale.distributed.context import resolve_device

    device = resolve_device(args.device, local_rank=0, world_size=1)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    rows = run_head_bench(
        args.classes,
        args.dim,
        args.batch,
        args.sample_rate,
        modes,
        device,
        steps=args.steps,
        warmup=args.warmup,
        max_state_bytes=int(args.max_state_gb * (1 << 30)),
    )
    peak_label = "peak CUDA alloc" if device.type == "cuda" else "peak RSS growth"
    print(
        f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} thread(s); dim {args.dim}, "
        f"batch {args.batch}, sample rate {args.sample_rate}; "
        f"median of {args.steps} steps after {args.warmup} warm-up"
    )
    on_cpu = device.type == "cpu"
    print(format_table(rows, peak_label, use_cpu_time=on_cpu))
    notes = [
        "state = centres + optimizer state (+ the dense gradient of dense and full-softmax), exact bytes."
    ]
    if on_cpu:
        notes.append(
            "time ratios use process CPU time (cpu ms/step), steadier than wall time on a shared CPU."
        )
        notes.append(
            "peak = growth of the peak resident set during build + steps (state + transient buffers)."
        )
    else:
        notes.append(
            "peak = torch.cuda.max_memory_allocated during build + steps (offload state is on the host)."
        )
    print("\n".join(notes))
    return 0
