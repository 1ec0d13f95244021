"""torch's optimizer for the ``optim`` config (the backbone's and the head's dense update), and its rate:
the linear scaling with the global batch, and setting it each step.

It sits below ``train`` and ``heads`` so that both build their optimizer the same way (the
head may not import the trainer). The head's sparse row update is ``heads.sparse_optim``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from facescale.config import CHOICES, OptimConfig
from facescale.errors import ConfigError


def build_optimizer(params: Iterable[torch.Tensor], cfg: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay (``optim.name`` sgd), or AdamW (adamw), at rate ``lr``."""
    params = list(params)
    # On CUDA the fused kernels: one launch for all parameters, and with a grad scaler the
    # overflow check stays on the device (the unfused path reads it on the host every step).
    fused = bool(params) and all(p.is_cuda for p in params)
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=fused or None
        )
    if cfg.name == "adamw":
        betas = (float(cfg.betas[0]), float(cfg.betas[1]))
        return torch.optim.AdamW(
            params, lr=lr, betas=betas, weight_decay=cfg.weight_decay, fused=fused or None
        )
    raise ConfigError(
        f"config key 'optim.name': {cfg.name!r} is not one of {', '.join(CHOICES['optim.name'])}"
    )


def scaled_lr(cfg: OptimConfig, global_batch: int) -> float:
    """Linear scaling: ``lr`` is given for ``lr_batch_size`` images per step (0: as given)."""
    if cfg.lr_batch_size <= 0:
        return cfg.lr
    return cfg.lr * global_batch / cfg.lr_batch_size


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the rate of every parameter group (the schedule changes it every step)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
