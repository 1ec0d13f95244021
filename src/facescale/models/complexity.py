"""Parameters and multiply-accumulates of a backbone, measured by running it.

The model is built on the ``meta`` device (shapes only, no memory, no arithmetic) and one
112x112 image is pushed through it under ``torch.utils.flop_counter.FlopCounterMode``,
which records every convolution, matmul and attention call with its real shapes. MACs are
half the counted FLOPs (the counter counts a multiply-add as two). Normalisation,
activations and additions are not counted, as in the published figures.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from facescale.models.factory import build_backbone

INPUT_SIZE = 112


@dataclass(frozen=True)
class Complexity:
    """Cost of one forward pass of one image (eval mode)."""

    name: str
    params: int
    macs: int
    embedding_size: int

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


def count_macs(module: nn.Module, input_size: int = INPUT_SIZE) -> int:
    """Multiply-accumulates for one ``[1, 3, input_size, input_size]`` image, in eval mode.

    Works on a module on any device, including ``meta`` (then nothing is computed).
    """
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    try:
        image = torch.zeros(1, 3, input_size, input_size, device=device)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            module(image)
    finally:
        module.train(was_training)
    return counter.get_total_flops() // 2


def measure_backbone(name: str, **kwargs: object) -> Complexity:
    """Build ``name`` on the meta device and count its parameters and MACs at 112x112."""
    return _measure(name, tuple(sorted(kwargs.items())))


@functools.lru_cache(maxsize=128)
def _measure(name: str, options: tuple[tuple[str, object], ...]) -> Complexity:
    with torch.device("meta"):
        model = build_backbone(name, **dict(options))
    return Complexity(
        name=name,
        params=count_parameters(model),
        macs=count_macs(model),
        embedding_size=int(getattr(model, "embedding_size", 0)),
    )
