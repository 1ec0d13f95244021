"""``embed_in_batches``: the batching loop the training-time and deployed torch embedders share."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from facescale.models.inference import embed_in_batches
from facescale.models.preprocess import to_model_input


class Recorder(nn.Module):
    """Mean colour per image; records each batch size and whether autograd was on."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.batch_sizes: list[int] = []
        self.grad_enabled: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(len(x))
        self.grad_enabled.append(torch.is_grad_enabled())
        return (x.mean(dim=(2, 3)) * self.scale).double()


def test_batches_match_one_forward_and_come_back_float32() -> None:
    module = Recorder()
    images = np.random.default_rng(0).integers(0, 256, size=(7, 112, 112, 3), dtype=np.uint8)
    got = embed_in_batches(module, images, batch_size=3, device="cpu")
    assert module.batch_sizes == [3, 3, 1] and module.grad_enabled == [False] * 3
    assert got.dtype == np.float32 and got.shape == (7, 3)
    expected = to_model_input(images).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_module_mode_is_left_to_the_caller() -> None:
    module = Recorder().train()
    embed_in_batches(module, np.zeros((2, 112, 112, 3), np.uint8), batch_size=8, device="cpu")
    assert module.training


def test_no_images_give_an_empty_array_without_a_forward() -> None:
    module = Recorder()
    got = embed_in_batches(module, np.zeros((0, 112, 112, 3), np.uint8), batch_size=4, device="cpu")
    assert got.shape == (0, 0) and got.dtype == np.float32 and module.batch_sizes == []
    sized = embed_in_batches(module, np.zeros((0, 112, 112, 3), np.uint8), 4, "cpu", embedding_size=16)
    assert sized.shape == (0, 16) and module.batch_sizes == []
