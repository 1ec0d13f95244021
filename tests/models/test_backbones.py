"""Every registered backbone: builds from its default config, right shapes, trains, round-trips.

Big models are checked on the meta device (shapes only, instant); real arithmetic runs on the
small ones plus one model of each family, at batch 2.
"""

from __future__ import annotations

import io

import pytest
import torch

from facescale.config import ModelConfig
from facescale.models import BACKBONES, backbone_from_config, build_backbone

ALL = list(BACKBONES)
# One real (non-meta) model per family: cheap enough for two shared CPU cores.
REAL = ["r18", "mbf_tiny", "mbf", "vit_t"]


def images(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, 112, 112, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("name", ALL)
def test_builds_from_default_config_with_the_right_output_shape(name: str) -> None:
    cfg = ModelConfig(name=name, embedding_size=128)
    with torch.device("meta"):
        model = backbone_from_config(cfg)
        out = model.eval()(torch.empty(2, 3, 112, 112))
    assert out.shape == (2, 128)
    assert model.embedding_size == 128


@pytest.mark.parametrize("name", ALL)
def test_state_dict_keys_round_trip_between_builds(name: str) -> None:
    with torch.device("meta"):
        a = build_backbone(name).state_dict()
        b = build_backbone(name).state_dict()
    assert [(k, v.shape) for k, v in a.items()] == [(k, v.shape) for k, v in b.items()]


@pytest.mark.parametrize("name", REAL)
def test_forward_backward_and_eval_determinism(name: str) -> None:
    torch.manual_seed(0)
    model = build_backbone(name, embedding_size=64)
    x = images()
    out = model.train()(x)
    assert out.shape == (2, 64) and out.dtype == torch.float32
    out.square().mean().backward()
    trainable = {k: p for k, p in model.named_parameters() if p.requires_grad}
    # Only the ViT mask token is unused, because masking is off by default.
    assert {k for k, p in trainable.items() if p.grad is None} <= {"mask_token"}
    grads = [p.grad for p in trainable.values() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(bool(g.abs().sum() > 0) for g in grads) > 0.9 * len(grads)
    model.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
        single = model(x[:1])
    assert torch.equal(first, second)
    torch.testing.assert_close(single, first[:1], rtol=1e-4, atol=1e-4)  # no batch coupling in eval


@pytest.mark.parametrize("name", REAL)
def test_state_dict_round_trip_reproduces_outputs(name: str) -> None:
    torch.manual_seed(1)
    model = build_backbone(name, embedding_size=32)
    model.train()(images(4))  # move the BN running statistics away from their init
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    clone = build_backbone(name, embedding_size=32)
    clone.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(clone.eval()(images()), model.eval()(images()), rtol=0, atol=0)


def test_iresnet_embedding_bn_scale_is_frozen_like_insightface() -> None:
    model = build_backbone("r18")
    assert not model.features.weight.requires_grad
    assert model.fc.weight.requires_grad
