"""Collectives with autograd: the embedding all-gather and the softmax cross-entropy over sharded classes.

The class dimension of the logits is split over ranks and is never gathered: the softmax needs
only each row's global max and global sum of exponentials, two numbers per sample.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from facescale.distributed.context import DistContext


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: concatenate every rank's [n, ...] tensor. Backward: each rank gets, for its own
    slice, the sum over ranks of that slice's gradient (a reduce-scatter), because every rank's
    loss term used every rank's embeddings."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, dist_ctx: DistContext) -> torch.Tensor:  # type: ignore[override]
        ctx.dist_ctx = dist_ctx
        ctx.rows = tensor.shape[0]
        return dist_ctx.all_gather(tensor)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        dist_ctx: DistContext = ctx.dist_ctx
        rows = ctx.rows
        grad = grad.contiguous()
        if dist_ctx.backend == "nccl":
            out = grad.new_empty((rows, *grad.shape[1:]))
            # torch 2.13 renamed reduce_scatter_tensor
            scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
            scatter(out, grad, op=dist.ReduceOp.SUM)
            return out, None
        # gloo has no reduce-scatter: sum everything, keep our slice (B x D, small).
        total = dist_ctx.all_reduce_sum(grad.clone())
        start = dist_ctx.rank * rows
        return total[start : start + rows], None


def all_gather_with_grad(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """All ranks' ``tensor`` [n, ...] concatenated to [world_size * n, ...] (rank order), differentiable.

    Every rank must pass the same shape. With one process this is the identity.
    """
    if not ctx.is_distributed:
        return tensor
    return _AllGatherWithGrad.apply(tensor, ctx)


class _ShardedSoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy over the global batch with classes split over ranks.

    Each rank holds logits [B, k] for its k classes and labels [B] remapped into them (-1: this
    sample's class lives on another rank). All-reduced: per-sample max and per-sample sum of
    exponentials, plus one scalar, the sum of the target logits owned by each rank.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, logits: torch.Tensor, labels: torch.Tensor, dist_ctx: DistContext, inplace: bool
    ) -> torch.Tensor:
        batch = logits.shape[0]
        # Fixed shapes, no host sync: each row gathers one column, rows owned elsewhere count 0.
        owned = labels >= 0
        cols = labels.clamp(min=0).unsqueeze(1)
        if logits.shape[1] > 0:
            target = logits.detach().gather(1, cols).squeeze(1)
            target_sum = torch.where(owned, target, 0.0).sum().reshape(1)
            row_max = logits.detach().amax(dim=1)
        else:  # a rank that sampled no class contributes nothing to max or sum
            target_sum = logits.new_zeros(1)
            row_max = logits.new_full((batch,), float("-inf"))
        dist_ctx.all_reduce_max(row_max)
        if inplace:  # the softmax overwrites the logits: no second [B, k] buffer
            probs = logits.detach().sub_(row_max[:, None]).exp_()
        else:
            probs = torch.exp(logits.detach() - row_max[:, None])
        sum_exp = probs.sum(dim=1)
        dist_ctx.all_reduce_sum(sum_exp)
        probs.div_(sum_exp[:, None])
        dist_ctx.all_reduce_sum(target_sum)
        loss = (torch.log(sum_exp) + row_max).sum() - target_sum[0]

        ctx.save_for_backward(probs, owned, cols)
        ctx.batch = batch
        return loss / batch

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:  # type: ignore[override]
        probs, owned, cols = ctx.saved_tensors
        grad = probs  # softmax - one_hot, reusing the saved buffer (backward runs once)
        if grad.shape[1] > 0:
            grad.scatter_add_(1, cols, owned.to(grad.dtype).neg_().unsqueeze(1))
        grad.mul_(grad_loss / ctx.batch)
        return grad, None, None, None


def sharded_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, ctx: DistContext, inplace: bool = False
) -> torch.Tensor:
    """Mean softmax cross-entropy over the global batch, same value on every rank.

    logits: [B, k] this rank's columns (B = global batch, k = classes held here, may be 0);
    labels: int64 [B], the column of the target on this rank or -1 when another rank owns it.
    Every sample's target must be owned by exactly one rank. inplace: the softmax (then the
    gradient) is computed in the logits' own buffer, whose values are lost; only for logits that
    nothing else reads (and whose producer's backward does not need them).
    """
    return _ShardedSoftmaxCrossEntropy.apply(logits, labels, ctx, inplace)
