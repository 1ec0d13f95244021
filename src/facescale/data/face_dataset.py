"""The interface every training-set format implements, and the registry keyed by ``data.format``.

A dataset is an indexable list of (encoded image, integer label). Images stay encoded until a
loader worker decodes them, so opening a 5-million-image set costs one pass over its index.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facescale.registry import Registry


class FaceDataset(ABC):
    """Encoded face images with labels.

    Attributes:
        root: where the dataset lives.
        labels: int64 ``[N]``, the class of each image.
        num_classes: labels lie in ``[0, num_classes)``; 0 until known (``open_dataset`` fills it).
        excluded: descriptions of records dropped when the dataset was opened (``bad_data=skip``).
        unreadable: ``{index: problem}`` for samples whose label could not even be read at open.
    """

    def __init__(self, root: Path, labels: np.ndarray, num_classes: int = 0) -> None:
        self.root = root
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = int(num_classes)
        self.excluded: list[str] = []
        self.excluded_count = 0
        self.unreadable: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def read(self, i: int) -> bytes:
        """The encoded image of sample ``i``; DataError naming the file and record if unreadable."""

    @abstractmethod
    def describe(self, i: int) -> str:
        """Where sample ``i`` comes from (file and record), for error messages."""

    @abstractmethod
    def _select(self, keep: np.ndarray) -> None:
        """Keep only the samples at indices ``keep`` in the per-sample bookkeeping (not labels)."""

    def drop(self, indices: np.ndarray, reason: str | None = None, max_listed: int = 10) -> None:
        """Remove samples (``bad_data=skip``), remembering the first few for the report.

        Without ``reason`` each sample's entry in ``unreadable`` says why.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return
        for i in indices[: max(0, max_listed - len(self.excluded))].tolist():
            why = reason if reason is not None else self.unreadable.get(i, "unreadable")
            self.excluded.append(f"{self.describe(i)} ({why})" if reason is not None else why)
        self.excluded_count += int(indices.size)
        keep = np.setdiff1d(np.arange(len(self)), indices)
        self._select(keep)
        self.labels = self.labels[keep]
        self.unreadable = {}


DatasetOpener = Callable[[Path], FaceDataset]
DATASETS: Registry[DatasetOpener] = Registry("dataset format")
