"""Training sets stored as MXNet RecordIO: insightface layout, im2rec output, or split parts.

- insightface layout (MS1M-ArcFace, Glint360K, WebFace...): record 0 is a header whose labels
  ``[a, b]`` say images are keys ``1..a-1`` and identity records ``a..b-1`` hold each identity's
  ``[start, end)`` image keys. Labels come from the identity records (one read per identity,
  not per image) when they are exact in float32; each read still checks the image's own label.
- im2rec output: no header; every key in ``.idx`` (any order) is an image.
- a folder of ``part-00000.rec/.idx ...`` (``facescale data split``): the parts concatenated.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from facescale.data.face_dataset import DATASETS, FaceDataset
from facescale.data.recordio import RecordIOReader, unpack_payload
from facescale.errors import DataError

# float32 holds every integer up to 2**24 exactly; beyond it identity ranges may be rounded.
_FLOAT32_EXACT = 1 << 24


def _is_identity_record(reader: RecordIOReader, key: int) -> bool:
    header, image = unpack_payload(reader.read(key), reader.where(key))
    return header.flag == 2 and len(image) == 0


def _insightface_bounds(reader: RecordIOReader) -> tuple[int, int] | None:
    """``(a, b)`` from record 0 when the file has the insightface header, else None."""
    if 0 not in reader:
        return None
    header, image = unpack_payload(reader.read(0), reader.where(0))
    if header.flag == 0 or len(image) > 0 or not isinstance(header.label, np.ndarray):
        return None
    a, b = round(float(header.label[0])), round(float(header.label[1]))
    # A header above 2**24 may be off by one after float32 rounding: find the real boundary.
    while a - 1 >= 1 and a - 1 in reader and _is_identity_record(reader, a - 1):
        a -= 1
    while a in reader and not _is_identity_record(reader, a):
        a += 1
    return a, max(a, b)


def _labels_from_identities(reader: RecordIOReader, a: int, b: int) -> np.ndarray | None:
    """Labels of images ``1..a-1`` from identity records; None when those do not tile the images."""
    if b >= _FLOAT32_EXACT or b <= a:
        return None
    labels = np.full(a - 1, -1, dtype=np.int64)
    expected_start = 1
    for identity, key in enumerate(range(a, b)):
        if key not in reader:
            return None
        header = reader.read_header(key)
        if header.flag != 2 or not isinstance(header.label, np.ndarray):
            return None
        start, end = (round(float(x)) for x in header.label[:2])
        if start != expected_start or end < start or end > a:
            return None
        labels[start - 1 : end - 1] = identity
        expected_start = end
    return labels if expected_start == a else None


def image_keys_and_labels(reader: RecordIOReader) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """The image keys of one ``.rec``, their int64 labels, and ``{position: problem}`` for records
    whose label could not be read (label -1 there; ``open_dataset`` fails or skips them)."""
    bounds = _insightface_bounds(reader)
    if bounds is not None:
        a, b = bounds
        keys = np.arange(1, a, dtype=np.int64)
        missing = [int(k) for k in keys if int(k) not in reader]
        if missing:
            raise DataError(
                f"{reader.idx_path}: the header of {reader.rec_path} announces image keys 1..{a - 1} "
                f"but key {missing[0]} is not in the index ({len(missing)} missing)"
            )
        labels = _labels_from_identities(reader, a, b)
        if labels is not None:
            return keys, labels, {}
    else:
        keys = reader.key_array
    labels = np.full(len(keys), -1, dtype=np.int64)
    problems: dict[int, str] = {}
    for position, key in enumerate(keys.tolist()):
        try:
            value = reader.read_label(key)
        except DataError as e:
            problems[position] = str(e)
            continue
        if value != round(value) or not np.isfinite(value):
            problems[position] = f"{reader.where(key)}: label {value} is not an integer"
            continue
        labels[position] = round(value)
    return keys, labels, problems


class RecordIODataset(FaceDataset):
    """Images from one or more ``.rec`` files; sample i is record ``keys[i]`` of ``readers[parts[i]]``."""

    def __init__(self, root: Path, readers: list[RecordIOReader], num_classes: int = 0) -> None:
        all_keys: list[np.ndarray] = []
        all_parts: list[np.ndarray] = []
        all_labels: list[np.ndarray] = []
        unreadable: dict[int, str] = {}
        for index, reader in enumerate(readers):
            keys, labels, problems = image_keys_and_labels(reader)
            offset = sum(len(k) for k in all_keys)
            unreadable.update({offset + position: text for position, text in problems.items()})
            all_keys.append(keys)
            all_parts.append(np.full(len(keys), index, dtype=np.int32))
            all_labels.append(labels)
        super().__init__(root, np.concatenate(all_labels), num_classes)
        self.readers = readers
        self.keys = np.concatenate(all_keys)
        self.parts = np.concatenate(all_parts)
        self.unreadable = unreadable

    def describe(self, i: int) -> str:
        return self.readers[self.parts[i]].where(int(self.keys[i]))

    def read(self, i: int) -> bytes:
        reader = self.readers[self.parts[i]]
        key = int(self.keys[i])
        header, image = unpack_payload(reader.read(key), reader.where(key))
        if header.first_label != self.labels[i]:
            raise DataError(
                f"{reader.where(key)}: the record's label {header.first_label:g} differs from "
                f"{self.labels[i]} given by the identity records"
            )
        if not image:
            raise DataError(f"{reader.where(key)}: the record holds no image")
        return image

    def _select(self, keep: np.ndarray) -> None:
        self.keys = self.keys[keep]
        self.parts = self.parts[keep]


def read_property(path: Path) -> int:
    """``num_classes`` from a ``property`` file (``num_classes,height,width``); 0 if absent."""
    if not path.is_file():
        return 0
    text = path.read_text().strip()
    try:
        return int(text.split(",")[0])
    except ValueError:
        raise DataError(f"{path}: expected 'num_classes,height,width', got {text!r}") from None


def _reader(rec: Path) -> RecordIOReader:
    idx = rec.with_suffix(".idx")
    return RecordIOReader(rec, idx if idx.is_file() else None)


SUCCESS_FILE = "_SUCCESS"  # written last by ``facescale data split``: the parts are complete


def _check_split_complete(root: Path, parts: list[Path]) -> None:
    """A parts folder is used only when ``_SUCCESS`` says its split finished, with as many parts.

    A split that failed after part 0 would otherwise train silently on a fraction of the images.
    """
    marker = root / SUCCESS_FILE
    if not marker.is_file():
        raise DataError(
            f"{root}: holds {len(parts)} part-*.rec file(s) but no {SUCCESS_FILE}: the "
            "`facescale data split` that wrote them did not finish; split again into an empty folder"
        )
    try:
        expected = int(json.loads(marker.read_text())["parts"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{marker}: not a `facescale data split` summary ({type(e).__name__}: {e})") from None
    if expected != len(parts):
        raise DataError(f"{marker}: says {expected} parts, but {root} holds {len(parts)} part-*.rec files")


def find_rec_files(root: Path) -> list[Path]:
    """The ``.rec`` files a root names: itself, its ``part-*.rec``, ``train.rec`` or its only ``.rec``."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DataError(f"{root}: no such file or folder (data.root)")
    parts = sorted(root.glob("part-*.rec"))
    if parts:
        _check_split_complete(root, parts)
        return parts
    if (root / "train.rec").is_file():
        return [root / "train.rec"]
    recs = sorted(root.glob("*.rec"))
    if len(recs) == 1:
        return recs
    if not recs:
        raise DataError(f"{root}: no train.rec, part-*.rec or other .rec file found")
    raise DataError(f"{root}: several .rec files ({', '.join(p.name for p in recs)}); point data.root at one")


@DATASETS.register("recordio")
def open_recordio(root: Path) -> RecordIODataset:
    """Open ``train.rec``/``.idx``(/``property``), a single ``.rec`` file or a folder of parts."""
    recs = find_rec_files(root)
    folder = root if root.is_dir() else root.parent
    return RecordIODataset(root, [_reader(rec) for rec in recs], read_property(folder / "property"))
