"""RecordIO image records whose label is a 1-element array (flag == 1), as im2rec writes with one label
column and some converters write: the label is the array's first value and the image follows it."""

from __future__ import annotations

import numpy as np
import pytest

from facescale.data.image_codec import decode_image, encode_jpeg
from facescale.data.recordio import RecordIOWriter, pack_payload, unpack_payload
from facescale.data.recordio_dataset import open_recordio


def test_pack_writes_flag_1_and_the_image_after_the_label_array():
    payload = pack_payload([7.0], b"JPEGBYTES", id1=3)
    head, image = unpack_payload(payload, "x")
    assert head.flag == 1 and head.first_label == 7.0 and image == b"JPEGBYTES"
    assert len(payload) == 24 + 4 + len(b"JPEGBYTES")  # IfQQ header, one float32, the image


@pytest.mark.parametrize("with_header", [False, True])
def test_flag_1_image_records_read_with_their_labels_and_images(tmp_path, with_header):
    rng = np.random.default_rng(0)
    labels = [0, 2, 1, 2, 0, 1]
    images = [rng.integers(0, 255, (112, 112, 3), dtype=np.uint8) for _ in labels]
    jpegs = [encode_jpeg(im) for im in images]
    root = tmp_path / "rec"
    root.mkdir()
    with RecordIOWriter(root / "train.rec", root / "train.idx") as writer:
        first = 0
        if with_header:  # insightface layout without identity records: a header, then images 1..n
            writer.write(0, pack_payload([float(len(labels) + 1), float(len(labels) + 1)], b""))
            first = 1
        for i, (label, jpeg) in enumerate(zip(labels, jpegs)):
            writer.write(first + i, pack_payload([float(label)], jpeg))
    (root / "property").write_text("3,112,112\n")
    dataset = open_recordio(root)
    assert dataset.labels.tolist() == labels
    for i, jpeg in enumerate(jpegs):
        assert dataset.read(i) == jpeg  # the 4 label bytes are not part of the image
        assert decode_image(dataset.read(i), dataset.describe(i)).shape == (112, 112, 3)
