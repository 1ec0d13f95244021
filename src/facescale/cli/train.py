"""``facescale train``: train a backbone with a Partial FC head, on one process or under torchrun."""

from __future__ import annotations

import argparse
import os
from typing import Any

from facescale.cli._common import add_config_arguments, describe_defaults


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (single process, or under torchrun for many GPUs/nodes)",
        description=(
            "Train a face-recognition backbone with a margin softmax and a Partial FC head. "
            "Run it directly for one process, or as `torchrun --nproc_per_node=N -m facescale.cli.main "
            "train ...` for N processes (see README)."
        ),
        epilog=describe_defaults() + "\n\nexamples:\n  facescale train -c configs/synth_demo.yaml\n"
        "  facescale train -c configs/ms1mv3_r50.yaml -o optim.lr=0.05 -o data.batch_size=64\n"
        "  facescale train --resume runs/synth_demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its latest checkpoint (its config.yaml, plus any -o)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from facescale.config import load_config
    from facescale.distributed.context import context_from_environ
    from facescale.distributed.faults import peer_failure
    from facescale.errors import ConfigError, FacescaleError
    from facescale.models.run_layout import CONFIG_FILE
    from facescale.train.preemption import Preempted, StopRequest
    from facescale.train.trainer import train

    if args.resume:
        if args.config:
            raise ConfigError("--resume uses the run's own config.yaml; give changes with -o, not -c")
        saved = Path(args.resume) / CONFIG_FILE
        if not saved.exists():
            raise ConfigError(
                f"--resume {args.resume}: {saved} does not exist (not a facescale run directory?)"
            )
        cfg = load_config(saved, [*args.override, f"train.output={args.resume}"])
    else:
        cfg = load_config(args.config, args.override)
    ctx = context_from_environ(os.environ, cfg.train.device)
    stop = StopRequest()
    restore_signals = stop.install()  # SIGTERM / SIGINT: finish the step, checkpoint, exit 143 / 130
    lost_peer = False
    try:
        result = train(cfg, ctx, resume=bool(args.resume), stop=stop)
    except Preempted as e:
        if ctx.rank == 0:
            print(f"facescale train: {e}", file=sys.stderr)
        return e.exit_code
    except FacescaleError:
        raise
    except Exception as e:
        message = peer_failure(e) if ctx.world_size > 1 else None
        if message is None:
            raise
        lost_peer = True  # the process group is broken: leaving it cleanly could hang
        print(
            f"facescale train: rank {ctx.rank}: {message}; continue from the last checkpoint with "
            f"`facescale train --resume {cfg.train.output}`",
            file=sys.stderr,
        )
        return 1
    finally:
        restore_signals()
        if not lost_peer:
            ctx.shutdown()
    if ctx.rank == 0:
        print(f"finished {result.steps} steps; run directory: {result.run_dir}")
    return 0
