"""Which class centres take part in a step (Partial FC sampling).

Per rank: every class of the global batch that this rank holds (the positives) plus uniformly
drawn other classes (negatives) up to ``int(sample_rate * n_local)``; when the positives alone are
more, all of them and nothing else. Sample rate 1 keeps every class (plain model parallelism),
0 keeps the positives only. The draw is a function of (seed, step, rank), so a run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facescale.distributed.class_range import ClassRange


@dataclass
class ClassSample:
    """The sampled rows of one rank for one step.

    index: int64 [k] sorted local row indices (row i holds class range.start + i);
    labels: int64 [B] the global batch's labels remapped to positions in ``index``, -1 where
    another rank holds the class; full: True when every row is sampled (index = arange(n)).
    """

    index: torch.Tensor
    labels: torch.Tensor
    num_positives: int
    full: bool


def mixed_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from any integers (negative ones included)."""
    state = np.random.SeedSequence([p % 2**64 for p in parts]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def sampling_seed(seed: int, step: int, rank: int) -> int:
    """The seed of the negatives drawn at ``step`` on ``rank``."""
    return mixed_seed(seed, 0, step, rank)


def num_sampled(sample_rate: float, num_local: int) -> int:
    """``int(sample_rate * num_local)``: the sample size before positives may push it up."""
    return int(sample_rate * num_local)


def sample_classes(
    global_labels: torch.Tensor, classes: ClassRange, sample_rate: float, generator: torch.Generator
) -> ClassSample:
    """Choose this rank's rows. global_labels: int64 [B] (all ranks' labels, valid) on any device.

    The negatives come from ``generator`` (on global_labels' device): a uniform random score per
    row, positives forced to the top, the top ``num_sampled`` kept.
    """
    device = global_labels.device
    n = len(classes)
    here = (global_labels >= classes.start) & (global_labels < classes.stop)
    local = global_labels - classes.start
    positives = torch.unique(local[here])  # sorted
    target = num_sampled(sample_rate, n)
    full = target >= n
    if full:
        index = torch.arange(n, device=device)
    elif positives.numel() >= target:
        index = positives
    else:
        scores = torch.rand(n, generator=generator, device=device)
        scores[positives] = 2.0  # above any uniform draw: every positive is kept
        index = torch.topk(scores, target, sorted=False).indices.sort().values
    labels = torch.full_like(global_labels, -1)
    labels[here] = torch.searchsorted(index, local[here])
    return ClassSample(index=index, labels=labels, num_positives=int(positives.numel()), full=full)
