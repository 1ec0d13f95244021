"""``facescale data``: convert between dataset formats, split a RecordIO set, inspect and verify a set."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

FORMATS = ("recordio", "label_txt", "image_folder", "image_bin")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "data",
        help="convert, split and inspect training / verification data",
        description=(
            "Convert between the formats face datasets ship in (MXNet RecordIO, image folder + "
            "label.txt, one folder per identity, Arcface-Paddle per-image bins, LFW-style verification "
            "bins), split a RecordIO set into parts, inspect a set and verify every image of it. Images are "
            "copied byte for byte."
        ),
    )
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    def add(
        name: str, help_text: str, source: str, source_help: str, fmt: str | None = None
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(source, help=source_help)
        if fmt is not None:
            sub.add_argument(
                "--format",
                choices=(*FORMATS, "auto") if fmt == "auto" else FORMATS,
                default=fmt,
                help=f"format of the input (default: {fmt}"
                + ("; auto: label_txt when label.txt exists, else image_folder)" if fmt == "auto" else ")"),
            )
        return sub

    sub = add(
        "rec2images",
        "RecordIO -> images/ + label.txt",
        "source",
        "folder with train.rec/.idx (or a .rec)",
        "recordio",
    )
    sub.add_argument("out", help="output folder")
    sub = add(
        "images2rec",
        "images (label.txt or one folder per identity) -> train.rec/.idx/property (insightface layout)",
        "source",
        "folder holding label.txt, or one sub-folder per identity",
        "auto",
    )
    sub.add_argument("out", help="output folder")
    sub = add(
        "images2bin", "images -> Arcface-Paddle per-image bins + label.txt", "source", "input folder", "auto"
    )
    sub.add_argument("out", help="output folder")
    sub = add(
        "bin2images", "Arcface-Paddle per-image bins -> images + label.txt", "source", "folder with label.txt"
    )
    sub.add_argument("out", help="output folder")
    sub = add(
        "bin2pairs", "verification .bin -> images/ + pairs.txt", "bin", "an LFW-style .bin (lfw.bin, ...)"
    )
    sub.add_argument("out", help="output folder")
    sub.add_argument(
        "--flip", action="store_true", help="also write a horizontally flipped PNG of each image"
    )
    sub = add(
        "pairs2bin", "pairs.txt (+ the images it lists) -> verification .bin", "pairs", "a pairs.txt file"
    )
    sub.add_argument("out", help="the .bin file to write")
    sub = add(
        "split",
        "shuffle a dataset and write it as N RecordIO parts part-00000.rec/.idx ... + _SUCCESS",
        "source",
        "input dataset",
        "recordio",
    )
    sub.add_argument("out", help="output folder (must hold no parts yet)")
    sub.add_argument("--parts", type=int, required=True, help="number of parts")
    sub.add_argument("--seed", type=int, default=0, help="shuffle seed (default: 0)")
    sub = add(
        "inspect",
        "counts, classes, images per class, and a contact sheet PNG",
        "source",
        "dataset",
        "recordio",
    )
    sub.add_argument("--sheet", metavar="PNG", help="write a contact sheet (8 classes x 8 images) here")
    sub.add_argument("--json", action="store_true", help="print the summary as JSON")
    sub = add(
        "verify",
        "decode every image strictly once and name the bad records (exit 1 if there are any): "
        "run it before a long run, and always with data.dali=true",
        "source",
        "dataset",
        "recordio",
    )
    sub.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding processes (default: one per core this process may use; 0: in this process)",
    )
    sub.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run, data_parser=parser)


def _open(source: str, fmt: str, bad_data: str = "fail") -> Any:
    from facescale.config import DataConfig
    from facescale.data.datasets import open_dataset

    if fmt == "auto":
        fmt = "label_txt" if (Path(source) / "label.txt").is_file() else "image_folder"
    return open_dataset(DataConfig(format=fmt, root=source, bad_data=bad_data))


def run(args: argparse.Namespace) -> int:
    from facescale.data import convert, pairs
    from facescale.data.inspect_dataset import contact_sheet, summarize

    command = args.data_command
    if command is None:
        args.data_parser.print_help()
        return 2
    if command == "rec2images":
        count = convert.export_images(_open(args.source, args.format), args.out)
        print(f"wrote {count} images and label.txt to {args.out}")
    elif command == "images2rec":
        images, classes = convert.export_rec(_open(args.source, args.format), args.out)
        print(f"wrote {images} images of {classes} classes to {args.out}/train.rec")
    elif command == "images2bin":
        count = convert.export_image_bins(_open(args.source, args.format), args.out)
        print(f"wrote {count} per-image bins and label.txt to {args.out}")
    elif command == "bin2images":
        dataset = _open(args.source, "image_bin")
        count = convert.export_images(dataset, args.out, names=convert.image_names_from_bins(dataset))
        print(f"wrote {count} images and label.txt to {args.out}")
    elif command == "bin2pairs":
        count = pairs.bin_to_pairs(args.bin, args.out, flip=args.flip)
        print(f"wrote {count} pairs to {args.out}/pairs.txt")
    elif command == "pairs2bin":
        count = pairs.pairs_to_bin(args.pairs, args.out)
        print(f"wrote {count} pairs to {args.out}")
    elif command == "split":
        counts = convert.split_rec(_open(args.source, args.format), args.out, args.parts, args.seed)
        print(f"wrote {len(counts)} parts ({min(counts)}..{max(counts)} images each) to {args.out}")
    elif command == "inspect":
        dataset = _open(args.source, args.format)
        summary = summarize(dataset)
        if args.json:
            from facescale.cli._common import print_json

            print_json(summary.to_dict())
        else:
            print(summary.to_text())
        if args.sheet:
            print(f"contact sheet: {contact_sheet(dataset, args.sheet)}")
    elif command == "verify":
        return _verify(args)
    return 0


def _verify(args: argparse.Namespace) -> int:
    import sys

    from tqdm import tqdm

    from facescale.data.verify_dataset import verify_dataset

    dataset = _open(args.source, args.format, bad_data="skip")  # report what the open drops too
    tqdm.monitor_interval = 0  # no monitor thread alive when the decoding workers are forked
    with tqdm(total=len(dataset), unit="img", desc="verify", disable=not sys.stderr.isatty()) as bar:
        workers = args.workers if args.workers is not None else _usable_cores()
        report = verify_dataset(dataset, workers, progress=bar.update)
    if args.json:
        from facescale.cli._common import print_json

        print_json(report.to_dict())
    else:
        print(report.to_text())
    return 0 if report.ok else 1


def _usable_cores() -> int:
    """Cores this process may run on (its affinity, e.g. under a batch scheduler), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
