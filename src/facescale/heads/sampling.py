"""Which class centres take part in a step (Partial FC sampling).

Per rank: every class of the global batch that this rank holds (the positives) plus uniformly
drawn other classes (negatives) up to ``int(sample_rate * n_local)``; when the positives alone are
more, all of them and nothing else. Sample rate 1 keeps every class (plain model parallelism),
0 keeps the positives only.

The draw is a function of (seed, step, rank) and of nothing else, not even the device: each row's
random score is an integer hash of (key, row) computed with exact int64 arithmetic, so CPU, CUDA and
an offloaded head pick the same negatives from the same seed (a torch generator gives different
streams on CPU and CUDA). Scores are unique (the row number fills their low bits), so ``topk``
has no ties to break differently on different devices.

No host synchronisation when ``num_sampled >= min(B, n)`` (always, at any practical rate): the
positives are a scatter mask, the sample a fixed-size ``topk`` and the label remap a
``searchsorted`` + ``where``; only a sample smaller than the batch (rate ~0) counts positives on
the host.
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
    positives: torch.Tensor  # int64 0-dim, on the device: how many rows are positives
    full: bool

    @property
    def num_positives(self) -> int:
        """The number of positives (reads the device: for tests and logs, not the training step)."""
        return int(self.positives)


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


_MASK32 = 0xFFFFFFFF
# Odd multipliers below 2**31: a 32-bit value times one stays below 2**63, so int64 never overflows
# and every device computes the same bits.
_MULTIPLIERS = (0x7FEB352D, 0x2C1B3C6D, 0x297A2D39, 0x6B5F0D5B)
_POSITIVE = 1 << 62  # above every hashed score (those are below 2**62)
_ROW_BITS = (1 << 31) - 1  # the low bits of a score: its row


def _mix32(x: torch.Tensor, multiplier_a: int, multiplier_b: int) -> torch.Tensor:
    """An avalanching 32-bit integer hash, in place on int64 values in [0, 2**32)."""
    x.bitwise_xor_(x >> 16).mul_(multiplier_a).bitwise_and_(_MASK32)
    x.bitwise_xor_(x >> 15).mul_(multiplier_b).bitwise_and_(_MASK32)
    return x.bitwise_xor_(x >> 16)


def row_scores(key: int, num_rows: int, device: torch.device) -> torch.Tensor:
    """Unique pseudo-random int64 scores [num_rows] in [0, 2**62): the same on every device.

    key: any integer (the step's seed); the high 31 bits are a hash of (key, row), the low 31 the row.
    """
    rows = torch.arange(num_rows, dtype=torch.int64, device=device)
    x = (rows + (key & _MASK32)).bitwise_and_(_MASK32)
    x = _mix32(x, _MULTIPLIERS[0], _MULTIPLIERS[1]).bitwise_xor_((key >> 32) & _MASK32)
    x = _mix32(x, _MULTIPLIERS[2], _MULTIPLIERS[3])
    return (x >> 1).mul_(1 << 31).bitwise_or_(rows)


def sample_classes(
    global_labels: torch.Tensor, classes: ClassRange, sample_rate: float, key: int
) -> ClassSample:
    """Choose this rank's rows. global_labels: int64 [B] (all ranks' labels, valid) on any device.

    key: the step's seed (``sampling_seed``). The negatives are the rows of the highest
    ``row_scores(key)``, positives forced to the top; the result does not depend on the device.
    """
    device = global_labels.device
    n = len(classes)
    here = (global_labels >= classes.start) & (global_labels < classes.stop)
    # Classes of other ranks go to a spare slot n, so the scatter needs no boolean indexing.
    local = torch.where(here, global_labels - classes.start, n)
    is_positive = torch.zeros(n + 1, dtype=torch.bool, device=device).index_fill_(0, local, True)[:n]
    positives = is_positive.sum()
    target = num_sampled(sample_rate, n)
    full = target >= n
    if full:
        index = torch.arange(n, device=device)
    elif target < min(global_labels.numel(), n) and int(positives) >= target:
        index = torch.nonzero(is_positive).squeeze(1)  # more positives than the sample size: only them
    else:
        scores = row_scores(key, n, device)
        scores = torch.where(is_positive, (scores & _ROW_BITS) | _POSITIVE, scores)  # row | 2**62
        index = torch.topk(scores, target, sorted=False).indices.sort().values
    mapped = torch.searchsorted(index, local.clamp(max=max(n - 1, 0)))
    labels = torch.where(here, mapped, -1)
    return ClassSample(index=index, labels=labels, positives=positives, full=full)
