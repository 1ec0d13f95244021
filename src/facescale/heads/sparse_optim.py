"""Optimizer updates applied to the sampled rows of the class centres only.

The sparse counterpart of ``torch.optim.SGD`` (momentum, weight decay, no dampening, no Nesterov)
and ``torch.optim.AdamW``, written for a [k, D] block of rows gathered from the full [n, D] shard:
only those rows decay and move, the rest stay bit-identical, and nothing of size n x D is made.
A row's momentum starts at zero, which gives exactly torch's first step (buf = grad).

For SGD the formulas are torch's, so with every row sampled each step the result equals
``torch.optim.SGD`` over the whole matrix (tested). AdamW keeps a per-row step count: a row that
has been sampled t times has had its moments updated t times, so its bias correction uses t
(the "lazy Adam" of sparse embeddings). With every row sampled each step it equals torch's AdamW.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from facescale.config import CHOICES, OptimConfig
from facescale.errors import ConfigError


@dataclass(frozen=True)
class StateSpec:
    """One optimizer-state tensor per class: its name, the shape after the class dim, and kind.

    kind "moment" tensors take the configured momentum dtype; "count" tensors are int32.
    """

    name: str
    per_class_shape: tuple[int, ...]
    kind: str


@dataclass(frozen=True)
class SparseSGD:
    """SGD with momentum and L2 weight decay added to the gradient (torch semantics), on rows."""

    momentum: float = 0.9
    weight_decay: float = 5e-4
    name: str = "sgd"

    def state_specs(self, dim: int) -> list[StateSpec]:
        return [StateSpec("momentum", (dim,), "moment")] if self.momentum != 0 else []

    def update(
        self, weight: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor], lr: float
    ) -> None:
        """In place on ``weight`` [k, D] and ``state`` rows (compute dtype); grad: [k, D], consumed
        (it holds the decayed gradient afterwards: no [k, D] temporary is made)."""
        step = grad.add_(weight, alpha=self.weight_decay) if self.weight_decay != 0 else grad
        if self.momentum != 0:
            buf = state["momentum"]
            buf.mul_(self.momentum).add_(step)
            step = buf
        weight.add_(step, alpha=-lr)


@dataclass(frozen=True)
class SparseAdamW:
    """AdamW (decoupled weight decay, torch semantics) on rows, with a per-row step count."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 5e-4
    name: str = "adamw"

    def state_specs(self, dim: int) -> list[StateSpec]:
        return [
            StateSpec("exp_avg", (dim,), "moment"),
            StateSpec("exp_avg_sq", (dim,), "moment"),
            StateSpec("step", (), "count"),
        ]

    def update(
        self, weight: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor], lr: float
    ) -> None:
        """In place on ``weight`` [k, D] and ``state`` rows; ``state["step"]`` is int32 [k]."""
        state["step"].add_(1)
        t = state["step"].to(weight.dtype).unsqueeze(1)
        weight.mul_(1.0 - lr * self.weight_decay)
        state["exp_avg"].lerp_(grad, 1.0 - self.beta1)
        state["exp_avg_sq"].mul_(self.beta2).addcmul_(grad, grad, value=1.0 - self.beta2)
        bias_correction1 = 1.0 - torch.pow(self.beta1, t)
        bias_correction2 = 1.0 - torch.pow(self.beta2, t)
        denom = (state["exp_avg_sq"].sqrt() / bias_correction2.sqrt()).add_(self.eps)
        weight.sub_(lr * state["exp_avg"] / (bias_correction1 * denom))


SparseOptimizer = SparseSGD | SparseAdamW


def build_sparse_optimizer(cfg: OptimConfig) -> SparseOptimizer:
    """The row optimizer for ``optim.name`` with the config's momentum/betas and weight decay."""
    if cfg.name == "sgd":
        return SparseSGD(momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return SparseAdamW(beta1=cfg.betas[0], beta2=cfg.betas[1], weight_decay=cfg.weight_decay)
    raise ConfigError(
        f"config key 'optim.name': {cfg.name!r} is not one of {', '.join(CHOICES['optim.name'])}"
    )


def stochastic_round_bf16(values: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """fp32 [...] -> bf16, rounding up or down at random with probability given by the distance.

    bf16 keeps 8 significant bits, so an update smaller than 1/256 of a weight would be lost by
    round-to-nearest every single step; rounding stochastically keeps the expected value exact.
    Adds uniform random bits below the 16 kept bits of the fp32 pattern, then truncates.
    """
    bits = values.float().contiguous().view(torch.int32)
    noise = torch.randint(0, 1 << 16, bits.shape, dtype=torch.int32, device=bits.device, generator=generator)
    rounded = (bits + noise) & -65536  # -65536 == 0xFFFF0000 as int32: keep sign, exponent, 7 mantissa bits
    return rounded.view(torch.float32).to(torch.bfloat16)  # exact: the dropped bits are zero


NOISE_TABLE_SIZE = 1 << 22  # int32 entries (16 MB); a block of rows takes a random window of it


class RoundingNoise:
    """Random 16-bit words for stochastic rounding, cheap enough to use on every updated row.

    Drawing fresh random numbers for each of the k x D values every step costs more than the rest
    of the update on a CPU (torch's CPU generator is serial). Instead one table of uniform words
    in [0, 2**16) is drawn once (on the CPU, so every device gets the same table) and each block of
    rows reads it from a window at a random offset: every value still gets a uniform word, so the
    rounding stays unbiased; the offsets come from a host RNG seeded by (seed, step, rank), so
    the run is reproducible and the same on any device.
    """

    def __init__(self, seed: int, device: torch.device, size: int = NOISE_TABLE_SIZE) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.table = torch.randint(0, 1 << 16, (size,), dtype=torch.int32, generator=generator).to(device)
        self._rng = random.Random(seed)

    def reseed(self, seed: int) -> None:
        """Start the offsets of one step (call with a seed of (seed, step, rank))."""
        self._rng = random.Random(seed)

    def window(self, numel: int) -> torch.Tensor:
        """int32 [numel] uniform words: a view of the table, or for a block larger than the table
        (a GPU block) a concatenation of half-table windows at independent offsets."""
        size = self.table.numel()
        if numel <= size:
            start = self._rng.randrange(size - numel + 1)
            return self.table[start : start + numel]
        pieces, left = [], numel
        while left > 0:
            count = min(left, size // 2)
            start = self._rng.randrange(size - count + 1)
            pieces.append(self.table[start : start + count])
            left -= count
        return torch.cat(pieces)


def round_to_bf16_(values: torch.Tensor, noise: RoundingNoise) -> torch.Tensor:
    """Stochastic rounding in place: fp32 [...] (contiguous) becomes fp32 values exactly representable
    in bf16 (the cast that follows is exact); returns ``values``. Same rule as ``stochastic_round_bf16``."""
    bits = values.view(torch.int32)
    bits.add_(noise.window(bits.numel()).view(bits.shape)).bitwise_and_(-65536)
    return values
