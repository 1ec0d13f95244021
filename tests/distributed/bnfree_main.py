"""``facescale`` with one extra backbone, ``bnfree_tiny``, for tests that compare process layouts.

Batch norm normalises over each process's own batch, so N processes of batch b legitimately
differ from one process of batch N*b; a backbone without batch statistics makes the two
comparable to float precision. Launched exactly as the real command (``torchrun ... this file
train ...``), it is otherwise the unchanged CLI.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from facescale.models.base import BACKBONES


class BnFreeTiny(nn.Module):
    """``[B, 3, 112, 112] -> [B, embedding_size]``: a strided conv, GELU and a linear layer."""

    def __init__(self, embedding_size: int = 32) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, kernel_size=8, stride=8)
        self.fc = nn.Linear(8 * 14 * 14, embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(nn.functional.gelu(self.conv(x)).flatten(1))


def build_bnfree_tiny(embedding_size: int = 32) -> nn.Module:
    return BnFreeTiny(embedding_size)


def register() -> None:
    try:
        BACKBONES.get("bnfree_tiny")
    except Exception:
        BACKBONES.register("bnfree_tiny")(build_bnfree_tiny)


if __name__ == "__main__":
    register()
    from facescale.cli.main import main

    sys.exit(main())
