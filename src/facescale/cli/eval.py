"""``facescale eval``: verification sets and IJB-B/IJB-C for any list of models, into one report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate models on verification bins (lfw, cfp_fp, ...) and IJB-B/IJB-C; write a report",
        description=(
            "Evaluate one or more models with the standard protocols: LFW-style bins (10-fold accuracy "
            "with flip, XNorm, TAR@FAR=1e-3, AUC, EER, a ROC plot) and IJB-B/IJB-C (1:1 TAR at FAR "
            "1e-6..1e-1 with a ROC plot; 1:N rank-k and TPIR at FPIR when the gallery files are present). "
            "Writes report.json, report.md and the ROC PNGs into --out.\n\n"
            "TAR at FAR: the headline figure is the ROC point whose FAR is nearest the target, the rule "
            "of insightface's eval_ijbc.py and of published IJB tables; beside it, in brackets, the "
            "conservative figure (the best TAR whose FAR is at most the target: it never overshoots). "
            "A FAR below 1 / #impostor pairs cannot be measured and reads 'n/a (N impostor pairs)'."
        ),
        epilog=(
            "SOURCE is a facescale run directory, a checkpoint (trainer.pt), an insightface backbone.pth,\n"
            "a .safetensors file or an ONNX model.\n\n"
            "examples:\n"
            "  facescale eval runs/synth_demo --bins runs/synth_demo/data/val.bin\n"
            "  facescale eval ms1mv3_r50/backbone.pth r50.onnx --bin-dir faces_emore "
            "--bins lfw cfp_fp agedb_30 --out reports/r50\n"
            "  facescale eval runs/r50 --ijb IJB_release --ijb-target IJBC --ijb-ablation"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="models to evaluate")
    parser.add_argument(
        "--bins",
        nargs="+",
        default=[],
        metavar="NAME_OR_PATH",
        help="verification sets: names (lfw cfp_fp cfp_ff agedb_30 calfw cplfw vgg2_fp) looked up in "
        "--bin-dir, or paths to LFW-style .bin files",
    )
    parser.add_argument("--bin-dir", metavar="DIR", help="folder holding <name>.bin for the named sets")
    parser.add_argument(
        "--ijb", metavar="DIR", help="an IJB set: DIR/meta and DIR/loose_crop, or DIR/<target>/meta ..."
    )
    parser.add_argument(
        "--ijb-target", default="IJBC", type=str.upper, choices=["IJBB", "IJBC"], help="which IJB set (IJBC)"
    )
    parser.add_argument(
        "--ijb-ablation",
        action="store_true",
        help="score all 8 combinations of flip (F), norm kept (N) and faceness weighting (D)",
    )
    parser.add_argument(
        "--ijb-no-norm",
        action="store_true",
        help="L2-normalise image features before pooling (insightface N0) instead of keeping the norm",
    )
    parser.add_argument(
        "--ijb-no-score", action="store_true", help="do not weight image features by the faceness score (D0)"
    )
    parser.add_argument("--no-flip", action="store_true", help="embed the image only, not also its mirror")
    parser.add_argument("--out", default="eval_report", metavar="DIR", help="report folder (eval_report)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per forward pass (128)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (auto)")
    parser.add_argument("--backbone", metavar="NAME", help="backbone name, when a .pth's keys do not tell it")
    parser.add_argument(
        "--workers", type=int, default=0, help="threads reading and aligning IJB images (0: one per core)"
    )
    parser.set_defaults(func=run)


def tqdm_progress(enabled: bool) -> Callable[[int, str], Callable[[int], object]] | None:
    """A factory of per-batch progress callbacks drawing tqdm bars, or None when disabled."""
    if not enabled:
        return None
    from tqdm import tqdm

    def factory(total: int, what: str) -> Callable[[int], object]:
        bar = tqdm(total=total, desc=what, unit="img", leave=False, file=sys.stderr)

        def tick(n: int) -> None:
            bar.update(n)
            if bar.n >= total:
                bar.close()

        return tick

    return factory


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from facescale.errors import FacescaleError
    from facescale.eval.ijb import ALL_MODES, IjbMode
    from facescale.eval.runner import EvalRequest, run_evaluation

    if args.batch_size < 1:
        raise FacescaleError(f"--batch-size must be at least 1, got {args.batch_size}")
    flip = not args.no_flip
    if args.ijb_ablation:
        modes = ALL_MODES
    else:
        modes = (IjbMode(flip=flip, keep_norm=not args.ijb_no_norm, use_score=not args.ijb_no_score),)
    request = EvalRequest(
        sources=list(args.sources),
        out=Path(args.out),
        bins=list(args.bins),
        bin_dir=args.bin_dir,
        ijb=args.ijb,
        ijb_target=args.ijb_target,
        ijb_modes=modes,
        flip=flip,
        batch_size=args.batch_size,
        device=args.device,
        backbone=args.backbone,
        workers=args.workers if args.workers > 0 else (os.cpu_count() or 1),
    )
    run_evaluation(request, progress=tqdm_progress(sys.stderr.isatty()))
    return 0
