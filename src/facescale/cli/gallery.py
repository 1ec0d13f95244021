"""``facescale gallery build|add|remove|list``: the people ``facescale recognize`` can name."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from facescale.cli.embed import add_model_arguments


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gallery",
        help="build and edit a gallery of known people for `facescale recognize`",
        description=(
            "A gallery holds one embedding per person: the photos' largest faces are detected (MTCNN), "
            "aligned, embedded, L2-normalised, averaged and re-normalised. The file is safetensors (no "
            "pickle) and records the model; it refuses queries from another model."
        ),
    )
    actions = parser.add_subparsers(dest="gallery_action", metavar="ACTION")

    build = actions.add_parser("build", help="a new gallery from PEOPLE_DIR/<name>/<photos>")
    build.add_argument("people_dir", help="one sub-folder per person, named after them, holding any photos")
    add_model_arguments(build)
    build.add_argument("--out", required=True, help="gallery file to write (e.g. people.gallery)")
    build.add_argument(
        "--threshold",
        type=float,
        help="cosine score needed to name someone (default: the model's suggestion, 0.35 for ArcFace models)",
    )
    build.add_argument(
        "--min-face-score", type=float, default=0.9, help="detector score cut-off (default 0.9)"
    )
    build.set_defaults(func=run_build)

    add = actions.add_parser("add", help="add photos of one person (new or already in the gallery)")
    add.add_argument("gallery", help="gallery file")
    add.add_argument("photos", nargs="+", help="photos (or folders of photos) of the person")
    add.add_argument("--name", required=True, help="the person's name")
    add_model_arguments(add, required=False)
    add.add_argument(
        "--min-face-score", type=float, default=0.9, help="detector score cut-off (default: 0.9)"
    )
    add.set_defaults(func=run_add)

    remove = actions.add_parser("remove", help="remove people by name")
    remove.add_argument("gallery", help="gallery file")
    remove.add_argument("names", nargs="+", help="names to remove")
    remove.set_defaults(func=run_remove)

    listing = actions.add_parser("list", help="print the people, their photo counts and the model")
    listing.add_argument("gallery", help="gallery file")
    listing.set_defaults(func=run_list)

    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _pipeline(args: argparse.Namespace, model: str) -> Any:
    from facescale.deploy.embedder import open_embedder
    from facescale.deploy.faces import FacePipeline
    from facescale.deploy.mtcnn import MTCNN

    embedder = open_embedder(model, args.backbone, args.device, args.batch_size)
    return FacePipeline(MTCNN(device=getattr(embedder, "device", "cpu")), embedder, args.min_face_score)


def _print_reports(reports: list[Any]) -> None:
    for report in reports:
        print(f"{report.name}: {len(report.used)} photo(s) used")
        for photo in report.no_face:
            print(f"  warning: no face found in {photo}; skipped", file=sys.stderr)


def run_build(args: argparse.Namespace) -> int:
    from facescale.deploy.faces import build_gallery
    from facescale.deploy.gallery import default_threshold

    pipeline = _pipeline(args, args.model)
    threshold = args.threshold if args.threshold is not None else default_threshold(pipeline.embedder)
    gallery, reports = build_gallery(args.people_dir, pipeline, threshold, args.model, progress=None)
    _print_reports(reports)
    gallery.save(args.out)
    print(f"wrote {args.out}: {len(gallery)} people, model {pipeline.embedder.name}, threshold {threshold:g}")
    return 0


def run_add(args: argparse.Namespace) -> int:
    from pathlib import Path

    from facescale.deploy.faces import add_people, list_photos
    from facescale.deploy.gallery import Gallery
    from facescale.errors import FacescaleError

    gallery = Gallery.load(args.gallery)
    model = args.model or gallery.embedder.get("source")
    if not model:
        raise FacescaleError(f"{args.gallery} does not record its model source; pass --model")
    pipeline = _pipeline(args, model)
    photos: list[Path] = []
    for item in map(Path, args.photos):
        photos.extend(list_photos(item) if item.is_dir() else [item])
    reports = add_people(gallery, pipeline, {args.name: photos})
    _print_reports(reports)
    if not reports[0].used:
        raise FacescaleError(f"no face found in any photo of {args.name!r}; the gallery is unchanged")
    gallery.save(args.gallery)
    print(f"wrote {args.gallery}: {len(gallery)} people")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from facescale.deploy.gallery import Gallery

    gallery = Gallery.load(args.gallery)
    missing = [name for name in args.names if name not in gallery.names]
    if missing:  # check every name first so a typo leaves the gallery untouched
        gallery.remove(missing[0])
    for name in args.names:
        gallery.remove(name)
    gallery.save(args.gallery)
    print(f"wrote {args.gallery}: {len(gallery)} people")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from facescale.deploy.gallery import Gallery

    gallery = Gallery.load(args.gallery)
    info = gallery.embedder
    print(f"model {info['name']} (fingerprint {info['fingerprint']}, {info['embedding_size']}-d)")
    print(f"threshold {gallery.threshold:g}; {len(gallery)} people")
    for name, count in zip(gallery.names, gallery.counts.tolist()):
        print(f"{name}\t{count} photo(s)")
    return 0
