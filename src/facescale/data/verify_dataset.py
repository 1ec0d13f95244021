"""``facescale data verify``: decode every image of a training set strictly, once, and list the bad ones.

The CPU loader finds a bad record when it reaches it, which may be days into a run; a GPU decoder
(``data.dali``) may not find a subtly damaged JPEG at all. One strict pass over the set before a
long run answers both: every record is read and decoded with libjpeg-turbo in strict mode, in
worker processes, and each failure is named (file and record). Labels outside ``[0, classes)`` and
records unreadable at open are reported from the open itself.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field

from facescale.data.face_dataset import FaceDataset
from facescale.data.image_codec import DEFAULT_MAX_PIXELS, decode_image
from facescale.data.loader import quiet_opencv_threads
from facescale.errors import DataError

MAX_LISTED = 20
_CHUNK = 512  # records per task: large enough to amortise the round trip, small for a smooth bar

# The dataset a forked worker reads: set before the pool forks, so it is inherited, not pickled.
_WORKER_DATASET: FaceDataset | None = None
_WORKER_MAX_PIXELS = DEFAULT_MAX_PIXELS


@dataclass
class VerifyReport:
    """What a strict pass found: how many records were decoded, and the bad ones (first few listed)."""

    root: str
    checked: int = 0
    bad_count: int = 0
    bad: list[str] = field(default_factory=list)
    excluded_count: int = 0  # dropped when the dataset was opened (labels, unreadable index)
    excluded: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.bad_count == 0 and self.excluded_count == 0

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def to_text(self) -> str:
        rate = self.checked / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"{self.root}: decoded {self.checked} images strictly in {self.seconds:.1f} s "
            f"({rate:.0f} images/s), {self.bad_count} bad"
        ]
        lines += [f"  {text}" for text in self.bad]
        if self.bad_count > len(self.bad):
            lines.append(f"  ... and {self.bad_count - len(self.bad)} more")
        if self.excluded_count:
            lines.append(f"{self.excluded_count} record(s) unusable when the dataset was opened:")
            lines += [f"  {text}" for text in self.excluded]
        lines.append("OK" if self.ok else "PROBLEMS FOUND (data.bad_data=skip trains without them)")
        return "\n".join(lines)


def _check_range(bounds: tuple[int, int]) -> list[str]:
    """Decode records ``[start, end)`` of the worker's dataset; the problems found, in order."""
    dataset = _WORKER_DATASET
    assert dataset is not None
    problems = []
    for i in range(*bounds):
        try:
            decode_image(dataset.read(i), dataset.describe(i), _WORKER_MAX_PIXELS)
        except DataError as e:
            problems.append(str(e))
    return problems


def _ranges(total: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, _CHUNK):
        yield start, min(total, start + _CHUNK)


def verify_dataset(
    dataset: FaceDataset,
    workers: int = 2,
    progress: Callable[[int], object] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> VerifyReport:
    """Strictly decode every record of ``dataset`` (opened with ``bad_data=skip``, so what the open
    dropped is reported too); ``progress`` is called with the records done after each chunk.
    Images above ``max_pixels`` (0 = no cap) are bad, found from their header."""
    global _WORKER_DATASET, _WORKER_MAX_PIXELS
    report = VerifyReport(
        root=str(dataset.root), excluded_count=dataset.excluded_count, excluded=list(dataset.excluded)
    )

    def take(problems: list[str], bounds: tuple[int, int]) -> None:
        report.checked += bounds[1] - bounds[0]
        report.bad_count += len(problems)
        report.bad.extend(problems[: MAX_LISTED - len(report.bad)])
        if progress is not None:
            progress(bounds[1] - bounds[0])

    _WORKER_DATASET = dataset
    _WORKER_MAX_PIXELS = max_pixels
    start = time.perf_counter()
    chunks = list(_ranges(len(dataset)))
    pool: ProcessPoolExecutor | None = None
    try:
        if workers <= 0:
            results: Iterable[list[str]] = map(_check_range, chunks)
        else:
            quiet_opencv_threads()
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
            results = pool.map(_check_range, chunks)
        for bounds, problems in zip(chunks, results, strict=True):
            take(problems, bounds)
        report.seconds = time.perf_counter() - start
        return report
    finally:
        if pool is not None:
            pool.shutdown()
        _WORKER_DATASET = None
