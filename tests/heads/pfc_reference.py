"""Naive single-process references for the Partial FC tests (full softmax, ArcFace, plain SGD)."""

from __future__ import annotations

import math

import torch

S, M = 64.0, 0.5
MOMENTUM, WEIGHT_DECAY = 0.9, 0.05


def arcface_full_softmax_loss(embeddings: torch.Tensor, centres: torch.Tensor, labels: torch.Tensor):
    """Mean over the batch of -log softmax(s * [cos(theta_y + m) at y, cos elsewhere])_y."""
    e = embeddings / embeddings.norm(dim=1, keepdim=True)
    w = centres / centres.norm(dim=1, keepdim=True)
    cos = e @ w.T
    onehot = torch.zeros_like(cos, dtype=torch.bool)
    onehot[torch.arange(len(labels)), labels] = True
    theta = torch.acos(cos[onehot])
    assert bool((theta + M < math.pi).all()), "test data must stay on the arc part of the margin"
    logits = S * cos.masked_scatter(onehot, torch.cos(theta + M))
    return (torch.log(torch.exp(logits).sum(dim=1)) - logits[onehot]).mean()


class NaiveSGD:
    """torch's SGD rule written out: buf = mu * buf + (g + wd * w); w -= lr * buf (buf starts at 0)."""

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight.clone()
        self.momentum = torch.zeros_like(weight)

    def step(self, grad: torch.Tensor, lr: float, rows: torch.Tensor | None = None) -> None:
        rows = torch.arange(len(self.weight)) if rows is None else rows
        g = grad[rows] + WEIGHT_DECAY * self.weight[rows]
        self.momentum[rows] = MOMENTUM * self.momentum[rows] + g
        self.weight[rows] -= lr * self.momentum[rows]


def global_batch(step: int, world: int, per_rank: int, dim: int, num_classes: int):
    """The same embeddings [world * per_rank, D] and labels on every process, for a given step."""
    gen = torch.Generator().manual_seed(1000 + step)
    embeddings = torch.randn(world * per_rank, dim, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, num_classes, (world * per_rank,), generator=gen)
    return embeddings, labels
