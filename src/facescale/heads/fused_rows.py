"""The head's work on its sampled centres, block by block: cosine logits, their gradient, the update.

A step with k sampled rows of D values used to copy the rows into a [k, D] fp32 leaf, get a
[k, D] gradient from autograd, then make fp32 copies of the optimizer state, a decayed gradient
and the rounding noise: about 13 KB of temporaries per sampled row. Here nothing of size [k, D]
is ever made. The rows are read from where they are stored (bf16 rows go straight into a bf16
GEMM) in blocks of ``BLOCK_ROWS``, and each block's gradient, optimizer update, stochastic
rounding and write-back happen while the block is in cache:

* forward  ``cos[:, block] = (x_hat @ w_block.T) / |w_block|`` into one [B, k] buffer;
* backward ``grad_x_hat += (grad_cos[:, block] / |w_block|) @ w_block``; the [B, k] gradient of
  the cosines is kept for ``update_rows`` (the head's step);
* step     per block ``g = grad_cos[:, block].T @ x_hat`` and the centre gradient
  ``grad_w = g / |w| - (w . g) w / |w|^3`` (the derivative of x_hat . w / |w|), then the row
  optimizer, the skip condition, rounding in place and the write into the store.

The result is the same function as normalising the rows and letting autograd differentiate it
(tested against float64 references); the cosine is not clamped to [-1, 1] here (the margin clamps
before its acos, and a cosine past 1 by rounding only scales a logit by 1 + 1e-7).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from facescale.heads.matmul import Matmul
from facescale.heads.sparse_optim import RoundingNoise, SparseOptimizer, SparseSGD, round_to_bf16_

# Rows per block. CPU: 256 x 512 fp32 = 512 KB per block buffer, so the few of them stay in a
# core's cache (measured at 1M classes: fastest of 256 / 1024 / 4096). GPU: large blocks, as each
# block costs ~20 kernel launches.
BLOCK_ROWS = {"cpu": 256}
GPU_BLOCK_ROWS = 32768


@dataclass
class SampledRows:
    """The centres (and optimizer state) one step uses: rows ``index`` of each stored tensor.

    tensors: name -> [m, ...] in their stored dtypes, on the compute device ("weight" [m, D]);
    index: int64 [k] rows of those tensors, or None for all m rows in order (rate 1, or rows
    already fetched from host memory): blocks are then views and the update writes in place.
    weight: the sampled centres [k, D] in the stored dtype, gathered once by ``gather`` (the
    forward, backward and update all read them; ``finish`` scatters the updated rows back).
    """

    tensors: dict[str, torch.Tensor]
    index: torch.Tensor | None
    weight: torch.Tensor

    @classmethod
    def gather(cls, tensors: dict[str, torch.Tensor], index: torch.Tensor | None) -> SampledRows:
        source = tensors["weight"]
        return cls(tensors, index, source if index is None else source.index_select(0, index))

    @property
    def count(self) -> int:
        return self.weight.shape[0]

    def blocks(self) -> Iterator[tuple[int, int]]:
        step = BLOCK_ROWS.get(self.weight.device.type, GPU_BLOCK_ROWS)
        for start in range(0, self.count, step):
            yield start, min(start + step, self.count)

    def read(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop) of the sample from tensor ``name`` (a view for the weight, or when
        ``index`` is None; a copy otherwise)."""
        if name == "weight":
            return self.weight[start:stop]
        tensor = self.tensors[name]
        if self.index is None:
            return tensor[start:stop]
        return tensor.index_select(0, self.index[start:stop])

    def write(self, name: str, start: int, stop: int, values: torch.Tensor) -> None:
        """Store ``values`` [stop - start, ...] as rows [start, stop) of the sample (cast exactly)."""
        if name == "weight" or self.index is None:
            target = self.read(name, start, stop)
            if target.data_ptr() != values.data_ptr():  # not updated in place already
                target.copy_(values)
            return
        tensor = self.tensors[name]
        tensor.index_copy_(0, self.index[start:stop], values.to(tensor.dtype))

    def finish(self) -> None:
        """Scatter the updated sampled centres back into the stored weight."""
        if self.index is not None:
            self.tensors["weight"].index_copy_(0, self.index, self.weight)


@dataclass
class CosineGrad:
    """What backward leaves for the update: x_hat [B, D], 1/|w| [k] and d loss / d cos [B, k]."""

    x_hat: torch.Tensor | None = None
    inv_norm: torch.Tensor | None = None
    grad: torch.Tensor | None = None


class _SampledCosine(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x_hat: torch.Tensor,
        anchor: torch.Tensor,
        rows: SampledRows,
        matmul: Matmul,
        kept: CosineGrad,
    ) -> torch.Tensor:
        dtype = matmul.result_dtype
        cosine = x_hat.new_empty((x_hat.shape[0], rows.count), dtype=dtype)
        inv_norm = x_hat.new_empty((rows.count,), dtype=dtype)
        x_in = matmul.cast(x_hat)
        for start, stop in rows.blocks():
            w = rows.read("weight", start, stop)
            norm = torch.linalg.vector_norm(w, dim=1, dtype=dtype)
            torch.reciprocal(norm.clamp_min_(1e-12), out=inv_norm[start:stop])
            product = matmul(x_in, matmul.cast(w).T)
            torch.mul(product, inv_norm[start:stop], out=cosine[:, start:stop])
        kept.x_hat, kept.inv_norm = x_hat.detach(), inv_norm
        ctx.rows, ctx.matmul, ctx.kept = rows, matmul, kept
        return cosine

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_cosine: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, None, None, None]:
        rows: SampledRows = ctx.rows
        matmul: Matmul = ctx.matmul
        kept: CosineGrad = ctx.kept
        assert kept.x_hat is not None and kept.inv_norm is not None
        kept.grad = grad_cosine  # read by update_rows (the head's step): the centres' gradient
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        grad_x = torch.zeros_like(kept.x_hat, dtype=matmul.result_dtype)
        for start, stop in rows.blocks():
            scaled = grad_cosine[:, start:stop] * kept.inv_norm[start:stop]
            grad_x.add_(matmul(matmul.cast(scaled), matmul.cast(rows.read("weight", start, stop))))
        return grad_x, None, None, None, None


def sampled_cosine(x_hat: torch.Tensor, rows: SampledRows, matmul: Matmul, kept: CosineGrad) -> torch.Tensor:
    """Cosine logits [B, k] of unit embeddings x_hat [B, D] against the sampled centres.

    Differentiable in x_hat; the centres' gradient is left in ``kept`` for ``update_rows``. The
    result needs a gradient even when x_hat does not (the centres learn from fixed embeddings).
    """
    anchor = torch.zeros((), device=x_hat.device, requires_grad=True)  # puts the output in the graph
    return _SampledCosine.apply(x_hat, anchor, rows, matmul, kept)


def centre_grad_block(
    kept: CosineGrad, matmul: Matmul, w: torch.Tensor, start: int, stop: int
) -> torch.Tensor:
    """d loss / d w for sample rows [start, stop): w is that block [c, D] in the result dtype."""
    assert kept.grad is not None and kept.x_hat is not None and kept.inv_norm is not None
    g = matmul(matmul.cast(kept.grad[:, start:stop]).T, matmul.cast(kept.x_hat))  # [c, D]
    inv = kept.inv_norm[start:stop].unsqueeze(1)
    along = (w * g).sum(dim=1, keepdim=True).mul_(inv.pow(3))  # (w . g) / |w|^3
    return g.mul_(inv).addcmul_(w, along, value=-1.0)


def centre_grad(kept: CosineGrad, rows: SampledRows, matmul: Matmul) -> torch.Tensor:
    """The whole [k, D] centre gradient (for tests and diagnostics; the step never makes it)."""
    parts = [
        centre_grad_block(kept, matmul, rows.read("weight", a, b).to(matmul.result_dtype), a, b)
        for a, b in rows.blocks()
    ]
    return torch.cat(parts) if parts else kept.x_hat.new_zeros((0, kept.x_hat.shape[1]))  # type: ignore[union-attr]


def update_rows(
    rows: SampledRows,
    kept: CosineGrad,
    matmul: Matmul,
    optimizer: SparseOptimizer,
    lr: float,
    apply: torch.Tensor,
    noise: RoundingNoise | None,
) -> None:
    """Apply ``optimizer`` to every sampled row, block by block, and write the rows back.

    apply: 0-dim bool on the device; where False (an fp16 overflow step, bad labels) every row
    keeps its stored value bit for bit, decided on the device (no host sync). noise: the
    stochastic-rounding words for tensors stored in bf16 (None when none is).
    """
    dtype = matmul.result_dtype
    names = list(rows.tensors)
    sgd = _MaskedSGD(optimizer, lr, apply, dtype) if isinstance(optimizer, SparseSGD) else None
    for start, stop in rows.blocks():
        before = {name: rows.read(name, start, stop) for name in names}
        if sgd is not None:
            # In place on the compute-dtype rows (copies unless stored in fp32): the masked
            # factors make a skipped step the identity, so nothing else is kept.
            current = {name: t.to(dtype) for name, t in before.items()}
            grad = centre_grad_block(kept, matmul, current["weight"], start, stop)
            sgd.update(current["weight"], grad, current.get("momentum"))
        else:
            # General optimizer: update copies and select per element with ``apply``.
            current = {
                name: t.to(dtype, copy=True) if t.is_floating_point() else t.clone()
                for name, t in before.items()
            }
            grad = centre_grad_block(kept, matmul, current["weight"], start, stop)
            optimizer.update(current["weight"], grad, {n: t for n, t in current.items() if n != "weight"}, lr)
            current = {name: torch.where(apply, current[name], before[name]) for name in names}
        for name in names:
            value = current[name]
            if rows.tensors[name].dtype == torch.bfloat16 and noise is not None:
                value = round_to_bf16_(value, noise)  # exact for a skipped row: it is bf16 already
            rows.write(name, start, stop, value)
    rows.finish()


class _MaskedSGD:
    """SparseSGD's rule with 0-dim device factors, so that ``apply`` False leaves rows exactly as
    they were: gradient 0, decay 0, momentum factor 1, rate 0 (w - 0 * m == w, 1 * m + 0 == m)."""

    def __init__(self, optimizer: SparseSGD, lr: float, apply: torch.Tensor, dtype: torch.dtype) -> None:
        def factor(on: float, off: float) -> torch.Tensor:  # filled on the device in ``dtype``: exact
            full = torch.full((), on, dtype=dtype, device=apply.device)
            return torch.where(apply, full, torch.full_like(full, off))

        self.skip = ~apply
        self.decay = factor(optimizer.weight_decay, 0.0)
        self.momentum = factor(optimizer.momentum, 1.0) if optimizer.momentum != 0 else None
        self.neg_lr = factor(-lr, 0.0)

    def update(self, weight: torch.Tensor, grad: torch.Tensor, momentum: torch.Tensor | None) -> None:
        """torch SGD (momentum, L2 decay added to the gradient) in place; grad is consumed."""
        grad.masked_fill_(self.skip, 0.0).addcmul_(weight, self.decay)
        step = grad
        if momentum is not None and self.momentum is not None:
            step = momentum.mul_(self.momentum).add_(grad)
        weight.addcmul_(step, self.neg_lr)
