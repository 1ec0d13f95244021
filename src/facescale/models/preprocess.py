"""The insightface input convention: RGB, 112x112, ``(pixel - 127.5) / 127.5``, NCHW."""

from __future__ import annotations

import numpy as np
import torch

INPUT_SIZE = 112
PIXEL_MEAN = 127.5
PIXEL_SCALE = 127.5


def to_model_input(images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """``images``: uint8 ``[N, H, W, 3]`` RGB -> float32 ``[N, 3, H, W]`` in [-1, 1] on ``device``."""
    t = torch.as_tensor(images)
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected images of shape [N, H, W, 3], got {tuple(t.shape)}")
    return normalize(t.to(device, non_blocking=True).permute(0, 3, 1, 2)).contiguous()


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or float) ``[B, 3, H, W]`` pixels -> float32 ``(x - 127.5) / 127.5`` in [-1, 1]."""
    return images.to(torch.float32).sub_(PIXEL_MEAN).div_(PIXEL_SCALE)


def normalize_array(images: np.ndarray) -> np.ndarray:
    """uint8 ``[N, H, W, 3]`` RGB -> float32 ``[N, 3, H, W]`` in [-1, 1] (for onnxruntime)."""
    return (images.astype(np.float32).transpose(0, 3, 1, 2) - PIXEL_MEAN) / PIXEL_SCALE
