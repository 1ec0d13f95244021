"""``build_train_loader``: the one place that picks a training loader from the config.

It sits above both loaders (``loader.TrainLoader``, CPU workers, and ``dali_loader.DaliTrainLoader``,
GPU decoding) so neither base module imports its own subclass.
"""

from __future__ import annotations

import torch

from facescale.config import DataConfig
from facescale.data.face_dataset import FaceDataset
from facescale.data.loader import EpochLoader, TrainLoader


def build_train_loader(
    dataset: FaceDataset,
    cfg: DataConfig,
    rank: int,
    world_size: int,
    seed: int,
    pin_memory: bool = False,
    device: torch.device | str | None = None,
) -> EpochLoader:
    """The loader for ``rank`` of ``world_size``: DALI decoding (``data.dali``) or CPU workers."""
    if cfg.dali:
        from facescale.data.dali_loader import DaliTrainLoader  # needs the optional extra

        return DaliTrainLoader(dataset, cfg, rank, world_size, seed, device)
    return TrainLoader(dataset, cfg, rank, world_size, seed, pin_memory, device)
