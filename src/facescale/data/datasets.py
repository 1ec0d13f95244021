"""``open_dataset(cfg.data)``: any supported training-set format, checked before training starts.

Formats (``data.format``) are registered in ``DATASETS`` by the modules imported below:
``recordio`` (insightface layout, im2rec output, split parts), ``label_txt``, ``image_folder``,
``image_bin``. Opening validates what can be validated without decoding: a non-empty set and
every label inside ``[0, num_classes)``. An out-of-range label stops with the record named
(``bad_data=fail``) or drops that sample and remembers it for the epoch report (``skip``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facescale.config import CHOICES, DataConfig
from facescale.data import file_datasets, recordio_dataset  # noqa: F401  (they register formats)
from facescale.data.face_dataset import DATASETS, FaceDataset
from facescale.errors import ConfigError, DataError

__all__ = ["DATASETS", "FaceDataset", "open_dataset"]


MAX_MISSING_SHOWN = 5


def check_dense_labels(dataset: FaceDataset, num_classes: int) -> None:
    """DataError when some class in ``[0, num_classes)`` has no image (the count came from the labels).

    One stray label (999 in a 50-class list) would otherwise size the head for 1,000 classes,
    950 of them never trained, and converters would write that count into ``property``.
    """
    present = np.zeros(num_classes, dtype=bool)
    present[dataset.labels[(dataset.labels >= 0) & (dataset.labels < num_classes)]] = True
    missing = np.flatnonzero(~present)
    if missing.size == 0:
        return
    largest = int(np.argmax(dataset.labels))
    shown = ", ".join(str(int(m)) for m in missing[:MAX_MISSING_SHOWN]) + (
        " ..." if missing.size > MAX_MISSING_SHOWN else ""
    )
    raise DataError(
        f"{dataset.root}: labels are not dense: {missing.size} of the {num_classes} classes that the largest "
        f"label ({int(dataset.labels[largest])}, {dataset.describe(largest)}) implies have no image "
        f"(labels {shown}); fix the labels, or accept the gaps with data.num_classes={num_classes} or "
        "data.sparse_labels=true (--sparse-labels for the converters)"
    )


def open_dataset(cfg: DataConfig) -> FaceDataset:
    """Open ``cfg.root`` as ``cfg.format``; ``num_classes`` from the config, the dataset or max label + 1."""
    if cfg.bad_data not in CHOICES["data.bad_data"]:
        allowed = " or ".join(repr(choice) for choice in CHOICES["data.bad_data"])
        raise ConfigError(f"data.bad_data must be {allowed}, got {cfg.bad_data!r}")
    root = Path(cfg.root).expanduser()
    dataset = DATASETS.get(cfg.format)(root)
    if len(dataset) == 0:
        raise DataError(f"{root}: the {cfg.format} dataset holds no images")
    if dataset.unreadable:
        first = min(dataset.unreadable)
        if cfg.bad_data == "fail":
            raise DataError(
                f"{dataset.unreadable[first]} ({len(dataset.unreadable)} unreadable record(s); "
                "data.bad_data=skip drops them)"
            )
        dataset.drop(np.array(sorted(dataset.unreadable)))
        if len(dataset) == 0:
            raise DataError(f"{root}: no record of the {cfg.format} dataset is readable")
    if cfg.num_classes < 0:
        raise ConfigError(f"data.num_classes must be >= 0, got {cfg.num_classes}")
    inferred = not cfg.num_classes and not dataset.num_classes
    num_classes = cfg.num_classes or dataset.num_classes or int(dataset.labels.max()) + 1
    if inferred and not cfg.sparse_labels:
        check_dense_labels(dataset, num_classes)
    bad = np.flatnonzero((dataset.labels < 0) | (dataset.labels >= num_classes))
    if bad.size:
        first = int(bad[0])
        if cfg.bad_data == "fail":
            raise DataError(
                f"{dataset.describe(first)}: label {dataset.labels[first]} is outside [0, {num_classes}) "
                f"({bad.size} such record(s); data.bad_data=skip drops them)"
            )
        dataset.drop(bad, reason=f"label outside [0, {num_classes})")
        if len(dataset) == 0:
            raise DataError(f"{root}: every label is outside [0, {num_classes}); nothing left to train on")
    dataset.num_classes = num_classes
    return dataset
