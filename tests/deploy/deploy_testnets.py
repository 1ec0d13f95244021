"""A tiny backbone stand-in for the deploy tests (imported by module name; tests/ is not a package)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class TinyNet(nn.Module):
    """A few of the layers backbones use: conv, batch norm, PReLU, linear."""

    def __init__(self, embedding_size: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.PReLU(8)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(8 * 16, embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.act(self.bn(self.conv(x)))), 1))


@dataclass
class FakeEmbedder:
    """What a gallery records of its model (name, fingerprint, embedding size), with no model behind it."""

    name: str = "fake"
    fingerprint: str = "0123456789abcdef"
    embedding_size: int = 8
