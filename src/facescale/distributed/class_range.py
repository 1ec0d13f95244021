"""Which rank owns which classes: an even split of C classes over W ranks.

Rank r holds the contiguous range [start_r, start_r + n_r). The split is as even as possible:
with q, extra = divmod(C, W), the first ``extra`` ranks hold q + 1 classes and the rest q. The
split depends only on (C, W), so a checkpoint written by W ranks can be re-cut for any other W.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from facescale.errors import FacescaleError


@dataclass(frozen=True)
class ClassRange:
    """The half-open class interval [start, stop) held by one rank."""

    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def __contains__(self, label: object) -> bool:
        return isinstance(label, int) and self.start <= label < self.stop

    def intersect(self, other: ClassRange) -> ClassRange | None:
        """The overlap with ``other``, or None when they share no class."""
        start, stop = max(self.start, other.start), min(self.stop, other.stop)
        return ClassRange(start, stop) if start < stop else None


def _check(num_classes: int, world_size: int) -> None:
    if world_size < 1:
        raise FacescaleError(f"world size must be >= 1, got {world_size}")
    if num_classes < world_size:
        raise FacescaleError(
            f"num_classes {num_classes} is smaller than the world size {world_size}: "
            "every rank must hold at least one class"
        )


def class_range(num_classes: int, world_size: int, rank: int) -> ClassRange:
    """The classes held by ``rank`` when ``num_classes`` are split over ``world_size`` ranks."""
    _check(num_classes, world_size)
    if not 0 <= rank < world_size:
        raise FacescaleError(f"rank {rank} is outside [0, {world_size})")
    per_rank, extra = divmod(num_classes, world_size)
    start = rank * per_rank + min(rank, extra)
    return ClassRange(start, start + per_rank + (1 if rank < extra else 0))


def all_class_ranges(num_classes: int, world_size: int) -> list[ClassRange]:
    """``class_range`` for every rank, in rank order; together they tile [0, num_classes)."""
    return [class_range(num_classes, world_size, r) for r in range(world_size)]


def owner_of(labels: torch.Tensor, num_classes: int, world_size: int) -> torch.Tensor:
    """The rank holding each label. labels: int64 [N] in [0, num_classes) -> int64 [N]."""
    _check(num_classes, world_size)
    per_rank, extra = divmod(num_classes, world_size)
    boundary = extra * (per_rank + 1)  # labels below this live on the ranks with one extra class
    big = torch.div(labels, per_rank + 1, rounding_mode="floor")
    small = extra + torch.div(labels - boundary, per_rank, rounding_mode="floor")
    return torch.where(labels < boundary, big, small)
