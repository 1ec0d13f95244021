"""A tiny learnable training set in the insightface RecordIO layout, for training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_color_rec(out_dir: Path, num_classes: int, per_class: int, seed: int = 0) -> Path:
    """A learnable insightface-layout rec: each class a colour and a bar position, plus noise."""
    from facescale.data.image_codec import encode_jpeg
    from facescale.data.recordio import InsightFaceRecWriter

    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 216, size=(num_classes, 3))
    out_dir.mkdir(parents=True, exist_ok=True)
    with InsightFaceRecWriter(out_dir) as writer:
        for label in range(num_classes):
            for _ in range(per_class):
                image = np.clip(colours[label] + rng.normal(0, 20, (112, 112, 3)), 0, 255).astype(np.uint8)
                row = 8 + 12 * (label % 8)
                image[row : row + 8] = 255 - image[row : row + 8]
                writer.add(label, encode_jpeg(image))
    return out_dir
