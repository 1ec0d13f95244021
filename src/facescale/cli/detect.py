"""``facescale detect``: faces, 5 landmarks and scores of photos or videos, without a gallery."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="detect faces (boxes, 5 landmarks, scores) in photos or videos; optional aligned crops",
        description=(
            "Detection alone (MTCNN): for every face its box, 5 landmarks (eyes, nose tip, mouth corners) "
            "and detector score, printed as JSON and written to OUT/detections.json; annotated pictures "
            "to OUT/<photo>.jpg (videos: OUT/<video>.mp4, every Nth frame analysed); with --crops, each "
            "face aligned to the ArcFace template as a 112x112 JPEG in OUT/crops/ (a dataset's first step)."
        ),
    )
    parser.add_argument("photos", nargs="+", help="photos and/or video files OpenCV can read")
    parser.add_argument("--out", required=True, help="folder for the annotated pictures, crops and JSON")
    parser.add_argument("--crops", action="store_true", help="also write aligned 112x112 face crops")
    parser.add_argument(
        "--min-face-score", type=float, default=0.9, help="detector score cut-off (default 0.9)"
    )
    parser.add_argument("--min-face", type=int, default=20, help="smallest face side searched, pixels (20)")
    parser.add_argument("--every", type=int, default=5, help="videos: process every Nth frame (default 5)")
    parser.add_argument("--device", default="cpu", help="torch device for the detector (default: cpu)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from facescale.atomic import write_text_atomic
    from facescale.deploy.detect import detect_photo, detect_video
    from facescale.deploy.embedder import resolve_device
    from facescale.deploy.mtcnn import MTCNN
    from facescale.deploy.video import is_video

    detector = MTCNN(device=resolve_device(args.device), min_face=args.min_face)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for photo in args.photos:
        if is_video(photo):
            results.append(detect_video(photo, out, detector, args.min_face_score, args.crops, args.every))
        else:
            results.append(detect_photo(photo, out, detector, args.min_face_score, args.crops))
    text = "[\n" + ",\n".join(json.dumps(r) for r in results) + "\n]"
    write_text_atomic(out / "detections.json", text + "\n")
    print(text)
    return 0
