"""An ``embed`` function for a torch backbone in the middle of training.

``facescale.deploy.embedder.TorchEmbedder`` is for finished models (it casts to fp32 and leaves
the module in eval mode). During training the backbone must come back exactly as it was, so
this wrapper switches to eval mode only for the forward pass and restores the previous mode.
"""

from __future__ import annotations

import numpy as np
import torch

from facescale.eval.verification import EmbedFn
from facescale.models.inference import embed_in_batches


def module_embed_fn(module: torch.nn.Module, batch_size: int = 256) -> EmbedFn:
    """``embed(images uint8 [n, 112, 112, 3] RGB) -> float32 [n, D]`` with ``module`` in eval mode.

    Runs on the device of the module's parameters under ``torch.inference_mode``; pass the bare
    backbone, not a DistributedDataParallel wrapper (no collectives may run during evaluation).
    """

    def embed(images: np.ndarray) -> np.ndarray:
        was_training = module.training
        module.eval()
        try:
            return embed_in_batches(module, images, batch_size, next(module.parameters()).device)
        finally:
            module.train(was_training)

    return embed
