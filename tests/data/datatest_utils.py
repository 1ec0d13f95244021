"""Helpers shared by the data tests (a uniquely named module: tests/ folders are not packages)."""

from __future__ import annotations

import numpy as np


def tiny_image(seed: int, size: int = 16) -> np.ndarray:
    """A blocky random uint8 RGB image (compresses well and survives JPEG roughly)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(4, 4, 3)).astype(np.float32)
    image = np.kron(base, np.ones((size // 4, size // 4, 1), np.float32))
    return image.astype(np.uint8)


def face_jpeg(seed: int, size: int = 112) -> bytes:
    from facescale.data.image_codec import encode_jpeg

    return encode_jpeg(tiny_image(seed, size), quality=90)


def write_im2rec(folder, labels, keys=None, array_labels: bool = False, name: str = "train"):
    """An im2rec-style rec (no header) with the given labels under the given keys; returns images."""
    from facescale.data.recordio import RecordIOWriter, pack_payload

    keys = list(range(len(labels))) if keys is None else keys
    images = [face_jpeg(1000 + k) for k in keys]
    with RecordIOWriter(folder / f"{name}.rec", folder / f"{name}.idx") as writer:
        for key, label, image in zip(keys, labels, images):
            value = [float(label), 0.25, 7.0] if array_labels else float(label)
            writer.write(key, pack_payload(value, image, id1=key))
    return images


def write_rec_with_bad_records(folder) -> None:
    """Nine records under keys 0..8, label ``key % 4`` (key 8: 1); bad: 2 (not an image),
    5 (truncated JPEG), 8 (corrupt inside, end marker intact)."""
    from facescale.data.recordio import RecordIOWriter, pack_payload

    good = [face_jpeg(i) for i in range(8)]
    corrupt = good[0][:200] + b"\0" * 50 + good[0][250:]  # keeps its end marker, broken inside
    with RecordIOWriter(folder / "train.rec", folder / "train.idx") as writer:
        for key in range(8):
            image = {2: b"this is not a jpeg", 5: good[5][: len(good[5]) // 2]}.get(key, good[key])
            writer.write(key, pack_payload(float(key % 4), image))
        writer.write(8, pack_payload(1.0, corrupt))
