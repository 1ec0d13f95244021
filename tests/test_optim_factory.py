"""The one factory of torch optimizers, used by the trainer (backbone) and the head's dense update."""

from __future__ import annotations

import pytest
import torch

from facescale.config import OptimConfig
from facescale.errors import ConfigError
from facescale.optim_factory import build_optimizer, scaled_lr, set_lr


def test_sgd_takes_the_configured_rate_momentum_and_decay() -> None:
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))]
    opt = build_optimizer(iter(params), OptimConfig(name="sgd", momentum=0.8, weight_decay=0.01), lr=0.3)
    assert type(opt) is torch.optim.SGD
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.3, 0.8, 0.01)
    assert group["params"] == params


def test_adamw_takes_the_configured_betas_as_floats() -> None:
    cfg = OptimConfig(name="adamw", betas=[0, 0.99], weight_decay=0.02)  # YAML may give an int
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(3))], cfg, lr=0.001)
    assert type(opt) is torch.optim.AdamW
    group = opt.param_groups[0]
    assert group["betas"] == (0.0, 0.99) and all(isinstance(b, float) for b in group["betas"])
    assert (group["lr"], group["weight_decay"]) == (0.001, 0.02)


def test_unknown_optimizer_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"optim\.name.*'lamb'"):
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], OptimConfig(name="lamb"), lr=0.1)


def test_learning_rate_scales_linearly_with_the_global_batch() -> None:
    cfg = OptimConfig(lr=0.1, lr_batch_size=512)
    assert scaled_lr(cfg, 512) == pytest.approx(0.1) and scaled_lr(cfg, 2048) == pytest.approx(0.4)
    assert scaled_lr(OptimConfig(lr=0.1, lr_batch_size=0), 2048) == 0.1  # 0: the rate as given
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg, lr=0.1)
    set_lr(optimizer, 0.25)
    assert [group["lr"] for group in optimizer.param_groups] == [0.25]


def test_fused_kernels_only_for_cuda_parameters():
    cpu = torch.zeros(3, requires_grad=True)
    for name in ("sgd", "adamw"):
        assert not build_optimizer([cpu], OptimConfig(name=name), 0.1).defaults["fused"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_parameters_get_the_fused_optimizer():
    gpu = torch.zeros(3, device="cuda", requires_grad=True)
    for name in ("sgd", "adamw"):
        assert build_optimizer([gpu], OptimConfig(name=name), 0.1).defaults["fused"]
