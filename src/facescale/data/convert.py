"""Converters between the training-set formats, and the split of a set into RecordIO parts.

Every converter reads through ``FaceDataset`` (so any supported format is an input) and copies
the encoded images byte for byte: nothing is re-compressed. Every record is first checked the
way training checks it (read, then a strict decode with the pixel cap): a bad one stops the
conversion naming it (``bad_data="fail"``) or is left out and reported (``"skip"``), so no
converter copies a corrupt, empty or non-image file. The output is built in a fresh hidden
folder and renamed into place at the end (``staging.staged_folder``): a failed or killed
conversion leaves the target as it was, and a target holding files is refused unless
``overwrite``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from facescale import atomic
from facescale.config import CHOICES
from facescale.data.face_dataset import FaceDataset
from facescale.data.image_bin import write_image_bin
from facescale.data.image_codec import DEFAULT_MAX_PIXELS, decode_image
from facescale.data.recordio import InsightFaceRecWriter, RecordIOWriter, pack_payload
from facescale.data.recordio_dataset import SUCCESS_FILE
from facescale.data.staging import staged_folder
from facescale.errors import DataError, FacescaleError

Progress = Callable[[int], None] | None
MAX_LISTED = 10


@dataclass
class RecordCheck:
    """The check every converter applies to each record, and what it skipped (``bad_data="skip"``)."""

    bad_data: str = "fail"
    max_pixels: int = DEFAULT_MAX_PIXELS
    skipped_count: int = 0
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.bad_data not in CHOICES["data.bad_data"]:
            raise FacescaleError(f"bad_data must be 'fail' or 'skip', got {self.bad_data!r}")

    def read(self, dataset: FaceDataset, i: int) -> tuple[bytes, tuple[int, int]] | None:
        """``(encoded bytes, (height, width))`` of record ``i`` once it decodes strictly; None if skipped."""
        try:
            data = dataset.read(i)
            shape = decode_image(data, dataset.describe(i), self.max_pixels).shape
        except DataError as e:
            if self.bad_data == "fail":
                raise DataError(f"{e} (--bad-data skip leaves such records out)") from None
            self.skipped_count += 1
            if len(self.skipped) < MAX_LISTED:
                self.skipped.append(str(e))
            return None
        return data, (int(shape[0]), int(shape[1]))

    def report(self) -> str | None:
        """The skipped records (count and first few), or None when none was."""
        if not self.skipped_count:
            return None
        lines = [f"skipped {self.skipped_count} bad record(s); first:"]
        lines += [f"  {text}" for text in self.skipped]
        return "\n".join(lines)


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


def _checked_records(
    dataset: FaceDataset, check: RecordCheck, indices: Iterable[int], progress: Progress, ticked: int = 0
) -> Iterator[tuple[int, bytes, tuple[int, int]]]:
    """``(i, encoded bytes, (height, width))`` of each record in ``indices`` that passes ``check``,
    in order; the progress counts every record read, skipped ones included (from ``ticked`` on)."""
    for done, i in enumerate(indices, start=ticked + 1):
        _tick(progress, done)
        record = check.read(dataset, i)
        if record is not None:
            yield i, record[0], record[1]


def unique_name(name: str, i: int, extension: str, used: set[str]) -> str:
    """A file name for sample ``i`` not in ``used``: its stored name when usable, else ``{i:08d}.ext``.

    A name from a file's own key is untrusted: only its last component is kept, never a path.
    A fallback can collide with a stored name used earlier, so it gets ``-1``, ``-2`` ... then.
    """
    name = PurePosixPath(name.replace("\\", "/")).name
    if not name or name in used or name.startswith("."):
        name = f"{i:08d}{extension}"
    stem, dot, suffix = name.rpartition(".")
    base, ext = (stem, dot + suffix) if dot else (name, "")
    revision = 0
    while name in used:
        revision += 1
        name = f"{base}-{revision}{ext}"
    return name


def export_images(
    dataset: FaceDataset,
    out_dir: str | Path,
    names: list[str] | None = None,
    progress: Progress = None,
    check: RecordCheck | None = None,
    overwrite: bool = False,
) -> int:
    """Write every image as a file under ``out_dir/images/`` and ``out_dir/label.txt``; return the count.

    ``names`` (one per sample) chooses the file names; by default ``00000000.jpg`` ... in sample order.
    No two samples ever share a file.
    """
    check = check or RecordCheck()
    with staged_folder(out_dir, overwrite) as out:
        (out / "images").mkdir()
        lines = []
        used: set[str] = set()
        for i, data, _ in _checked_records(dataset, check, range(len(dataset)), progress):
            name = unique_name(names[i] if names is not None else "", i, image_extension(data), used)
            used.add(name)
            atomic.write_bytes_atomic(out / "images" / name, data)
            lines.append(f"images/{name}\t{int(dataset.labels[i])}\n")
        _require_some(len(lines), dataset)
        atomic.write_text_atomic(out / "label.txt", "".join(lines))
    return len(lines)


def _require_some(written: int, dataset: FaceDataset) -> None:
    """DataError when the check left no record (``written``: how many were converted)."""
    if not written:
        raise DataError(f"{dataset.root}: every record is bad; nothing converted")


def export_image_bins(
    dataset: FaceDataset,
    out_dir: str | Path,
    progress: Progress = None,
    check: RecordCheck | None = None,
    overwrite: bool = False,
) -> int:
    """Write Arcface-Paddle per-image bins ``out_dir/images/00000000.bin`` ... and ``label.txt``.

    Each bin's key is the image's original file name, as Arcface-Paddle's converter stores it.
    """
    check = check or RecordCheck()
    with staged_folder(out_dir, overwrite) as out:
        (out / "images").mkdir()
        lines = []
        for i, data, _ in _checked_records(dataset, check, range(len(dataset)), progress):
            name = f"{i:08d}"
            key = _source_name(dataset, i) or f"{name}{image_extension(data)}"
            write_image_bin(out / "images" / f"{name}.bin", key, data)
            lines.append(f"images/{name}.bin\t{int(dataset.labels[i])}\n")
        _require_some(len(lines), dataset)
        atomic.write_text_atomic(out / "label.txt", "".join(lines))
    return len(lines)


def _source_name(dataset: FaceDataset, i: int) -> str:
    """The file name an image had on disk (the key Arcface-Paddle stores), or "" for RecordIO."""
    from facescale.data.file_datasets import ImageFileDataset

    return dataset.file(i).name if isinstance(dataset, ImageFileDataset) else ""


def image_names_from_bins(dataset: FaceDataset) -> list[str]:
    """The key stored in each per-image bin of an ``image_bin`` dataset (its original file name).

    An unreadable bin gets "" here: the record check of the conversion names it (or skips it).
    """
    from facescale.data.file_datasets import ImageFileDataset
    from facescale.data.image_bin import read_image_bin

    if not isinstance(dataset, ImageFileDataset):
        return []
    names = []
    for i in range(len(dataset)):
        try:
            names.append(read_image_bin(dataset.confined_file(i))[0])
        except DataError:
            names.append("")
    return names


def export_rec(
    dataset: FaceDataset,
    out_dir: str | Path,
    progress: Progress = None,
    check: RecordCheck | None = None,
    overwrite: bool = False,
) -> tuple[int, int]:
    """Write ``train.rec/.idx/property`` in the insightface layout; return (images, classes).

    Images are grouped by label (stable order within a class). Each is decoded once to check it
    and to find the image size for ``property``; sizes must agree. ``classes`` is what ``property``
    says: the largest label written + 1 (below the dataset's count when skipped records emptied
    its last classes).
    """
    check = check or RecordCheck()
    order = np.argsort(dataset.labels, kind="stable")
    size: tuple[int, int] | None = None
    num_classes = 0  # what ``property`` will say: the largest label written + 1
    with staged_folder(out_dir, overwrite) as out, InsightFaceRecWriter(out) as writer:
        for i, data, shape in _checked_records(dataset, check, order.tolist(), progress):
            if size is None:
                size = shape
                writer.image_size = size
            elif shape != size:
                raise DataError(
                    f"{dataset.describe(i)}: image is {shape[0]}x{shape[1]}, others {size[0]}x{size[1]}"
                )
            writer.add(int(dataset.labels[i]), data)
            num_classes = max(num_classes, int(dataset.labels[i]) + 1)
        _require_some(writer.num_images, dataset)
    return writer.num_images, num_classes


def split_rec(
    dataset: FaceDataset,
    out_dir: str | Path,
    parts: int,
    seed: int = 0,
    progress: Progress = None,
    check: RecordCheck | None = None,
    overwrite: bool = False,
) -> list[int]:
    """Shuffle and write ``parts`` files ``part-00000.rec/.idx`` ..., a ``property`` and ``_SUCCESS``.

    Part p holds positions ``p, p + parts, ...`` of a permutation drawn from ``seed``; each part is
    im2rec-style (keys 0..n-1, scalar labels). Returns the number of images in each part (fewer
    than its share when bad records were skipped). The folder appears only once all parts, the
    ``property`` and ``_SUCCESS`` are written; training refuses a parts folder without ``_SUCCESS``.
    """
    if parts < 1:
        raise FacescaleError(f"--parts must be >= 1, got {parts}")
    if parts > len(dataset):
        raise FacescaleError(f"cannot split {len(dataset)} images into {parts} parts")
    check = check or RecordCheck()
    permutation = np.random.default_rng(seed).permutation(len(dataset))
    counts = []
    done = 0
    height = width = 0
    with staged_folder(out_dir, overwrite) as out:
        for part in range(parts):
            members = permutation[part::parts]
            name = f"part-{part:05d}"
            key = 0
            with RecordIOWriter(out / f"{name}.rec", out / f"{name}.idx") as writer:
                for i, data, shape in _checked_records(dataset, check, members.tolist(), progress, done):
                    if not height:
                        height, width = shape
                    writer.write(key, pack_payload(float(dataset.labels[i]), data, id1=key))
                    key += 1
                done += len(members)
            counts.append(key)
        _require_some(sum(counts), dataset)
        num_classes = dataset.num_classes or int(dataset.labels.max()) + 1
        atomic.write_text_atomic(out / "property", f"{num_classes},{height},{width}")
        summary = {"parts": parts, "images": counts, "num_classes": num_classes, "seed": seed}
        atomic.write_text_atomic(out / SUCCESS_FILE, json.dumps(summary) + "\n")
    return counts
