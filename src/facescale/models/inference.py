"""Embeddings of aligned uint8 faces from a torch backbone, one batch at a time.

Shared by the training-time evaluation (``facescale.eval.torch_embed``) and the deployed
``facescale.deploy.embedder.TorchEmbedder``, so both feed the model the same input.
"""

from __future__ import annotations

import numpy as np
import torch

from facescale.models.preprocess import to_model_input


def embed_in_batches(
    module: torch.nn.Module, images: np.ndarray, batch_size: int, device: torch.device | str
) -> np.ndarray:
    """``module`` over uint8 ``[N, 112, 112, 3]`` RGB faces, ``batch_size`` at a time: float32 ``[N, D]``.

    Runs under ``torch.inference_mode`` on ``device`` with the module in whatever mode the caller
    set. No images give an empty ``[0, 0]`` array: without a forward pass D is unknown.
    """
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = to_model_input(images[start : start + batch_size], device)
            outputs.append(module(x).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)
