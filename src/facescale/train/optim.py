"""The learning rate: linear scaling with the global batch, and setting it on an optimizer.

The optimizers themselves are built by ``facescale.optim_factory``.
"""

from __future__ import annotations

import torch

from facescale.config import OptimConfig


def scaled_lr(cfg: OptimConfig, global_batch: int) -> float:
    """Linear scaling: ``lr`` is given for ``lr_batch_size`` images per step (0: as given)."""
    if cfg.lr_batch_size <= 0:
        return cfg.lr
    return cfg.lr * global_batch / cfg.lr_batch_size


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
