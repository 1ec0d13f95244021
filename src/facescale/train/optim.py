"""The learning rate's linear scaling with the global batch.

Optimizers are built, and their rate set, by ``facescale.optim_factory``.
"""

from __future__ import annotations

from facescale.config import OptimConfig


def scaled_lr(cfg: OptimConfig, global_batch: int) -> float:
    """Linear scaling: ``lr`` is given for ``lr_batch_size`` images per step (0: as given)."""
    if cfg.lr_batch_size <= 0:
        return cfg.lr
    return cfg.lr * global_batch / cfg.lr_batch_size
