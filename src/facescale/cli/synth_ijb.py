"""``facescale synth-ijb``: a synthetic IJB-B/IJB-C-style set from SynthFace, in the real layout."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "synth-ijb",
        help="write a synthetic IJB-style set (templates, media, loose crops, landmarks, pairs, 1:N files)",
        description=(
            "Render SynthFace identities into the IJB-C (or IJB-B) layout: OUT/loose_crop/*.jpg and "
            "OUT/meta/ with the face/template/media list, landmarks with faceness scores, the 1:1 pair "
            "list and the 1:N gallery and probe CSVs. Evaluate it with "
            "`facescale eval MODEL --ijb OUT --ijb-target IJBC`."
        ),
        epilog="example:\n  facescale synth-ijb data/synth_ijbc --identities 50 --workers 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", metavar="OUT", help="new folder to write the set into")
    parser.add_argument("--target", default="IJBC", type=str.upper, choices=["IJBB", "IJBC"], help="(IJBC)")
    parser.add_argument("--identities", type=int, default=20, help="identities (20)")
    parser.add_argument("--templates", type=int, default=3, help="templates per identity (3)")
    parser.add_argument("--max-media", type=int, default=3, help="most media per template (3)")
    parser.add_argument("--max-frames", type=int, default=3, help="most frames per media (3)")
    parser.add_argument("--impostors", type=int, default=10, help="impostor pairs per template (10)")
    parser.add_argument("--canvas", type=int, default=160, help="loose-crop size in pixels (160)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes (1)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facescale.eval.synth_ijb import SynthIjbSpec, generate_synth_ijb

    spec = SynthIjbSpec(
        num_identities=args.identities,
        templates_per_identity=args.templates,
        max_media_per_template=args.max_media,
        max_frames_per_media=args.max_frames,
        impostors_per_template=args.impostors,
        canvas=args.canvas,
        seed=args.seed,
        target=args.target,
    )
    summary = generate_synth_ijb(args.out, spec, workers=max(1, args.workers))
    print(
        f"wrote {summary['root']}: {summary['identities']} identities, {summary['templates']} templates, "
        f"{summary['media']} media, {summary['faces']} faces, {summary['pairs']} pairs "
        f"({summary['genuine_pairs']} genuine)"
    )
    return 0
