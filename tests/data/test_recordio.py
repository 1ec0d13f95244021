from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from datatest_utils import tiny_image

from facescale.data.image_codec import decode_image, encode_png
from facescale.data.recordio import (
    MAGIC,
    InsightFaceRecWriter,
    RecordIOReader,
    RecordIOWriter,
    encode_record,
    pack_payload,
    unpack_payload,
)
from facescale.errors import DataError


def naive_records(rec: bytes) -> list[bytes]:
    """Reference reader written from the format description, joining multi-part records."""
    out, position, parts = [], 0, []
    while position < len(rec):
        magic, lrec = struct.unpack_from("<II", rec, position)
        assert magic == MAGIC
        cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
        parts.append(rec[position + 8 : position + 8 + length])
        position += 8 + (length + 3) // 4 * 4
        if cflag in (0, 3):
            out.append(struct.pack("<I", MAGIC).join(parts))
            parts = []
    return out


def test_reads_mxnet_fixture(fixture_dir: Path) -> None:
    reader = RecordIOReader(fixture_dir / "train.rec", fixture_dir / "train.idx")
    expected = np.load(fixture_dir / "expected_labels.npy")
    header = reader.read_header(0)
    assert header.flag == 2 and list(header.label) == [61.0, 73.0]
    labels = []
    for key in range(1, 61):
        head, image = unpack_payload(reader.read(key), reader.where(key))
        assert head.flag == 0
        labels.append(head.first_label)
        assert decode_image(image, reader.where(key)).shape == (112, 112, 3)
    np.testing.assert_array_equal(np.array(labels), expected)
    for identity, key in enumerate(range(61, 73)):
        head = reader.read_header(key)
        start, end = head.label
        assert np.all(expected[int(start) - 1 : int(end) - 1] == identity)


def test_reencoding_fixture_gives_identical_bytes(fixture_dir: Path) -> None:
    rec = (fixture_dir / "train.rec").read_bytes()
    reader = RecordIOReader(fixture_dir / "train.rec", fixture_dir / "train.idx")
    assert naive_records(rec) == [reader.read(k) for k in reader.keys]
    assert b"".join(encode_record(reader.read(k)) for k in reader.keys) == rec


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"abc",
        struct.pack("<I", MAGIC) + b"tail",  # magic at the start: an empty first part
        b"wxyz" + struct.pack("<I", MAGIC) * 2 + b"12345",  # consecutive magics: an empty middle part
        b"ab" + struct.pack("<I", MAGIC) + b"cd",  # unaligned magic: not split
        b"1234" + struct.pack("<I", MAGIC),  # magic at the very end
    ],
)
def test_multipart_round_trip(tmp_path: Path, payload: bytes) -> None:
    with RecordIOWriter(tmp_path / "a.rec", tmp_path / "a.idx") as writer:
        writer.write(7, b"first")
        writer.write(3, payload)
    reader = RecordIOReader(tmp_path / "a.rec", tmp_path / "a.idx")
    assert reader.keys == [7, 3]
    assert reader.read(3) == payload
    assert naive_records((tmp_path / "a.rec").read_bytes()) == [b"first", payload]
    assert RecordIOReader(tmp_path / "a.rec").read(1) == payload  # no .idx: scanned


def test_pack_unpack_array_label() -> None:
    head, image = unpack_payload(pack_payload([3.0, 1.5, 2.0], b"IMG", id1=5), "t")
    assert head.flag == 3 and head.first_label == 3.0 and head.id1 == 5 and image == b"IMG"
    head, image = unpack_payload(pack_payload(4, b"X"), "t")
    assert head.flag == 0 and head.label == 4.0 and image == b"X"


def test_insightface_writer_layout(tmp_path: Path) -> None:
    labels = [0, 0, 1, 3, 3, 3]
    images = [encode_png(tiny_image(i)) for i in range(len(labels))]
    with InsightFaceRecWriter(tmp_path, image_size=(16, 16)) as writer:
        for label, image in zip(labels, images):
            writer.add(label, image)
    assert (tmp_path / "property").read_text() == "4,16,16"
    reader = RecordIOReader(tmp_path / "train.rec", tmp_path / "train.idx")
    a, b = reader.read_header(0).label
    assert (a, b) == (7, 11)
    for key, (label, image) in enumerate(zip(labels, images), start=1):
        head, data = unpack_payload(reader.read(key), "t")
        assert head.label == label and data == image
    ranges = [tuple(reader.read_header(k).label) for k in range(7, 11)]
    assert ranges == [(1, 3), (3, 4), (4, 4), (4, 7)]
    assert not list(tmp_path.glob(".*tmp*"))


def test_writer_leaves_nothing_on_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="non-decreasing"), InsightFaceRecWriter(tmp_path) as writer:
        writer.add(2, b"x")
        writer.add(1, b"y")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_damaged_files_name_record(tmp_path: Path) -> None:
    with RecordIOWriter(tmp_path / "a.rec", tmp_path / "a.idx") as writer:
        for key in range(3):
            writer.write(key, bytes(100))
    data = (tmp_path / "a.rec").read_bytes()
    (tmp_path / "a.rec").write_bytes(data[:-50])
    reader = RecordIOReader(tmp_path / "a.rec", tmp_path / "a.idx")
    with pytest.raises(DataError, match=r"a\.rec record 2: truncated record"):
        reader.read(2)
    (tmp_path / "a.idx").write_text("0\t0\n1\t99999\n")
    reader = RecordIOReader(tmp_path / "a.rec", tmp_path / "a.idx")
    with pytest.raises(DataError, match=r"record 1: index .* offset 99999, past the end"):
        reader.read(1)
    (tmp_path / "a.idx").write_text("0\t3\n")
    with pytest.raises(DataError, match="no RecordIO magic"):
        RecordIOReader(tmp_path / "a.rec", tmp_path / "a.idx").read(0)


def test_malformed_index_names_the_line(tmp_path: Path) -> None:
    with RecordIOWriter(tmp_path / "a.rec", tmp_path / "a.idx") as writer:
        writer.write(0, b"x")
    for text, message in [
        ("0\t0\n1\t8\t5\n", r"a\.idx:2: expected"),
        ("0\t0\n0\t8\n", r"a\.idx:2: key 0 appears twice"),
    ]:
        (tmp_path / "a.idx").write_text(text)
        with pytest.raises(DataError, match=message):
            RecordIOReader(tmp_path / "a.rec", tmp_path / "a.idx")
