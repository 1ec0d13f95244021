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
            "update, arcface_torch's PartialFC_V2 + SGD (the baseline) and a plain full softmax "
            "(nn.Linear + cross-entropy + SGD), side by side, with the host syncs of a step counted. "
            "Modes whose state would exceed --max-state-gb are estimated, not run; a mode that runs "
            "out of memory is reported as OOM and the others still run."
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
        default="sparse,sparse-bf16,offload-bf16,dense,arcface,full-softmax",
        help="comma-separated subset of sparse, sparse-bf16, offload-bf16, dense, arcface, full-softmax",
    )
    parser.add_argument(
        "--matmul-dtype",
        default="auto",
        help="head.matmul_dtype of the Partial FC modes: auto, float32, tf32, bfloat16, float16 "
        "(default auto)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line per (classes, mode) instead")
    parser.add_argument(
        "--backbone",
        default="",
        help="time whole training steps with this backbone in front (e.g. r50: random 112x112 images, "
        "bf16 autocast on CUDA); the peak is then the memory beside it",
    )
    parser.add_argument(
        "--memory-cap-gb",
        type=float,
        default=0.0,
        help="CUDA: cap the allocator at this many GiB (e.g. 78.5: what an 80 GB GPU gives PyTorch)",
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
        default=None,
        help="estimate (do not run) a mode whose training state would exceed this "
        "(default: the device's memory; on a CPU the available host memory)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from facescale.bench.head import format_table, run_head_bench
    from facescale.distributed.context import resolve_device
    from facescale.errors import ConfigError
    from facescale.heads.matmul import MATMUL_DTYPES

    device = resolve_device(args.device, local_rank=0, world_size=1)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.matmul_dtype not in MATMUL_DTYPES:
        raise ConfigError(f"--matmul-dtype {args.matmul_dtype!r} is not one of {', '.join(MATMUL_DTYPES)}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.memory_cap_gb > 0:
        if device.type != "cuda":
            raise ConfigError(f"--memory-cap-gb needs a CUDA device, got {device}")
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_cap_gb * (1 << 30) / total), device)

    def emit(row: Any) -> None:  # one line per row as it is measured: a later crash keeps the earlier ones
        if args.json:
            setting = {"device": str(device), "threads": torch.get_num_threads(), "batch": args.batch,
                       "sample_rate": args.sample_rate, "dim": args.dim}  # fmt: skip
            print(json.dumps({**row.to_json(), **setting}), flush=True)

    rows = run_head_bench(
        args.classes,
        args.dim,
        args.batch,
        args.sample_rate,
        modes,
        device,
        steps=args.steps,
        warmup=args.warmup,
        max_state_bytes=None if args.max_state_gb is None else int(args.max_state_gb * (1 << 30)),
        matmul_dtype=args.matmul_dtype,
        on_row=emit,
        backbone=args.backbone or None,
    )
    if args.json:
        return 0
    peak_label = "peak CUDA alloc" if device.type == "cuda" else "peak RSS growth"
    print(
        f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} thread(s); dim {args.dim}, "
        f"batch {args.batch}, sample rate {args.sample_rate}; "
        f"median of {args.steps} steps after {args.warmup} warm-up"
    )
    on_cpu = device.type == "cpu"
    print(format_table(rows, peak_label, use_cpu_time=on_cpu))
    notes = [
        "state = centres + optimizer state (+ the dense gradient of dense, arcface, full-softmax), exact.",
        "syncs/step = host syncs in one step (CUDA: set_sync_debug_mode; CPU: census of CUDA-syncing ops).",
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
