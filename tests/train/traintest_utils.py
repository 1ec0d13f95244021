"""Helpers shared by the checkpoint tests."""

from __future__ import annotations

from pathlib import Path

import torch


class FakeHead:
    """A one-shard head holding one value: what CheckpointManager saves and restores."""

    def __init__(self, value: float) -> None:
        self.value = value

    def save_shard(self, directory: str | Path) -> Path:
        path = Path(directory) / "head-rank00000-of-00001.pt"
        torch.save({"weight": torch.full((2, 2), self.value)}, path)
        return path

    def load_shards(self, directory: str | Path) -> None:
        self.value = float(torch.load(Path(directory) / "head-rank00000-of-00001.pt")["weight"][0, 0])
