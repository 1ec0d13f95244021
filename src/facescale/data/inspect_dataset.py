"""``facescale data inspect``: what a training set holds, and a contact sheet to eyeball it.

Wrong crops (not aligned, wrong channel order, letterboxed) are the most common silent data
bug; a glance at a grid of samples catches them before a GPU-week is spent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facescale import atomic
from facescale.data.face_dataset import FaceDataset
from facescale.data.image_codec import decode_image, encode_png


@dataclass
class DatasetSummary:
    """Counts of a dataset; ``per_class_*`` are images per class over the classes that have any."""

    root: str
    images: int
    num_classes: int
    classes_with_images: int
    per_class_min: int
    per_class_median: float
    per_class_max: int
    image_shape: tuple[int, ...]

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        return (
            f"{self.root}\n"
            f"  images:            {self.images}\n"
            f"  classes:           {self.num_classes} ({self.classes_with_images} with images)\n"
            f"  images per class:  min {self.per_class_min}, median {self.per_class_median:g}, "
            f"max {self.per_class_max}\n"
            f"  image shape:       {'x'.join(str(s) for s in self.image_shape)}"
        )


def summarize(dataset: FaceDataset) -> DatasetSummary:
    counts = np.bincount(dataset.labels, minlength=dataset.num_classes)
    present = counts[counts > 0]
    shape = decode_image(dataset.read(0), dataset.describe(0)).shape
    return DatasetSummary(
        root=str(dataset.root),
        images=len(dataset),
        num_classes=int(dataset.num_classes or len(counts)),
        classes_with_images=int(present.size),
        per_class_min=int(present.min()),
        per_class_median=float(np.median(present)),
        per_class_max=int(present.max()),
        image_shape=tuple(int(s) for s in shape),
    )


def contact_sheet(
    dataset: FaceDataset, out_path: str | Path, classes: int = 8, per_class: int = 8, tile: int = 112
) -> Path:
    """A PNG grid: a row per class (the first ``classes`` with images), ``per_class`` images each."""
    import cv2

    labels = dataset.labels
    rows = [c for c in np.unique(labels)[:classes]]
    sheet = np.full((len(rows) * tile, per_class * tile, 3), 255, dtype=np.uint8)
    for r, label in enumerate(rows):
        for c, i in enumerate(np.flatnonzero(labels == label)[:per_class].tolist()):
            image = decode_image(dataset.read(i), dataset.describe(i))
            if image.shape[:2] != (tile, tile):
                image = cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA)
            sheet[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = image
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes_atomic(out, encode_png(sheet))
    return out
