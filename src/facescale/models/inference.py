"""Embeddings of aligned uint8 faces from a torch backbone, one batch at a time.

Shared by the training-time evaluation (``facescale.eval.torch_embed``) and the deployed
``facescale.deploy.embedder.TorchEmbedder``, so both feed the model the same input.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from facescale.models.preprocess import to_model_input


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Slices ``[0, b), [b, 2b), ...`` covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def embed_in_batches(
    module: torch.nn.Module,
    images: np.ndarray,
    batch_size: int,
    device: torch.device | str,
    embedding_size: int = 0,
) -> np.ndarray:
    """``module`` over uint8 ``[N, 112, 112, 3]`` RGB faces, ``batch_size`` at a time: float32 ``[N, D]``.

    Runs under ``torch.inference_mode`` on ``device`` with the module in whatever mode the caller
    set. No images give ``[0, embedding_size]`` (without a forward pass D is unknown: callers
    that stack results pass it).
    """
    outputs = []
    with torch.inference_mode():
        for part in batches(len(images), batch_size):
            outputs.append(module(to_model_input(images[part], device)).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, embedding_size), dtype=np.float32)
