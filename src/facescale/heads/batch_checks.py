"""Input checks of a Partial FC step that hold on every rank at once.

A rank that raised alone would leave the others blocked in the next collective, so the facts are
exchanged first (three integers per rank; the labels are all-gathered anyway) and every rank
reaches the same verdict and raises the same error.
"""

from __future__ import annotations

import torch

from facescale.distributed.context import DistContext
from facescale.errors import FacescaleError


def check_batch_shapes(
    ctx: DistContext, embeddings: torch.Tensor, labels: torch.Tensor, embedding_size: int
) -> int:
    """Exchange (batch, dim, number and shape of labels) with all ranks; raise on every rank if any is off.

    embeddings: [b, D]; labels: [b], or [b, 1] as arcface_torch passes them (read as [b]); any other
    shape is refused naming it. Returns the per-rank batch size b (equal on all ranks once this returns).
    """
    batch = embeddings.shape[0] if embeddings.dim() >= 1 else -1
    dim = embeddings.shape[1] if embeddings.dim() == 2 else -1
    # labels' shape as two numbers: its rank and its second size (1 where it has none)
    label_shape = [labels.dim(), labels.shape[1] if labels.dim() >= 2 else 1]
    # One process: the facts are host integers already (a device tensor would cost a sync).
    device = ctx.device if ctx.is_distributed else torch.device("cpu")
    mine = torch.tensor([batch, dim, labels.numel(), *label_shape], dtype=torch.int64, device=device)
    rows = ctx.all_gather(mine).view(ctx.world_size, 5).tolist()
    problems = [
        f"rank {r} passed embeddings of shape [{b}, {d}] (expected [batch, {embedding_size}])"
        for r, (b, d, *_) in enumerate(rows)
        if d != embedding_size
    ]
    problems += [
        f"rank {r} passed labels with {ndim} dimensions"
        + (f", {second} per sample" if ndim >= 2 else "")
        + " (expected [batch] class indices, or arcface_torch's [batch, 1])"
        for r, (b, _, _, ndim, second) in enumerate(rows)
        if not (ndim == 1 or (ndim == 2 and second == 1))
    ]
    problems += [
        f"rank {r} passed {n} labels for {b} embeddings" for r, (b, _, n, *_) in enumerate(rows) if n != b
    ]
    if len({row[0] for row in rows}) > 1:
        sizes = ", ".join(f"rank {r}: {row[0]}" for r, row in enumerate(rows))
        problems.append(f"the processes disagree on the batch size ({sizes})")
    if problems:
        raise FacescaleError("Partial FC: " + "; ".join(problems))
    return int(rows[0][0])


def check_labels(global_labels: torch.Tensor, num_classes: int, local_batch: int) -> None:
    """Raise naming the first label outside [0, num_classes) and the rank that passed it.

    global_labels: int64 [world_size * local_batch], rank 0's first (the all-gathered labels).
    """
    bad = (global_labels < 0) | (global_labels >= num_classes)
    if bool(bad.any()):
        where = int(torch.nonzero(bad)[0, 0])
        rank, i = divmod(where, max(local_batch, 1))
        raise FacescaleError(
            f"label {int(global_labels[where])} of sample {i} on rank {rank} is outside "
            f"[0, {num_classes}) ({int(bad.sum())} bad labels in this global batch)"
        )
