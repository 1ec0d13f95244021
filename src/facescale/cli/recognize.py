"""``facescale recognize``: name every face of photos (or videos) from a gallery."""

from __future__ import annotations

import argparse
import json
from typing import Any

from facescale.cli.embed import add_model_arguments


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "recognize",
        help="find, align, embed and name every face of photos or videos against a gallery",
        description=(
            "For every face found (MTCNN): its box, 5 landmarks, and the gallery's best match with its "
            "cosine score, or 'unknown' below the threshold. Annotated pictures (boxes, landmarks, names, "
            "scores) go to OUT/<photo>.jpg, videos to OUT/<video>.mp4; the results are printed as JSON."
        ),
    )
    parser.add_argument("photos", nargs="+", help="photos and/or video files OpenCV can read")
    parser.add_argument("--gallery", required=True, help="gallery file from `facescale gallery build`")
    parser.add_argument("--out", required=True, help="folder for the annotated pictures")
    parser.add_argument("--threshold", type=float, help="override the gallery's naming threshold (cosine)")
    add_model_arguments(parser, required=False)
    parser.add_argument(
        "--min-face-score", type=float, default=0.9, help="detector score cut-off (default 0.9)"
    )
    parser.add_argument("--every", type=int, default=5, help="videos: process every Nth frame (default 5)")
    parser.add_argument(
        "--show-nearest",
        action="store_true",
        help="draw the nearest gallery name (small) under unknown faces; the JSON always has it",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from facescale.deploy.embedder_factory import open_embedder
    from facescale.deploy.faces import FacePipeline
    from facescale.deploy.gallery import Gallery
    from facescale.deploy.mtcnn import MTCNN
    from facescale.deploy.recognize import recognize_photo, recognize_video
    from facescale.deploy.video import is_video
    from facescale.errors import FacescaleError

    gallery = Gallery.load(args.gallery)
    if len(gallery) == 0:
        raise FacescaleError(f"gallery {args.gallery} is empty: add people with `facescale gallery add`")
    model = args.model or gallery.embedder.get("source")
    if not model:
        raise FacescaleError(f"{args.gallery} does not record its model source; pass --model")
    embedder = open_embedder(model, args.backbone, args.device, args.batch_size)
    gallery.check_embedder(embedder, where=f"gallery {args.gallery}")
    pipeline = FacePipeline(MTCNN(device=getattr(embedder, "device", "cpu")), embedder, args.min_face_score)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for photo in args.photos:
        if is_video(photo):
            results.append(
                recognize_video(photo, out, pipeline, gallery, args.threshold, args.every, args.show_nearest)
            )
        else:
            results.append(recognize_photo(photo, out, pipeline, gallery, args.threshold, args.show_nearest))
    # One photo per line: valid JSON that stays readable with many faces.
    print("[\n" + ",\n".join(json.dumps(r) for r in results) + "\n]")
    return 0
