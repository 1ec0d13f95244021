"""``facescale gallery build|add|remove|list``: the people ``facescale recognize`` can name."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from facescale.cli.embed import add_model_arguments
from facescale.deploy.gallery_index import EXACT_MAX


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
        help="cosine score needed to name someone (default: the model's measured threshold, see --far)",
    )
    build.add_argument(
        "--far",
        type=float,
        help="use the model's measured threshold at this FAR (1e-3 or 1e-4; default: the lowest measured)",
    )
    build.add_argument(
        "--min-face-score", type=float, default=0.9, help="detector score cut-off (default 0.9)"
    )
    build.add_argument(
        "--index",
        choices=("auto", "flat", "ivf"),
        default="auto",
        help=f"search index: auto (exact up to {EXACT_MAX:,} people, IVF above), flat or ivf (default auto)",
    )
    build.add_argument(
        "--strict", action="store_true", help="fail on an unreadable photo instead of skipping it"
    )
    build.set_defaults(func=run_build)

    calibrate = actions.add_parser(
        "calibrate",
        help="the threshold for a target FAR from the impostor scores among the enrolled people",
        description=(
            "Every pair of enrolled people is an impostor pair; their cosine scores (plus, with --bin, "
            "the impostor pairs of a verification bin scored with the gallery's model) give the threshold "
            "at each target FAR per comparison, and the best-impostor score of each person left out gives "
            "the threshold at which a stranger is named with at most that probability. --write stores "
            "the chosen one in the gallery."
        ),
    )
    calibrate.add_argument("gallery", help="gallery file")
    calibrate.add_argument(
        "--far",
        type=float,
        nargs="+",
        default=[1e-2, 1e-3, 1e-4],
        help="target FARs (default 1e-2 1e-3 1e-4)",
    )
    calibrate.add_argument("--bin", help="also pool the impostor pairs of this verification bin")
    add_model_arguments(calibrate, required=False)
    calibrate.add_argument(
        "--write",
        choices=("comparison", "stranger"),
        help="store the threshold at the first --far in the gallery: per comparison, or stranger-named",
    )
    calibrate.set_defaults(func=run_calibrate)

    add = actions.add_parser("add", help="add photos of one person (new or already in the gallery)")
    add.add_argument("gallery", help="gallery file")
    add.add_argument("photos", nargs="+", help="photos (or folders of photos) of the person")
    add.add_argument("--name", required=True, help="the person's name")
    add_model_arguments(add, required=False)
    add.add_argument(
        "--min-face-score", type=float, default=0.9, help="detector score cut-off (default: 0.9)"
    )
    add.add_argument(
        "--strict", action="store_true", help="fail on an unreadable photo instead of skipping it"
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
    from facescale.deploy.embedder_factory import open_embedder
    from facescale.deploy.faces import FacePipeline
    from facescale.deploy.mtcnn import MTCNN

    embedder = open_embedder(model, args.backbone, args.device, args.batch_size)
    return FacePipeline(MTCNN(device=getattr(embedder, "device", "cpu")), embedder, args.min_face_score)


def _print_reports(reports: list[Any]) -> None:
    unreadable = 0
    for report in reports:
        print(f"{report.name}: {len(report.used)} photo(s) used")
        for photo in report.no_face:
            print(f"  warning: no face found in {photo}; skipped", file=sys.stderr)
        for _photo, why in report.unreadable:
            print(f"  warning: {why}; skipped", file=sys.stderr)
            unreadable += 1
    if unreadable:
        print(f"warning: {unreadable} unreadable photo(s) skipped (--strict fails instead)", file=sys.stderr)


def _threshold(args: argparse.Namespace, embedder: Any, model: str) -> tuple[float, str]:
    """(threshold, where it came from): --threshold, the model's measured one, or a loud guess."""
    from facescale.deploy.gallery import DEFAULT_THRESHOLD
    from facescale.eval.thresholds import pick_threshold, read_thresholds

    if args.threshold is not None:
        return args.threshold, "given with --threshold"
    if hasattr(embedder, "suggested_threshold"):
        return float(embedder.suggested_threshold), f"{embedder.name}'s published threshold"
    picked = pick_threshold(read_thresholds(model), args.far)
    if picked is not None:
        return picked[0], f"measured: {picked[1]} ({model})"
    if args.far is not None:
        from facescale.errors import FacescaleError

        raise FacescaleError(f"model {model} records no measured threshold at FAR {args.far:g}")
    print(
        f"WARNING: model {model} records no measured threshold (no verification_thresholds in its "
        f"backbone.json or ONNX metadata), so the gallery uses the guess {DEFAULT_THRESHOLD}: it may name "
        "strangers as enrolled people. Measure one with `facescale eval RUN --bins ...` (then re-export), "
        "or run `facescale gallery calibrate` on this gallery.",
        file=sys.stderr,
    )
    return DEFAULT_THRESHOLD, "a guess (the model records no measured threshold)"


def run_build(args: argparse.Namespace) -> int:
    from facescale.deploy.faces import build_gallery

    pipeline = _pipeline(args, args.model)
    threshold, source = _threshold(args, pipeline.embedder, args.model)
    print(f"threshold {threshold:.4f}: {source}")
    gallery, reports = build_gallery(
        args.people_dir,
        pipeline,
        threshold,
        args.model,
        progress=None,
        strict=args.strict,
        threshold_source=source,
        index=args.index,
    )
    _print_reports(reports)
    gallery.save(args.out)
    spec = gallery.prepare_index()
    print(
        f"wrote {args.out}: {len(gallery)} people, model {pipeline.embedder.name}, "
        f"threshold {threshold:.4f}, search {spec.describe()}"
    )
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
    reports = add_people(gallery, pipeline, {args.name: photos}, strict=args.strict)
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
    source = gallery.threshold_source or "source not recorded"
    print(f"threshold {gallery.threshold:g} ({source}); {len(gallery)} people")
    print(f"search: {gallery.prepare_index().describe()}")
    for name, count in zip(gallery.names, gallery.counts.tolist()):
        print(f"{name}\t{count} photo(s)")
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from facescale.deploy.calibrate import calibrate
    from facescale.deploy.gallery import Gallery
    from facescale.errors import FacescaleError

    gallery = Gallery.load(args.gallery)
    extra = None
    if args.bin:
        extra = _bin_impostor_scores(args, gallery)
    result = calibrate(gallery, args.far, extra)
    print(result.describe())
    source = gallery.threshold_source or "source not recorded"
    print(f"the gallery's threshold now: {gallery.threshold:.4f} ({source})")
    if args.write:
        far = args.far[0]
        table = result.per_comparison if args.write == "comparison" else result.stranger_named
        value = table[far]
        if value is None:
            raise FacescaleError(f"FAR {far:g} is not measurable on this gallery; the gallery is unchanged")
        what = "per comparison" if args.write == "comparison" else "stranger named"
        gallery.threshold = value
        gallery.threshold_source = (
            f"gallery calibrate: FAR {far:g} {what}, {result.impostor_pairs:,} impostor pairs"
        )
        gallery.save(args.gallery)
        print(f"wrote {args.gallery}: threshold {value:.4f} ({gallery.threshold_source})")
    return 0


def _bin_impostor_scores(args: argparse.Namespace, gallery: Any) -> Any:
    """Cosines of the impostor pairs of ``args.bin`` scored with the gallery's model."""
    import numpy as np

    from facescale.deploy.embedder_factory import open_embedder
    from facescale.errors import FacescaleError
    from facescale.eval.sets import load_set
    from facescale.models.embeddings import l2_normalize

    model = args.model or gallery.embedder.get("source")
    if not model:
        raise FacescaleError(f"{args.gallery} does not record its model source; pass --model")
    embedder = open_embedder(model, args.backbone, args.device, args.batch_size)
    gallery.check_embedder(embedder, where=f"gallery {args.gallery}")
    vset = load_set(args.bin)
    impostor = np.flatnonzero(~np.asarray(vset.issame, bool))
    left = l2_normalize(embedder.embed(vset.images[2 * impostor]))
    right = l2_normalize(embedder.embed(vset.images[2 * impostor + 1]))
    return np.einsum("ij,ij->i", left, right).astype(np.float64)
