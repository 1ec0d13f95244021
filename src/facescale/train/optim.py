"""The backbone's optimizer. The head updates its own (sampled) rows: see heads/partial_fc.py."""

from __future__ import annotations

import torch
from torch import nn

from facescale.config import OptimConfig


def build_optimizer(backbone: nn.Module, cfg: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay, or AdamW; ``lr`` is the scaled base rate."""
    params = [p for p in backbone.parameters() if p.requires_grad]
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    betas = (float(cfg.betas[0]), float(cfg.betas[1]))
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=cfg.weight_decay)


def scaled_lr(cfg: OptimConfig, global_batch: int) -> float:
    """Linear scaling: ``lr`` is given for ``lr_batch_size`` images per step (0: as given)."""
    if cfg.lr_batch_size <= 0:
        return cfg.lr
    return cfg.lr * global_batch / cfg.lr_batch_size


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
