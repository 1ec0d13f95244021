"""``facescale embed``: embeddings of a folder, list file, rec or verification bin."""

from __future__ import annotations

import argparse
from typing import Any

MODEL_HELP = (
    "the model: a run directory, a checkpoint (trainer.pt), an insightface backbone.pth, a .safetensors "
    "or .onnx file, or 'dlib' (dlib's real-face ResNet, optional)"
)


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """--model/--backbone/--device/--batch-size, shared by embed, gallery and recognize."""
    parser.add_argument("--model", required=required, help=MODEL_HELP)
    parser.add_argument("--backbone", help="backbone name when the model file does not record it (e.g. r50)")
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N or auto (GPU when available; default)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="faces per forward pass (default: 64)")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed every face of a folder, list file, RecordIO dataset or verification .bin",
        description=(
            "Write OUT/embeddings.npy (float32 [N, D]), OUT/names.txt and OUT/index.json (names, labels, "
            "model). INPUT: a folder of images (searched recursively), a list file (.txt/.lst: "
            "'path<TAB>label' or 'path label' per line, label optional; a tab lets paths hold spaces), "
            "a RecordIO .rec file, prefix or folder, or a verification .bin. Images must be aligned "
            "112x112 faces unless --detect is given."
        ),
    )
    parser.add_argument("input", help="folder, list file, .rec / prefix / folder with a .rec, or .bin")
    add_model_arguments(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    parser.add_argument(
        "--detect", action="store_true", help="detect (MTCNN) and align the largest face of each image first"
    )
    parser.add_argument("--workers", type=int, default=2, help="image decoding threads (default: 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from facescale.deploy.embedder_factory import open_embedder
    from facescale.deploy.extract import extract_embeddings, open_collection
    from facescale.deploy.mtcnn import MTCNN

    collection = open_collection(args.input)
    embedder = open_embedder(args.model, args.backbone, args.device, args.batch_size)
    detector = MTCNN() if args.detect else None
    index = extract_embeddings(
        collection,
        embedder,
        args.out,
        batch_size=args.batch_size,
        normalize=args.normalize,
        detector=detector,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(
        f"wrote {index['count']} x {index['embedding_size']} embeddings ({embedder.name}) of "
        f"{collection.kind} {collection.source} to {args.out}/embeddings.npy, names.txt, index.json"
    )
    return 0
