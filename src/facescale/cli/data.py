"""``facescale data``: convert between dataset formats, split a RecordIO set, inspect and verify a set."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from facescale.config import CHOICES

FORMATS = CHOICES["data.format"]


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
    for register_command in (
        _register_rec2images,
        _register_images2rec,
        _register_images2bin,
        _register_bin2images,
        _register_bin2pairs,
        _register_pairs2bin,
        _register_split,
        _register_inspect,
        _register_verify,
    ):
        register_command(commands)
    parser.set_defaults(func=run, data_parser=parser)


def _add_command(
    commands: Any, name: str, help_text: str, source: str, source_help: str, fmt: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand reading ``source``; ``fmt``: the default of its ``--format`` (None: no option)."""
    sub: argparse.ArgumentParser = commands.add_parser(name, help=help_text, description=help_text)
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


def _register_rec2images(commands: Any) -> None:
    sub = _add_command(
        commands,
        "rec2images",
        "RecordIO -> images/ + label.txt",
        "source",
        "folder with train.rec/.idx (or a .rec)",
        "recordio",
    )
    sub.add_argument("out", help="output folder")
    _add_converter_flags(sub)


def _register_images2rec(commands: Any) -> None:
    sub = _add_command(
        commands,
        "images2rec",
        "images (label.txt or one folder per identity) -> train.rec/.idx/property (insightface layout)",
        "source",
        "folder holding label.txt, or one sub-folder per identity",
        "auto",
    )
    sub.add_argument("out", help="output folder")
    _add_converter_flags(sub)


def _register_images2bin(commands: Any) -> None:
    sub = _add_command(
        commands,
        "images2bin",
        "images -> Arcface-Paddle per-image bins + label.txt",
        "source",
        "input folder",
        "auto",
    )
    sub.add_argument("out", help="output folder")
    _add_converter_flags(sub)


def _register_bin2images(commands: Any) -> None:
    sub = _add_command(
        commands,
        "bin2images",
        "Arcface-Paddle per-image bins -> images + label.txt",
        "source",
        "folder with label.txt",
    )
    sub.add_argument("out", help="output folder")
    _add_converter_flags(sub)


def _register_bin2pairs(commands: Any) -> None:
    sub = _add_command(
        commands,
        "bin2pairs",
        "verification .bin -> images/ + pairs.txt",
        "bin",
        "an LFW-style .bin (lfw.bin, ...)",
    )
    sub.add_argument("out", help="output folder")
    sub.add_argument(
        "--flip", action="store_true", help="also write a horizontally flipped PNG of each image"
    )


def _register_pairs2bin(commands: Any) -> None:
    sub = _add_command(
        commands,
        "pairs2bin",
        "pairs.txt (+ the images it lists) -> verification .bin",
        "pairs",
        "a pairs.txt file",
    )
    sub.add_argument("out", help="the .bin file to write")


def _register_split(commands: Any) -> None:
    sub = _add_command(
        commands,
        "split",
        "shuffle a dataset and write it as N RecordIO parts part-00000.rec/.idx ... + _SUCCESS",
        "source",
        "input dataset",
        "recordio",
    )
    sub.add_argument("out", help="output folder (must hold no parts yet)")
    sub.add_argument("--parts", type=int, required=True, help="number of parts")
    sub.add_argument("--seed", type=int, default=0, help="shuffle seed (default: 0)")
    _add_converter_flags(sub)


def _register_inspect(commands: Any) -> None:
    sub = _add_command(
        commands,
        "inspect",
        "counts, classes, images per class, and a contact sheet PNG",
        "source",
        "dataset",
        "recordio",
    )
    sub.add_argument("--sheet", metavar="PNG", help="write a contact sheet (8 classes x 8 images) here")
    sub.add_argument("--json", action="store_true", help="print the summary as JSON")


def _register_verify(commands: Any) -> None:
    sub = _add_command(
        commands,
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
    _add_check_flags(sub)


def _add_check_flags(sub: argparse.ArgumentParser) -> None:
    """How records are judged: the pixel cap and whether labels may have gaps."""
    from facescale.data.image_codec import DEFAULT_MAX_PIXELS

    sub.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images above this many pixels, read from their header (default: {DEFAULT_MAX_PIXELS}; "
        "0: no cap)",
    )
    sub.add_argument(
        "--sparse-labels",
        action="store_true",
        help="accept labels with gaps (classes without images) instead of failing",
    )


def _add_converter_flags(sub: argparse.ArgumentParser) -> None:
    """The flags every converter takes: what to do with a bad record, and replacing the output."""
    sub.add_argument(
        "--bad-data",
        choices=CHOICES["data.bad_data"],
        default="fail",
        help="a record that does not decode strictly: fail naming it (default) or skip and report it",
    )
    sub.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output folder that already holds files (by default it is refused)",
    )
    _add_check_flags(sub)


def _open(source: str, fmt: str, bad_data: str = "fail", sparse_labels: bool = False) -> Any:
    from facescale.config import DataConfig
    from facescale.data.datasets import open_dataset

    if fmt == "auto":
        fmt = "label_txt" if (Path(source) / "label.txt").is_file() else "image_folder"
    return open_dataset(DataConfig(format=fmt, root=source, bad_data=bad_data, sparse_labels=sparse_labels))


def _convert(args: argparse.Namespace, fmt: str) -> tuple[Any, Any, dict[str, Any]]:
    """(dataset, record check, keyword arguments) shared by the converters."""
    from facescale.data.convert import RecordCheck

    dataset = _open(args.source, fmt, args.bad_data, args.sparse_labels)
    check = RecordCheck(bad_data=args.bad_data, max_pixels=args.max_pixels)
    return dataset, check, {"check": check, "overwrite": args.overwrite}


def _report_skipped(check: Any, dataset: Any) -> None:
    """What a converter left out: records that failed the check, and those the open dropped."""
    skipped = check.report()
    if skipped:
        print(skipped)
    if dataset.excluded_count:
        print(f"{dataset.excluded_count} record(s) excluded when the dataset was opened; first:")
        for text in dataset.excluded:
            print(f"  {text}")


def run(args: argparse.Namespace) -> int:
    from facescale.data import convert, pairs
    from facescale.data.inspect_dataset import contact_sheet, summarize

    command = args.data_command
    if command is None:
        args.data_parser.print_help()
        return 2
    if command == "rec2images":
        dataset, check, options = _convert(args, args.format)
        count = convert.export_images(dataset, args.out, **options)
        _report_skipped(check, dataset)
        print(f"wrote {count} images and label.txt to {args.out}")
    elif command == "images2rec":
        dataset, check, options = _convert(args, args.format)
        images, classes = convert.export_rec(dataset, args.out, **options)
        _report_skipped(check, dataset)
        print(f"wrote {images} images of {classes} classes to {args.out}/train.rec")
    elif command == "images2bin":
        dataset, check, options = _convert(args, args.format)
        count = convert.export_image_bins(dataset, args.out, **options)
        _report_skipped(check, dataset)
        print(f"wrote {count} per-image bins and label.txt to {args.out}")
    elif command == "bin2images":
        dataset, check, options = _convert(args, "image_bin")
        count = convert.export_images(
            dataset, args.out, names=convert.image_names_from_bins(dataset), **options
        )
        _report_skipped(check, dataset)
        print(f"wrote {count} images and label.txt to {args.out}")
    elif command == "bin2pairs":
        count = pairs.bin_to_pairs(args.bin, args.out, flip=args.flip)
        print(f"wrote {count} pairs to {args.out}/pairs.txt")
    elif command == "pairs2bin":
        count = pairs.pairs_to_bin(args.pairs, args.out)
        print(f"wrote {count} pairs to {args.out}")
    elif command == "split":
        dataset, check, options = _convert(args, args.format)
        counts = convert.split_rec(dataset, args.out, args.parts, args.seed, **options)
        _report_skipped(check, dataset)
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

    # bad_data=skip: what the open drops is reported too
    dataset = _open(args.source, args.format, bad_data="skip", sparse_labels=args.sparse_labels)
    tqdm.monitor_interval = 0  # no monitor thread alive when the decoding workers are forked
    with tqdm(total=len(dataset), unit="img", desc="verify", disable=not sys.stderr.isatty()) as bar:
        workers = args.workers if args.workers is not None else _usable_cores()
        report = verify_dataset(dataset, workers, progress=bar.update, max_pixels=args.max_pixels)
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
