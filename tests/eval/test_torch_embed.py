"""The training-time embed wrapper: eval-mode outputs, and the module's mode restored."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from facescale.eval.torch_embed import module_embed_fn
from facescale.eval.verification import evaluate_verification


def tiny_backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 5, stride=4),
        nn.BatchNorm2d(4),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(4 * 27 * 27, 8),
    )


def test_embed_runs_in_eval_mode_and_restores_training() -> None:
    module = tiny_backbone().train()
    images = np.random.default_rng(0).integers(0, 256, size=(20, 112, 112, 3), dtype=np.uint8)
    got = module_embed_fn(module, batch_size=7)(images)
    assert module.training and all(m.training for m in module.modules())
    module.eval()
    with torch.no_grad():
        x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() - 127.5) / 127.5
        expected = module(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_verification_with_a_torch_backbone() -> None:
    module = tiny_backbone().train()
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(40, 112, 112, 3), dtype=np.uint8)
    images[1::4] = images[0::4]
    result = evaluate_verification(module_embed_fn(module), images, np.arange(20) % 2 == 0, batch_size=16)
    assert result.accuracy_highest == 1.0 and module.training
