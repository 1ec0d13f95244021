"""``facescale synth``: generate a SynthFace dataset, or a preview grid of its identities."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate SynthFace: procedurally rendered face identities in the insightface formats",
        description=(
            "Render a synthetic face-recognition dataset with no download: each identity is a bundle "
            "of latent traits (face shape, skin, eyes, brows, nose, mouth, hair, glasses, beard, marks) "
            "and each image varies pose, scale, expression, light, colour, blur, noise, occlusion and "
            "background. Writes train.rec/train.idx/property (insightface RecordIO) for training and "
            "val.bin/val_hard.bin (LFW-style pairs, 10 folds) on held-out identities. The output is "
            "the same for a seed whatever the number of workers; files in OUT_DIR are replaced only "
            "once the new ones are complete."
        ),
        epilog=(
            "examples:\n"
            "  facescale synth data/synthface --identities 1000 --images-per-identity 24\n"
            "  facescale synth data/synthface_big --identities 100000 --images-per-identity 50\n"
            "  facescale synth --preview synthface_preview.png"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out_dir", nargs="?", metavar="OUT_DIR", help="folder to write the dataset into")
    parser.add_argument("--identities", type=int, default=1000, help="training identities (default: 1000)")
    parser.add_argument(
        "--images-per-identity", type=int, default=24, help="images of each training identity (default: 24)"
    )
    parser.add_argument(
        "--val-identities",
        type=int,
        default=500,
        help="held-out identities the verification pairs are drawn from (default: 500)",
    )
    parser.add_argument(
        "--val-pairs",
        type=int,
        default=3000,
        help="verification pairs per bin, a multiple of 20; 0 writes no bins (default: 3000)",
    )
    parser.add_argument("--no-hard-pairs", action="store_true", help="do not write val_hard.bin")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    parser.add_argument("--workers", type=int, default=None, help="rendering processes (default: all cores)")
    parser.add_argument(
        "--nuisance",
        type=float,
        default=1.0,
        help="strength of the per-image variation: 0 clean, 1 default, >1 harder (default: 1.0)",
    )
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality (default: 90)")
    parser.add_argument(
        "--preview",
        metavar="PNG",
        help="instead of a dataset, write a grid (rows: identities; first column: the clean frontal "
        "face, then images with nuisances) to this PNG",
    )
    parser.add_argument(
        "--preview-size",
        type=int,
        nargs=2,
        default=(8, 8),
        metavar=("IDENTITIES", "IMAGES"),
        help="rows and images per row of the preview (default: 8 8)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facescale.errors import FacescaleError

    if args.preview:
        from facescale.data.synth.preview import write_preview

        rows, cols = args.preview_size
        write_preview(args.preview, seed=args.seed, identities=rows, images=cols, nuisance=args.nuisance)
        print(f"wrote a {rows} x {cols} SynthFace preview (seed {args.seed}) to {args.preview}")
        if not args.out_dir:
            return 0
    if not args.out_dir:
        raise FacescaleError("give OUT_DIR to generate a dataset (or --preview PNG for a preview grid)")
    if not 1 <= args.jpeg_quality <= 100:
        raise FacescaleError(f"--jpeg-quality must be in 1..100, got {args.jpeg_quality}")
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)

    from tqdm import tqdm

    from facescale.data.synth.generate import generate_synthface

    total = args.identities * args.images_per_identity + 2 * args.val_pairs * (1 if args.no_hard_pairs else 2)
    with tqdm(total=total, unit="img", desc="synthface", disable=not sys.stderr.isatty()) as bar:
        summary = generate_synthface(
            args.out_dir,
            num_identities=args.identities,
            images_per_identity=args.images_per_identity,
            val_identities=args.val_identities,
            val_pairs=args.val_pairs,
            seed=args.seed,
            workers=workers,
            nuisance=args.nuisance,
            hard_pairs=not args.no_hard_pairs,
            jpeg_quality=args.jpeg_quality,
            progress=bar.update,
        )
    bins = ", ".join(summary["verification_bins"]) or "no verification bins"
    print(
        f"SynthFace: {summary['num_identities']} identities x {summary['images_per_identity']} images, "
        f"{bins} ({summary['val_pairs']} pairs on {summary['val_identities']} held-out identities), "
        f"seed {summary['seed']} -> {summary['out_dir']} in {summary['seconds']:.1f}s "
        f"({summary['images_per_second']:.0f} images/s, {workers} workers)"
    )
    return 0
