"""MXNet RecordIO (``.rec`` + ``.idx``) read and written without MXNet.

A record is ``uint32 magic 0xced7230a | uint32 (cflag << 29 | length) | data | zero pad to 4``.
dmlc's writer never lets the magic appear 4-aligned inside a record's data: it cuts the data at
each such place and writes the pieces as parts (cflag 1 = first, 2 = middle, 3 = last); the
reader glues them back with the magic in between. A payload is ``struct "IfQQ"`` = (flag,
label, id, id2), then ``flag`` float32 labels when flag > 0 (the label is then the first),
then the encoded image. The ``.idx`` file has lines ``key<TAB>byte offset``.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from facescale import atomic
from facescale.errors import DataError

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_HEAD = struct.Struct("<II")  # magic, cflag << 29 | length
_PAYLOAD_HEAD = struct.Struct("<IfQQ")  # flag, label, id, id2
_LENGTH_MASK = (1 << 29) - 1
_MAX_PART_LENGTH = _LENGTH_MASK


@dataclass
class RecordHeader:
    """The fixed header of a payload; ``label`` is a float, or a float32 array when flag > 0."""

    flag: int
    label: float | np.ndarray
    id1: int = 0
    id2: int = 0

    @property
    def first_label(self) -> float:
        """The class label: the scalar label, or the first of the label array (flag > 0)."""
        if isinstance(self.label, np.ndarray):
            return float(self.label[0])
        return float(self.label)


def pack_payload(label: float | Sequence[float], image: bytes, id1: int = 0, id2: int = 0) -> bytes:
    """A payload as MXNet's ``recordio.pack`` writes it: a scalar label, or an array (flag = its size)."""
    if isinstance(label, (int, float, np.integer, np.floating)):
        return _PAYLOAD_HEAD.pack(0, float(label), id1, id2) + image
    labels = np.asarray(label, dtype="<f4").ravel()
    return _PAYLOAD_HEAD.pack(labels.size, 0.0, id1, id2) + labels.tobytes() + image


def unpack_payload(payload: bytes, where: str) -> tuple[RecordHeader, bytes]:
    """Split a payload into its header and the image bytes; DataError naming ``where`` if too short."""
    if len(payload) < _PAYLOAD_HEAD.size:
        raise DataError(f"{where}: record payload of {len(payload)} bytes is shorter than its 24-byte header")
    flag, label, id1, id2 = _PAYLOAD_HEAD.unpack_from(payload)
    rest = _PAYLOAD_HEAD.size
    if flag > 0:
        end = rest + 4 * flag
        if len(payload) < end:
            raise DataError(f"{where}: record says it holds {flag} labels but has only {len(payload)} bytes")
        labels = np.frombuffer(payload, dtype="<f4", count=flag, offset=rest).copy()
        return RecordHeader(flag, labels, id1, id2), payload[end:]
    return RecordHeader(flag, label, id1, id2), payload[rest:]


def encode_record(payload: bytes) -> bytes:
    """The bytes dmlc's ``RecordIOWriter::WriteRecord`` writes for one payload (parts + padding)."""
    chunks: list[bytes] = []
    view = memoryview(payload)
    start = 0
    aligned_end = (len(payload) // 4) * 4
    position = payload.find(_MAGIC_BYTES)
    while 0 <= position < aligned_end:
        if position % 4 == 0:
            cflag = 1 if start == 0 else 2
            chunks.append(_HEAD.pack(MAGIC, (cflag << 29) | (position - start)))
            chunks.append(view[start:position].tobytes())
            start = position + 4
        position = payload.find(_MAGIC_BYTES, position + 1)
    length = len(payload) - start
    if length > _MAX_PART_LENGTH:
        raise ValueError(f"a RecordIO record part holds at most {_MAX_PART_LENGTH} bytes, got {length}")
    chunks.append(_HEAD.pack(MAGIC, ((3 if start else 0) << 29) | length))
    chunks.append(view[start:].tobytes())
    chunks.append(b"\0" * (-len(payload) % 4))
    return b"".join(chunks)


class RecordIOWriter:
    """Write ``.rec`` + ``.idx`` under temporary names; both are renamed into place on a clean close."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path)
        self._rec_temp = atomic.temp_name(self.rec_path)
        self._idx_temp = atomic.temp_name(self.idx_path)
        self._rec = open(self._rec_temp, "wb")  # noqa: SIM115 (closed in close/abort)
        self._idx = open(self._idx_temp, "w")  # noqa: SIM115
        self._keys: set[int] = set()
        self.closed = False

    def tell(self) -> int:
        return self._rec.tell()

    def write(self, key: int, payload: bytes) -> None:
        """Append one record under ``key`` (any order; each key once)."""
        if key in self._keys:
            raise ValueError(f"{self.rec_path}: key {key} written twice")
        self._keys.add(key)
        self._idx.write(f"{key}\t{self._rec.tell()}\n")
        self._rec.write(encode_record(payload))

    def overwrite_at(self, offset: int, payload: bytes, expected_size: int) -> None:
        """Replace the record at ``offset`` by one of exactly ``expected_size`` encoded bytes."""
        data = encode_record(payload)
        if len(data) != expected_size:
            raise ValueError(f"replacement record is {len(data)} bytes, the slot holds {expected_size}")
        end = self._rec.tell()
        self._rec.seek(offset)
        self._rec.write(data)
        self._rec.seek(end)

    def close(self) -> None:
        """Flush, fsync and rename both files into place."""
        if self.closed:
            return
        self.closed = True
        self._rec.close()
        self._idx.close()
        atomic.commit(self._rec_temp, self.rec_path)
        atomic.commit(self._idx_temp, self.idx_path)

    def abort(self) -> None:
        """Drop everything written so far; the final names are left untouched."""
        if self.closed:
            return
        self.closed = True
        self._rec.close()
        self._idx.close()
        atomic.discard(self._rec_temp)
        atomic.discard(self._idx_temp)

    def __enter__(self) -> RecordIOWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _parse_index_slowly(idx_path: Path, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Line-by-line parse that names the first malformed or duplicated line."""
    keys: list[int] = []
    offsets: list[int] = []
    seen: set[int] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) != 2:
                raise ValueError
            key, offset = int(fields[0]), int(fields[1])
        except ValueError:
            raise DataError(f"{idx_path}:{number}: expected 'key<TAB>offset', got {line!r}") from None
        if key in seen:
            raise DataError(f"{idx_path}:{number}: key {key} appears twice")
        seen.add(key)
        keys.append(key)
        offsets.append(offset)
    return np.asarray(keys, dtype=np.int64), np.asarray(offsets, dtype=np.int64)


def read_index(idx_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Keys in file order and their byte offsets (int64 ``[n]`` each) from ``key<TAB>offset`` lines.

    Parsed in bulk with numpy: Glint360K's index has 17 million lines, which would take
    gigabytes as a dict of Python ints. Anything irregular goes through the line-by-line parser.
    """
    try:
        text = idx_path.read_text()
    except OSError as e:
        raise DataError(f"{idx_path}: cannot read the RecordIO index ({e.strerror})") from None
    lines = text.split("\n")
    non_empty = len(lines) - sum(1 for line in lines if not line.strip())
    del lines
    try:
        values = np.array(text.split(), dtype=np.int64)
    except ValueError:
        return _parse_index_slowly(idx_path, text)
    if values.size != 2 * non_empty:
        return _parse_index_slowly(idx_path, text)
    keys, offsets = values[0::2].copy(), values[1::2].copy()
    if len(np.unique(keys)) != len(keys):
        return _parse_index_slowly(idx_path, text)
    return keys, offsets


def scan_offsets(rec_path: Path) -> list[int]:
    """Byte offsets of every record in a ``.rec`` by walking it (for a file without ``.idx``)."""
    offsets: list[int] = []
    size = rec_path.stat().st_size
    with open(rec_path, "rb") as f:
        position = 0
        in_record = False
        while position < size:
            head = f.read(8)
            if len(head) < 8:
                raise DataError(f"{rec_path}: truncated record header at byte {position}")
            magic, lrec = _HEAD.unpack(head)
            if magic != MAGIC:
                raise DataError(f"{rec_path}: no RecordIO magic at byte {position}")
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            if not in_record:
                offsets.append(position)
            in_record = cflag in (1, 2)
            position += 8 + length + (-length % 4)
            f.seek(position)
    return offsets


class RecordIOReader:
    """Random access to the records of a ``.rec`` through its ``.idx``.

    Reads with ``os.pread`` on a descriptor opened lazily in the current process, so one
    reader can be handed to forked DataLoader workers (each opens its own descriptor).
    """

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.rec_path = Path(rec_path)
        if not self.rec_path.is_file():
            raise DataError(f"{self.rec_path}: RecordIO file not found")
        self.size = self.rec_path.stat().st_size
        if idx_path is not None:
            self.idx_path: Path | None = Path(idx_path)
            self._keys, self._offsets = read_index(self.idx_path)
        else:
            self.idx_path = None
            self._offsets = np.asarray(scan_offsets(self.rec_path), dtype=np.int64)
            self._keys = np.arange(len(self._offsets), dtype=np.int64)
        self._order = np.argsort(self._keys, kind="stable")
        self._sorted_keys = self._keys[self._order]
        self._fd: int | None = None
        self._pid = -1

    @property
    def keys(self) -> list[int]:
        """Record keys in ``.idx`` order."""
        return self._keys.tolist()

    @property
    def key_array(self) -> np.ndarray:
        """Record keys in ``.idx`` order, int64 ``[n]`` (no Python list for 17M keys)."""
        return self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def offset(self, key: int) -> int:
        """Byte offset of record ``key`` in the ``.rec``, or -1 when the index has no such key."""
        position = int(np.searchsorted(self._sorted_keys, key))
        if position < len(self._sorted_keys) and self._sorted_keys[position] == key:
            return int(self._offsets[self._order[position]])
        return -1

    def __contains__(self, key: int) -> bool:
        return self.offset(key) >= 0

    def where(self, key: int) -> str:
        """``file key N`` for error messages."""
        return f"{self.rec_path} record {key}"

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.rec_path, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def read(self, key: int) -> bytes:
        """The payload of record ``key``; DataError for an unknown key or a damaged record."""
        offset = self.offset(key)
        if offset < 0:
            raise DataError(f"{self.rec_path}: no record with key {key} in {self.idx_path}")
        if offset + 8 > self.size:
            raise DataError(
                f"{self.where(key)}: index {self.idx_path} gives offset {offset}, past the end of the "
                f"{self.size}-byte file"
            )
        fd = self._descriptor()
        parts: list[bytes] = []
        position = offset
        while True:
            head = os.pread(fd, 8, position)
            if len(head) < 8:
                raise DataError(f"{self.where(key)}: truncated record header at byte {position}")
            magic, lrec = _HEAD.unpack(head)
            if magic != MAGIC:
                raise DataError(
                    f"{self.where(key)}: no RecordIO magic at byte {position} (found {magic:#010x}); "
                    f"the index {self.idx_path} does not match the file"
                )
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            data = os.pread(fd, length, position + 8)
            if len(data) < length:
                raise DataError(
                    f"{self.where(key)}: truncated record: {length} bytes announced at byte {position}, "
                    f"{len(data)} present"
                )
            parts.append(data)
            position += 8 + length + (-length % 4)
            if cflag in (0, 3):
                break
            if cflag not in (1, 2):
                raise DataError(f"{self.where(key)}: invalid part flag {cflag} at byte {position}")
        return _MAGIC_BYTES.join(parts) if len(parts) > 1 else parts[0]

    def read_label(self, key: int) -> float:
        """The class label of record ``key`` without reading its image (first label when flag > 0)."""
        offset = self.offset(key)
        if offset >= 0 and offset + 8 + _PAYLOAD_HEAD.size + 4 <= self.size:
            head = os.pread(self._descriptor(), 8 + _PAYLOAD_HEAD.size + 4, offset)
            magic, lrec = _HEAD.unpack_from(head)
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            # A first part shorter than the header means the magic occurs inside it: read it whole.
            if magic == MAGIC and (cflag == 0 or length >= _PAYLOAD_HEAD.size + 4):
                flag, label, _, _ = _PAYLOAD_HEAD.unpack_from(head, 8)
                if flag == 0:
                    return float(label)
                if length >= _PAYLOAD_HEAD.size + 4:
                    return float(struct.unpack_from("<f", head, 8 + _PAYLOAD_HEAD.size)[0])
        return self.read_header(key).first_label

    def read_header(self, key: int) -> RecordHeader:
        return unpack_payload(self.read(key), self.where(key))[0]

    def close(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None and self._pid == os.getpid():
            os.close(fd)
        self._fd = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fd"] = None  # a descriptor does not survive pickling into a spawned worker
        state["_pid"] = -1
        return state

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self.close()


class InsightFaceRecWriter:
    """Write ``train.rec``/``train.idx``/``property`` in the insightface layout.

    Record 0 is a header with labels ``[a, b]``; images are records ``1..a-1`` with scalar labels;
    records ``a..b-1`` are identity records whose labels are each identity's ``[start, end)`` image
    keys; ``property`` is ``num_classes,height,width``. Images must arrive grouped by label in
    non-decreasing order (that is what makes the identity ranges contiguous).
    """

    HEADER_SLOT = len(encode_record(pack_payload([0.0, 0.0], b"")))

    def __init__(self, out_dir: str | Path, image_size: tuple[int, int] = (112, 112)) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.image_size = image_size
        self._writer = RecordIOWriter(self.out_dir / "train.rec", self.out_dir / "train.idx")
        self._writer.write(0, pack_payload([0.0, 0.0], b""))  # replaced by [a, b] on close
        self._next_key = 1
        self._starts: list[int] = []  # first image key of each label 0..C-1

    @property
    def num_images(self) -> int:
        return self._next_key - 1

    def add(self, label: int, jpeg: bytes) -> None:
        """Append one encoded image of class ``label`` (labels non-decreasing)."""
        label = int(label)
        if label < 0:
            raise ValueError(f"labels must be >= 0, got {label}")
        if label < len(self._starts) - 1:
            raise ValueError(
                f"images must be grouped by label in non-decreasing order: got label {label} after "
                f"{len(self._starts) - 1}"
            )
        while len(self._starts) <= label:
            self._starts.append(self._next_key)
        self._writer.write(self._next_key, pack_payload(float(label), jpeg, id1=self._next_key))
        self._next_key += 1

    def close(self) -> None:
        """Write the identity records, the header and ``property``; rename everything into place."""
        if self._writer.closed:
            return
        if self.num_images == 0:
            self._writer.abort()
            raise DataError(f"{self.out_dir}: no images were added; nothing written")
        first_identity = self._next_key
        ends = [*self._starts[1:], first_identity]
        for label, (start, end) in enumerate(zip(self._starts, ends)):
            key = first_identity + label
            self._writer.write(key, pack_payload([float(start), float(end)], b"", id1=key))
        end_identity = first_identity + len(self._starts)
        header = pack_payload([float(first_identity), float(end_identity)], b"")
        self._writer.overwrite_at(0, header, self.HEADER_SLOT)
        self._writer.close()
        height, width = self.image_size
        atomic.write_text_atomic(self.out_dir / "property", f"{len(self._starts)},{height},{width}")

    def abort(self) -> None:
        self._writer.abort()

    def __enter__(self) -> InsightFaceRecWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
