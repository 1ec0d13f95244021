from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datatest_utils import face_jpeg, write_im2rec

from facescale.config import DataConfig
from facescale.data.datasets import DATASETS, open_dataset
from facescale.data.image_bin import pack_image_bin, read_image_bin
from facescale.data.image_codec import decode_image
from facescale.data.recordio import InsightFaceRecWriter, RecordIOReader, RecordIOWriter, pack_payload
from facescale.data.safe_pickle import safe_loads
from facescale.errors import ConfigError, DataError

LABELS = [0, 0, 1, 2, 2, 2, 3]


def make_dataset(fmt: str, root: Path, labels: list[int] = LABELS) -> list[bytes]:
    """Write ``labels`` in ``fmt`` under ``root``; return the encoded images in sample order."""
    images = [face_jpeg(i) for i in range(len(labels))]
    root.mkdir(parents=True, exist_ok=True)
    if fmt == "recordio":
        with InsightFaceRecWriter(root) as writer:
            for label, image in zip(labels, images):
                writer.add(label, image)
    elif fmt in ("label_txt", "image_bin"):
        (root / "images").mkdir()
        lines = []
        for i, (label, image) in enumerate(zip(labels, images)):
            name = f"images/{i:08d}." + ("bin" if fmt == "image_bin" else "jpg")
            data = pack_image_bin(f"{i:08d}.jpg", image) if fmt == "image_bin" else image
            (root / name).write_bytes(data)
            lines.append(f"{name}\t{label}\n")
        (root / "label.txt").write_text("".join(lines))
    elif fmt == "image_folder":
        for i, (label, image) in enumerate(zip(labels, images)):
            folder = root / f"person_{label:03d}"
            folder.mkdir(exist_ok=True)
            (folder / f"{i:04d}.jpg").write_bytes(image)
    return images


@pytest.mark.parametrize("fmt", DATASETS.names())
def test_every_format_reads_back_images_and_labels(tmp_path: Path, fmt: str) -> None:
    images = make_dataset(fmt, tmp_path / fmt)
    dataset = open_dataset(DataConfig(format=fmt, root=str(tmp_path / fmt)))
    assert dataset.labels.tolist() == LABELS
    assert dataset.num_classes == 4
    assert [dataset.read(i) for i in range(len(dataset))] == images
    assert dataset.describe(3)


def test_fixture_recordio(fixture_dir: Path) -> None:
    dataset = open_dataset(DataConfig(format="recordio", root=str(fixture_dir)))
    np.testing.assert_array_equal(dataset.labels, np.load(fixture_dir / "expected_labels.npy"))
    assert dataset.num_classes == 12 and len(dataset) == 60
    reader = RecordIOReader(fixture_dir / "train.rec", fixture_dir / "train.idx")
    for i in (0, 17, 59):
        assert dataset.read(i) == reader.read(i + 1)[24:]  # scalar-label payload: 24-byte header
        assert decode_image(dataset.read(i), "t").shape == (112, 112, 3)


def test_im2rec_any_key_order_and_array_labels(tmp_path: Path) -> None:
    keys = [5, 2, 9, 0, 7]
    labels = [3, 1, 0, 2, 1]
    images = write_im2rec(tmp_path, labels, keys=keys, array_labels=True)
    dataset = open_dataset(DataConfig(format="recordio", root=str(tmp_path)))
    assert dataset.labels.tolist() == labels and dataset.num_classes == 4
    assert [dataset.read(i) for i in range(5)] == images
    assert "record 9" in dataset.describe(2)


def test_split_parts_are_concatenated(tmp_path: Path) -> None:
    a = write_im2rec(tmp_path, [0, 1], name="part-00000")
    b = write_im2rec(tmp_path, [2, 0, 1], keys=[0, 1, 2], name="part-00001")
    (tmp_path / "_SUCCESS").write_text('{"parts": 2}\n')  # what a finished `data split` leaves
    dataset = open_dataset(DataConfig(format="recordio", root=str(tmp_path)))
    assert dataset.labels.tolist() == [0, 1, 2, 0, 1]
    assert [dataset.read(i) for i in range(5)] == a + b
    assert "part-00001.rec record 2" in dataset.describe(4)


def test_identity_records_not_tiling_the_images_fall_back_to_headers(tmp_path: Path) -> None:
    images = [face_jpeg(i) for i in range(4)]
    with RecordIOWriter(tmp_path / "train.rec", tmp_path / "train.idx") as writer:
        writer.write(0, pack_payload([5.0, 7.0], b""))
        for key, label in zip(range(1, 5), [0, 0, 1, 1]):
            writer.write(key, pack_payload(float(label), images[key - 1]))
        writer.write(5, pack_payload([1.0, 3.0], b""))
        writer.write(6, pack_payload([4.0, 5.0], b""))  # a gap: they do not tile 1..4, so unusable
    dataset = open_dataset(DataConfig(root=str(tmp_path)))
    assert dataset.labels.tolist() == [0, 0, 1, 1]


def test_record_label_must_match_identity_records(tmp_path: Path) -> None:
    images = [face_jpeg(i) for i in range(2)]
    with RecordIOWriter(tmp_path / "train.rec", tmp_path / "train.idx") as writer:
        writer.write(0, pack_payload([3.0, 5.0], b""))
        writer.write(1, pack_payload(0.0, images[0]))
        writer.write(2, pack_payload(0.0, images[1]))  # identity records say label 1
        writer.write(3, pack_payload([1.0, 2.0], b""))
        writer.write(4, pack_payload([2.0, 3.0], b""))
    dataset = open_dataset(DataConfig(root=str(tmp_path)))
    assert dataset.labels.tolist() == [0, 1]
    with pytest.raises(DataError, match=r"train\.rec record 2: the record's label 0 differs from 1"):
        dataset.read(1)


def test_label_out_of_range_fail_and_skip(tmp_path: Path) -> None:
    write_im2rec(tmp_path, [0, 1, 5, 1, -1])
    (tmp_path / "property").write_text("3,112,112")
    with pytest.raises(DataError, match=r"train\.rec record 2: label 5 is outside \[0, 3\) \(2 such"):
        open_dataset(DataConfig(root=str(tmp_path)))
    dataset = open_dataset(DataConfig(root=str(tmp_path), bad_data="skip"))
    assert dataset.labels.tolist() == [0, 1, 1] and dataset.num_classes == 3
    assert dataset.excluded_count == 2 and "record 4" in dataset.excluded[1]
    dataset = open_dataset(DataConfig(root=str(tmp_path), bad_data="skip", num_classes=6))
    assert dataset.labels.tolist() == [0, 1, 5, 1]


def test_empty_and_missing_datasets(tmp_path: Path) -> None:
    (tmp_path / "label.txt").write_text("")
    with pytest.raises(DataError, match="holds no images"):
        open_dataset(DataConfig(format="label_txt", root=str(tmp_path)))
    with pytest.raises(DataError, match=r"no train\.rec"):
        open_dataset(DataConfig(format="recordio", root=str(tmp_path)))
    (tmp_path / "label.txt").write_text("images/a.jpg\tseven\n")
    with pytest.raises(DataError, match=r"label\.txt:1: label 'seven'"):
        open_dataset(DataConfig(format="label_txt", root=str(tmp_path)))
    with pytest.raises(ConfigError, match="unknown dataset format 'recordoi'"):
        open_dataset(DataConfig(format="recordoi", root=str(tmp_path)))


def test_image_bin_format_and_malicious_value(tmp_path: Path) -> None:
    import os
    import pickle
    import struct

    data = pack_image_bin("00000007.jpg", b"\xff\xd8jpeg")
    (tmp_path / "a.bin").write_bytes(data)
    assert read_image_bin(tmp_path / "a.bin") == ("00000007.jpg", b"\xff\xd8jpeg")
    # The layout, spelled out: uint32 keylen | key | uint32 vallen | pickle(bytes).
    keylen = struct.unpack_from("<I", data)[0]
    assert data[4 : 4 + keylen] == b"00000007.jpg"
    assert safe_loads(data[8 + keylen :], "t") == b"\xff\xd8jpeg"

    class Evil:
        def __reduce__(self):  # type: ignore[override]
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    value = pickle.dumps(Evil())
    (tmp_path / "b.bin").write_bytes(struct.pack("<I", 1) + b"k" + struct.pack("<I", len(value)) + value)
    with pytest.raises(DataError, match=r"b\.bin: the pickle asks for"):
        read_image_bin(tmp_path / "b.bin")
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "c.bin").write_bytes(data[:-3])
    with pytest.raises(DataError, match="truncated per-image bin"):
        read_image_bin(tmp_path / "c.bin")
