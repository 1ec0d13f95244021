"""Converters between the training-set formats, and the split of a set into RecordIO parts.

Every converter reads through ``FaceDataset`` (so any supported format is an input) and copies
the encoded images byte for byte: nothing is re-compressed. A listing file (``label.txt``,
``.idx``, ``_SUCCESS``) is written last and atomically, so an interrupted conversion never
leaves a listing that points at missing or half-written images.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from facescale import atomic
from facescale.data.face_dataset import FaceDataset
from facescale.data.image_bin import write_image_bin
from facescale.data.image_codec import decode_image
from facescale.data.recordio import InsightFaceRecWriter, RecordIOWriter, pack_payload
from facescale.errors import DataError, FacescaleError

Progress = Callable[[int], None] | None


def image_extension(data: bytes) -> str:
    """File extension for encoded image bytes, from their magic number."""
    if data.startswith(b"\xff\xd8"):
        return ".jpg"
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data.startswith(b"BM"):
        return ".bmp"
    if data[8:12] == b"WEBP":
        return ".webp"
    return ".jpg"


def _tick(progress: Progress, done: int) -> None:
    if progress is not None:
        progress(done)


def export_images(
    dataset: FaceDataset, out_dir: str | Path, names: list[str] | None = None, progress: Progress = None
) -> int:
    """Write every image as a file under ``out_dir/images/`` and ``out_dir/label.txt``; return the count.

    ``names`` (one per sample) chooses the file names; by default ``00000000.jpg`` ... in sample order.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    used: set[str] = set()
    for i in range(len(dataset)):
        data = dataset.read(i)
        name = names[i] if names is not None else ""
        # A name from a file's own key is untrusted: keep only its last component, never a path.
        name = PurePosixPath(name.replace("\\", "/")).name
        if not name or name in used or name.startswith("."):
            name = f"{i:08d}{image_extension(data)}"
        used.add(name)
        atomic.write_bytes_atomic(out / "images" / name, data)
        lines.append(f"images/{name}\t{int(dataset.labels[i])}\n")
        _tick(progress, i + 1)
    atomic.write_text_atomic(out / "label.txt", "".join(lines))
    return len(lines)


def export_image_bins(dataset: FaceDataset, out_dir: str | Path, progress: Progress = None) -> int:
    """Write Arcface-Paddle per-image bins ``out_dir/images/00000000.bin`` ... and ``label.txt``.

    Each bin's key is the image's original file name, as Arcface-Paddle's converter stores it.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(len(dataset)):
        data = dataset.read(i)
        name = f"{i:08d}"
        key = _source_name(dataset, i) or f"{name}{image_extension(data)}"
        write_image_bin(out / "images" / f"{name}.bin", key, data)
        lines.append(f"images/{name}.bin\t{int(dataset.labels[i])}\n")
        _tick(progress, i + 1)
    atomic.write_text_atomic(out / "label.txt", "".join(lines))
    return len(lines)


def _source_name(dataset: FaceDataset, i: int) -> str:
    """The file name an image had on disk (the key Arcface-Paddle stores), or "" for RecordIO."""
    from facescale.data.file_datasets import ImageFileDataset

    return dataset.file(i).name if isinstance(dataset, ImageFileDataset) else ""


def image_names_from_bins(dataset: FaceDataset) -> list[str]:
    """The key stored in each per-image bin of an ``image_bin`` dataset (its original file name)."""
    from facescale.data.file_datasets import ImageFileDataset
    from facescale.data.image_bin import read_image_bin

    if not isinstance(dataset, ImageFileDataset):
        return []
    return [read_image_bin(dataset.file(i))[0] for i in range(len(dataset))]


def export_rec(dataset: FaceDataset, out_dir: str | Path, progress: Progress = None) -> tuple[int, int]:
    """Write ``train.rec/.idx/property`` in the insightface layout; return (images, classes).

    Images are grouped by label (stable order within a class). Each is decoded once to check it
    and to find the image size for ``property``; sizes must agree.
    """
    order = np.argsort(dataset.labels, kind="stable")
    size: tuple[int, int] | None = None
    with InsightFaceRecWriter(out_dir) as writer:
        for done, i in enumerate(order.tolist(), start=1):
            data = dataset.read(i)
            shape = decode_image(data, dataset.describe(i)).shape[:2]
            if size is None:
                size = (int(shape[0]), int(shape[1]))
                writer.image_size = size
            elif shape != size:
                raise DataError(
                    f"{dataset.describe(i)}: image is {shape[0]}x{shape[1]}, others {size[0]}x{size[1]}"
                )
            writer.add(int(dataset.labels[i]), data)
            _tick(progress, done)
    return len(order), int(dataset.labels.max()) + 1


def split_rec(
    dataset: FaceDataset, out_dir: str | Path, parts: int, seed: int = 0, progress: Progress = None
) -> list[int]:
    """Shuffle and write ``parts`` files ``part-00000.rec/.idx`` ..., a ``property`` and ``_SUCCESS``.

    Part p holds positions ``p, p + parts, ...`` of a permutation drawn from ``seed``; each part is
    im2rec-style (keys 0..n-1, scalar labels). Returns the number of images in each part.
    """
    if parts < 1:
        raise FacescaleError(f"--parts must be >= 1, got {parts}")
    if parts > len(dataset):
        raise FacescaleError(f"cannot split {len(dataset)} images into {parts} parts")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stale = sorted(out.glob("part-*.rec")) + [p for p in [out / "_SUCCESS"] if p.exists()]
    if stale:
        raise FacescaleError(f"{out}: already holds {stale[0].name}; choose an empty folder")
    permutation = np.random.default_rng(seed).permutation(len(dataset))
    counts = []
    done = 0
    height = width = 0
    for part in range(parts):
        members = permutation[part::parts]
        name = f"part-{part:05d}"
        with RecordIOWriter(out / f"{name}.rec", out / f"{name}.idx") as writer:
            for key, i in enumerate(members.tolist()):
                data = dataset.read(i)
                if not height:
                    height, width = decode_image(data, dataset.describe(i)).shape[:2]
                writer.write(key, pack_payload(float(dataset.labels[i]), data, id1=key))
                done += 1
                _tick(progress, done)
        counts.append(len(members))
    num_classes = dataset.num_classes or int(dataset.labels.max()) + 1
    atomic.write_text_atomic(out / "property", f"{num_classes},{height},{width}")
    summary = {"parts": parts, "images": counts, "num_classes": num_classes, "seed": seed}
    atomic.write_text_atomic(out / "_SUCCESS", json.dumps(summary) + "\n")
    return counts
